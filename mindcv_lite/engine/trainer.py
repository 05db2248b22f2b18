"""`train(args)`: train.py's whole run, reading like the data flow.

config -> dataset/transforms/loader -> model -> loss/optimizer/scheduler -> TrainStep -> epochs of steps,
validation, checkpoints and metrics.
"""
import logging
import math
import os
import sys

import mindspore as ms

from ..data import create_dataset, create_loader, create_transforms, set_epoch
from ..loss import create_loss
from ..models import create_model
from ..optim import create_optimizer
from ..scheduler import create_scheduler
from ..utils.config import save_config
from .checkpointing import CheckpointManager, load_train_checkpoint, save_train_checkpoint
from .evaluate import create_eval_loader, evaluate
from .progress import EpochProgress, MetricsWriter, setup_logging
from .runtime import check_weights_in_sync, setup_runtime, warn_once
from .train_step import EvalStep, TrainStep

__all__ = ["NonFiniteLossError", "train"]

_logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf and no loss scaling was set up to skip such steps."""


def _check_args(args, runtime):
    """Refuse settings this engine cannot honour; degrade Ascend-only ones on CPU with one warning."""
    if args.amp_cast_list:
        raise ValueError(f"amp_cast_list={args.amp_cast_list!r} is not supported: remove it to use MindSpore's "
                         "default cast lists for amp_level")
    if args.reduction != "mean":
        raise ValueError(f"reduction={args.reduction!r}: training needs a scalar loss, use reduction: mean")
    if args.ckpt_save_policy == "top_k" and not args.val_while_train:
        raise ValueError("ckpt_save_policy top_k ranks checkpoints by validation top-1: set val_while_train True "
                         "or use latest_k")
    if args.resume and args.ckpt_path:
        raise ValueError("give either --resume (continue a run: weights, optimizer, epoch) or --ckpt_path "
                         "(start a new run from weights), not both")
    if args.epoch_size < 1:
        raise ValueError(f"epoch_size must be >= 1, got {args.epoch_size}")
    if runtime.device_target == "CPU":
        if args.amp_level in ("O2", "O3", "O1", "auto"):
            warn_once(f"amp_level={args.amp_level} is for Ascend/GPU (float16 is slower on CPU): training in "
                      "float32 (O0)")
            args.amp_level = "O0"
        if args.dataset_sink_mode:
            warn_once("dataset_sink_mode is not available on CPU: feeding batches from the host")
    elif args.dataset_sink_mode:
        warn_once("dataset_sink_mode: mindcv_lite's engine feeds batches from the host on every device")


def _loss_scale_settings(args):
    """(initial scale, dynamic, drop_overflow_update) from mindcv's loss_scale_type."""
    loss_scale_type = args.loss_scale_type
    if loss_scale_type == "auto":
        loss_scale_type = "fixed" if args.amp_level == "O0" else "dynamic"
    if loss_scale_type == "dynamic":
        return args.loss_scale, True, True
    return args.loss_scale, False, args.drop_overflow_update


def _create_train_loader(args, runtime):
    dataset = create_dataset(args.dataset, root=args.data_dir, split=args.train_split, shuffle=args.shuffle,
                             num_samples=args.num_samples,
                             num_shards=runtime.world_size if runtime.distributed else None,
                             shard_id=runtime.rank if runtime.distributed else None,
                             num_parallel_workers=args.num_parallel_workers, num_aug_repeats=args.aug_repeats,
                             seed=args.seed)
    transform = create_transforms(
        args.dataset, image_resize=args.image_resize, is_training=True, scale=args.scale, ratio=args.ratio,
        hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter, interpolation=args.interpolation,
        auto_augment=args.auto_augment, mean=args.mean, std=args.std, re_prob=args.re_prob, re_scale=args.re_scale,
        re_ratio=args.re_ratio, re_value=args.re_value, re_max_attempts=args.re_max_attempts)
    num_classes = args.num_classes or dataset.num_classes()
    if dataset.num_classes() > num_classes:
        raise ValueError(f"the training set has {dataset.num_classes()} class folders but num_classes="
                         f"{num_classes}: set num_classes to at least {dataset.num_classes()} (or leave it unset)")
    loader = create_loader(dataset, args.batch_size, drop_remainder=args.drop_remainder, is_training=True,
                           mixup=args.mixup, cutmix=args.cutmix, cutmix_prob=args.cutmix_prob,
                           num_classes=num_classes, transform=transform,
                           num_parallel_workers=args.num_parallel_workers)
    steps = loader.get_dataset_size()
    if steps == 0:
        raise ValueError(f"the training set ({args.data_dir}/{args.train_split}) gives no batch of "
                         f"batch_size={args.batch_size} per device with drop_remainder=True: lower batch_size or "
                         "set drop_remainder False")
    return dataset, loader, num_classes, steps


