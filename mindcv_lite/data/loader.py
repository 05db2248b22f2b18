"""Batches for train.py / validate.py: transforms, batching, Mixup/CutMix (mindcv's `create_loader`)."""
import warnings

import numpy as np
import mindspore.dataset as ds
from mindspore.dataset import transforms as ds_transforms

from .mixup import Mixup, mixup_target
from .seeded import SeededTransform, sample_rng
from .transforms import NormalizeCHW, RandomErasing, RandomResizedCrop, create_transforms
from .workers import clamp_workers

__all__ = ["create_loader"]

_SEED = "sample_seed"
# MindSpore random ops that draw from a process-wide stream (besides the Random* ones)
_UNSEEDED_POLICIES = ("AutoAugment", "RandAugment", "TrivialAugmentWide", "UniformAugment")


class _SeedStream:
    """Seeds for a dataset not made by create_dataset: one sequential stream, reproducible from a fresh start
    (one worker, so seeds follow row order) but not across a resume, since it does not know the epoch."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, label):
        return label, np.int64(self.rng.integers(2**62))


def _warn_unseeded_random_ops(ops):
    for op in ops:
        name = type(op).__name__
        if type(op).__module__.startswith("mindspore.") and (name.startswith("Random") or name in _UNSEEDED_POLICIES):
            warnings.warn(
                f"create_loader: MindSpore's {name} draws from a process-wide random stream, so its draws depend "
                "on the worker count and are not repeated on resume; use create_transforms' ops (SeededTransform) "
                "for exactly resumable augmentation."
            )


def _concat_splits(clean, aug1, aug2, labels, seeds):
    return np.concatenate((clean, aug1, aug2)), np.tile(labels, 3), np.tile(seeds, 3)


def _split_batch_tail(ops):
    """(index of a trailing NormalizeCHW or None): it and the RandomErasing ops after it move to the batch stage,
    where they cost a fraction of the per-image path (see NormalizeCHW)."""
    for index in range(len(ops) - 1, -1, -1):
        if isinstance(ops[index], NormalizeCHW):
            return index
        if not isinstance(ops[index], RandomErasing):
            return None
    return None


class _WithSeed:
    """Consecutive SeededTransforms as one map operation (one Python call per image instead of one per op):
    (image, seed) -> (image, seed), the seed passing through unchanged."""

    def __init__(self, ops_and_salts):
        self.ops_and_salts = ops_and_salts

    def __call__(self, image, seed):
        return self.apply(image, seed), seed

    def apply(self, image, seed):
        for op, salt in self.ops_and_salts:
            image = op(image, seed, salt)
        return image


def _with_seeds(dataset, ops):
    """(`dataset` with a seed column, how many of the per-image `ops` it already applies).

    A create_dataset reader applies the leading seeded ops itself when they start with RandomResizedCrop (which
    takes decoded pixels as well as bytes): ~0.5 CPU-ms less per 224 px image than a map of its own.
    """
    if not hasattr(dataset, "with_sample_seeds"):
        dataset = dataset.map(
            operations=_SeedStream(ds.config.get_seed()), input_columns=["label"], output_columns=["label", _SEED],
            num_parallel_workers=1, python_multiprocessing=False,
        )  # fmt: skip
        return dataset, 0
    fused = 0
    if ops and isinstance(ops[0], RandomResizedCrop):
        while fused < len(ops) and isinstance(ops[fused], SeededTransform):
            fused += 1
    transform = _WithSeed(list(zip(ops[:fused], range(fused)))).apply if fused else None
    return dataset.with_sample_seeds(transform), fused


class _BatchStage:
    """Whole-batch tail of the pipeline: uint8 NHWC in, float32 NCHW out, normalised, erased and mixed.

    Works pair by pair (sample i with its mixing partner B-1-i) so that each pair is normalised, erased and mixed
    while it is in the CPU cache: mixing then costs almost nothing on top of normalising (one pass per image).
    The result equals running the same ops per image and Mixup on the float batch (tests/test_data_loader.py).
    """

    def __init__(self, normalize, erasers, mixup):
        self.normalize = normalize
        self.erasers = erasers  # (RandomErasing, salt) pairs
        self.mixup = mixup

    def __call__(self, images, labels, seeds=None):
        size, height, width, channels = images.shape
        out = np.empty((size, channels, height, width), dtype=np.float32)
        lam, box = self.mixup.draw(seeds, (height, width)) if self.mixup is not None else (1.0, None)
        for i in range((size + 1) // 2):
            pair = (i, size - 1 - i) if 2 * i + 1 != size else (i,)
            for index in pair:
                self.normalize.into(out[index], images[index])
                for eraser, salt in self.erasers:
                    eraser.erase_(out[index], sample_rng(seeds[index], salt))
            if len(pair) == 2 and lam < 1.0:
                self.mixup.mix_pair_(out[pair[0]], out[pair[1]], lam, box)
        if self.mixup is not None:
            labels = mixup_target(labels, self.mixup.num_classes, lam)
        return out, labels


class _Mapper:
    """Applies transform lists to a column, giving seeded transforms the seed column and their salt."""

    def __init__(self, num_parallel_workers, python_multiprocessing):
        self.kwargs = dict(num_parallel_workers=num_parallel_workers, python_multiprocessing=python_multiprocessing)

    def __call__(self, dataset, operations, column, first_salt=0):
        # runs of seeded / plain ops, in order: [(True, [(op, salt), ...]), (False, [op, ...]), ...]
        runs = []
        for salt, op in enumerate(operations, start=first_salt):
            seeded = isinstance(op, SeededTransform)
            if not runs or runs[-1][0] != seeded:
                runs.append((seeded, []))
            runs[-1][1].append((op, salt) if seeded else op)
        for seeded, ops in runs:
            if seeded:
                dataset = dataset.map(
                    operations=_WithSeed(ops), input_columns=[column, _SEED], output_columns=[column, _SEED],
                    **self.kwargs,
                )  # fmt: skip
            else:
                dataset = dataset.map(operations=ops, input_columns=column, **self.kwargs)
        return dataset


def create_loader(
    dataset,
    batch_size,
    drop_remainder=False,
    is_training=False,
    mixup=0.0,
    cutmix=0.0,
    cutmix_prob=1.0,
    num_classes=1000,
    transform=None,
    num_parallel_workers=None,
    python_multiprocessing=False,
    separate=False,
):
    """Transform, batch and (for training) mix a `create_dataset` dataset into ("image", "label") batches.

    Images come out float32 NCHW. Labels are int32 class indices, or, when training with `mixup` or `cutmix`
    alpha > 0, float32 (B, num_classes) soft targets summing to 1: per batch, with probability `cutmix_prob`,
    CutMix or Mixup (50/50 when both are on) with lambda ~ Beta(alpha, alpha), as timm's Mixup does.
    Label smoothing belongs to the loss (`create_loss(label_smoothing=...)`), which smooths both kinds of labels.
    With `separate` (training only) `transform` is the (primary, secondary, final) triple from
    `create_transforms(..., separate=True)` and each batch holds B clean images, then B and B more with
    independent secondary augmentation (3B rows), as mindcv's augmentation splits do; the clean third is
    never randomly erased (timm's num_splits behaviour).
    A trailing NormalizeCHW (+ RandomErasing) runs after batching, fused with Mixup/CutMix (see _BatchStage).
    Every random draw (create_transforms' ops, Mixup/CutMix) comes from per-sample seeds: for a `create_dataset`
    dataset they depend only on (seed, epoch, slot in the epoch), so batches are the same whatever the worker
    count and whether the run was resumed (`set_epoch`). Other datasets get seeds from one sequential stream:
    reproducible from a fresh start only. MindSpore's own random ops in `transform` draw from a process-wide
    stream and make batches unrepeatable (with a warning).
    """
    workers = clamp_workers(num_parallel_workers)
    if transform is None:
        warnings.warn("create_loader got no transform; using the default ImageNet eval transform.")
        transform = create_transforms("imagenet", is_training=False)
    use_mix = is_training and (mixup > 0 or cutmix > 0) and batch_size > 1
    mix = Mixup(mixup, cutmix, prob=cutmix_prob, num_classes=num_classes) if use_mix else None
    separate = separate and is_training
    if separate and not (isinstance(transform, tuple) and len(transform) == 3):
        raise ValueError(
            "separate=True needs transform=(primary, secondary, final), from create_transforms(..., separate=True)."
        )
    ops = [op for stage in transform for op in stage] if separate else list(transform)
    needs_seed = use_mix or separate or any(isinstance(op, SeededTransform) for op in ops)
    if is_training:
        _warn_unseeded_random_ops(ops)

    apply = _Mapper(workers, python_multiprocessing)
    if separate:
        primary, secondary, final = transform
        # salts: each op's position in primary + secondary + final; the second augmented copy is offset by
        # len(ops) so that its random draws differ from the first copy's
        first, second = len(primary), len(primary) + len(ops)
        last = len(primary) + len(secondary)
        dataset, fused = _with_seeds(dataset, primary)
        dataset = apply(dataset, primary[fused:], "image", fused)
        duplicate = ds_transforms.Duplicate()
        dataset = dataset.map(duplicate, input_columns=["image"], output_columns=["image_clean", "image_aug1"])
        dataset = dataset.map(duplicate, input_columns=["image_aug1"], output_columns=["image_aug1", "image_aug2"])
        dataset = apply(dataset, secondary, "image_aug1", first)
        dataset = apply(dataset, secondary, "image_aug2", second)
        dataset = apply(dataset, [op for op in final if not isinstance(op, RandomErasing)], "image_clean", last)
        dataset = apply(dataset, final, "image_aug1", last)
        dataset = apply(dataset, final, "image_aug2", last + len(ops))
        dataset = dataset.project(["image_clean", "image_aug1", "image_aug2", "label", _SEED])
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_workers=workers)
        dataset = dataset.map(
            operations=_concat_splits,
            input_columns=["image_clean", "image_aug1", "image_aug2", "label", _SEED],
            output_columns=["image", "label", _SEED],
            num_parallel_workers=workers,
        )
    else:
        tail = _split_batch_tail(ops)
        per_image = ops if tail is None else ops[:tail]
        fused = 0
        if needs_seed:
            dataset, fused = _with_seeds(dataset, per_image)
        dataset = apply(dataset, per_image[fused:], "image", fused)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_workers=workers)
        if tail is not None:
            erasers = [(op, salt) for salt, op in enumerate(ops[tail + 1 :], start=tail + 1)]
            batch_stage = _BatchStage(ops[tail], erasers, mix)
            columns = ["image", "label", _SEED] if needs_seed else ["image", "label"]
            dataset = dataset.map(
                operations=batch_stage, input_columns=columns, output_columns=["image", "label"],
                num_parallel_workers=workers,
            )  # fmt: skip
            mix = None
    if mix is not None:
        dataset = dataset.map(
            operations=mix, input_columns=["image", "label", _SEED], output_columns=["image", "label"],
            num_parallel_workers=workers,
        )  # fmt: skip
    return dataset.project(["image", "label"])
