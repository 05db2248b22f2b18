"""The training loop's hooks, in the spirit of MindSpore's `Callback`: a feature of `train` is one callback.

`train` enters every callback (`with`, as MindSpore's Model.train does: for set-up that must be undone even when
training fails), then calls, for every callback in list order, `on_train_begin(ctx)` once, per epoch
`on_epoch_begin(ctx)`, `on_step_end(ctx)` after every step and `on_epoch_end(ctx)`, and `on_train_end(ctx)` once
after the last epoch. A callback stops training by raising. `ctx` is the `RunContext`: what the run is made of
(model, train step, loaders, schedule) and where it is (epoch, step, the epoch's metrics record). A callback reads
and adds to it; earlier callbacks' `on_epoch_end` fill `ctx.record` for later ones (progress -> validation -> log
line -> checkpoint -> metrics).
"""
import contextlib
import logging
import os

import mindspore as ms

from .evaluate import evaluate
from .interruption import StopSignals, TrainingStopped
from .progress import EpochProgress, MetricsWriter
from .runtime import all_reduce_sum, check_weights_in_sync

__all__ = ["Callback", "CallbackList", "EpochCheckpoints", "EpochLog", "MetricsLog", "Progress", "RunContext",
           "StepCheckpoints", "Validation", "WeightsInSync"]

_logger = logging.getLogger("mindcv_lite.engine.trainer")


class RunContext:
    """The state of one training run that callbacks share; built by `train`, see its fields below."""

    def __init__(self, args, runtime, model, train_step, optimizer, lr, train_set, steps_per_epoch):
        self.args = args
        self.runtime = runtime
        self.model = model
        self.train_step = train_step
        self.optimizer = optimizer
        self.lr = lr  # the per-update schedule the optimizer indexes with its global_step
        self.train_set = train_set
        self.class_names = train_set.class_names
        self.steps_per_epoch = steps_per_epoch
        self.num_epochs = args.epoch_size
        self.images_per_step = args.batch_size * max(args.aug_splits, 1) * runtime.world_size  # splits: 3 views
        self.losses = None  # `LossMeter` of the step losses (summed on the device), set when the loop starts
        self.start_epoch = 0  # epochs finished before this process started (resume)
        self.epoch = 0  # the epoch in progress (1-based); after on_epoch_end, the one just finished
        self.global_step = 0  # micro-steps (batches) done since the run's first epoch
        self.record = {}  # the metrics of the epoch in progress, written to metrics.jsonl at its end
        self.stop_signals = None  # `StopSignals` while training (StepCheckpoints enters them)

    @property
    def epoch_step(self):
        """Batches done in the epoch in progress."""
        return self.global_step - (self.epoch - 1) * self.steps_per_epoch

    def last_lr(self):
        """Learning rate of the latest update (the schedule is indexed by the optimizer's global_step)."""
        return float(self.lr[min(max(int(self.optimizer.global_step.asnumpy()[0]) - 1, 0), len(self.lr) - 1)])


