"""Exact resume of the augmented data pipeline: an epoch's batches are the same bit for bit whether they come
after earlier epochs in one iterator, from a fresh pipeline set to that epoch, or from the middle of the epoch
(set_epoch(..., skip_batches)), with 1 or 2 workers, on every shard."""
import os
import threading

import numpy as np
import pytest

import mindspore.dataset.vision as vision

from _image_folders import make_image_folder
from mindcv_lite.data import create_dataset, create_loader, create_transforms, set_epoch
from mindcv_lite.data import dataset as dataset_module
from mindcv_lite.data.dataset import ImageFolderSource, _SeededRows
from mindcv_lite.data.loader import _WithSeed
from mindcv_lite.utils.config import parse_args

RECIPE_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "pit", "pit_ti_ascend.yaml")
TRANSFORM_KEYS = ("scale", "ratio", "hflip", "vflip", "color_jitter", "interpolation", "auto_augment", "re_prob",
                  "re_scale", "re_ratio", "re_value", "re_max_attempts", "mean", "std")  # fmt: skip
BATCH = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # 14 images: 3 batches of 4 per epoch (drop_remainder), 4 per shard with 2 shards and batch 2
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), splits=("train",), num_classes=2, per_class=7,
                             size=(45, 37))  # fmt: skip


@pytest.fixture(scope="module")
def recipe():
    """pit_ti's training augmentation (RandAugment, random erasing, Mixup/CutMix) at 32 px."""
    args = parse_args(["-c", RECIPE_PATH])
    assert args.auto_augment and args.re_prob > 0 and args.mixup > 0 and args.cutmix > 0  # the full recipe
    transform = {key: getattr(args, key) for key in TRANSFORM_KEYS}
    return dict(transform=transform, mixup=args.mixup, cutmix=args.cutmix, cutmix_prob=args.cutmix_prob)


def _loader(folder, recipe, workers, batch_size=BATCH, shards=None, separate=False, num_aug_repeats=0, **transform):
    dataset = create_dataset("imagenet", folder, "train", shuffle=True, seed=21, num_parallel_workers=workers,
                             num_shards=shards and shards[0], shard_id=shards and shards[1],
                             num_aug_repeats=num_aug_repeats)  # fmt: skip
    options = dict(recipe["transform"], **transform)
    transforms = create_transforms("imagenet", image_resize=32, is_training=True, separate=separate, **options)
    return create_loader(dataset, batch_size, drop_remainder=True, is_training=True, transform=transforms,
                         num_classes=dataset.num_classes(), num_parallel_workers=workers, separate=separate,
                         mixup=recipe["mixup"], cutmix=recipe["cutmix"], cutmix_prob=recipe["cutmix_prob"])  # fmt: skip


def _epochs(loader, num_epochs):
    iterator = loader.create_tuple_iterator(output_numpy=True, num_epochs=num_epochs)
    return [[(images.copy(), labels.copy()) for images, labels in iterator] for _ in range(num_epochs)]


def _assert_same(batches, expected):
    assert len(batches) == len(expected)
    for (images, labels), (want_images, want_labels) in zip(batches, expected):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


@pytest.fixture(scope="module")
def uninterrupted(folder, recipe):
    """Epochs 0, 1, 2 from one iterator of a 1-worker pipeline."""
    return _epochs(_loader(folder, recipe, workers=1), 3)


def test_recipe_batches_are_augmented_and_mixed(uninterrupted):
    epoch = uninterrupted[1]
    assert len(epoch) == 3 and all(images.shape == (BATCH, 3, 32, 32) for images, _ in epoch)
    assert any((labels % 1 != 0).any() for _, labels in epoch)  # Mixup/CutMix soft targets
    assert not np.array_equal(uninterrupted[1][0][0], uninterrupted[2][0][0])  # epochs draw anew


@pytest.mark.parametrize("workers", [1, 2])
def test_fresh_pipeline_set_to_an_epoch_repeats_it(folder, recipe, uninterrupted, workers):
    loader = _loader(folder, recipe, workers)
    set_epoch(loader, 1)
    resumed = _epochs(loader, 2)
    _assert_same(resumed[0], uninterrupted[1])
    _assert_same(resumed[1], uninterrupted[2])


