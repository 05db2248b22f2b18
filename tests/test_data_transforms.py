"""create_transforms: eval geometry against a hand-computed resize/crop, train ops, NormalizeCHW, RandomErasing."""
import math
import random

import numpy as np
import pytest
from PIL import Image

import mindspore.dataset.vision as vision
from mindspore.dataset.transforms import Compose

from mindcv_lite.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transforms
from mindcv_lite.data.seeded import SeededTransform
from mindcv_lite.data.transforms import ColorJitter, NormalizeCHW, RandomErasing, RandomResizedCrop

MEAN = np.array(IMAGENET_DEFAULT_MEAN, np.float32).reshape(3, 1, 1)
STD = np.array(IMAGENET_DEFAULT_STD, np.float32).reshape(3, 1, 1)


def _ramp(width, height):
    """uint8 HWC image whose value is linear in x and y (2x + 2y + 10 + 5c): any interpolation kernel that
    reproduces linear functions (bilinear, bicubic) maps it to the same ramp at the sampled positions."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([2 * x + 2 * y + 10 + 5 * c for c in range(3)], axis=-1).astype(np.uint8)


def _encode(pixels, fmt="PNG"):
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return np.frombuffer(buffer.getvalue(), np.uint8)


def _run(transforms, data, seed=0):
    """Apply a transform list (as create_loader would per image) to one encoded image with sample seed `seed`."""
    for salt, op in enumerate(transforms):
        data = op(data, seed, salt) if isinstance(op, SeededTransform) else Compose([op])(data)
    return data


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_eval_resizes_shorter_side_then_centre_crops(interpolation):
    """64x48 image, image_resize 32, crop_pct 0.875: shorter side 48 -> int(32 / 0.875) = 36, so 48x36,
    then a centre crop of 32 starting at row (36 - 32) / 2 = 2 and column (48 - 32) / 2 = 8."""
    transforms = create_transforms("imagenet", image_resize=32, is_training=False, crop_pct=0.875,
                                   interpolation=interpolation)  # fmt: skip
    out = _run(transforms, _encode(_ramp(64, 48)))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    rows, cols = np.mgrid[0:32, 0:32]
    source_y = (rows + 2 + 0.5) * (48 / 36) - 0.5  # pixel-centre mapping of the resize
    source_x = (cols + 8 + 0.5) * (64 / 48) - 0.5
    expected = np.stack([2 * source_x + 2 * source_y + 10 + 5 * c for c in range(3)])
    # a 1-pixel shift of the crop would move values by 2 * 4/3 = 2.7 levels
    np.testing.assert_allclose(out * STD + MEAN, expected, atol=1.0)


def test_eval_handles_odd_sizes_and_modes_via_the_reader_output():
    """Portrait, tiny and odd-sized images all come out (3, 32, 32); the crop is central."""
    transforms = create_transforms("imagenet", image_resize=32, is_training=False)
    for width, height in ((33, 97), (7, 5), (101, 37)):
        out = _run(transforms, _encode(_ramp(width, height)))
        assert out.shape == (3, 32, 32)
    flat = np.full((40, 60, 3), 77, np.uint8)
    np.testing.assert_allclose(_run(transforms, _encode(flat)) * STD + MEAN, 77, atol=1e-3)


def test_train_output_shape_dtype_range_and_flips():
    image = _encode(_ramp(64, 48))
    whole_image = dict(image_resize=32, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), color_jitter=0)
    plain = _run(create_transforms("imagenet", is_training=True, hflip=0.0, **whole_image), image)
    assert plain.shape == (3, 32, 32) and plain.dtype == np.float32
    low, high = (0 - MEAN) / STD, (255 - MEAN) / STD
    assert np.all(plain >= low - 1e-5) and np.all(plain <= high + 1e-5)
    # scale=ratio=1 crops the whole image, so the output is the resized ramp: increasing along x and y
    assert np.all(np.diff(plain, axis=2) > 0) and np.all(np.diff(plain, axis=1) > 0)
    flipped = _run(create_transforms("imagenet", is_training=True, hflip=1.0, **whole_image), image)
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
    vflipped = _run(create_transforms("imagenet", is_training=True, hflip=0.0, vflip=1.0, **whole_image), image)
    np.testing.assert_array_equal(vflipped, plain[:, ::-1, :])


def test_train_list_follows_the_recipe():
    names = lambda ts: [type(t).__name__ for t in ts]  # noqa: E731
    jitter = create_transforms("imagenet", is_training=True)
    assert names(jitter) == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "NormalizeCHW"]
    # every random op draws from the sample's seed (exactly resumable), none from MindSpore's global stream
    assert all(isinstance(op, SeededTransform) for op in jitter if type(op).__name__ != "NormalizeCHW")
    recipe = create_transforms("imagenet", is_training=True, auto_augment="randaug-m9-mstd0.5-inc1", re_prob=0.25,
                               vflip=0.5, color_jitter=0.4)  # fmt: skip
    # colour jitter is off under an auto-augment policy, as in timm and mindcv
    assert names(recipe) == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "RandAugment",
                             "NormalizeCHW", "RandomErasing"]  # fmt: skip
    primary, secondary, final = create_transforms("imagenet", is_training=True, separate=True, re_prob=0.5)
    assert names(primary + secondary + final) == names(create_transforms("imagenet", is_training=True, re_prob=0.5))


def test_create_transforms_arguments():
    eval_only = create_transforms("imagenet", is_training=False, auto_augment="randaug-m9", re_prob=0.25, hflip=0.5)
    assert [type(t).__name__ for t in eval_only] == ["Decode", "Resize", "CenterCrop", "NormalizeCHW"]
    with pytest.raises(TypeError):
        create_transforms("imagenet", is_training=True, not_an_option=1)
    with pytest.raises(ValueError, match="'bicubik'"):
        create_transforms("imagenet", is_training=False, interpolation="bicubik")
    with pytest.raises(ValueError, match="color_jitter"):
        create_transforms("imagenet", is_training=True, color_jitter=[0.1, 0.2])
    with pytest.raises(ValueError, match="ImageNet"):
        create_transforms("mnist")


def test_random_resized_crop_boxes_follow_scale_and_ratio():
    crop = RandomResizedCrop(16, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    for seed in range(200):
        top, left, h, w = crop.crop_box(60, 80, random.Random(seed))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.08 * 4800 * 0.85 <= h * w <= 4800  # area fraction, up to rounding of h and w
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
    # no box of ratio 1 fits a 100x10 strip in 10 tries: timm's fallback, the central crop of the closest ratio
    square = RandomResizedCrop(16, scale=(0.9, 1.0), ratio=(1.0, 1.0))
    assert square.crop_box(10, 100, random.Random(0)) == (0, 45, 10, 10)
    # the crop is resized by MindSpore's kernel: a whole-image box gives MindSpore's plain resize
    pixels = _ramp(48, 40)
    whole = RandomResizedCrop((20, 24), scale=(1.0, 1.0), ratio=(48 / 40, 48 / 40), interpolation="bilinear")
    expected = vision.Resize((20, 24), vision.Inter.BILINEAR)(pixels)
    np.testing.assert_array_equal(whole(_encode(pixels), 3), expected)
    np.testing.assert_array_equal(whole(pixels, 3), expected)  # decoded input works too
    # the reader's BMP bytes take a shortcut (crop the rows, resize, then BGR -> RGB): same pixels
    odd = np.random.default_rng(1).integers(0, 256, (37, 45, 3), dtype=np.uint8)  # rows padded to 4 bytes
    crop = RandomResizedCrop(16, interpolation="bicubic")
    for seed in range(5):
        np.testing.assert_array_equal(crop(_encode(odd, "BMP"), seed), crop(_encode(odd, "PNG"), seed))


def test_color_jitter_ranges_order_and_identity():
    image = np.random.default_rng(0).integers(40, 200, (12, 14, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ColorJitter(0, 0, 0, 0)(image, 1), image)
    outputs = {ColorJitter(0.4, 0.4, 0.4, 0.1)(image, seed).tobytes() for seed in range(10)}
    assert len(outputs) == 10  # every sample draws its own factors and order
    bright = ColorJitter(0.4, 0, 0, 0)
    for seed in range(20):  # brightness alone scales every pixel by one factor in [0.6, 1.4]
        out = bright(image, seed).astype(np.float64)
        factor = out.sum() / image.sum()
        assert 0.6 - 0.01 <= factor <= 1.4 + 0.01
        np.testing.assert_allclose(out, np.clip(image * factor, 0, 255), atol=1.5)
    hue = ColorJitter(0, 0, 0, 0.5)(np.full((2, 2, 3), (200, 40, 40), np.uint8), 0)
    assert not np.array_equal(hue[0, 0], (200, 40, 40)) and math.isclose(hue.max(), 200, abs_tol=3)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)


def test_normalize_chw_matches_mindspore_normalize_and_hwc2chw():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    reference = Compose([vision.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), vision.HWC2CHW()])
    normalize = NormalizeCHW(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    for image in images:
        out = normalize(image)
        assert out.shape == (3, 20, 24) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference(image), rtol=1e-5, atol=1e-5)
        into = np.empty((3, 20, 24), np.float32)
        normalize.into(into, image)
        np.testing.assert_array_equal(into, out)


def _erased_box(before, after):
    changed = np.any(before != after, axis=0)
    rows, cols = np.nonzero(changed)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1, changed.sum()


def test_random_erasing_fills_one_box_in_range():
    image = np.ones((3, 40, 50), np.float32)
    eraser = RandomErasing(prob=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)
    for seed in range(20):
        out = eraser(image, seed)
        top, bottom, left, right, count = _erased_box(image, out)
        assert count == (bottom - top) * (right - left)  # one filled rectangle
        assert np.all(out[:, top:bottom, left:right] == 0)
        assert 0.02 * 2000 * 0.8 <= count <= 0.33 * 2000 * 1.2  # area fraction, up to rounding of h and w
        assert 0.3 / 1.5 <= (bottom - top) / (right - left) <= 3.3 * 1.5
        np.testing.assert_array_equal(eraser(image, seed), out)  # deterministic per seed
        assert not np.array_equal(eraser(image, seed, salt=1), out)  # another position in the list draws anew
    np.testing.assert_array_equal(image, 1.0)  # the input is left alone


def test_random_erasing_values_and_probability():
    image = np.ones((3, 40, 50), np.float32)
    noise = RandomErasing(prob=1.0, scale=(0.3, 0.3), value="random")(image, 1)
    top, bottom, left, right, _ = _erased_box(image, noise)
    box = noise[:, top:bottom, left:right]
    assert abs(box.mean()) < 0.2 and 0.8 < box.std() < 1.2  # per-pixel standard normal
    per_channel = RandomErasing(prob=1.0, value=[5, 6, 7])(image, 1)
    assert {float(v) for v in np.unique(per_channel)} == {1.0, 5.0, 6.0, 7.0}
    assert all(np.array_equal(RandomErasing(prob=0.0)(image, s), image) for s in range(10))
    erased = sum(not np.array_equal(RandomErasing(prob=0.25)(image, s), image) for s in range(400))
    assert 60 < erased < 140
    impossible = RandomErasing(prob=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # the box never fits: no-op
    np.testing.assert_array_equal(impossible(image, 3), image)
    with pytest.raises(ValueError, match="'noise'"):
        RandomErasing(value="noise")
