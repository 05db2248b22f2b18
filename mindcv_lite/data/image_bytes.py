"""Turn a file's bytes into bytes that MindSpore's C++ Decode op is safe to run on.

MindSpore 2.10's C++ JPEG decoders (Decode, RandomCropDecodeResize) kill the whole process (SIGSEGV, SIGFPE,
abort) on some damaged JPEGs, e.g. a few flipped bytes in a progressive scan: nothing in Python can catch that,
and no cheap header check can rule it out. Pillow raises a clean exception on the same files. So every image is
decoded by Pillow in the reader, where the file's path is still known, and handed on as an uncompressed BMP,
which the C++ Decode op reads at memcpy speed and which still works with any mindcv-style transform list.
"""
import io

import numpy as np
from PIL import Image

__all__ = ["CorruptImageError", "bmp_bgr_pixels", "decode_rgb", "decode_to_bmp"]

# Pillow refuses images above ~179 Mpx as a decompression-bomb guard; a huge but honest photo is not corrupt.
Image.MAX_IMAGE_PIXELS = None


class CorruptImageError(ValueError):
    """The bytes are not an image Pillow can fully decode; the message says why."""


def decode_to_bmp(data):
    """Decode any Pillow-readable image fully, drop alpha / expand grey to RGB, return it as BMP bytes.

    Raises CorruptImageError for damaged, truncated or non-image data. Runs on reader threads, so it must not
    touch the global warnings state (`warnings.catch_warnings` there is not thread-safe: two threads
    interleaving it leave an "ignore everything" filter behind for the whole process).
    """
    out = io.BytesIO()
    _decode(data).save(out, format="BMP")
    return out.getvalue()


def decode_rgb(data):
    """`decode_to_bmp`'s pixels as an (H, W, 3) uint8 RGB array, for transforms that run in the reader."""
    return np.asarray(_decode(data))


def _decode(data):
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image if image.mode == "RGB" else _to_rgb(image)
    except Image.UnidentifiedImageError:
        raise CorruptImageError("not in an image format Pillow can read") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ... for damaged data
        raise CorruptImageError(f"{type(error).__name__}: {error}") from error


def _to_rgb(image):
    if image.mode == "P" and "transparency" in image.info:
        # via RGBA: same pixels, but Pillow warns when a palette image with byte transparency goes straight to RGB
        image = image.convert("RGBA")
    return image.convert("RGB")


def bmp_bgr_pixels(data):
    """An (H, W, 3) BGR view of the pixels of uncompressed 24-bit BMP bytes (what `decode_to_bmp` writes), rows
    top to bottom, or None for anything else. Lets a crop copy only its own rows instead of decoding the image."""
    if len(data) < 54 or bytes(data[:2]) != b"BM":
        return None
    offset, header_size = np.frombuffer(data[10:18], "<u4")
    width, height = np.frombuffer(data[18:26], "<i4")
    bits, compression = int(np.frombuffer(data[28:30], "<u2")[0]), int(np.frombuffer(data[30:34], "<u4")[0])
    if header_size < 40 or bits != 24 or compression != 0 or width <= 0 or height == 0:
        return None
    row_bytes = (3 * int(width) + 3) // 4 * 4
    rows = np.asarray(data[offset : offset + row_bytes * abs(int(height))])
    if rows.size != row_bytes * abs(int(height)):
        return None
    rows = rows.reshape(abs(int(height)), row_bytes)
    return (rows[::-1] if height > 0 else rows)[:, : 3 * int(width)].reshape(abs(int(height)), int(width), 3)
