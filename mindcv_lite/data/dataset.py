"""ImageNet-style folders (`root/<split>/<class>/<image>`) as a sharded, robust MindSpore dataset of (bytes, label)."""
import os
import threading
import warnings

import numpy as np
import mindspore.dataset as ds

from .image_bytes import CorruptImageError, decode_rgb, decode_to_bmp
from .sampler import ShardedSampler
from .seeded import sample_seed
from .workers import clamp_workers

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderSource", "create_dataset", "find_classes", "set_epoch"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_LAYOUT_HINT = (
    "Expected layout: <root>/<split>/<class name>/<image>, e.g. imagenet/train/n01440764/xxx.JPEG "
    "and imagenet/val/n01440764/yyy.JPEG (one folder per class, the same class folders in every split)."
)
# How many following samples to try before concluding that a whole stretch of the dataset is unreadable.
_MAX_REPLACEMENT_TRIES = 50


def _split_dir(root, split):
    if root is None or not os.path.isdir(root):
        raise FileNotFoundError(f"Dataset root {root!r} is not a directory. {_LAYOUT_HINT}")
    path = os.path.join(root, split) if split else root
    if not os.path.isdir(path):
        present = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        raise FileNotFoundError(
            f"Split folder {path!r} does not exist (folders in {root!r}: {present}). {_LAYOUT_HINT}"
        )
    return path


def _is_image_file(name):
    # Dot-files such as macOS "._x.jpg" resource forks carry an image extension but are not images.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find_classes(root, split="train"):
    """Class names of a split, sorted: a class's index is its position here, in every split."""
    path = _split_dir(root, split)
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _scan_split(root, split):
    """Return (class names, relative image paths, labels) in a deterministic order."""
    path = _split_dir(root, split)
    class_names = find_classes(root, split)
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(path, name)
        found = []
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(os.path.relpath(os.path.join(dirpath, f), path) for f in filenames if _is_image_file(f))
        if not found:
            warnings.warn(
                f"Class folder {class_dir!r} has no images; class {name!r} keeps index {label} so that "
                "labels stay identical across splits.",
                stacklevel=3,
            )
        found.sort()
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise ValueError(
            f"No images found in {path!r} ({len(class_names)} class folders; image extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case). {_LAYOUT_HINT}"
        )
    return class_names, files, labels


def _warn_if_classes_differ_from_train(root, split, class_names):
    if not split or split == "train" or not os.path.isdir(os.path.join(root, "train")):
        return
    train_classes = find_classes(root, "train")
    if train_classes != class_names:
        only_here = sorted(set(class_names) - set(train_classes))[:5]
        only_train = sorted(set(train_classes) - set(class_names))[:5]
        warnings.warn(
            f"Split {split!r} has {len(class_names)} class folders but 'train' has {len(train_classes)} "
            f"(only in {split!r}: {only_here}, only in 'train': {only_train}): labels will not match the "
            "training labels. Create the missing class folders (they may stay empty).",
            stacklevel=3,
        )


class _SeededRows:
    """(image, label, sample_seed) for a ShardedSampler ticket: the row plus its augmentation seed.

    With `transform` (a `transform(pixels, seed)` from create_loader) the image comes out transformed from the
    decoded RGB pixels, in the reader thread: one Python call per image instead of two, and no BMP round trip.
    """

    def __init__(self, source, seed, transform=None):
        self.source = source
        self.seed = seed
        self.transform = transform

    def __len__(self):
        return len(self.source)

    def __getitem__(self, ticket):
        draw, index = divmod(int(ticket), len(self.source))
        seed = sample_seed(self.seed, draw)
        if self.transform is None:
            image, label = self.source[index]
        else:
            image, label = self.source.read(index, decode_rgb)
            image = self.transform(image, seed)
        return image, label, np.int64(seed)


