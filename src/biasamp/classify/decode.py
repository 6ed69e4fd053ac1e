"""Robust image decoding: any file Pillow can open becomes an RGB uint8 array, or an error.

Every odd input ends in one of two ways: an `H x W x 3` uint8 RGB array (EXIF orientation
applied; grayscale, CMYK, 16-bit, palette, transparent and animated images converted), or a
`reason` string (truncated, corrupt, empty, unsupported, decompression bomb). Nothing
raises and nothing is dropped: the caller records the reason as `face_status = error`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Pillow's own bomb limit is 2 x 89.5 megapixels; this default is the same order.
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass
class Decoded:
    """One decoded image (or the reason it could not be decoded)."""

    array: np.ndarray | None  # H x W x 3 uint8 RGB
    width: int | None = None  # of the file, before any size reduction
    height: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.array is not None


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        elif mode == "I":
            a = a / 257.0 if a.max(initial=0) > 255 else a
        else:  # float: 0..1 or 0..255
            a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), "RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX …


def decode_image(
    data: bytes | str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Decoded:
    """Decode `data` (bytes or a path) to RGB; never raises for bad image content.

    `max_pixels`: images with more pixels are refused as decompression bombs before their
    pixels are read. `max_side`: if set, the result is shrunk (JPEG: decoded at reduced
    scale, which is much faster) so that its longer side is at most this. Transparent
    pixels are composited over `background`. Animated images give their first frame.
    """
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
        if (len(data) if isinstance(src, io.BytesIO) else Path(src).stat().st_size) == 0:  # bytes or path: one reason
            return Decoded(None, reason="empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    return Decoded(None, w, h, reason=f"image has no pixels ({w}x{h})")
                if w * h > max_pixels:
                    return Decoded(
                        None, w, h,
                        reason=f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}",
                    )
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                if max_side and max(w, h) > max_side and im.format == "JPEG":
                    scale = max_side / max(w, h)
                    im.draft("RGB" if im.mode != "CMYK" else None, (max(1, int(w * scale)), max(1, int(h * scale))))
                im.load()
                try:
                    orientation = im.getexif().get(0x0112, 1)
                except Exception:
                    orientation = 1
                if orientation in (5, 6, 7, 8):
                    w, h = h, w
                im = ImageOps.exif_transpose(im)
                im = _to_rgb(im, background)
                if max_side and max(im.size) > max_side:
                    im = im.copy()
                    im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        if arr.ndim != 3 or arr.shape[2] != 3:
            return Decoded(None, w, h, reason=f"unexpected decoded shape {arr.shape}")
        return Decoded(np.ascontiguousarray(arr), w, h)
    except Image.DecompressionBombError as e:
        return Decoded(None, reason=f"decompression bomb: {e}")
    except FileNotFoundError:
        return Decoded(None, reason=f"file not found: {data}")
    except Image.UnidentifiedImageError:
        return Decoded(None, reason="not an image Pillow can identify (corrupt or unsupported format)")
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError, IndexError, KeyError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower() or isinstance(e, EOFError):
            return Decoded(None, reason=f"truncated image: {msg}")
        return Decoded(None, reason=f"cannot decode image: {type(e).__name__}: {msg}")
    except Exception as e:  # any other decoder failure is still this image's error, not a crash
        return Decoded(None, reason=f"cannot decode image: {type(e).__name__}: {e}")
