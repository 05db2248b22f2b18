"""timm-style AutoAugment / RandAugment policies from strings such as "randaug-m9-mstd0.5-inc1".

RandAugment and AutoAugment follow timm's `auto_augment.py` op for op (Pillow ops, level-to-argument
mappings, magnitude noise `mstd`, `mmax`, increasing-severity `inc` variants, op weights `w0`) because
MindSpore's built-in RandAugment has no magnitude noise or increasing variants. "trivialaugwide" is
torchvision's TrivialAugmentWide with the same Pillow ops (MindSpore's C++ TrivialAugmentWide draws from a
process-wide stream). All of them draw from the per-sample seed (see seeded.py).

Policy strings (sections after the name are dash-separated, in any order):
    randaug-m{int}-n{int}-mstd{float}-mmax{int}-inc{0|1}-p{float}-w{0}   ("rand-..." is accepted too, as in timm)
        m: magnitude 0..mmax (default 10), n: ops per image (2), mstd: std of the Gaussian noise added to m
        per op (0; > 100 means uniform in [0, m]), mmax: magnitude upper bound (10), inc: use the ops whose
        severity increases with magnitude, p: probability of applying each chosen op (0.5),
        w: op choice weights (only set 0 exists, as in timm)
    autoaug[-mstd{float}], autoaugr[-mstd{float}]
        the ImageNet AutoAugment policy; "autoaugr" uses the increasing-severity Posterize
    trivialaugwide
"""
import re
from functools import lru_cache

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .seeded import SeededTransform

__all__ = ["AutoAugment", "RandAugment", "TrivialAugmentWide", "create_auto_augment"]

_LEVEL_DENOM = 10.0
_RANDOM_INTERPOLATION = (Image.BILINEAR, Image.BICUBIC)
_PIL_INTERPOLATION = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


# --- image ops (Pillow, as in timm) -------------------------------------------------------------------------


def _affine(img, matrix, resample, fill):
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def shear_x(img, factor, resample, fill):
    return _affine(img, (1, factor, 0, 0, 1, 0), resample, fill)


def shear_y(img, factor, resample, fill):
    return _affine(img, (1, 0, 0, factor, 1, 0), resample, fill)


def translate_x_rel(img, pct, resample, fill):
    return _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), resample, fill)


def translate_y_rel(img, pct, resample, fill):
    return _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), resample, fill)


def translate_x_abs(img, pixels, resample, fill):
    return _affine(img, (1, 0, pixels, 0, 1, 0), resample, fill)


def translate_y_abs(img, pixels, resample, fill):
    return _affine(img, (1, 0, 0, 0, 1, pixels), resample, fill)


def rotate(img, degrees, resample, fill):
    return img.rotate(degrees, resample=resample, fillcolor=fill)


def auto_contrast(img, **_):
    return ImageOps.autocontrast(img)


def invert(img, **_):
    return ImageOps.invert(img)


def equalize(img, **_):
    return ImageOps.equalize(img)


def solarize(img, thresh, **_):
    return ImageOps.solarize(img, thresh)


@lru_cache(maxsize=None)
def _solarize_add_lut(add, thresh):
    return [min(255, i + add) if i < thresh else i for i in range(256)] * 3


def solarize_add(img, add, thresh=128, **_):
    return img.point(_solarize_add_lut(add, thresh))


@lru_cache(maxsize=None)
def _posterize_lut(bits_to_keep):
    mask = ~(2 ** (8 - bits_to_keep) - 1)
    return [i & mask for i in range(256)] * 3


def posterize(img, bits_to_keep, **_):
    # a LUT rather than ImageOps.posterize: Pillow >= 11 rejects bits=0, which timm's levels reach (all black)
    return img if bits_to_keep >= 8 else img.point(_posterize_lut(bits_to_keep))


def contrast(img, factor, **_):
    return ImageEnhance.Contrast(img).enhance(factor)


def color(img, factor, **_):
    return ImageEnhance.Color(img).enhance(factor)


def brightness(img, factor, **_):
    return ImageEnhance.Brightness(img).enhance(factor)


def sharpness(img, factor, **_):
    return ImageEnhance.Sharpness(img).enhance(factor)


# --- magnitude (level) to op argument, as in timm -------------------------------------------------------------


def _randomly_negate(value, rng):
    return -value if rng.random() > 0.5 else value


def _rotate_level_to_arg(level, hparams, rng):
    return (_randomly_negate(level / _LEVEL_DENOM * 30.0, rng),)


def _enhance_level_to_arg(level, hparams, rng):
    return (level / _LEVEL_DENOM * 1.8 + 0.1,)


def _enhance_increasing_level_to_arg(level, hparams, rng):
    # 1.0 is "no change"; severity grows as the factor moves away from it in either direction
    return (max(0.1, 1.0 + _randomly_negate(level / _LEVEL_DENOM * 0.9, rng)),)


