"""create_loader and Mixup/CutMix: batch shapes, dtypes, soft targets, determinism, batch-stage equivalence."""
import warnings

import numpy as np
import pytest

import mindspore.dataset as ds
import mindspore.dataset.vision as vision
from mindspore.dataset.transforms import Compose

from _image_folders import make_image_folder
from mindcv_lite.data import (
    IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_dataset, create_loader, create_transforms,
)  # fmt: skip
from mindcv_lite.data.transforms import RandomErasing

RECIPE = dict(image_resize=32, interpolation="bicubic", auto_augment="randaug-m9-mstd0.5-inc1", re_prob=0.25,
              re_value="random")  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), num_classes=3, per_class=5, size=(45, 31))


@pytest.fixture
def seed():
    previous = ds.config.get_seed()
    yield ds.config.set_seed
    ds.config.set_seed(previous)


def _batches(folder, split="train", workers=2, batch_size=4, transform=None, **kwargs):
    dataset = create_dataset("imagenet", folder, split, shuffle=split == "train", num_parallel_workers=workers)
    if transform is None:
        transform = create_transforms("imagenet", is_training=split == "train", **RECIPE)
    loader = create_loader(dataset, batch_size, is_training=split == "train", num_classes=dataset.num_classes(),
                           transform=transform, num_parallel_workers=workers, **kwargs)  # fmt: skip
    return list(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))


def test_train_recipe_batches_with_soft_targets(folder, seed):
    seed(0)
    batches = _batches(folder, drop_remainder=True, mixup=0.8, cutmix=1.0)
    assert len(batches) == 3
    for images, targets in batches:
        assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32 and np.isfinite(images).all()
        assert targets.shape == (4, 3) and targets.dtype == np.float32
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        assert (targets >= 0).all()
    assert any((targets % 1 != 0).any() for _, targets in batches)  # some batch actually mixed


def test_without_mixup_labels_stay_class_indices(folder):
    batches = _batches(folder, drop_remainder=False)
    assert [len(labels) for _, labels in batches] == [4, 4, 4, 3]
    dataset = create_dataset("imagenet", folder, "train")
    loader = create_loader(dataset, 4, drop_remainder=True, is_training=True, num_classes=3, num_parallel_workers=1,
                           transform=create_transforms("imagenet", is_training=True, **RECIPE))  # fmt: skip
    assert loader.get_dataset_size() == 3  # what the engine counts its steps with
    assert all(labels.dtype == np.int32 for _, labels in batches)
    assert sorted(np.concatenate([labels for _, labels in batches]).tolist()) == [0] * 5 + [1] * 5 + [2] * 5


def test_eval_batches_in_file_order(folder):
    batches = _batches(folder, "val", batch_size=6)
    assert [images.shape for images, _ in batches] == [(6, 3, 32, 32), (6, 3, 32, 32), (3, 3, 32, 32)]
    assert np.concatenate([labels for _, labels in batches]).tolist() == [0] * 5 + [1] * 5 + [2] * 5
    low = (0 - np.array(IMAGENET_DEFAULT_MEAN)) / np.array(IMAGENET_DEFAULT_STD)
    high = (255 - np.array(IMAGENET_DEFAULT_MEAN)) / np.array(IMAGENET_DEFAULT_STD)
    for images, _ in batches:
        assert (images.min(axis=(0, 2, 3)) >= low - 1e-5).all() and (images.max(axis=(0, 2, 3)) <= high + 1e-5).all()


@pytest.mark.parametrize("workers", [1, 2])
def test_same_seed_same_batches(folder, seed, workers):
    runs = []
    for value in (11, 11, 12):
        seed(value)
        runs.append(_batches(folder, workers=workers, drop_remainder=True, mixup=0.8, cutmix=1.0))
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(runs[0], runs[1]))
    assert same
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(runs[0], runs[2]))