class ImageFolderSource:
    """Random-access source of (BMP bytes, int32 label) that replaces unreadable files instead of failing.

    A file that is missing, truncated, corrupt or not an image is replaced by the next readable sample (with
    that sample's label), so every rank still yields the same number of samples; one warning names each bad
    file. Replacement is deterministic, so shards stay disjoint apart from the replaced slot.
    """

    def __init__(self, root, split):
        self.split_dir = _split_dir(root, split)
        self.class_names, files, labels = _scan_split(root, split)
        # bytes arrays keep 1.3M ImageNet paths in ~60 MB instead of ~200 MB of Python str objects
        self._files = np.array([os.fsencode(f) for f in files])
        self._labels = np.array(labels, dtype=np.int32)
        self._warned = set()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._files)

    def path(self, index):
        return os.path.join(self.split_dir, os.fsdecode(self._files[index]))

    def __getitem__(self, ticket):
        image, label = self.read(ticket, decode_to_bmp)
        return np.frombuffer(image, dtype=np.uint8), label

    def read(self, ticket, decode):
        """(decode(file bytes), label) of a ShardedSampler ticket (see sampler.py) or a plain index."""
        index = int(ticket) % len(self)
        for offset in range(_MAX_REPLACEMENT_TRIES):
            candidate = (index + offset) % len(self)
            try:
                with open(self.path(candidate), "rb") as f:
                    image = decode(f.read())
            except (OSError, CorruptImageError) as error:
                self._warn_once(candidate, error)
                continue
            return image, self._labels[candidate]
        raise RuntimeError(
            f"{_MAX_REPLACEMENT_TRIES} consecutive images starting at {self.path(index)!r} are unreadable; "
            "the dataset looks damaged (check the disk / re-extract the archive)."
        )

    def _warn_once(self, index, error):
        path = self.path(index)
        with self._lock:
            if path in self._warned:
                return
            self._warned.add(path)
        replacement = self.path((index + 1) % len(self))
        warnings.warn(
            f"Skipping unreadable image {path!r} ({error}); the next readable sample after it (starting with "
            f"{replacement!r}) takes its place. Remove or replace the file to silence this warning.",
            RuntimeWarning,
            stacklevel=2,
        )


def create_dataset(
    name="imagenet",
    root=None,
    split="train",
    shuffle=True,
    num_samples=None,
    num_shards=None,
    shard_id=None,
    num_parallel_workers=8,
    download=False,
    num_aug_repeats=0,
    seed=None,
    **kwargs,
):
    """An ImageNet-style folder split as a MindSpore dataset with columns ("image": encoded bytes, "label": int32).

    Class indices follow the sorted class-folder names (empty folders included), so they agree across splits;
    `dataset.num_classes()` and `dataset.class_names` give them back (store the names with checkpoints).
    With `num_shards`/`shard_id` every rank reads a disjoint 1/num_shards of a shuffle that all ranks agree on
    (same `seed`), padded by wrap-around so all ranks yield the same number of samples. `num_samples` caps the
    samples per shard; `num_aug_repeats` > 1 turns on repeated augmentation (each image `num_aug_repeats` times
    per epoch, spread over ranks, epoch length unchanged). `seed` defaults to `mindspore.dataset.config`'s seed.
    `download` exists for mindcv compatibility; ImageNet cannot be downloaded, so True is an error.
    """
    if name.lower() not in ("imagenet", ""):
        raise ValueError(
            f"create_dataset supports ImageNet-style folders only (name='imagenet' or ''), got name={name!r}."
        )
    if download:
        raise ValueError(
            "ImageNet cannot be downloaded automatically (its licence needs a sign-in): download it from "
            "image-net.org, extract it to the layout below and set download=False. " + _LAYOUT_HINT
        )
    if kwargs:
        raise TypeError(f"create_dataset got unexpected arguments {sorted(kwargs)}")
    if (num_shards is None) != (shard_id is None):
        raise ValueError(f"num_shards and shard_id go together, got num_shards={num_shards}, shard_id={shard_id}")
    source = ImageFolderSource(root, split)
    _warn_if_classes_differ_from_train(root, split, source.class_names)
    sampler = ShardedSampler(
        len(source),
        num_shards=num_shards or 1,
        shard_id=shard_id or 0,
        shuffle=shuffle,
        seed=ds.config.get_seed() if seed is None else seed,
        num_samples=num_samples,
        num_repeats=num_aug_repeats,
    )
    workers = clamp_workers(num_parallel_workers)

    def reader(rows, columns):
        # Threads, not processes: decoding releases the GIL, and processes would copy the file list per worker.
        return ds.GeneratorDataset(
            rows, column_names=columns, sampler=sampler, num_parallel_workers=workers, python_multiprocessing=False
        )

    dataset = reader(source, ["image", "label"])
    class_names = list(source.class_names)
    dataset.class_names = class_names
    dataset.num_classes = lambda: len(class_names)
    # create_loader builds augmentation on this variant: the same rows (same sampler, so set_epoch on either
    # reaches both) plus each sample's augmentation seed; a separate node, since a MindSpore pipeline is a tree
    dataset.with_sample_seeds = lambda transform=None: reader(
        _SeededRows(source, sampler.seed, transform), ["image", "label", "sample_seed"]
    )
    return dataset