def _shear_level_to_arg(level, hparams, rng):
    return (_randomly_negate(level / _LEVEL_DENOM * 0.3, rng),)


def _translate_rel_level_to_arg(level, hparams, rng):
    return (_randomly_negate(level / _LEVEL_DENOM * hparams.get("translate_pct", 0.45), rng),)


def _posterize_level_to_arg(level, hparams, rng):
    return (int(level / _LEVEL_DENOM * 4),)


def _posterize_increasing_level_to_arg(level, hparams, rng):
    return (4 - _posterize_level_to_arg(level, hparams, rng)[0],)


def _posterize_original_level_to_arg(level, hparams, rng):
    return (int(level / _LEVEL_DENOM * 4) + 4,)


def _solarize_level_to_arg(level, hparams, rng):
    return (min(256, int(level / _LEVEL_DENOM * 256)),)


def _solarize_increasing_level_to_arg(level, hparams, rng):
    return (256 - _solarize_level_to_arg(level, hparams, rng)[0],)


def _solarize_add_level_to_arg(level, hparams, rng):
    return (min(128, int(level / _LEVEL_DENOM * 110)),)


_OPS = {  # name: (image op, level-to-argument function or None)
    "AutoContrast": (auto_contrast, None),
    "Equalize": (equalize, None),
    "Invert": (invert, None),
    "Rotate": (rotate, _rotate_level_to_arg),
    "Posterize": (posterize, _posterize_level_to_arg),
    "PosterizeIncreasing": (posterize, _posterize_increasing_level_to_arg),
    "PosterizeOriginal": (posterize, _posterize_original_level_to_arg),
    "Solarize": (solarize, _solarize_level_to_arg),
    "SolarizeIncreasing": (solarize, _solarize_increasing_level_to_arg),
    "SolarizeAdd": (solarize_add, _solarize_add_level_to_arg),
    "Color": (color, _enhance_level_to_arg),
    "ColorIncreasing": (color, _enhance_increasing_level_to_arg),
    "Contrast": (contrast, _enhance_level_to_arg),
    "ContrastIncreasing": (contrast, _enhance_increasing_level_to_arg),
    "Brightness": (brightness, _enhance_level_to_arg),
    "BrightnessIncreasing": (brightness, _enhance_increasing_level_to_arg),
    "Sharpness": (sharpness, _enhance_level_to_arg),
    "SharpnessIncreasing": (sharpness, _enhance_increasing_level_to_arg),
    "ShearX": (shear_x, _shear_level_to_arg),
    "ShearY": (shear_y, _shear_level_to_arg),
    "TranslateXRel": (translate_x_rel, _translate_rel_level_to_arg),
    "TranslateYRel": (translate_y_rel, _translate_rel_level_to_arg),
}


class AugmentOp:
    """One named op applied with probability `prob` at `magnitude` (plus optional Gaussian/uniform noise)."""

    def __init__(self, name, prob=0.5, magnitude=10, hparams=None):
        hparams = hparams or {}
        self.name = name
        self.aug_fn, self.level_fn = _OPS[name]
        self.prob = prob
        self.magnitude = magnitude
        self.hparams = dict(hparams)
        self.fill = tuple(hparams.get("img_mean", (128, 128, 128)))
        self.interpolation = hparams.get("interpolation")  # None: bilinear or bicubic at random, as in timm
        self.magnitude_std = hparams.get("magnitude_std", 0.0)
        self.magnitude_max = hparams.get("magnitude_max")

    def __repr__(self):
        return f"AugmentOp({self.name!r}, prob={self.prob}, magnitude={self.magnitude})"

    def __call__(self, img, rng):
        if self.prob < 1.0 and rng.random() > self.prob:
            return img
        magnitude = self.magnitude
        if self.magnitude_std == float("inf"):
            magnitude = rng.uniform(0, magnitude)
        elif self.magnitude_std > 0:
            magnitude = rng.gauss(magnitude, self.magnitude_std)
        magnitude = max(0.0, min(magnitude, self.magnitude_max or _LEVEL_DENOM))
        args = self.level_fn(magnitude, self.hparams, rng) if self.level_fn else ()
        resample = self.interpolation if self.interpolation is not None else rng.choice(_RANDOM_INTERPOLATION)
        return self.aug_fn(img, *args, resample=resample, fill=self.fill)


class _PilPolicy(SeededTransform):
    """Runs Pillow ops on an HWC uint8 array, converting to/from PIL only when an op actually fires."""

    def apply(self, image, rng):
        ops = self.choose_ops(rng)
        if not ops:
            return image
        img = Image.fromarray(image)
        before = img
        for op in ops:
            img = op(img, rng)
        return image if img is before else np.asarray(img)


