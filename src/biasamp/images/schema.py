"""The `downloads` table: one row per caption (caption_id), whatever the image source.

It doubles as an image table for the classification stage: `item_id` (= str(caption_id))
and `image` (a path, or `shard.tar::member`, relative to the fetch output folder unless
absolute).
"""

from __future__ import annotations

import polars as pl

from biasamp.tables import Column as C
from biasamp.tables import Schema, validate

#: Final status of one caption's image. `ok` is the only status with a usable image.
STATUSES = (
    "ok",  # downloaded (or found) and decoded
    "http_error",  # the server answered with an HTTP error (404, 403, 500 …)
    "timeout",  # no answer, or the whole download took longer than allowed
    "disallowed",  # the server forbids AI use (X-Robots-Tag: noai and similar)
    "not_an_image",  # bytes arrived but do not decode as an image (HTML, corrupt, truncated)
    "too_small",  # decoded, but the shorter side is below the minimum size
    "missing",  # no image for this caption in the local store / embeddings
    "error",  # anything else: bad URL, refused connection, no URL in the selection …
)
#: Statuses after which bytes had arrived (counted as "downloaded" in attrition).
RECEIVED = ("ok", "not_an_image", "too_small")
#: Statuses worth trying again later (`retry_failed`).
RETRYABLE = ("timeout", "http_error", "error")

DOWNLOADS = Schema(
    "downloads",
    (
        C("caption_id", pl.Int64, nullable=False, doc="the selection's caption id"),
        C("item_id", pl.Utf8, nullable=False, doc="str(caption_id): the id labels use"),
        C("url", pl.Utf8, doc="where the image was fetched from (null for embeddings)"),
        C("status", pl.Utf8, values=STATUSES, nullable=False),
        C("received", pl.Boolean, doc="bytes (or an embedding) arrived"),
        C("error_message", pl.Utf8, doc="why the status is not ok"),
        C("image", pl.Utf8, doc="path or tar::member, relative to the output folder unless absolute"),
        C("width", pl.Int64, doc="decoded width in pixels"),
        C("height", pl.Int64, doc="decoded height in pixels"),
        C("format", pl.Utf8, required=False, doc="decoded image format (JPEG, PNG …)"),
        C("sha256", pl.Utf8, required=False, doc="sha256 of the stored image bytes"),
        C("source", pl.Utf8, values=("download", "local", "embeddings"), required=False),
        C("batch", pl.Utf8, required=False, doc="download batch folder the row comes from"),
        C("key", pl.Utf8, required=False, doc="img2dataset's positional key"),
    ),
    doc="one row per selected caption: what became of its training image",
    key=("caption_id",),
)

COLUMNS = [c.name for c in DOWNLOADS.columns]


def empty_downloads() -> pl.DataFrame:
    return DOWNLOADS.empty()


def finish(df: pl.DataFrame) -> pl.DataFrame:
    """Order and type the columns of a downloads table (extra columns kept at the end)."""
    for c in DOWNLOADS.columns:
        if c.name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=c.dtype).alias(c.name))
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df.select(COLUMNS + extra)
    return validate(df, DOWNLOADS)


def status_from_img2dataset(status: str | None, message: str | None) -> str:
    """Map img2dataset's (status, error_message) to a downloads status."""
    if status == "success":
        return "ok"
    m = (message or "").lower()
    if "x-robots-tag" in m:
        return "disallowed"
    if "timed out" in m or "timeout" in m:
        return "timeout"
    if m.startswith("http error") or "http error" in m:
        return "http_error"
    if "too small" in m:
        return "too_small"
    if "decod" in m or "cannot identify image" in m or "truncated" in m:
        return "not_an_image"
    return "error"