def _find_nodes(dataset, accept):
    """The nodes of a pipeline (`dataset` itself and everything it is built on) for which `accept(node)`."""
    found, pending = [], [dataset]
    while pending:
        node = pending.pop()
        if accept(node):
            found.append(node)
        pending.extend(getattr(node, "children", []))
    return found


def _batch_size(dataset):
    batches = _find_nodes(dataset, lambda node: isinstance(node, ds.BatchDataset))
    sizes = {node.batch_size for node in batches}
    if len(sizes) != 1 or not all(isinstance(size, int) for size in sizes):
        raise ValueError(
            "set_epoch(..., skip_batches > 0) needs the batched pipeline from create_loader (one batch size), "
            f"got a pipeline with batch sizes {sorted(map(str, sizes))}."
        )
    return sizes.pop()


def set_epoch(dataset, epoch, skip_batches=0):
    """Make the next iterator over `dataset` start at epoch `epoch`, batch `skip_batches` (exact resume).

    `dataset` is a `create_dataset` dataset or a pipeline built on it (e.g. `create_loader`'s; skipping batches
    needs that one, for its batch size). Sample order and every augmentation draw depend only on (seed, epoch,
    slot in the epoch), never on where a run started, so the iterator yields exactly the batches an
    uninterrupted run yields from that point; the skipped samples are not read. Call it before creating the
    iterator (or before `Model.train`): an iterator works on its own copy of the pipeline, whose first epoch is
    the shortened one and whose later epochs are whole. `dataset.get_dataset_size()` keeps counting whole epochs.
    """
    samplers = [node.sampler for node in _find_nodes(dataset, lambda n: isinstance(getattr(n, "sampler", None),
                                                                                    ShardedSampler))]
    if not samplers:
        raise ValueError(
            "set_epoch needs a dataset made by mindcv_lite.data.create_dataset (or a pipeline built on one), "
            f"got {type(dataset).__name__}."
        )
    if epoch < 0 or skip_batches < 0:
        raise ValueError(f"epoch and skip_batches must be >= 0, got epoch={epoch}, skip_batches={skip_batches}")
    skip = 0
    if skip_batches:
        for sampler in samplers:
            sampler.skip = 0
        batches = dataset.get_dataset_size()  # cached now, so it keeps counting whole epochs
        if skip_batches >= batches:
            raise ValueError(
                f"skip_batches={skip_batches} but an epoch has {batches} batches: resume at the start of epoch "
                f"{epoch + 1} (skip_batches=0) instead."
            )
        skip = skip_batches * _batch_size(dataset)
    for sampler in samplers:
        sampler.epoch = int(epoch)
        sampler.skip = skip