def _resume_path(args, manager):
    if args.resume != "auto":
        if not os.path.isfile(args.resume):
            raise FileNotFoundError(f"--resume {args.resume!r} does not exist (use --resume auto for the latest "
                                    f"checkpoint in ckpt_save_dir)")
        return args.resume
    path = manager.latest()
    if path is None:
        _logger.info("--resume auto: no checkpoint index in %s, starting a new run", args.ckpt_save_dir)
    return path


def _evaluate_weights(train_step, eval_step, val_loader, runtime):
    """Validate the model, with the EMA weights swapped in when EMA is on."""
    if not train_step.ema:
        return evaluate(eval_step, val_loader, runtime)
    saved = [param.asnumpy() for param in train_step.ema_source]
    for param, ema in zip(train_step.ema_source, train_step.ema_weights):
        param.set_data(ms.Tensor(ema.asnumpy()))
    try:
        return evaluate(eval_step, val_loader, runtime)
    finally:
        for param, value in zip(train_step.ema_source, saved):
            param.set_data(ms.Tensor(value))


def _last_lr(lr, optimizer):
    """Learning rate of the latest update (the schedule is indexed by the optimizer's global_step)."""
    return lr[min(max(int(optimizer.global_step.asnumpy()[0]) - 1, 0), len(lr) - 1)]


