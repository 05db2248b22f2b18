"""Turn a file's bytes into bytes that MindSpore's C++ Decode op is safe to run on.

MindSpore 2.10's C++ JPEG decoders (Decode, RandomCropDecodeResize) kill the whole process (SIGSEGV, SIGFPE,
abort) on some damaged JPEGs, e.g. a few flipped bytes in a progressive scan: nothing in Python can catch that,
and no cheap header check can rule it out. Pillow raises a clean exception on the same files. So every image is
decoded by Pillow in the reader, where the file's path is still known, and handed on as an uncompressed BMP,
which the C++ Decode op reads at memcpy speed and which still works with any mindcv-style transform list.
"""
import io

from PIL import Image

__all__ = ["CorruptImageError", "decode_to_bmp"]

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
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image if image.mode == "RGB" else _to_rgb(image)
    except Image.UnidentifiedImageError:
        raise CorruptImageError("not in an image format Pillow can read") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ... for damaged data
        raise CorruptImageError(f"{type(error).__name__}: {error}") from error
    out = io.BytesIO()
    rgb.save(out, format="BMP")
    return out.getvalue()


def _to_rgb(image):
    if image.mode == "P" and "transparency" in image.info:
        # via RGBA: same pixels, but Pillow warns when a palette image with byte transparency goes straight to RGB
        image = image.convert("RGBA")
    return image.convert("RGB")
