"""Batches for train.py / validate.py: transforms, batching, Mixup/CutMix (mindcv's `create_loader`)."""
import random
import warnings

import numpy as np
import mindspore.dataset as ds
from mindspore.dataset import transforms as ds_transforms

from .mixup import Mixup
from .seeded import SeededTransform
from .transforms import NormalizeCHW, RandomErasing, create_transforms
from .workers import clamp_workers

__all__ = ["create_loader"]

_SEED = "aug_seed"


class _SeedStream:
    """Adds an int64 seed column; runs on one worker so seeds follow row order, hence are reproducible."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, label):
        return label, np.int64(self.rng.integers(2**62))


def _concat_splits(clean, aug1, aug2, labels, seeds):
    return np.concatenate((clean, aug1, aug2)), np.concatenate((labels, labels, labels)), np.concatenate((seeds, seeds, seeds))


def _split_batch_tail(ops):
    """(per-image ops, NormalizeCHW or None, erasers): a trailing NormalizeCHW [+ RandomErasing ...] moves to
    the batch stage, where it costs a fraction of the per-image path (see NormalizeCHW)."""
    for index in range(len(ops) - 1, -1, -1):
        if isinstance(ops[index], NormalizeCHW):
            tail = ops[index + 1 :]
            if all(isinstance(op, RandomErasing) for op in tail):
                return ops[:index], ops[index], tail
            break
        if not isinstance(ops[index], RandomErasing):
            break
    return ops, None, []


class _BatchStage:
    """Whole-batch tail of the pipeline: normalise uint8 NHWC to float32 NCHW, erase per sample, mix, in place."""

    def __init__(self, normalize, erasers, mixup):
        self.normalize = normalize
        self.erasers = erasers
        self.mixup = mixup

    def __call__(self, images, labels, seeds=None):
        images = self.normalize.batch(images)
        if self.erasers:
            for image, seed in zip(images, seeds):
                rng = random.Random(int(seed))
                for eraser in self.erasers:
                    eraser.erase_(image, rng)
        if self.mixup is not None:
            images, labels = self.mixup(images, labels, seeds)
        return images, labels


class _Mapper:
    """Applies transform lists to a column, giving seeded transforms the seed column alongside."""

    def __init__(self, num_parallel_workers, python_multiprocessing):
        self.kwargs = dict(num_parallel_workers=num_parallel_workers, python_multiprocessing=python_multiprocessing)

    def __call__(self, dataset, operations, column):
        pending = []
        for op in operations:
            if isinstance(op, SeededTransform):
                if pending:
                    dataset = dataset.map(operations=pending, input_columns=column, **self.kwargs)
                    pending = []
                dataset = dataset.map(
                    operations=op, input_columns=[column, _SEED], output_columns=[column, _SEED], **self.kwargs
                )
            else:
                pending.append(op)
        if pending:
            dataset = dataset.map(operations=pending, input_columns=column, **self.kwargs)
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
    Random Python transforms and Mixup draw from per-sample seeds derived from mindspore.dataset.config's
    seed (and the shard id), so a run is reproducible for a fixed worker count.
    """
    workers = clamp_workers(num_parallel_workers)
    if transform is None:
        warnings.warn("create_loader got no transform; using the default ImageNet eval transform.")
        transform = create_transforms("imagenet", is_training=False)
    use_mix = is_training and (mixup > 0 or cutmix > 0) and batch_size > 1
    mix = Mixup(mixup, cutmix, prob=cutmix_prob, num_classes=num_classes) if use_mix else None
    separate = separate and is_training
    if separate and not (isinstance(transform, tuple) and len(transform) == 3):
        raise ValueError("separate=True needs transform=(primary, secondary, final), from create_transforms(..., separate=True).")
    ops = [op for stage in transform for op in stage] if separate else list(transform)
    per_image, normalize, erasers = ([], None, []) if separate else _split_batch_tail(ops)
    needs_seed = use_mix or separate or any(isinstance(op, SeededTransform) for op in ops)

    if needs_seed:
        seed = [ds.config.get_seed(), getattr(dataset, "shard_id", 0)]
        dataset = dataset.map(
            operations=_SeedStream(seed), input_columns=["label"], output_columns=["label", _SEED],
            num_parallel_workers=1, python_multiprocessing=False,
        )  # fmt: skip
    apply = _Mapper(workers, python_multiprocessing)
    if separate:
        primary, secondary, final = transform
        dataset = apply(dataset, primary, "image")
        duplicate = ds_transforms.Duplicate()
        dataset = dataset.map(operations=duplicate, input_columns=["image"], output_columns=["image_clean", "image_aug1"])
        dataset = dataset.map(operations=duplicate, input_columns=["image_aug1"], output_columns=["image_aug1", "image_aug2"])
        dataset = apply(dataset, secondary, "image_aug1")
        dataset = apply(dataset, secondary, "image_aug2")
        dataset = apply(dataset, [op for op in final if not isinstance(op, RandomErasing)], "image_clean")
        dataset = apply(dataset, final, "image_aug1")
        dataset = apply(dataset, final, "image_aug2")
        dataset = dataset.project(["image_clean", "image_aug1", "image_aug2", "label", _SEED])
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_workers=workers)
        dataset = dataset.map(
            operations=_concat_splits,
            input_columns=["image_clean", "image_aug1", "image_aug2", "label", _SEED],
            output_columns=["image", "label", _SEED],
            num_parallel_workers=workers,
        )
    else:
        dataset = apply(dataset, per_image, "image")
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_workers=workers)
        if normalize is not None:
            columns = ["image", "label", _SEED] if needs_seed else ["image", "label"]
            dataset = dataset.map(
                operations=_BatchStage(normalize, erasers, mix), input_columns=columns,
                output_columns=["image", "label"], num_parallel_workers=workers,
            )  # fmt: skip
            mix = None
    if mix is not None:
        dataset = dataset.map(
            operations=mix, input_columns=["image", "label", _SEED], output_columns=["image", "label"],
            num_parallel_workers=workers,
        )  # fmt: skip
    return dataset.project(["image", "label"])
