"""Auto-augment policy strings (timm syntax): parsing, option semantics, and the ops on images."""
import random

import numpy as np
import pytest
from PIL import Image

from mindcv_lite.data import create_auto_augment
from mindcv_lite.data.auto_augment import AugmentOp, AutoAugment, RandAugment, TrivialAugmentWide

INCREASING = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
]  # fmt: skip


def _image(seed=0, size=(36, 44)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_recipe_policy_parses_to_increasing_randaugment():
    policy = create_auto_augment("randaug-m9-mstd0.5-inc1", 224, interpolation="bicubic")
    assert isinstance(policy, RandAugment)
    assert policy.num_layers == 2 and policy.choice_weights is None
    assert [op.name for op in policy.ops] == INCREASING
    assert {(op.magnitude, op.magnitude_std, op.prob, op.magnitude_max) for op in policy.ops} == {(9, 0.5, 0.5, None)}


def test_randaugment_options():
    policy = create_auto_augment("rand-m7-n3-mstd101-mmax15-p0.3")
    assert policy.num_layers == 3
    assert "PosterizeIncreasing" not in [op.name for op in policy.ops]  # inc0 is the default
    assert {(op.magnitude, op.magnitude_std, op.prob, op.magnitude_max) for op in policy.ops} == {
        (7, float("inf"), 0.3, 15)  # mstd > 100 means uniform in [0, m], as in timm
    }
    weighted = create_auto_augment("randaug-m9-n3-w0")
    assert len(weighted.choice_weights) == 15 and sum(weighted.choice_weights) == pytest.approx(1.0)
    for seed in range(20):  # weighted choice draws without replacement and never picks a zero-weight op
        chosen = [op.name for op in weighted.choose_ops(random.Random(seed))]
        assert len(chosen) == len(set(chosen)) == 3 and not {"Posterize", "Invert"} & set(chosen)
    uniform = create_auto_augment("randaug-m9-n4")
    assert all(len(uniform.choose_ops(random.Random(s))) == 4 for s in range(5))


@pytest.mark.parametrize(
    "text, posterize", [("autoaug", "PosterizeOriginal"), ("AutoAugR-mstd0.5", "PosterizeIncreasing")]
)
def test_autoaugment_policies(text, posterize):
    policy = create_auto_augment(text)
    assert isinstance(policy, AutoAugment) and len(policy.policy) == 25
    names = {op.name for sub in policy.policy for op in sub}
    assert posterize in names and not {"PosterizeOriginal", "PosterizeIncreasing"} - {posterize} & names


def test_trivialaugwide_draws_one_op_per_image_from_the_seed():
    op = create_auto_augment("trivialaugwide", interpolation="bicubic", mean=(124, 116, 104))
    assert isinstance(op, TrivialAugmentWide) and op.fill == (124, 116, 104)
    image = _image()
    outputs = [op(image, seed) for seed in range(40)]
    assert all(out.shape == (36, 44, 3) and out.dtype == np.uint8 for out in outputs)
    np.testing.assert_array_equal(op(image, 7), outputs[7])
    unchanged = sum(np.array_equal(out, image) for out in outputs)
    assert 0 < unchanged < 15  # Identity is 1 op of 14 (and a few ops at magnitude 0 leave the image alone)
    assert len({out.tobytes() for out in outputs}) > 25
    seen = _recorded_trivial_augment(op)
    assert {name for name, _ in seen} == set(op.space) - {"Identity"}  # the other 13 ops all get chosen
    magnitudes = lambda name: np.array([m for n, m in seen if n == name])  # noqa: E731
    rotations = magnitudes("Rotate")
    assert rotations.min() >= -135 and rotations.max() <= 135 and rotations.min() < -45 and rotations.max() > 45
    assert set(magnitudes("Posterize").tolist()) <= set(range(2, 9))  # bits kept, 8 - round(bin / 5)
    brightness = magnitudes("Brightness")  # factor 1 + m, m in [-0.99, 0.99]
    assert np.abs(brightness).max() <= 0.99 + 1e-9 and brightness.min() < 0 < brightness.max()
    assert len(magnitudes("Equalize")) > 0 and set(magnitudes("Equalize").tolist()) == {None}


def _recorded_trivial_augment(op, draws=600):
    """(op name, magnitude) of each op TrivialAugmentWide applies over `draws` images (image ops replaced)."""
    seen = []

    def recorder(name):
        return lambda img, magnitude=None, **_: seen.append((name, magnitude)) or img

    op.space = {name: (fn and recorder(name), mags, signed) for name, (fn, mags, signed) in op.space.items()}
    for seed in range(draws):
        for chosen in op.choose_ops(random.Random(seed)):
            chosen(None, None)
    return seen


@pytest.mark.parametrize(
    "text",
    ["randaug-x9", "randaug-m", "randaug-m9-inc2", "randaug-m9-w1", "randaug-mstdhigh", "randaug-n-1", "autoaug-m9",
     "trivialaugwide-m9", "augmix-m5", "randaug_m9", "", "  "],
)  # fmt: skip
def test_bad_policy_strings_raise_quoting_them(text):
    with pytest.raises(ValueError) as error:
        create_auto_augment(text)
    assert repr(text) in str(error.value)


def test_bad_policy_types_raise():
    with pytest.raises(ValueError, match="policy string"):
        create_auto_augment(None)


def _recorded_args(name, magnitude, draws=300, **hparams):
    """The arguments an op's image function receives over `draws` applications."""
    op = AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)
    seen = []
    op.aug_fn = lambda img, *args, **kwargs: seen.append(args) or img
    rng = random.Random(0)
    for _ in range(draws):
        op(None, rng)
    return np.array(seen, dtype=np.float64)


