"""The `Curves` callback: rank 0 redraws `curves.png` next to `metrics.jsonl` after every epoch."""
import os

from ..utils.curves import plot_runs
from .callbacks import Callback

__all__ = ["Curves"]


class Curves(Callback):
    """Loss, learning rate and validation top-1/top-5 against epoch, from the run's metrics.jsonl (so a resumed
    run's picture covers the whole run). Place it after `MetricsLog`, which writes the epoch's record."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def on_epoch_end(self, ctx):
        if ctx.runtime.is_main:
            plot_runs([self.run_dir], os.path.join(self.run_dir, "curves.png"), labels=[ctx.args.model])