class RandAugment(_PilPolicy):
    """timm's RandAugment: `num_layers` ops drawn uniformly with replacement (or by `choice_weights` without)."""

    def __init__(self, ops, num_layers=2, choice_weights=None):
        self.ops = ops
        self.num_layers = num_layers
        self.choice_weights = choice_weights

    def __repr__(self):
        return f"RandAugment(n={self.num_layers}, ops={self.ops}, weights={self.choice_weights})"

    def choose_ops(self, rng):
        if self.choice_weights is None:
            return rng.choices(self.ops, k=self.num_layers)
        ops, weights, chosen = list(self.ops), list(self.choice_weights), []
        for _ in range(min(self.num_layers, len(ops))):  # weighted sampling without replacement
            index = rng.choices(range(len(ops)), weights=weights)[0]
            chosen.append(ops.pop(index))
            weights.pop(index)
        return chosen


class AutoAugment(_PilPolicy):
    """timm's AutoAugment: one sub-policy (a list of ops with their own probabilities) per image."""

    def __init__(self, policy):
        self.policy = policy

    def __repr__(self):
        return f"AutoAugment({len(self.policy)} sub-policies)"

    def choose_ops(self, rng):
        return rng.choice(self.policy)


def _around_one(enhance):
    """An enhance op taking torchvision's TrivialAugment magnitude m: factor 1 + m."""
    return lambda img, magnitude, **_: enhance(img, 1.0 + magnitude)


class TrivialAugmentWide(_PilPolicy):
    """torchvision's TrivialAugmentWide: one op uniformly from 14, at one of 31 magnitude bins uniformly,
    negated half the time for signed ops. Pixels uncovered by geometric ops get `fill`."""

    _BINS = 31

    def __init__(self, interpolation=Image.BILINEAR, fill=(128, 128, 128)):
        self.interpolation = interpolation
        self.fill = tuple(fill)
        bins = np.arange(self._BINS) / (self._BINS - 1)
        # name: (image op, magnitudes (None: the op has none), signed), torchvision's "wide" augmentation space
        self.space = {
            "Identity": (None, None, False),
            "ShearX": (shear_x, 0.99 * bins, True),
            "ShearY": (shear_y, 0.99 * bins, True),
            # torchvision translates by -int(magnitude) pixels (its inverse-matrix convention)
            "TranslateX": (translate_x_abs, -np.floor(32.0 * bins), True),
            "TranslateY": (translate_y_abs, -np.floor(32.0 * bins), True),
            "Rotate": (rotate, 135.0 * bins, True),
            "Brightness": (_around_one(brightness), 0.99 * bins, True),
            "Color": (_around_one(color), 0.99 * bins, True),
            "Contrast": (_around_one(contrast), 0.99 * bins, True),
            "Sharpness": (_around_one(sharpness), 0.99 * bins, True),
            "Posterize": (posterize, 8 - np.round(bins * 6).astype(int), False),
            "Solarize": (solarize, 255.0 * (1 - bins), False),
            "AutoContrast": (auto_contrast, None, False),
            "Equalize": (equalize, None, False),
        }

    def __repr__(self):
        return f"TrivialAugmentWide(interpolation={self.interpolation}, fill={self.fill})"

    def choose_ops(self, rng):
        name = rng.choice(list(self.space))
        fn, magnitudes, signed = self.space[name]
        if fn is None:
            return []
        if magnitudes is None:
            return [lambda img, _: fn(img)]
        magnitude = magnitudes[rng.randrange(self._BINS)].item()
        if signed and rng.random() < 0.5:
            magnitude = -magnitude
        return [lambda img, _: fn(img, magnitude, resample=self.interpolation, fill=self.fill)]


_RAND_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]  # fmt: skip
_RAND_INCREASING_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
]  # fmt: skip
# timm's experimental weight set 0, roughly following the per-op gains reported in the RandAugment paper
_RAND_CHOICE_WEIGHTS_0 = {
    "Rotate": 0.3, "ShearX": 0.2, "ShearY": 0.2, "TranslateXRel": 0.1, "TranslateYRel": 0.1, "Color": 0.025,
    "Sharpness": 0.025, "AutoContrast": 0.025, "Solarize": 0.005, "SolarizeAdd": 0.005, "Contrast": 0.005,
    "Brightness": 0.005, "Equalize": 0.005, "Posterize": 0, "Invert": 0,
}  # fmt: skip

