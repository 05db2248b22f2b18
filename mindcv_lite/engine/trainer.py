"""`train(args)`: train.py's whole run, reading like the data flow.

config -> dataset/transforms/loader -> model -> loss/optimizer/scheduler -> TrainStep -> epochs of steps, with
progress, validation, checkpoints and metrics as callbacks (engine/callbacks.py). A new feature is one step
here or one callback in `_create_callbacks`.
"""
import logging
import math
import os
import sys


from ..data import create_dataset, create_loader, create_transforms, set_epoch
from ..loss import DistillationLoss, create_loss
from ..models import CheckpointMismatchError, create_model, read_checkpoint
from ..optim import create_optimizer, freeze_parameters
from ..scheduler import create_scheduler
from ..utils.config import save_config
from .callbacks import (CallbackList, EpochCheckpoints, EpochLog, MetricsLog, Progress, RunContext, StepCheckpoints,
                        Validation, WeightsInSync)
from .checkpointing import (CheckpointManager, check_checkpoint_dir, load_train_checkpoint, save_train_checkpoint,
                            train_state_bytes)
from .data_config import apply_data_config
from .curves import Curves
from .distillation import check_distillation_args, create_teacher
from .evaluate import create_eval_loader
from .feeding import SINK_DEVICES, create_feed
from .interruption import keep_sigterm_handler
from .mixed_precision import FLOAT16_DEVICES, apply_mixed_precision, check_amp_args
from .progress import LossMeter, setup_logging
from .runtime import compile_settings, setup_runtime, warn_once
from .train_step import EvalStep, TrainStep

__all__ = ["train"]

_logger = logging.getLogger(__name__)


def _check_args(args, runtime):
    """Refuse settings this engine cannot honour; degrade Ascend-only ones on CPU with one warning."""
    check_amp_args(args.amp_level, args.amp_cast_list)
    if args.reduction != "mean":
        raise ValueError(f"reduction={args.reduction!r}: training needs a scalar loss, use reduction: mean")
    check_distillation_args(args)
    if args.aug_splits and not args.auto_augment:
        raise ValueError("aug_splits 3 feeds a clean and two auto-augmented views of every sample: set auto_augment "
                         "(e.g. randaug-m9-mstd0.5-inc1), or aug_splits 0")
    _resume_opt_as_resume(args)
    if args.ckpt_save_policy == "top_k" and not args.val_while_train:
        raise ValueError("ckpt_save_policy top_k ranks checkpoints by validation top-1: set val_while_train True "
                         "or use latest_k")
    if args.resume and args.ckpt_path:
        raise ValueError("give either --resume (continue a run: weights, optimizer, epoch) or --ckpt_path "
                         "(start a new run from weights), not both")
    if args.epoch_size < 1:
        raise ValueError(f"epoch_size must be >= 1, got {args.epoch_size}")
    if args.ckpt_save_steps < 0:
        raise ValueError(f"ckpt_save_steps must be >= 0 (0 = no mid-epoch checkpoints), got {args.ckpt_save_steps}")
    if runtime.device_target not in FLOAT16_DEVICES:
        if args.amp_level != "O0":
            warn_once(f"amp_level={args.amp_level}{' with amp_cast_list' if args.amp_cast_list else ''} is for "
                      "Ascend/GPU (float16 is slower on CPU): training in float32 (O0)")
            args.amp_level, args.amp_cast_list = "O0", None
    if args.dataset_sink_mode and runtime.device_target not in SINK_DEVICES:
        warn_once(f"dataset_sink_mode is not available on {runtime.device_target}: feeding batches from the host")
    if args.recompute and args.mode == 0 and runtime.device_target == "CPU":
        # MindSpore 2.10's CPU graph runtime frees few intermediate buffers of a compiled step before the step ends
        warn_once("recompute saves little memory in graph mode on CPU (MindSpore 2.10 keeps most intermediates of "
                  "the compiled step; pvt_small batch 16: -14%): in --mode 1 (PyNative) it saves about half")