def train(args):
    """Train as configured by `args` (from `mindcv_lite.utils.config.parse_args`); returns the last metrics."""
    runtime = setup_runtime(args.mode, args.device_target, args.distribute, args.seed)
    log_name = "train.log" if not runtime.distributed else f"train_rank{runtime.rank}.log"
    setup_logging(runtime.rank, runtime.world_size, os.path.join(args.ckpt_save_dir, log_name))
    _check_args(args, runtime)

    train_set, loader, num_classes, steps_per_epoch = _create_train_loader(args, runtime)
    val_loader = create_eval_loader(args, runtime, args.val_split)[1] if args.val_while_train else None

    model = create_model(args.model, num_classes=num_classes, pretrained=args.pretrained,
                         in_channels=args.in_channels, checkpoint_path=args.ckpt_path, drop_rate=args.drop_rate,
                         drop_path_rate=args.drop_path_rate, img_size=args.image_resize)
    if args.amp_level != "O0":
        ms.amp.auto_mixed_precision(model, args.amp_level)

    loss_fn = create_loss(args.loss, reduction=args.reduction, label_smoothing=args.label_smoothing,
                          aux_factor=args.aux_factor)
    accumulation = args.gradient_accumulation_steps
    updates_per_epoch = math.ceil(steps_per_epoch / accumulation)
    lr = create_scheduler(updates_per_epoch, args.scheduler, lr=args.lr, min_lr=args.min_lr,
                          warmup_epochs=args.warmup_epochs, warmup_factor=args.warmup_factor,
                          decay_epochs=args.decay_epochs, decay_rate=args.decay_rate,
                          milestones=args.multi_step_decay_milestones, num_epochs=args.epoch_size,
                          num_cycles=args.num_cycles, cycle_decay=args.cycle_decay,
                          lr_epoch_stair=args.lr_epoch_stair)
    optimizer = create_optimizer(model, args.opt, lr=lr, weight_decay=args.weight_decay, momentum=args.momentum,
                                 nesterov=args.use_nesterov, weight_decay_filter=args.weight_decay_filter,
                                 layer_decay=args.layer_decay, eps=args.eps)
    loss_scale, dynamic, drop_overflow = _loss_scale_settings(args)
    train_step = TrainStep(model, loss_fn, optimizer, loss_scale=loss_scale, dynamic_loss_scale=dynamic,
                           drop_overflow_update=drop_overflow, clip_grad=args.clip_grad, clip_value=args.clip_value,
                           accumulation_steps=accumulation, ema=args.ema, ema_decay=args.ema_decay,
                           distributed=runtime.distributed)
    eval_step = EvalStep(model, create_loss(args.loss, label_smoothing=args.label_smoothing), num_classes)

    manager = CheckpointManager(args.ckpt_save_dir, args.model, args.keep_checkpoint_max, args.ckpt_save_policy,
                                args.ckpt_save_interval, resume=bool(args.resume))
    start_epoch, micro_step = 0, 0
    resume_path = _resume_path(args, manager) if args.resume else None
    if resume_path:
        start_epoch, micro_step = load_train_checkpoint(resume_path, train_step, model, args.model,
                                                        train_set.class_names)
        _logger.info("Resumed from %s: epoch %d, step %d", resume_path, start_epoch, micro_step)
    metrics_writer = None
    if runtime.is_main:
        save_config(args, os.path.join(args.ckpt_save_dir, "config.yaml"))
        metrics_writer = MetricsWriter(os.path.join(args.ckpt_save_dir, "metrics.jsonl"), append=bool(resume_path))

    images_per_step = args.batch_size * runtime.world_size
    _logger.info("Training %s (%d classes) on %s: %d epochs x %d steps of %d images, %s, %s", args.model,
                 num_classes, runtime.device_target, args.epoch_size, steps_per_epoch, images_per_step,
                 f"{runtime.world_size} workers" if runtime.distributed else "1 worker",
                 "graph mode" if args.mode == 0 else "pynative mode")
    if start_epoch >= args.epoch_size:
        _logger.info("Nothing to do: the checkpoint already finished epoch %d of %d", start_epoch, args.epoch_size)
        return {}
    use_bar = sys.stdout.isatty() and runtime.is_main
    set_epoch(train_set, start_epoch)  # the data order of an epoch depends only on (seed, epoch)
    batches = loader.create_tuple_iterator(num_epochs=args.epoch_size - start_epoch)
    record = {}
    for epoch in range(start_epoch + 1, args.epoch_size + 1):
        train_step.set_train(True)
        progress = EpochProgress(epoch, args.epoch_size, steps_per_epoch, images_per_step, args.log_interval,
                                 use_bar, _logger)
        skipped = 0
        for images, labels in batches:  # one epoch: the iterator stops at each epoch's end
            micro_step += 1
            loss, overflow = train_step(images, labels, micro_step % accumulation == 0)
            loss = float(loss.asnumpy())
            if not math.isfinite(loss) and not train_step.check_overflow:
                raise NonFiniteLossError(
                    f"loss is {loss} at epoch {epoch}, step {micro_step - (epoch - 1) * steps_per_epoch} (global "
                    f"step {micro_step}): training diverged. The last good checkpoint is in {args.ckpt_save_dir}. "
                    "Lower lr, enable clip_grad, or set loss_scale_type dynamic to skip such steps")
            skipped += bool(overflow)
            progress.update(loss, _last_lr(lr, optimizer))
        summary = progress.close()
        if skipped:
            _logger.warning("epoch %d: %d of %d steps skipped because their gradients overflowed (loss scale now "
                            "%g)", epoch, skipped, steps_per_epoch, float(train_step.scale_sense.asnumpy()))
        record = {"epoch": epoch, "step": micro_step, "loss": summary["loss"],
                  "lr": _last_lr(lr, optimizer),
                  "images_per_s": summary["images_per_s"], "steady_images_per_s": summary["steady_images_per_s"],
                  "seconds": summary["seconds"], "skipped_steps": skipped}
        validate_now = val_loader is not None and (epoch % args.val_interval == 0 or epoch == args.epoch_size)
        if validate_now:
            val = _evaluate_weights(train_step, eval_step, val_loader, runtime)
            record.update({f"val_{key}": value for key, value in val.items() if key != "images_per_s"})
        _logger.info("epoch %d/%d done in %.1f s: loss %.4f, %.1f img/s%s", epoch, args.epoch_size,
                     summary["seconds"], summary["loss"], summary["images_per_s"],
                     f", val top-1 {100 * record['val_top1']:.2f}% top-5 {100 * record['val_top5']:.2f}% "
                     f"loss {record['val_loss']:.4f}" if validate_now else "")
        if runtime.is_main:
            manager.save(lambda path: save_train_checkpoint(path, train_step, model, args.model, epoch, micro_step,
                                                            train_set.class_names),
                         epoch, steps_per_epoch, args.epoch_size, record.get("val_top1"))
            metrics_writer.write(record)
    if runtime.distributed:
        check_weights_in_sync(model, runtime)
    best = manager.manifest.get("best")
    if best:
        _logger.info("Best top-1 %.2f%% at epoch %d: %s", 100 * best["top1"], best["epoch"],
                     os.path.join(args.ckpt_save_dir, best["file"]))
    return record