_IMAGENET_POLICY = [  # AutoAugment's ImageNet policy, https://arxiv.org/abs/1805.09501
    [("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
    [("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Equalize", 0.4, 4), ("Rotate", 0.8, 8)],
    [("Solarize", 0.6, 3), ("Equalize", 0.6, 7)],
    [("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)],
    [("Rotate", 0.2, 3), ("Solarize", 0.6, 8)],
    [("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)],
    [("Rotate", 0.8, 8), ("Color", 0.4, 0)],
    [("Rotate", 0.4, 9), ("Equalize", 0.6, 2)],
    [("Equalize", 0.0, 7), ("Equalize", 0.8, 8)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Rotate", 0.8, 8), ("Color", 1.0, 2)],
    [("Color", 0.8, 8), ("Solarize", 0.8, 7)],
    [("Sharpness", 0.4, 7), ("Invert", 0.6, 8)],
    [("ShearX", 0.6, 5), ("Equalize", 1.0, 9)],
    [("Color", 0.4, 0), ("Equalize", 0.6, 3)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
]


def _parse_sections(policy, sections, parsers):
    """Parse "key<number>" sections with `parsers[key]` (a type); raise a ValueError quoting the policy."""
    values = {}
    for section in sections:
        match = re.fullmatch(r"([a-z]+)([0-9.eE+-]+|inf)", section)
        if not match or match.group(1) not in parsers:
            raise ValueError(
                f"Cannot parse auto_augment policy {policy!r}: unknown section {section!r} "
                f"(valid sections: {', '.join(k + '<number>' for k in parsers)})."
            )
        key, text = match.groups()
        try:
            values[key] = parsers[key](text)
        except ValueError:
            raise ValueError(
                f"Cannot parse auto_augment policy {policy!r}: {section!r} needs a {parsers[key].__name__} value."
            ) from None
    return values


def _rand_augment(policy, sections, hparams):
    parsers = {"m": int, "n": int, "mstd": float, "mmax": int, "inc": int, "p": float, "w": int}
    opts = _parse_sections(policy, sections, parsers)
    mstd = opts.get("mstd", 0.0)
    hparams = dict(hparams, magnitude_std=float("inf") if mstd > 100 else mstd)  # timm: > 100 means uniform
    if "mmax" in opts:
        hparams["magnitude_max"] = opts["mmax"]
    if opts.get("inc", 0) not in (0, 1) or opts.get("w", 0) != 0 or opts.get("n", 2) < 0:
        raise ValueError(f"Cannot parse auto_augment policy {policy!r}: inc must be 0/1, w must be 0, n >= 0.")
    names = _RAND_INCREASING_TRANSFORMS if opts.get("inc", 0) else _RAND_TRANSFORMS
    ops = [AugmentOp(name, prob=opts.get("p", 0.5), magnitude=opts.get("m", 10), hparams=hparams) for name in names]
    weights = None
    if "w" in opts:  # the increasing variants share the weight of their base op
        raw = [_RAND_CHOICE_WEIGHTS_0[name.replace("Increasing", "")] for name in names]
        weights = [w / sum(raw) for w in raw]
    return RandAugment(ops, num_layers=opts.get("n", 2), choice_weights=weights)


def _auto_augment(policy, name, sections, hparams):
    opts = _parse_sections(policy, sections, {"mstd": float})
    hparams = dict(hparams, magnitude_std=opts.get("mstd", 0.0))
    posterize = "PosterizeIncreasing" if name == "autoaugr" else "PosterizeOriginal"
    return AutoAugment(
        [
            [
                AugmentOp(posterize if op == "PosterizeOriginal" else op, prob, magnitude, hparams)
                for op, prob, magnitude in sub
            ]
            for sub in _IMAGENET_POLICY
        ]
    )


def create_auto_augment(policy, image_size=224, mean=(124, 116, 104), interpolation="bilinear"):
    """Build the transform for a policy string; `mean` (0-255 scale) fills pixels uncovered by geometric ops.

    Returns a SeededTransform (RandAugment, AutoAugment, TrivialAugmentWide) taking an HWC uint8 image.
    """
    if not isinstance(policy, str) or not policy.strip():
        raise ValueError(f"auto_augment must be a policy string such as 'randaug-m9-mstd0.5-inc1', got {policy!r}.")
    name, *sections = policy.strip().lower().split("-")
    fill = tuple(min(255, int(round(m))) for m in mean)
    hparams = {"img_mean": fill, "interpolation": _PIL_INTERPOLATION.get(interpolation)}
    if name in ("randaug", "rand"):
        return _rand_augment(policy, sections, hparams)
    if name in ("autoaug", "autoaugr"):
        return _auto_augment(policy, name, sections, hparams)
    if name == "trivialaugwide":
        _parse_sections(policy, sections, {})
        return TrivialAugmentWide(_PIL_INTERPOLATION.get(interpolation, Image.BILINEAR), fill)
    raise ValueError(
        f"Cannot parse auto_augment policy {policy!r}: unknown policy {name!r} "
        "(expected 'randaug-...', 'rand-...', 'autoaug', 'autoaugr' or 'trivialaugwide')."
    )

