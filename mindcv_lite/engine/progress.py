"""What a person watching a run sees: log setup, a tqdm bar or log lines per epoch, and metrics.jsonl."""
import json
import logging
import math
import os
import sys
import time
import warnings

from tqdm import tqdm

__all__ = ["EpochProgress", "MetricsWriter", "format_duration", "setup_logging"]


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


class EpochProgress:
    """Progress of one epoch: a tqdm bar when `use_bar` (stdout is a terminal), else a log line every
    `log_interval` steps with loss, lr, img/s and the ETA of the epoch and of the run."""

    def __init__(self, epoch, num_epochs, steps, images_per_step, log_interval, use_bar, logger):
        self.epoch = epoch
        self.num_epochs = num_epochs
        self.steps = steps
        self.images_per_step = images_per_step
        self.log_interval = max(1, log_interval)
        self.logger = logger
        self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{num_epochs}", unit="step", dynamic_ncols=True,
                        leave=True) if use_bar else None
        self.start = time.perf_counter()
        self.interval_start = self.start
        self.interval_loss = 0.0
        self.interval_steps = 0
        self.logged_steps = 0
        self.loss_sum = 0.0
        self.done = 0
        self.interval_rates = []

    def update(self, loss, lr):
        """Record one finished step; `loss` may be NaN for a step skipped on overflow."""
        self.done += 1
        if math.isfinite(loss):
            self.loss_sum += loss
            self.interval_loss += loss
            self.interval_steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.done % self.log_interval and self.done != self.steps:
            return
        now = time.perf_counter()
        rate = (self.done - self.logged_steps) * self.images_per_step / max(now - self.interval_start, 1e-9)
        self.interval_rates.append(rate)
        step_time = (now - self.start) / self.done
        epoch_eta = step_time * (self.steps - self.done)
        run_eta = epoch_eta + step_time * self.steps * (self.num_epochs - self.epoch)
        mean_loss = self.interval_loss / self.interval_steps if self.interval_steps else float("nan")
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {mean_loss:.4f} lr {lr:.3e} {rate:.1f} img/s", refresh=False)
        else:
            self.logger.info("epoch %d/%d step %d/%d  loss %.4f  lr %.3e  %.1f img/s  eta %s (run %s)",
                             self.epoch, self.num_epochs, self.done, self.steps, mean_loss, lr, rate,
                             format_duration(epoch_eta), format_duration(run_eta))
        self.interval_start = now
        self.logged_steps = self.done
        self.interval_loss = 0.0
        self.interval_steps = 0

    def close(self):
        """Summary of the epoch: mean loss, images/s over the epoch, seconds, and the median images/s of the
        logged intervals after the first (which holds graph compilation in the first epoch)."""
        if self.bar is not None:
            self.bar.close()
        seconds = time.perf_counter() - self.start
        steady = sorted(self.interval_rates[1:])
        return {"loss": self.loss_sum / self.done if self.done else float("nan"),
                "images_per_s": self.done * self.images_per_step / max(seconds, 1e-9), "seconds": seconds,
                "steady_images_per_s": steady[len(steady) // 2] if steady else None}


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