class Callback:
    """Base class: override the hooks a feature needs."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def on_train_begin(self, ctx):
        pass

    def on_epoch_begin(self, ctx):
        pass

    def on_step_end(self, ctx):
        pass

    def on_epoch_end(self, ctx):
        pass

    def on_train_end(self, ctx):
        pass


class CallbackList(Callback):
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        self.entered = None

    def __enter__(self):
        self.entered = contextlib.ExitStack()
        for callback in self.callbacks:
            self.entered.enter_context(callback)
        return self

    def __exit__(self, *exc_info):
        return self.entered.__exit__(*exc_info)

    def on_train_begin(self, ctx):
        for callback in self.callbacks:
            callback.on_train_begin(ctx)

    def on_epoch_begin(self, ctx):
        for callback in self.callbacks:
            callback.on_epoch_begin(ctx)

    def on_step_end(self, ctx):
        for callback in self.callbacks:
            callback.on_step_end(ctx)

    def on_epoch_end(self, ctx):
        for callback in self.callbacks:
            callback.on_epoch_end(ctx)

    def on_train_end(self, ctx):
        for callback in self.callbacks:
            callback.on_train_end(ctx)


class Progress(Callback):
    """Log lines (or a bar) with the loss every log_interval steps; the epoch's loss, speed and skipped steps.

    The loss is read from the device only here (`ctx.losses.sync()`), which also stops a diverged run.
    """

    def __init__(self, log_interval, use_bar):
        self.log_interval = log_interval
        self.use_bar = use_bar
        self.progress = None

    def on_epoch_begin(self, ctx):
        self.progress = EpochProgress(ctx.epoch, ctx.num_epochs, ctx.steps_per_epoch, ctx.images_per_step,
                                      self.log_interval, self.use_bar, _logger, done=ctx.epoch_step)

    def on_step_end(self, ctx):
        if self.progress.advance():
            ctx.losses.sync()
            self.progress.log(ctx.losses.pop_interval(), ctx.last_lr())

    def on_epoch_end(self, ctx):
        ctx.losses.sync()
        loss, skipped = ctx.losses.pop_epoch()
        summary = self.progress.close(loss)
        if skipped:
            _logger.warning("epoch %d: %d of %d steps skipped because their gradients overflowed (loss scale now "
                            "%g)", ctx.epoch, skipped, ctx.steps_per_epoch,
                            float(ctx.train_step.scale_sense.asnumpy()))
        ctx.record.update({"epoch": ctx.epoch, "step": ctx.global_step, "loss": summary["loss"],
                           "lr": ctx.last_lr(), "images_per_s": summary["images_per_s"],
                           "steady_images_per_s": summary["steady_images_per_s"], "seconds": summary["seconds"],
                           "skipped_steps": skipped})


class Validation(Callback):
    """Top-1/top-5/loss on the validation split every `interval` epochs and after the last, with the EMA
    weights when EMA is on; adds `val_*` to the epoch's record."""

    def __init__(self, eval_step, val_loader, interval):
        self.eval_step = eval_step
        self.val_loader = val_loader
        self.interval = interval

    def on_epoch_end(self, ctx):
        if ctx.epoch % self.interval and ctx.epoch != ctx.num_epochs:
            return
        val = self._evaluate(ctx)
        if val is None:
            _logger.warning("validation of epoch %d interrupted by a stop request: the epoch has no val_* metrics",
                            ctx.epoch)
            return
        ctx.record.update({f"val_{key}": value for key, value in val.items() if key != "images_per_s"})

    def _evaluate(self, ctx):
        """A stop request ends validation at the next batch (a preempted job has seconds, validation can take
        minutes): the training state is what the checkpoint needs."""
        should_stop = None if ctx.stop_signals is None else ctx.stop_signals.received
        train_step = ctx.train_step
        if not train_step.ema:
            return evaluate(self.eval_step, self.val_loader, ctx.runtime, should_stop)
        saved = [param.asnumpy() for param in train_step.ema_source]
        for param, ema in zip(train_step.ema_source, train_step.ema_weights):
            param.set_data(ms.Tensor(ema.asnumpy()))
        try:
            return evaluate(self.eval_step, self.val_loader, ctx.runtime, should_stop)
        finally:
            for param, value in zip(train_step.ema_source, saved):
                param.set_data(ms.Tensor(value))


class EpochLog(Callback):
    """One line per epoch: time, loss, speed, and the validation result when there is one."""

    def on_epoch_end(self, ctx):
        record = ctx.record
        validated = "val_top1" in record
        _logger.info("epoch %d/%d done in %.1f s: loss %.4f, %.1f img/s%s", ctx.epoch, ctx.num_epochs,
                     record["seconds"], record["loss"], record["images_per_s"],
                     f", val top-1 {100 * record['val_top1']:.2f}% top-5 {100 * record['val_top5']:.2f}% "
                     f"loss {record['val_loss']:.4f}" if validated else "")


