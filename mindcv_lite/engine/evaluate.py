"""Top-1 / top-5 / loss over a dataset, reduced across ranks; `validate(args)` is validate.py."""
import json
import logging
import os
import time

import numpy as np

from ..data import create_dataset, create_loader, create_transforms
from ..loss import create_loss
from ..models import CheckpointMismatchError, create_model, read_checkpoint
from ..models.checkpoint import CLASS_NAMES_KEY, checkpoint_num_classes, load_state, model_state
from ..utils.io import atomic_path
from .data_config import apply_data_config
from .interruption import keep_sigterm_handler
from .mixed_precision import FLOAT16_DEVICES, apply_mixed_precision
from .progress import setup_logging
from .runtime import all_reduce_sum, compile_settings, launched_by_msrun, setup_runtime, warn_once
from .train_step import EvalStep

__all__ = ["create_eval_loader", "evaluate", "validate"]

_logger = logging.getLogger(__name__)


def create_eval_loader(args, runtime, split):
    """The validation split as batches: resize, centre crop, normalise; sharded over ranks; in file order, or
    shuffled with `eval_shuffle` (seeded by `seed`)."""
    dataset = create_dataset(args.dataset, root=args.data_dir, split=split, shuffle=args.eval_shuffle,
                             num_samples=args.num_samples, num_shards=runtime.world_size if runtime.distributed
                             else None, shard_id=runtime.rank if runtime.distributed else None,
                             num_parallel_workers=args.num_parallel_workers, download=args.dataset_download,
                             seed=args.seed)
    transform = create_transforms(args.dataset, image_resize=args.image_resize, is_training=False,
                                  crop_pct=args.crop_pct, interpolation=args.interpolation, mean=args.mean,
                                  std=args.std)
    loader = create_loader(dataset, args.batch_size, drop_remainder=False, is_training=False, transform=transform,
                           num_parallel_workers=args.num_parallel_workers)
    return dataset, loader


def evaluate(eval_step, loader, runtime, should_stop=None):
    """{top1, top5 (fractions), loss (mean), num_images, images_per_s, seconds} of `eval_step` over `loader`, or
    None when `should_stop()` (asked after each batch) ended it early on any rank.

    In a distributed run every rank evaluates its shard and the sums are all-reduced (once, stopped or not); shards
    are padded to equal length, so up to world_size - 1 images count twice.
    """
    eval_step.set_train(False)
    sums = np.zeros(5)  # loss, top-1, top-5, images, ranks stopped early
    start = time.perf_counter()
    for images, labels in keep_sigterm_handler(loader.create_tuple_iterator(num_epochs=1)):
        loss, top1, top5 = eval_step(images, labels)
        sums[:4] += (float(loss.asnumpy()), float(top1.asnumpy()), float(top5.asnumpy()), labels.shape[0])
        if should_stop is not None and should_stop():
            sums[4] = 1
            break
    seconds = time.perf_counter() - start
    if runtime.distributed:
        sums = all_reduce_sum(sums)
    loss_sum, top1, top5, count, stopped = sums
    if stopped:
        return None
    if count == 0:
        raise ValueError("the validation set yielded no images")
    return {"top1": top1 / count, "top5": top5 / count, "loss": loss_sum / count, "num_images": int(count),
            "images_per_s": count / max(seconds, 1e-9), "seconds": seconds}


def _check_class_names(path, entries, class_names):
    saved = entries.get(CLASS_NAMES_KEY)
    if saved is not None and json.loads(saved) != list(class_names):
        raise CheckpointMismatchError(
            f"{path!r} was trained on other classes than the class folders of the validation set "
            f"(checkpoint: {json.loads(saved)[:5]}..., dataset: {list(class_names)[:5]}...): the labels would not "
            "match. Point --data_dir at the dataset the model was trained on")


def validate(args):
    """Evaluate `args.ckpt_path` on `args.val_split` of `args.data_dir`; returns the metrics dict."""
    distribute = args.distribute and launched_by_msrun()
    if args.distribute and not distribute:
        # The recipes set `distribute: True` for training; validating them with plain python must still work.
        _logger.info("distribute=True but not started by msrun: validating in this single process")
    runtime = setup_runtime(args.mode, args.device_target, distribute, args.seed, *compile_settings(args))
    if runtime.distributed:
        setup_logging(runtime.rank, runtime.world_size)
    if not args.ckpt_path:
        raise ValueError("--ckpt_path is required: validating random weights gives ~0.1% top-1. Pass the "
                         "checkpoint to evaluate (ours or mindcv's)")
    if not os.path.isfile(args.ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {args.ckpt_path!r} does not exist")
    amp_level = args.val_amp_level  # mindcv's validate.py key; training's own validation follows amp_level
    if amp_level != "O0" and runtime.device_target not in FLOAT16_DEVICES:
        warn_once(f"val_amp_level={amp_level} is for Ascend/GPU (float16 is slower on CPU): evaluating in float32 "
                  "(O0)")
        amp_level = "O0"
    apply_data_config(args)
    dataset, loader = create_eval_loader(args, runtime, args.val_split)
    num_classes = args.num_classes or dataset.num_classes()
    model = create_model(args.model, num_classes=num_classes, in_channels=args.in_channels,
                         img_size=args.image_resize)
    entries = read_checkpoint(args.ckpt_path)
    _check_class_names(args.ckpt_path, entries, dataset.class_names)
    state = model_state(model, entries, use_ema=args.ema)
    checkpoint_classes = checkpoint_num_classes(model, state)
    if checkpoint_classes not in (None, num_classes):
        raise CheckpointMismatchError(
            f"{args.ckpt_path!r} classifies {checkpoint_classes} classes but the model is built for num_classes="
            f"{num_classes}{' (the class folders of the dataset)' if not args.num_classes else ''}: pass "
            f"--num_classes {checkpoint_classes} if the dataset's labels are the checkpoint's")
    load_state(model, state, args.ckpt_path)
    apply_mixed_precision(model, amp_level)
    loss_fn = create_loss(args.loss, reduction="mean", label_smoothing=args.label_smoothing)
    metrics = evaluate(EvalStep(model, loss_fn, num_classes), loader, runtime)
    _logger.info("%s on %s (%s): top-1 %.2f%%  top-5 %.2f%%  loss %.4f  %d images  %.1f img/s", args.model,
                 os.path.join(args.data_dir, args.val_split), args.ckpt_path, 100 * metrics["top1"],
                 100 * metrics["top5"], metrics["loss"], metrics["num_images"], metrics["images_per_s"])
    if args.output_json and runtime.is_main:
        with atomic_path(args.output_json) as tmp:
            with open(tmp, "w") as f:
                json.dump(dict(metrics, model=args.model, ckpt_path=args.ckpt_path), f, indent=1)
    return metrics