@pytest.mark.parametrize("mix", [{}, {"mixup": 0.8, "cutmix": 1.0}])
def test_batch_stage_matches_the_per_image_path(folder, seed, mix):
    """NormalizeCHW + RandomErasing at the end of a list run after batching, fused with Mixup/CutMix; the same
    list written the mindcv way (MindSpore Normalize + HWC2CHW, erasing per image, then Mixup on the float
    batch) must give the same batches."""
    whole = dict(image_resize=32, scale=(1.0, 1.0), ratio=(45 / 31, 45 / 31), hflip=0.0, color_jitter=0)
    fast = create_transforms("imagenet", is_training=True, re_prob=0.7, re_value="random", **whole)
    # one op in NormalizeCHW's place, so that the eraser keeps its position (its seed salt)
    normalize = Compose([vision.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), vision.HWC2CHW()])
    slow = fast[:-2] + [normalize, fast[-1]]
    assert isinstance(fast[-1], RandomErasing)
    seed(5)
    fast_batches = _batches(folder, transform=fast, workers=2, **mix)
    seed(5)
    slow_batches = _batches(folder, transform=slow, workers=1, **mix)
    for (a, la), (b, lb) in zip(fast_batches, slow_batches, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(la, lb, rtol=1e-6)
    assert any(np.abs(a).max() > 3 for a, _ in fast_batches)  # erasing noise is in there


def test_separate_splits_triple_the_batch(folder):
    transform = create_transforms("imagenet", is_training=True, separate=True, **RECIPE)
    batches = _batches(folder, transform=transform, separate=True, drop_remainder=True)
    for images, labels in batches:
        assert images.shape == (12, 3, 32, 32) and labels.tolist()[:4] * 3 == labels.tolist()
    # the two augmented copies share the crop but draw their RandAugment / erasing independently
    assert any(not np.array_equal(images[4:8], images[8:12]) for images, _ in batches)
    with pytest.raises(ValueError, match="separate=True"):
        _batches(folder, separate=True)


def test_no_transform_falls_back_to_eval_with_a_warning(folder):
    dataset = create_dataset("imagenet", folder, "val", shuffle=False)
    with pytest.warns(UserWarning, match="no transform"):
        loader = create_loader(dataset, 8, num_parallel_workers=1)
    images, _ = next(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert images.shape == (8, 3, 224, 224)


# --- Mixup on its own ----------------------------------------------------------------------------------------


def _batch(size, seed=0):
    return np.random.default_rng(seed).standard_normal((size, 3, 8, 10)).astype(np.float32)


@pytest.mark.parametrize("size", [6, 7])
def test_mixup_blends_each_sample_with_its_mirror(size):
    images, labels = _batch(size), np.arange(size)
    for seed in range(5):
        mixed, targets = Mixup(mixup_alpha=0.8, num_classes=size)(images.copy(), labels, np.full(size, seed))
        lam = targets[0, 0]
        assert 0 < lam < 1
        np.testing.assert_allclose(mixed, lam * images + (1 - lam) * images[::-1], rtol=1e-5, atol=1e-6)
        expected = lam * np.eye(size) + (1 - lam) * np.eye(size)[::-1]
        np.testing.assert_allclose(targets, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("size", [4, 5])
def test_cutmix_swaps_one_box_and_corrects_lambda(size):
    images, labels = _batch(size), np.arange(size)
    for seed in range(8):
        cutmix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=size)
        mixed, targets = cutmix(images.copy(), labels, [seed] * size)
        from_mirror = np.all(mixed == images[::-1], axis=1)[0]  # (H, W) pixels taken from the paired sample
        assert np.all((mixed == images) | (mixed == images[::-1]))
        lam = targets[0, 0]
        assert from_mirror.mean() == pytest.approx(1 - lam)
        if from_mirror.any():
            rows, cols = np.nonzero(from_mirror)
            assert from_mirror.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a rectangle
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


def test_mixup_switches_modes_and_follows_prob():
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=4)
    images, labels = _batch(4), np.arange(4)
    modes = set()
    for seed in range(30):
        mixed, _ = mix(images.copy(), labels, [seed] * 4)
        modes.add(bool(np.all((mixed == images) | (mixed == images[::-1]))))
    assert modes == {True, False}  # CutMix (only copied pixels) and Mixup (blended) both happen
    lams = [mix.sample_params(np.random.default_rng(s))[0] for s in range(400)]
    assert abs(np.mean(lams) - 0.5) < 0.05  # Beta(a, a) is symmetric around 0.5
    never = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0, num_classes=4)
    unchanged, targets = never(images.copy(), labels, [1] * 4)
    np.testing.assert_array_equal(unchanged, images)
    np.testing.assert_array_equal(targets, np.eye(4, dtype=np.float32))


def test_mixup_in_place_and_read_only_inputs():
    images = _batch(4)
    mixed, _ = Mixup(num_classes=4)(images, np.arange(4), [3] * 4)
    assert mixed is images  # no copy of the batch
    frozen = _batch(4)
    frozen.flags.writeable = False
    mixed, _ = Mixup(num_classes=4)(frozen, np.arange(4), [3] * 4)
    assert mixed is not frozen and not np.array_equal(mixed, frozen)


def test_mixup_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mixup_alpha or cutmix_alpha"):
        Mixup(mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="num_classes=3"):
        Mixup(num_classes=3)(_batch(4), np.arange(4), [0] * 4)


def test_loader_has_no_label_smoothing_argument(folder):
    """Label smoothing is the loss's job (mindcv_lite.loss); accepting it here too would smooth twice."""
    dataset = create_dataset("imagenet", folder, "train")
    with pytest.raises(TypeError, match="label_smoothing"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        create_loader(dataset, 4, is_training=True, mixup=0.8, label_smoothing=0.1)