class EpochCheckpoints(Callback):
    """Rank 0 writes the epoch's checkpoint through `manager` (interval, keep policy, best); names the best
    at the end."""

    def __init__(self, manager, save):
        self.manager = manager
        self.save = save  # save(path, ctx): write the training state of ctx's current step to path

    def on_epoch_end(self, ctx):
        if ctx.runtime.is_main:
            self.manager.save(lambda path: self.save(path, ctx), ctx.epoch, ctx.steps_per_epoch, ctx.num_epochs,
                              ctx.record.get("val_top1"))

    def on_train_end(self, ctx):
        best = self.manager.manifest.get("best")
        if best:
            _logger.info("Best top-1 %.2f%% at epoch %d: %s", 100 * best["top1"], best["epoch"],
                         os.path.join(self.manager.directory, best["file"]))


class StepCheckpoints(Callback):
    """Mid-epoch checkpoints (rank 0): every `save_steps` batches (ckpt_save_steps; 0 = never) and at the step
    where SIGTERM/SIGINT arrived, after which every rank stops with `TrainingStopped`.

    A signal during an epoch's last step or its end (validation) is acted on after the epoch checkpoint. Goes
    after EpochCheckpoints and MetricsLog in the list.
    """

    def __init__(self, manager, save, save_steps, distributed):
        self.manager = manager
        self.save = save  # save(path, ctx), as for EpochCheckpoints
        self.save_steps = save_steps
        self.distributed = distributed
        self.stop_signals = None

    def __enter__(self):
        self.stop_signals = StopSignals(self.distributed).__enter__()
        return self

    def on_train_begin(self, ctx):
        ctx.stop_signals = self.stop_signals

    def __exit__(self, *exc_info):
        self.stop_signals.__exit__(*exc_info)
        return False

    def on_step_end(self, ctx):
        if ctx.epoch_step == ctx.steps_per_epoch:
            return
        stop = self.stop_signals.requested()
        if stop or (self.save_steps and ctx.global_step % self.save_steps == 0):
            ctx.losses.sync()  # never checkpoint a diverged state
            path = self._save(ctx)
            if stop:
                self._stop(ctx, path)

    def on_epoch_end(self, ctx):
        if not self.stop_signals.requested():
            return
        latest = self.manager.manifest.get("latest")
        if latest and latest["epoch"] == ctx.epoch and latest.get("epoch_step", ctx.steps_per_epoch) == \
                ctx.steps_per_epoch:
            self._stop(ctx, self.manager.latest())  # EpochCheckpoints wrote this epoch's
        self._stop(ctx, self._save(ctx))

    def _save(self, ctx):
        if not ctx.runtime.is_main:
            return None
        return self.manager.save_step(lambda path: self.save(path, ctx), ctx.epoch, ctx.epoch_step)

    def _stop(self, ctx, path):
        if ctx.runtime.distributed:
            all_reduce_sum([0.0])  # the other ranks wait until rank 0 has written the checkpoint
        where = (f"epoch {ctx.epoch}, step {ctx.epoch_step}/{ctx.steps_per_epoch} (global step "
                 f"{ctx.global_step})")
        written = f"checkpoint {path} written" if path else "rank 0 wrote the checkpoint"
        raise TrainingStopped(f"stopped by {self.stop_signals.signal_name or 'a signal on another rank'} at {where}: "
                              f"{written}; continue with --resume auto")


class MetricsLog(Callback):
    """Rank 0 appends each epoch's record to metrics.jsonl (a resumed run continues the file)."""

    def __init__(self, path, append):
        self.path = path
        self.append = append
        self.writer = None

    def on_train_begin(self, ctx):
        if ctx.runtime.is_main:
            self.writer = MetricsWriter(self.path, append=self.append)

    def on_epoch_end(self, ctx):
        if self.writer is not None:
            self.writer.write(ctx.record)


class WeightsInSync(Callback):
    """In a data-parallel run, checks at the end that every rank holds the same weights."""

    def on_train_end(self, ctx):
        if ctx.runtime.distributed:
            check_weights_in_sync(ctx.model, ctx.runtime)