@pytest.mark.parametrize("skip_batches", [1, 2])
def test_skip_batches_yields_the_rest_of_the_epoch_without_reading_the_skipped_images(
    folder, recipe, uninterrupted, skip_batches, monkeypatch
):
    reads, lock = [], threading.Lock()

    def counting(decode):
        def counting_decode(data):
            with lock:
                reads.append(1)
            return decode(data)

        return counting_decode

    for name in ("decode_to_bmp", "decode_rgb"):  # the reader decodes with one or the other
        monkeypatch.setattr(dataset_module, name, counting(getattr(dataset_module, name)))
    loader = _loader(folder, recipe, workers=2)
    set_epoch(loader, 1, skip_batches=skip_batches)
    assert loader.get_dataset_size() == 3  # still whole epochs: what the engine counts steps with
    resumed = _epochs(loader, 2)
    _assert_same(resumed[0], uninterrupted[1][skip_batches:])
    _assert_same(resumed[1], uninterrupted[2])
    # epoch 1 reads only its remaining batches (+ the images drop_remainder leaves over), epoch 2 reads all 14
    assert len(reads) == 14 - skip_batches * BATCH + 14


def test_shards_resume_exactly_and_draw_differently(folder, recipe):
    for rank in range(2):
        uninterrupted = _epochs(_loader(folder, recipe, 1, batch_size=2, shards=(2, rank)), 2)
        loader = _loader(folder, recipe, 2, batch_size=2, shards=(2, rank))
        set_epoch(loader, 1, skip_batches=1)
        _assert_same(_epochs(loader, 1)[0], uninterrupted[1][1:])
    first, second = (_epochs(_loader(folder, recipe, 1, batch_size=2, shards=(2, r)), 1)[0] for r in range(2))
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(first, second))


@pytest.mark.parametrize("options", [
    dict(auto_augment=None, color_jitter=[0.4, 0.4, 0.4, 0.1], vflip=0.5),  # colour jitter, both flips
    dict(auto_augment="trivialaugwide", separate=True),  # TrivialAugment, augmentation splits
    dict(auto_augment="autoaug", num_aug_repeats=3),  # AutoAugment, repeated augmentation
])  # fmt: skip
def test_other_augmentations_resume_exactly(folder, recipe, options):
    uninterrupted = _epochs(_loader(folder, recipe, 1, **options), 2)
    loader = _loader(folder, recipe, 2, **options)
    set_epoch(loader, 1, skip_batches=1)
    _assert_same(_epochs(loader, 1)[0], uninterrupted[1][1:])


def test_set_epoch_rejects_bad_positions(folder, recipe):
    loader = _loader(folder, recipe, 1)
    with pytest.raises(ValueError, match="3 batches"):
        set_epoch(loader, 1, skip_batches=3)
    with pytest.raises(ValueError, match=">= 0"):
        set_epoch(loader, 1, skip_batches=-1)
    dataset = create_dataset("imagenet", folder, "train", num_parallel_workers=1)
    with pytest.raises(ValueError, match="batched pipeline"):
        set_epoch(dataset, 1, skip_batches=1)


def test_mindspore_random_ops_warn_that_they_do_not_resume(folder):
    dataset = create_dataset("imagenet", folder, "train", num_parallel_workers=1)
    transform = [vision.RandomCropDecodeResize(32), vision.RandomHorizontalFlip()]
    with pytest.warns(UserWarning, match="RandomCropDecodeResize draws from a process-wide random stream"):
        create_loader(dataset, BATCH, is_training=True, transform=transform, num_parallel_workers=1)


def test_transforms_run_in_the_reader_give_the_map_path_pixels(folder, recipe):
    """create_loader lets the reader apply crop, flips and RandAugment to the decoded pixels; a map over the
    reader's BMP bytes gives the same images (the crop reads BMP rows in BGR and swaps after resizing)."""
    ops = create_transforms("imagenet", image_resize=32, is_training=True, **recipe["transform"])[:3]
    assert [type(op).__name__ for op in ops] == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment"]
    chain = _WithSeed(list(zip(ops, range(3))))
    source = ImageFolderSource(folder, "train")
    in_reader, plain = _SeededRows(source, 21, chain.apply), _SeededRows(source, 21)
    for ticket in range(0, 14 * 30, 11):
        image, label, seed = in_reader[ticket]
        encoded, plain_label, plain_seed = plain[ticket]
        assert encoded.ndim == 1 and (label, seed) == (plain_label, plain_seed)
        np.testing.assert_array_equal(image, chain.apply(encoded, seed))