def test_magnitude_noise_and_bounds():
    fixed = np.abs(_recorded_args("Rotate", 9, magnitude_std=0.0))
    np.testing.assert_allclose(fixed, 27.0)  # m / 10 * 30 degrees, random sign
    noisy = np.abs(_recorded_args("Rotate", 9, magnitude_std=0.5))
    assert noisy.std() > 0.5 and noisy.max() <= 30.0 + 1e-9  # Gaussian around m, clipped at mmax=10
    assert abs(noisy.mean() - 27.0) < 1.0
    uniform = np.abs(_recorded_args("Rotate", 9, magnitude_std=float("inf")))
    assert uniform.max() <= 27.0 and uniform.min() < 3.0 and abs(uniform.mean() - 13.5) < 2.0
    assert np.abs(_recorded_args("Rotate", 14, magnitude_max=15)).max() == pytest.approx(42.0)
    assert np.abs(_recorded_args("Rotate", 14)).max() == pytest.approx(30.0)  # default bound is 10


def test_increasing_ops_get_stronger_with_magnitude():
    assert _recorded_args("PosterizeIncreasing", 0, draws=1)[0, 0] == 4  # bits kept
    assert _recorded_args("PosterizeIncreasing", 9, draws=1)[0, 0] == 1
    assert _recorded_args("SolarizeIncreasing", 0, draws=1)[0, 0] == 256  # threshold
    assert _recorded_args("SolarizeIncreasing", 9, draws=1)[0, 0] == 256 - int(0.9 * 256)
    factors = _recorded_args("ColorIncreasing", 9)[:, 0]
    np.testing.assert_allclose(np.abs(factors - 1.0), 0.81)  # 1 +- m / 10 * 0.9
    assert (factors > 1).any() and (factors < 1).any()


@pytest.mark.parametrize("text", ["randaug-m9-mstd0.5-inc1", "randaug-m10-n3", "autoaug", "autoaugr"])
def test_policies_transform_images_deterministically_per_seed(text):
    policy = create_auto_augment(text, 44)
    image = _image()
    outputs = [policy(image, seed) for seed in range(12)]
    for out in outputs:
        assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(policy(image, 0), outputs[0])
    assert sum(not np.array_equal(out, image) for out in outputs) >= 6
    assert len({out.tobytes() for out in outputs}) >= 6
    # the salt (the op's position in the transform list) gives an independent draw for the same sample
    assert len({policy(image, 0, salt).tobytes() for salt in range(6)}) >= 3


@pytest.mark.parametrize("name", INCREASING + ["Posterize", "PosterizeOriginal", "Solarize", "Color", "Contrast",
                                               "Brightness", "Sharpness"])  # fmt: skip
def test_every_op_runs_at_both_ends_of_the_scale(name):
    image = _image(1)
    for magnitude in (0, 10):
        op = AugmentOp(name, prob=1.0, magnitude=magnitude, hparams={"img_mean": (124, 116, 104)})
        out = np.asarray(op(Image.fromarray(image), random.Random(magnitude)))
        assert out.shape == image.shape and out.dtype == np.uint8


def test_geometric_ops_fill_with_the_mean_colour():
    op = AugmentOp("TranslateXRel", prob=1.0, magnitude=10, hparams={"img_mean": (124, 116, 104)})
    out = np.asarray(op(Image.fromarray(_image(2)), random.Random(0)))
    shift = int(round(0.45 * out.shape[1]))  # translate_pct 0.45 at full magnitude
    filled = out[:, -shift + 1 :] if (out[:, -1] == (124, 116, 104)).all() else out[:, : shift - 1]
    assert (filled == np.array([124, 116, 104], np.uint8)).all()
