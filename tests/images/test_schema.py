"""img2dataset outcomes map onto the downloads statuses."""

from __future__ import annotations

import pytest

from biasamp.images.schema import STATUSES, status_from_img2dataset


@pytest.mark.parametrize(
    "status, message, want",
    [
        ("success", None, "ok"),
        ("failed_to_download", "HTTP Error 404: Not Found", "http_error"),
        ("failed_to_download", "HTTP Error 503: Service Unavailable", "http_error"),
        ("failed_to_download", "timed out", "timeout"),
        ("failed_to_download", "<urlopen error timed out>", "timeout"),
        ("failed_to_download", "timed out: the download took longer than 30 s", "timeout"),
        ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "disallowed"),
        ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "error"),
        ("failed_to_download", "unknown url type: 'notaurl'", "error"),
        ("failed_to_resize", "image too small", "too_small"),
        ("failed_to_resize", "Image decoding error", "not_an_image"),
        ("failed_to_resize", "aspect ratio too large", "error"),
    ],
)
def test_status_mapping(status, message, want):
    got = status_from_img2dataset(status, message)
    assert got == want and got in STATUSES
