"""create_dataset on generated ImageNet-layout folders: classes, file selection, sharding, resume, bad data."""
import hashlib
import io
import os
import warnings

import numpy as np
import pytest
from PIL import Image

import mindspore.dataset as ds

from _image_folders import make_image_folder, write_image
from mindcv_lite.data import create_dataset, create_loader, create_transforms, set_epoch


def _rows(dataset, num_epochs=1):
    """Per epoch: list of (sha1 of the decoded pixels, label) in reading order."""
    iterator = dataset.create_tuple_iterator(output_numpy=True, num_epochs=num_epochs)
    epochs = []
    for _ in range(num_epochs):
        epochs.append([(hashlib.sha1(image.tobytes()).hexdigest(), int(label)) for image, label in iterator])
    return epochs if num_epochs > 1 else epochs[0]


def _write_damaged_progressive_jpeg(path):
    """A progressive JPEG with one flipped byte: MindSpore 2.10's C++ Decode dies on it with SIGSEGV, Pillow raises."""
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    data = bytearray(buffer.getvalue())
    data[int(len(data) * 0.56)] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), num_classes=3, per_class=4)


def test_classes_sizes_and_columns(folder):
    dataset = create_dataset("imagenet", folder, "train", shuffle=False)
    assert dataset.class_names == ["class_0", "class_1", "class_2"]
    assert dataset.num_classes() == 3
    assert dataset.get_dataset_size() == 12
    assert dataset.get_col_names() == ["image", "label"]
    rows = list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert [int(label) for _, label in rows] == [0] * 4 + [1] * 4 + [2] * 4
    image, label = rows[0]
    assert image.dtype == np.uint8 and image.ndim == 1  # encoded bytes, as mindcv's transforms expect
    assert label.dtype == np.int32
    assert create_dataset("imagenet", folder, "val", num_samples=5).get_dataset_size() == 5


