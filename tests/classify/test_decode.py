"""Robust decoding: every odd image becomes RGB, every bad one an error with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from biasamp.classify.decode import decode_image


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb_ok(d, shape=None):
    assert d.ok, d.reason
    assert d.array.dtype == np.uint8 and d.array.ndim == 3 and d.array.shape[2] == 3
    if shape is not None:
        assert d.array.shape[:2] == shape


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "I", "F", "RGB", "YCbCr"])
def test_every_mode_becomes_rgb(mode):
    im = Image.new(mode, (40, 30))
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "I": "TIFF", "F": "TIFF"}.get(mode, "PNG")
    d = decode_image(_save(im, fmt))
    _rgb_ok(d, (30, 40))
    assert (d.width, d.height) == (40, 30)


def test_sixteen_bit_png_keeps_its_range():
    a = np.full((10, 12), 65535, np.uint16)
    a[:, :6] = 0
    d = decode_image(_save(Image.fromarray(a), "PNG"))
    _rgb_ok(d, (10, 12))
    assert d.array[0, 0, 0] == 0 and d.array[0, 11, 0] == 255  # not clipped to white everywhere


def test_transparency_is_composited_on_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    d = decode_image(_save(im, "PNG"))
    assert tuple(d.array[0, 0]) == (255, 255, 255)
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    d = decode_image(_save(p, "PNG", transparency=0))
    assert tuple(d.array[0, 0]) == (255, 255, 255)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    d = decode_image(buf.getvalue())
    _rgb_ok(d, (16, 16))
    assert d.array[0, 0, 0] > 200 and d.array[0, 0, 2] < 50


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    d = decode_image(_save(im, "JPEG", exif=exif.tobytes(), quality=95))
    _rgb_ok(d, (40, 20))  # portrait after rotation
    assert (d.width, d.height) == (20, 40)
    assert d.array[5, 10].mean() > 200 and d.array[35, 10].mean() < 60  # white half now on top


def test_truncated_corrupt_empty_and_missing_are_errors(tmp_path, grace_hopper_path):
    data = grace_hopper_path.read_bytes()
    t = decode_image(data[: len(data) // 3])
    assert not t.ok and "truncated" in t.reason
    c = decode_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert not c.ok and c.reason
    e = decode_image(b"")
    assert not e.ok and "empty" in e.reason
    m = decode_image(tmp_path / "nope.jpg")
    assert not m.ok and "not found" in m.reason
    (tmp_path / "empty.jpg").write_bytes(b"")
    for src in (tmp_path / "empty.jpg", str(tmp_path / "empty.jpg")):  # a path says what bytes say
        ep = decode_image(src)
        assert not ep.ok and ep.reason == e.reason == "empty file (0 bytes)"


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_reading_pixels():
    d = decode_image(_png_header_only(40000, 40000))
    assert not d.ok and "decompression bomb" in d.reason
    small = decode_image(_save(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)
    assert not small.ok and "decompression bomb" in small.reason


def test_huge_jpeg_is_shrunk_to_max_side():
    im = Image.new("RGB", (6000, 3000), (10, 120, 200))
    d = decode_image(_save(im, "JPEG"), max_side=1024)
    _rgb_ok(d)
    assert max(d.array.shape[:2]) <= 1024 and (d.width, d.height) == (6000, 3000)
    assert abs(int(d.array[100, 100, 2]) - 200) < 8


def test_tiny_image_decodes():
    _rgb_ok(decode_image(_save(Image.new("L", (1, 1)), "PNG")), (1, 1))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data):
    d = decode_image(data)
    assert d.ok or d.reason


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2000))
def test_any_cut_of_a_real_jpeg_never_raises(cut):
    from matplotlib import cbook

    data = open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb").read()
    d = decode_image(data[: cut * 30])
    assert d.ok or d.reason