def _resume_opt_as_resume(args):
    """mindcv's `resume_opt: True` with `ckpt_path: P` continues the run saved in P: here that is `--resume P`.

    The resolved config then reads `resume: P` (a `-c config.yaml` rerun resumes the same way)."""
    if not args.resume_opt:
        return
    if not args.ckpt_path:
        raise ValueError("resume_opt True continues the run saved in ckpt_path (optimizer state, learning rate, "
                         "epoch): set ckpt_path, or use --resume PATH / --resume auto")
    if args.resume:
        raise ValueError("give either --resume, or resume_opt True with ckpt_path (mindcv's spelling), not both")
    _logger.info("resume_opt: continuing the run saved in %s (as --resume %s)", args.ckpt_path, args.ckpt_path)
    args.resume, args.ckpt_path, args.resume_opt = args.ckpt_path, "", False


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
                             download=args.dataset_download, seed=args.seed)
    transform = create_transforms(
        args.dataset, image_resize=args.image_resize, is_training=True, scale=args.scale, ratio=args.ratio,
        hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter, interpolation=args.interpolation,
        auto_augment=args.auto_augment, mean=args.mean, std=args.std, re_prob=args.re_prob, re_scale=args.re_scale,
        re_ratio=args.re_ratio, re_value=args.re_value, re_max_attempts=args.re_max_attempts,
        separate=args.aug_splits > 0)
    num_classes = args.num_classes or dataset.num_classes()
    if dataset.num_classes() > num_classes:
        raise ValueError(f"the training set has {dataset.num_classes()} class folders but num_classes="
                         f"{num_classes}: set num_classes to at least {dataset.num_classes()} (or leave it unset)")
    loader = create_loader(dataset, args.batch_size, drop_remainder=args.drop_remainder, is_training=True,
                           mixup=args.mixup, cutmix=args.cutmix, cutmix_prob=args.cutmix_prob,
                           num_classes=num_classes, transform=transform,
                           num_parallel_workers=args.num_parallel_workers, separate=args.aug_splits > 0)
    steps = loader.get_dataset_size()
    if steps == 0:
        raise ValueError(f"the training set ({args.data_dir}/{args.train_split}) gives no batch of "
                         f"batch_size={args.batch_size} per device with drop_remainder=True: lower batch_size or "
                         "set drop_remainder False")
    return dataset, loader, num_classes, steps


def _setup_run(args):
    """Device, mode, msrun, seeds; logging to the checkpoint folder; settings this engine refuses."""
    runtime = setup_runtime(args.mode, args.device_target, args.distribute, args.seed, *compile_settings(args))
    check_checkpoint_dir(args.ckpt_save_dir)  # it also holds the log
    log_name = "train.log" if not runtime.distributed else f"train_rank{runtime.rank}.log"
    setup_logging(runtime.rank, runtime.world_size, os.path.join(args.ckpt_save_dir, log_name))
    _check_args(args, runtime)
    return runtime


def _create_train_model(args, num_classes):
    model = create_model(args.model, num_classes=num_classes, pretrained=args.pretrained,
                         in_channels=args.in_channels, checkpoint_path=args.ckpt_path, drop_rate=args.drop_rate,
                         drop_path_rate=args.drop_path_rate, img_size=args.image_resize)
    apply_mixed_precision(model, args.amp_level, args.amp_cast_list)
    if args.recompute:
        model.set_grad_checkpointing()
    freeze_parameters(model, args.freeze_backbone, args.freeze_stages)
    return model


def _create_teacher(args, model, num_classes):
    """Knowledge distillation: the frozen teacher (None without distillation); a distilled student (two heads)
    is switched to return both in training, any other distils on its single head."""
    if args.distillation_type == "none":
        return None
    teacher = create_teacher(args.teacher_model, args.teacher_ckpt, num_classes, args.image_resize, args.in_channels)
    apply_mixed_precision(teacher.model, args.amp_level, args.amp_cast_list)
    two_heads = getattr(model, "head_dist", None) is not None
    if two_heads:
        model.set_distilled_training(True)
    _logger.info("Distilling from %s (%s): %s, alpha %g, tau %g, on the %s", args.teacher_model, args.teacher_ckpt,
                 args.distillation_type, args.distillation_alpha, args.distillation_tau,
                 "distillation head" if two_heads else "student's only head")
    return teacher


