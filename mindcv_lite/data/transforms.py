"""Train and eval transform lists for encoded image bytes (mindcv's `create_transforms`, timm's semantics).

Every random train op is a SeededTransform (see seeded.py) so that a resumed run repeats its draws exactly;
MindSpore's own random ops (RandomCropDecodeResize, RandomHorizontalFlip, RandomColorAdjust, ...) draw from a
process-wide stream and are not used.
"""
import math

import numpy as np
from PIL import Image, ImageEnhance
import mindspore.dataset.vision as vision

from .auto_augment import create_auto_augment
from .constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, interpolation_mode
from .image_bytes import bmp_bgr_pixels
from .seeded import SeededTransform

__all__ = [
    "ColorJitter", "NormalizeCHW", "RandomErasing", "RandomHorizontalFlip", "RandomResizedCrop", "RandomVerticalFlip",
    "create_transforms", "transforms_imagenet_eval", "transforms_imagenet_train",
]  # fmt: skip


class RandomResizedCrop(SeededTransform):
    """timm's RandomResizedCropAndInterpolation on encoded image bytes (or an HWC uint8 image): area fraction
    uniform in `scale`, aspect ratio log-uniform in `ratio`, 10 tries, then the central crop of the closest
    allowed ratio. The box is drawn here; resizing is MindSpore's C++ kernel (about half the CPU of Pillow's at
    224 px). The reader's BMP bytes are cropped in place (only the box's rows are copied, the colour order
    restored after resizing): Decode + ResizedCrop called from Python cost ~30% more CPU.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear"):
        self.size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        self.scale = tuple(scale)
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.ratio = tuple(ratio)
        self.interpolation = interpolation_mode(interpolation)
        self.decode = vision.Decode()
        self.resize = vision.Resize(self.size, self.interpolation)
        self.bgr_to_rgb = vision.ConvertColor(vision.ConvertMode.COLOR_BGR2RGB)

    def __repr__(self):
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"

    def crop_box(self, height, width, rng):
        """(top, left, crop height, crop width) for an image of `height` x `width` (timm's get_params)."""
        area = height * width
        for _ in range(10):
            target_area = rng.uniform(*self.scale) * area
            aspect = math.exp(rng.uniform(*self.log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if w <= width and h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def apply(self, image, rng):
        bgr = bmp_bgr_pixels(image) if image.ndim == 1 else None
        if bgr is not None:
            top, left, h, w = self.crop_box(bgr.shape[0], bgr.shape[1], rng)
            return self.bgr_to_rgb(self.resize(np.ascontiguousarray(bgr[top : top + h, left : left + w])))
        if image.ndim == 1:
            image = self.decode(image)
        top, left, h, w = self.crop_box(image.shape[0], image.shape[1], rng)
        return self.resize(np.ascontiguousarray(image[top : top + h, left : left + w]))


class RandomHorizontalFlip(SeededTransform):
    """Mirror an HWC image left-right with probability `prob`."""

    def __init__(self, prob=0.5):
        self.prob = prob
        # MindSpore's kernel: numpy's copy of a column-reversed view of 3-byte pixels is ~7x slower
        self.flip = vision.HorizontalFlip()

    def __repr__(self):
        return f"RandomHorizontalFlip(prob={self.prob})"

    def apply(self, image, rng):
        return self.flip(image) if rng.random() < self.prob else image


class RandomVerticalFlip(SeededTransform):
    """Flip an HWC image upside down with probability `prob`."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __repr__(self):
        return f"RandomVerticalFlip(prob={self.prob})"

    def apply(self, image, rng):
        return np.ascontiguousarray(image[::-1]) if rng.random() < self.prob else image


def _adjust_hue(img, factor):
    # torchvision's adjust_hue for PIL images: shift the HSV hue channel, wrapping around
    hue, saturation, value = img.convert("HSV").split()
    shifted = (np.asarray(hue, dtype=np.uint8) + np.uint8(int(factor * 255) % 256)).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(shifted, "L"), saturation, value)).convert("RGB")


_JITTER_OPS = (
    lambda img, f: ImageEnhance.Brightness(img).enhance(f),
    lambda img, f: ImageEnhance.Contrast(img).enhance(f),
    lambda img, f: ImageEnhance.Color(img).enhance(f),
    _adjust_hue,
)


class ColorJitter(SeededTransform):
    """torchvision's ColorJitter on Pillow images (as timm uses it): brightness, contrast and saturation factors
    uniform in [max(0, 1 - x), 1 + x], hue shift uniform in [-hue, hue], applied in a random order."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0):
        if not 0 <= hue <= 0.5:
            raise ValueError(f"color_jitter's hue must be in [0, 0.5], got {hue}")
        self.jitter = (brightness, contrast, saturation, hue)
        self.ranges = [(max(0.0, 1 - x), 1 + x) for x in (brightness, contrast, saturation)] + [(-hue, hue)]

    def __repr__(self):
        return "ColorJitter(brightness={}, contrast={}, saturation={}, hue={})".format(*self.jitter)

    def apply(self, image, rng):
        order = list(range(4))
        rng.shuffle(order)
        factors = [rng.uniform(*bounds) if amount else None for amount, bounds in zip(self.jitter, self.ranges)]
        img = Image.fromarray(image)
        for index in order:
            if factors[index] is not None:
                img = _JITTER_OPS[index](img, factors[index])
        return np.asarray(img)


class NormalizeCHW:
    """uint8 HWC image -> float32 CHW `(image - mean) / std`.

    `create_loader` runs it after batching when it ends a transform list (see loader._BatchStage): there it
    costs ~0.15 CPU-ms per 224px image, against ~1 ms for MindSpore's per-image Normalize + HWC2CHW, whose
    float32 output then travels through the pipeline at 4x the bytes of uint8.
    Called on one image it does the same, so the list also works in any other MindSpore pipeline.
    """

    def __init__(self, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.scale = 1.0 / np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        self.shift = -np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1) * self.scale

    def __repr__(self):
        return f"NormalizeCHW(mean={self.mean}, std={self.std})"

    def __call__(self, image):
        out = np.empty((image.shape[2], image.shape[0], image.shape[1]), dtype=np.float32)
        self.into(out, image)
        return out

    def into(self, out, image):
        """Write the normalised CHW float32 version of the HWC uint8 `image` into `out`."""
        np.multiply(image.transpose(2, 0, 1), self.scale, out=out)
        out += self.shift


class RandomErasing(SeededTransform):
    """timm's RandomErasing on a normalised CHW float32 image: one box, area fraction uniform in `scale`,
    aspect ratio log-uniform in `ratio`, filled with `value` (a number, one per channel, or "random" for
    per-pixel standard-normal noise). Gives up silently after `max_attempts` boxes that do not fit, as timm does.
    `create_loader` applies it to whole batches in place (`erase_`), after `NormalizeCHW`.
    """

    def __init__(self, prob=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, max_attempts=10):
        if isinstance(value, str) and value != "random":
            raise ValueError(f"re_value must be a number, one number per channel, or 'random'; got {value!r}.")
        self.prob = prob
        self.scale = scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.value = value
        self.max_attempts = max_attempts

    def __repr__(self):
        return f"RandomErasing(prob={self.prob}, scale={self.scale}, value={self.value!r})"

    def apply(self, image, rng):
        image = image.copy()  # MindSpore may hand over a read-only buffer
        self.erase_(image, rng)
        return image

    def erase_(self, image, rng):
        """Erase one box of the CHW `image` in place (or nothing, with probability 1 - prob)."""
        if rng.random() > self.prob:
            return
        channels, height, width = image.shape
        area = height * width
        for _ in range(self.max_attempts):
            target_area = rng.uniform(*self.scale) * area
            aspect = math.exp(rng.uniform(*self.log_ratio))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if h < height and w < width:
                top = rng.randint(0, height - h)
                left = rng.randint(0, width - w)
                image[:, top : top + h, left : left + w] = self._fill((channels, h, w), rng)
                return

    def _fill(self, shape, rng):
        if self.value == "random":
            return np.random.default_rng(rng.getrandbits(64)).standard_normal(shape, dtype=np.float32)
        return np.asarray(self.value, dtype=np.float32).reshape(-1, 1, 1)


def _color_jitter_args(color_jitter):
    if isinstance(color_jitter, (list, tuple)):
        if len(color_jitter) not in (3, 4):
            raise ValueError(
                f"color_jitter needs 3 (brightness, contrast, saturation) or 4 (+hue) values, got {color_jitter}"
            )
        return tuple(color_jitter)
    return (float(color_jitter),) * 3


def transforms_imagenet_train(
    image_resize=224,
    scale=(0.08, 1.0),
    ratio=(0.75, 1.333),
    hflip=0.5,
    vflip=0.0,
    color_jitter=0.4,
    interpolation="bilinear",
    auto_augment=None,
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    re_prob=0.0,
    re_scale=(0.02, 0.33),
    re_ratio=(0.3, 3.3),
    re_value=0,
    re_max_attempts=10,
    separate=False,
):
    """Random-resized-crop (decoding the input bytes), flips, auto-augment or colour jitter, normalise, CHW,
    random erasing. With `separate` returns the (primary, secondary, final) stages for augmentation splits."""
    primary = [RandomResizedCrop(image_resize, scale, ratio, interpolation)]
    if hflip > 0:
        primary.append(RandomHorizontalFlip(hflip))
    if vflip > 0:
        primary.append(RandomVerticalFlip(vflip))
    secondary = []
    if auto_augment:
        # colour jitter is off when an auto-augment policy is on (timm and mindcv behave the same way)
        size = min(image_resize) if isinstance(image_resize, (list, tuple)) else image_resize
        secondary.append(create_auto_augment(auto_augment, size, mean, interpolation))
    elif color_jitter:
        secondary.append(ColorJitter(*_color_jitter_args(color_jitter)))
    final = [NormalizeCHW(mean, std)]
    if re_prob > 0:
        final.append(RandomErasing(re_prob, tuple(re_scale), tuple(re_ratio), re_value, re_max_attempts))
    if separate:
        return primary, secondary, final
    return primary + secondary + final


def transforms_imagenet_eval(
    image_resize=224,
    crop_pct=DEFAULT_CROP_PCT,
    interpolation="bilinear",
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
):
    """Resize the shorter side to int(image_resize / crop_pct), centre-crop image_resize, normalise, CHW."""
    if isinstance(image_resize, (list, tuple)) and image_resize[0] != image_resize[1]:
        resize = tuple(int(s / crop_pct) for s in image_resize)
    else:
        size = image_resize[0] if isinstance(image_resize, (list, tuple)) else image_resize
        resize = int(math.floor(size / crop_pct))
    return [
        vision.Decode(),
        vision.Resize(resize, interpolation=interpolation_mode(interpolation)),
        vision.CenterCrop(image_resize),
        NormalizeCHW(mean, std),
    ]


_TRAIN_ONLY = (
    "scale", "ratio", "hflip", "vflip", "color_jitter", "auto_augment",
    "re_prob", "re_scale", "re_ratio", "re_value", "re_max_attempts", "separate",
)  # fmt: skip


def create_transforms(dataset_name="imagenet", image_resize=224, is_training=False, **kwargs):
    """The transform list for `create_loader`: train augmentation or eval resize/crop (mindcv argument names).

    Train-only arguments are accepted and ignored for eval, so one config dict serves both; `crop_pct` is
    ignored for training. Unknown arguments raise a TypeError. An argument that is None (a config value left
    unset, see `resolve_data_config`) takes the default below.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if dataset_name.lower() not in ("imagenet", ""):
        raise ValueError(f"create_transforms supports ImageNet-style data only, got dataset_name={dataset_name!r}.")
    if is_training:
        kwargs.pop("crop_pct", None)
        return transforms_imagenet_train(image_resize, **kwargs)
    for key in _TRAIN_ONLY:
        kwargs.pop(key, None)
    return transforms_imagenet_eval(image_resize, **kwargs)