def test_only_image_files_count_and_formats_decode(tmp_path):
    """Extensions in any case count; text files, dot-files and hidden folders do not; every mode becomes RGB."""
    root = tmp_path / "data"
    write_image(root / "train" / "b" / "odd.PNG", size=(37, 23), mode="RGBA")
    write_image(root / "train" / "b" / "gray.JpEg", size=(31, 45), mode="L")
    write_image(root / "train" / "b" / "palette.bmp", size=(17, 29), mode="P")
    palette = Image.open(write_image(root / "train" / "b" / "transparent.png", size=(19, 21), mode="P"))
    # byte transparency: Pillow warns when such an image goes straight to RGB
    palette.save(root / "train" / "b" / "transparent.png", transparency=bytes(range(256)))
    write_image(root / "train" / "a" / "x.webp", size=(40, 30))
    write_image(root / "train" / "a" / "nested" / "y.tif", size=(41, 33), mode="LA")
    write_image(root / "train" / "a" / ".hidden" / "z.jpg")
    write_image(root / "train" / "a" / "._resource_fork.jpg")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / "labels.csv").write_text("x.webp,a")
    write_image(root / "train" / ".cache" / "w.jpg")  # a hidden folder is not a class
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these files is unreadable
        dataset = create_dataset("imagenet", str(root), "train", shuffle=False)
        transform = create_transforms("imagenet", image_resize=16, is_training=False)
        loader = create_loader(dataset, batch_size=8, transform=transform, num_parallel_workers=1)
        images, labels = next(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert dataset.class_names == ["a", "b"]
    assert images.shape == (6, 3, 16, 16) and images.dtype == np.float32
    assert labels.tolist() == [0, 0, 1, 1, 1, 1]


def test_missing_root_and_split_name_path_and_layout(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere") as error:
        create_dataset("imagenet", missing, "train")
    assert "<root>/<split>/<class name>/<image>" in str(error.value)
    root = make_image_folder(tmp_path / "data", splits=("train",), num_classes=1, per_class=1)
    with pytest.raises(FileNotFoundError) as error:
        create_dataset("imagenet", root, "validation")
    message = str(error.value)
    assert os.path.join(root, "validation") in message and "['train']" in message and "Expected layout" in message


def test_split_without_images_is_an_error(tmp_path):
    (tmp_path / "train" / "class_a").mkdir(parents=True)
    (tmp_path / "train" / "class_a" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="No images found in .*train"), \
            pytest.warns(UserWarning, match="class_a.* has no images"):
        create_dataset("imagenet", str(tmp_path), "train")


def test_empty_class_folder_warns_and_keeps_indices(tmp_path):
    root = make_image_folder(tmp_path, num_classes=3, per_class=2)
    for name in os.listdir(os.path.join(root, "val", "class_1")):
        os.remove(os.path.join(root, "val", "class_1", name))
    with pytest.warns(UserWarning, match=r"class_1.* has no images.*keeps index 1"):
        val = create_dataset("imagenet", root, "val", shuffle=False)
    assert val.num_classes() == 3
    assert [label for _, label in _rows(val)] == [0, 0, 2, 2]


def test_split_with_different_classes_warns(tmp_path):
    root = make_image_folder(tmp_path, num_classes=2, per_class=1)
    write_image(os.path.join(root, "val", "class_9", "x.jpg"))
    with pytest.warns(UserWarning, match="labels will not match"):
        create_dataset("imagenet", root, "val")


def test_bad_arguments_raise(folder):
    with pytest.raises(ValueError, match="ImageNet-style"):
        create_dataset("cifar10", folder)
    with pytest.raises(ValueError, match="go together"):
        create_dataset("imagenet", folder, num_shards=2)
    with pytest.raises(ValueError, match="shard_id"):
        create_dataset("imagenet", folder, num_shards=2, shard_id=2)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        create_dataset("imagenet", folder, download=True)
    with pytest.raises(TypeError, match="num_worker"):
        create_dataset("imagenet", folder, num_worker=2)


def test_corrupt_files_are_replaced_with_one_warning_each(tmp_path):
    """Truncated, damaged, empty and fake images: the epoch finishes at full length and each file is named once,
    even with 2 reader threads and 2 epochs. The damaged progressive JPEG kills the process if it ever reaches
    MindSpore's C++ decoder, so this test also guards that every image is decoded by Pillow first."""
    root = make_image_folder(tmp_path, splits=("train",), num_classes=2, per_class=5)
    class_dir = os.path.join(root, "train", "class_0")
    with open(os.path.join(class_dir, "img_1.jpg"), "rb") as f:
        whole = f.read()
    bad = {
        "img_1.jpg": whole[: len(whole) // 2],  # truncated
        "img_2.jpg": b"",  # empty
        "img_3.jpg": b"<html>404 not found</html>",  # not an image
    }
    for name, data in bad.items():
        with open(os.path.join(class_dir, name), "wb") as f:
            f.write(data)
    _write_damaged_progressive_jpeg(os.path.join(root, "train", "class_1", "img_4.jpg"))
    bad_paths = [os.path.join(class_dir, name) for name in bad] + [os.path.join(root, "train", "class_1", "img_4.jpg")]

    dataset = create_dataset("imagenet", root, "train", shuffle=True, seed=3, num_parallel_workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        epochs = _rows(dataset, num_epochs=2)
        assert warnings.filters == filters  # reader threads leave the process's warning filters alone
    assert [len(rows) for rows in epochs] == [10, 10]
    messages = [str(w.message) for w in caught if "unreadable image" in str(w.message)]
    assert sorted(next(p for p in bad_paths if repr(p) in m) for m in messages) == sorted(bad_paths)
    good = {digest for rows in epochs for digest, _ in rows}
    assert len(good) == 6  # only the 6 readable images ever come out


def test_shards_are_disjoint_cover_and_have_equal_batches(tmp_path):
    """10 images over 3 ranks: 4 each (2 padded by wrap-around), every image read, same batch count everywhere,
    also when one image is unreadable."""
    root = make_image_folder(tmp_path, splits=("train",), num_classes=2, per_class=5)
    os.truncate(os.path.join(root, "train", "class_1", "img_0.jpg"), 100)
    shards, batches = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rank in range(3):
            dataset = create_dataset("imagenet", root, "train", shuffle=True, seed=7, num_shards=3, shard_id=rank)
            assert dataset.get_dataset_size() == 4
            shards.append(dataset.sampler.epoch_indices(0))
            transform = create_transforms("imagenet", image_resize=16, is_training=True)
            loader = create_loader(dataset, 3, drop_remainder=False, is_training=True, transform=transform,
                                   num_classes=2, num_parallel_workers=1)  # fmt: skip
            batches.append(len(list(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))))
    assert batches == [2, 2, 2]
    everything = np.concatenate(shards)
    assert sorted(set(everything.tolist())) == list(range(10))  # coverage
    counts = np.bincount(everything, minlength=10)
    assert counts.sum() == 12 and counts.min() == 1 and (counts == 2).sum() == 2  # only the 2 pad slots repeat
    next_epoch = [
        create_dataset("imagenet", root, "train", seed=7, num_shards=3, shard_id=rank).sampler.epoch_indices(1)
        for rank in range(3)
    ]
    assert sorted(set(np.concatenate(next_epoch).tolist())) == list(range(10))
    assert not all(np.array_equal(a, b) for a, b in zip(next_epoch, shards))  # reshuffled


def test_set_epoch_gives_the_same_order_wherever_the_run_started(folder):
    uninterrupted = _rows(create_dataset("imagenet", folder, "train", seed=5, num_parallel_workers=2), num_epochs=3)
    assert uninterrupted[0] != uninterrupted[1] != uninterrupted[2]
    resumed = create_dataset("imagenet", folder, "train", seed=5, num_parallel_workers=2)
    set_epoch(resumed, 1)
    assert _rows(resumed, num_epochs=2) == uninterrupted[1:]
    # through a create_loader pipeline, as the training engine calls it
    dataset = create_dataset("imagenet", folder, "train", seed=5, num_parallel_workers=1, shuffle=True)
    transform = create_transforms("imagenet", image_resize=16, is_training=False)
    loader = create_loader(dataset, 12, transform=transform, num_parallel_workers=1)
    set_epoch(loader, 2)
    labels = next(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))[1]
    assert labels.tolist() == [label for _, label in uninterrupted[2]]
    with pytest.raises(ValueError, match="create_dataset"):
        set_epoch(ds.NumpySlicesDataset([1, 2, 3]), 1)


def test_seed_decides_the_order(folder):
    first = _rows(create_dataset("imagenet", folder, "train", seed=1))
    assert _rows(create_dataset("imagenet", folder, "train", seed=1)) == first
    assert _rows(create_dataset("imagenet", folder, "train", seed=2)) != first
    assert sorted(_rows(create_dataset("imagenet", folder, "train", seed=2))) == sorted(first)


def test_repeated_augmentation_spreads_copies_over_ranks(folder):
    indices = [
        create_dataset("imagenet", folder, num_shards=3, shard_id=rank, num_aug_repeats=3).sampler.epoch_indices(0)
        for rank in range(3)
    ]
    assert all(len(i) == 4 for i in indices)  # epoch length unchanged
    for position in range(4):  # the 3 copies of an image go to the 3 ranks
        assert len({int(i[position]) for i in indices}) == 1