def _create_train_step(args, model, runtime, steps_per_epoch, teacher=None):
    """Loss, lr schedule, optimizer and the compiled step; returns (train_step, optimizer, lr schedule)."""
    loss_fn = create_loss(args.loss, reduction=args.reduction, label_smoothing=args.label_smoothing)
    if teacher is not None:
        loss_fn = DistillationLoss(loss_fn, args.distillation_type, args.distillation_alpha, args.distillation_tau)
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
                           distributed=runtime.distributed, teacher=teacher)
    return train_step, optimizer, lr


def _check_checkpoint_room(args, ctx):
    """Rank 0 writes the checkpoints: their folder must have room for two of them."""
    if ctx.runtime.is_main:
        check_checkpoint_dir(args.ckpt_save_dir, train_state_bytes(ctx.train_step))


def _newest_readable_checkpoint(manager):
    """(path, entries) of the newest checkpoint in the index that can be read; a damaged one is skipped with a
    warning naming it. (None, None) when there is none."""
    for path in manager.resume_candidates():
        try:
            return path, read_checkpoint(path)
        except (OSError, ValueError) as error:
            _logger.warning("--resume auto: skipping %s, it cannot be read (%s); trying the previous checkpoint",
                            path, str(error).splitlines()[0])
            manager.forget(path)
    return None, None


def _restore_training_state(args, ctx, manager):
    """With --resume: load the checkpoint into the train step and move `ctx` to its step. True if resumed.

    `--resume auto` takes the newest readable checkpoint of ckpt_save_dir; `--resume PATH` that file or an error.
    """
    if not args.resume:
        return False
    if args.resume == "auto":
        path, entries = _newest_readable_checkpoint(manager)
        if path is None:
            _logger.info("--resume auto: no checkpoint in %s, starting a new run", args.ckpt_save_dir)
            return False
    else:
        if not os.path.isfile(args.resume):
            raise FileNotFoundError(f"--resume {args.resume!r} does not exist (use --resume auto for the latest "
                                    f"checkpoint in ckpt_save_dir)")
        path, entries = args.resume, read_checkpoint(args.resume)
    ctx.start_epoch, ctx.global_step = load_train_checkpoint(path, ctx.train_step, ctx.model, args.model,
                                                             ctx.class_names, entries=entries)
    if not 0 <= ctx.global_step - ctx.start_epoch * ctx.steps_per_epoch < ctx.steps_per_epoch:
        raise CheckpointMismatchError(
            f"cannot resume from {path!r}: it stopped at step {ctx.global_step} after {ctx.start_epoch} epochs, but "
            f"an epoch of this run has {ctx.steps_per_epoch} steps: resume with the training set and batch_size "
            "(and number of devices) it was trained with")
    _logger.info("Resumed from %s: %d epochs and %d steps done (global step %d)", path, ctx.start_epoch,
                 ctx.global_step - ctx.start_epoch * ctx.steps_per_epoch, ctx.global_step)
    return True


