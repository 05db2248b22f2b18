"""What a person watching a run sees: log setup, the loss (summed on the device, read at log intervals), a tqdm
bar or log lines per epoch, and metrics.jsonl."""
import json
import logging
import os
import sys
import time
import warnings

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from tqdm import tqdm

__all__ = ["EpochProgress", "LossMeter", "MetricsWriter", "NonFiniteLossError", "format_duration", "setup_logging"]


def setup_logging(rank=0, world_size=1, log_file=None):
    """INFO lines on stdout (and in `log_file`), prefixed with the rank in distributed runs; Python warnings
    (e.g. from the data pipeline) go to the same place."""
    prefix = f"[rank {rank}] " if world_size > 1 else ""
    formatter = logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "mindcv_lite", False)]:  # from an earlier run
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.mindcv_lite = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"{message} ({category.__name__}, {os.path.basename(filename)}:{lineno})"


def format_duration(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf and no loss scaling was set up to skip such steps."""


class _DeviceLossSums(nn.Cell):
    """Device-side running sums of the step losses, so that no step waits for its loss to reach the host."""

    def __init__(self, first_step):
        super().__init__(auto_prefix=False)
        self.loss_sum = Parameter(Tensor(0.0, ms.float32), name="meter.loss_sum", requires_grad=False)
        self.finite_steps = Parameter(Tensor(0, ms.int32), name="meter.finite_steps", requires_grad=False)
        self.skipped_steps = Parameter(Tensor(0, ms.int32), name="meter.skipped_steps", requires_grad=False)
        self.step = Parameter(Tensor(first_step, ms.int32), name="meter.step", requires_grad=False)
        self.first_nonfinite_step = Parameter(Tensor(-1, ms.int32), name="meter.first_nonfinite_step",
                                              requires_grad=False)

    def construct(self, loss, overflow):
        loss = loss.astype(ms.float32)
        step = self.step + 1
        finite = ops.isfinite(loss)
        ops.assign(self.loss_sum, self.loss_sum + ops.select(finite, loss, ops.zeros_like(loss)))
        ops.assign(self.finite_steps, self.finite_steps + finite.astype(ms.int32))
        ops.assign(self.skipped_steps, self.skipped_steps + overflow.astype(ms.int32))
        first_bad = ops.logical_and(ops.logical_not(finite), self.first_nonfinite_step < 0)
        ops.assign(self.first_nonfinite_step, ops.select(first_bad, step, self.first_nonfinite_step))
        return ops.assign(self.step, step)


class LossMeter:
    """Step losses summed on the device (`update`) and read to the host only by `sync` (at log intervals, epoch
    ends, before a checkpoint): reading a loss every step would stall an accelerator's queue.

    A non-finite loss is remembered with the global step where it FIRST appeared; unless `nonfinite_ok` (loss
    scaling skips such steps) `sync` then raises `NonFiniteLossError` naming that epoch and step.
    """

    def __init__(self, steps_per_epoch, first_step=0, nonfinite_ok=False, checkpoint_dir=""):
        self.steps_per_epoch = steps_per_epoch
        self.nonfinite_ok = nonfinite_ok
        self.checkpoint_dir = checkpoint_dir
        self.sums = _DeviceLossSums(first_step)
        self.interval = [0.0, 0]  # loss sum, finite steps since the last pop_interval
        self.epoch = [0.0, 0, 0]  # loss sum, finite steps, skipped steps since the last pop_epoch

    def update(self, loss, overflow):
        self.sums(loss, overflow)

    def sync(self):
        """Move the device sums to the host; raise if a non-finite loss appeared (see the class)."""
        loss_sum, finite, skipped = (self.sums.loss_sum.asnumpy(), self.sums.finite_steps.asnumpy(),
                                     self.sums.skipped_steps.asnumpy())
        for param in (self.sums.loss_sum, self.sums.finite_steps, self.sums.skipped_steps):
            param.set_data(ops.zeros_like(param))
        self.interval = [self.interval[0] + float(loss_sum), self.interval[1] + int(finite)]
        self.epoch = [self.epoch[0] + float(loss_sum), self.epoch[1] + int(finite), self.epoch[2] + int(skipped)]
        first_bad = int(self.sums.first_nonfinite_step.asnumpy())
        if first_bad >= 0 and not self.nonfinite_ok:
            epoch, step = divmod(first_bad - 1, self.steps_per_epoch)
            raise NonFiniteLossError(
                f"loss is not finite at epoch {epoch + 1}, step {step + 1} (global step {first_bad}): training "
                f"diverged. The last good checkpoint is in {self.checkpoint_dir}. Lower lr, enable clip_grad, or set "
                "loss_scale_type dynamic to skip such steps")

    def pop_interval(self):
        """Mean finite loss since the last call (NaN if none)."""
        (loss_sum, finite), self.interval = self.interval, [0.0, 0]
        return loss_sum / finite if finite else float("nan")

    def pop_epoch(self):
        """(mean finite loss, steps skipped on overflow) since the last call."""
        (loss_sum, finite, skipped), self.epoch = self.epoch, [0.0, 0, 0]
        return (loss_sum / finite if finite else float("nan")), skipped


class EpochProgress:
    """Progress of one epoch: a tqdm bar when `use_bar` (stdout is a terminal), else a log line every
    `log_interval` steps with loss, lr, img/s and the ETA of the epoch and of the run.

    Per step call `advance()`; when it returns True (a log line is due) call `log(mean loss, lr)`.
    """

    def __init__(self, epoch, num_epochs, steps, images_per_step, log_interval, use_bar, logger, done=0):
        self.epoch = epoch
        self.num_epochs = num_epochs
        self.steps = steps
        self.images_per_step = images_per_step
        self.log_interval = max(1, log_interval)
        self.logger = logger
        self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch}/{num_epochs}", unit="step",
                        dynamic_ncols=True, leave=True) if use_bar else None
        self.start = time.perf_counter()
        self.interval_start = self.start
        self.first_step = done  # a resumed epoch starts in its middle
        self.logged_steps = done
        self.done = done
        self.interval_rates = []

    def advance(self):
        """Record one finished step; True when a log line is due."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        return self.done % self.log_interval == 0 or self.done == self.steps

    def log(self, mean_loss, lr):
        now = time.perf_counter()
        rate = (self.done - self.logged_steps) * self.images_per_step / max(now - self.interval_start, 1e-9)
        self.interval_rates.append(rate)
        step_time = (now - self.start) / max(self.done - self.first_step, 1)
        epoch_eta = step_time * (self.steps - self.done)
        run_eta = epoch_eta + step_time * self.steps * (self.num_epochs - self.epoch)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {mean_loss:.4f} lr {lr:.3e} {rate:.1f} img/s", refresh=False)
        else:
            self.logger.info("epoch %d/%d step %d/%d  loss %.4f  lr %.3e  %.1f img/s  eta %s (run %s)",
                             self.epoch, self.num_epochs, self.done, self.steps, mean_loss, lr, rate,
                             format_duration(epoch_eta), format_duration(run_eta))
        self.interval_start = now
        self.logged_steps = self.done

    def close(self, mean_loss):
        """Summary of the epoch: `mean_loss`, images/s over the epoch, seconds, and the median images/s of the
        logged intervals after the first (which holds graph compilation in the first epoch)."""
        if self.bar is not None:
            self.bar.close()
        seconds = time.perf_counter() - self.start
        steady = sorted(self.interval_rates[1:])
        return {"loss": mean_loss,
                "images_per_s": (self.done - self.first_step) * self.images_per_step / max(seconds, 1e-9),
                "seconds": seconds, "steady_images_per_s": steady[len(steady) // 2] if steady else None}


class MetricsWriter:
    """Appends one JSON object per epoch to `path` (a fresh run truncates it, a resumed run continues it)."""

    def __init__(self, path, append):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if not append:
            open(path, "w").close()

    def write(self, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
