"""Normalisation constants (0-255 scale, as MindSpore's Normalize sees uint8 pixels) and interpolation names."""
from mindspore.dataset.vision import Inter

__all__ = ["DEFAULT_CROP_PCT", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD", "interpolation_mode"]

DEFAULT_CROP_PCT = 0.875
IMAGENET_DEFAULT_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_DEFAULT_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

_INTERPOLATIONS = {
    "nearest": Inter.NEAREST,
    "bilinear": Inter.BILINEAR,
    "linear": Inter.BILINEAR,
    "bicubic": Inter.BICUBIC,
    "cubic": Inter.BICUBIC,
    "area": Inter.AREA,
    "pilcubic": Inter.PILCUBIC,
}


def interpolation_mode(name):
    """MindSpore Inter for a config name such as "bicubic"; unknown names raise instead of silently using bilinear."""
    try:
        return _INTERPOLATIONS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"Unknown interpolation {name!r}; use one of {sorted(_INTERPOLATIONS)}.") from None