def _save_train_state(path, ctx):
    return save_train_checkpoint(path, ctx.train_step, ctx.model, ctx.args.model,
                                 ctx.global_step // ctx.steps_per_epoch, ctx.global_step, ctx.class_names)


def _create_callbacks(args, ctx, manager, num_classes, resumed):
    """The run's features in the order their on_epoch_end needs: each reads what the earlier ones recorded."""
    callbacks = [Progress(args.log_interval, use_bar=sys.stdout.isatty() and ctx.runtime.is_main)]
    if args.val_while_train:
        val_loader = create_eval_loader(args, ctx.runtime, args.val_split)[1]
        eval_step = EvalStep(ctx.model, create_loss(args.loss, label_smoothing=args.label_smoothing), num_classes)
        callbacks.append(Validation(eval_step, val_loader, args.val_interval))
    callbacks += [EpochLog(), EpochCheckpoints(manager, _save_train_state),
                  MetricsLog(os.path.join(args.ckpt_save_dir, "metrics.jsonl"), append=resumed),
                  Curves(args.ckpt_save_dir),
                  StepCheckpoints(manager, _save_train_state, args.ckpt_save_steps, ctx.runtime.distributed),
                  WeightsInSync()]
    return CallbackList(callbacks)


def _run_epochs(ctx, loader, callbacks):
    """The loop: epochs of steps from where `ctx` stands; callbacks do everything else."""
    args = ctx.args
    ctx.losses = LossMeter(ctx.steps_per_epoch, ctx.global_step, nonfinite_ok=ctx.train_step.check_overflow,
                           checkpoint_dir=args.ckpt_save_dir)
    # Batches (order and augmentation) depend only on (seed, epoch, position): start where the checkpoint stopped.
    skip_batches = ctx.global_step - ctx.start_epoch * ctx.steps_per_epoch
    set_epoch(loader, ctx.start_epoch, skip_batches=skip_batches)
    feed = create_feed(loader, ctx.train_step, ctx.num_epochs - ctx.start_epoch, ctx.steps_per_epoch, skip_batches,
                       args.dataset_sink_mode, ctx.runtime.device_target)
    accumulation = args.gradient_accumulation_steps
    with callbacks:
        callbacks.on_train_begin(ctx)
        for epoch in range(ctx.start_epoch + 1, ctx.num_epochs + 1):
            ctx.epoch, ctx.record = epoch, {}
            ctx.train_step.set_train(True)
            callbacks.on_epoch_begin(ctx)
            for run_step in keep_sigterm_handler(feed.epoch()):
                ctx.global_step += 1
                loss, overflow = run_step(ctx.global_step % accumulation == 0)
                ctx.losses.update(loss, overflow)
                callbacks.on_step_end(ctx)
            callbacks.on_epoch_end(ctx)
        callbacks.on_train_end(ctx)
    return ctx.record


def train(args):
    """Train as configured by `args` (from `mindcv_lite.utils.config.parse_args`); returns the last metrics."""
    runtime = _setup_run(args)
    apply_data_config(args)
    train_set, loader, num_classes, steps_per_epoch = _create_train_loader(args, runtime)
    model = _create_train_model(args, num_classes)
    teacher = _create_teacher(args, model, num_classes)
    train_step, optimizer, lr = _create_train_step(args, model, runtime, steps_per_epoch, teacher)
    ctx = RunContext(args, runtime, model, train_step, optimizer, lr, train_set, steps_per_epoch)
    manager = CheckpointManager(args.ckpt_save_dir, args.model, args.keep_checkpoint_max, args.ckpt_save_policy,
                                args.ckpt_save_interval, resume=bool(args.resume))
    resumed = _restore_training_state(args, ctx, manager)
    _check_checkpoint_room(args, ctx)
    callbacks = _create_callbacks(args, ctx, manager, num_classes, resumed)
    if runtime.is_main:
        save_config(args, os.path.join(args.ckpt_save_dir, "config.yaml"))
    _logger.info("Training %s (%d classes) on %s: %d epochs x %d steps of %d images, %s, %s", args.model,
                 num_classes, runtime.device_target, args.epoch_size, steps_per_epoch, ctx.images_per_step,
                 f"{runtime.world_size} workers" if runtime.distributed else "1 worker",
                 "graph mode" if args.mode == 0 else "pynative mode")
    if ctx.start_epoch >= args.epoch_size:
        _logger.info("Nothing to do: the checkpoint already finished epoch %d of %d", ctx.start_epoch,
                     args.epoch_size)
        return {}
    return _run_epochs(ctx, loader, callbacks)
