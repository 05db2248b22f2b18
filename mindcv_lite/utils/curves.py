"""Training curves from `metrics.jsonl`: loss, learning rate and validation top-1/top-5 against epoch.

Drawn with matplotlib's Agg backend (no display needed), written atomically, so a viewer refreshing `curves.png`
never reads half a file.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

from .io import atomic_path

__all__ = ["PANELS", "plot_runs", "read_metrics"]

# (panel title, metrics.jsonl keys drawn in it, line styles)
PANELS = (("training loss", ("loss",), ("-",)),
          ("learning rate", ("lr",), ("-",)),
          ("validation accuracy (%)", ("val_top1", "val_top5"), ("-", "--")))


def read_metrics(run_dir: str) -> List[Dict]:
    """The per-epoch records of a run's metrics.jsonl, one per epoch (the last written wins, after a resume)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: give the ckpt_save_dir of a training run")
    by_epoch = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                by_epoch[record["epoch"]] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _series(records, key):
    points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    scale = 100.0 if key.startswith("val_top") else 1.0  # stored as fractions, shown as percent
    return [p[0] for p in points], [p[1] * scale for p in points]


def plot_runs(run_dirs: Sequence[str], output: str, labels: Optional[Sequence[str]] = None):
    """Draw the runs' curves, overlaid (one colour per run), into the PNG `output`; returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = list(labels) if labels else [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
    runs = [read_metrics(d) for d in run_dirs]
    last_epoch = max((r["epoch"] for records in runs for r in records), default=1)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4), squeeze=False)
    for axis, (title, keys, styles) in zip(axes[0], PANELS):
        for index, (label, records) in enumerate(zip(labels, runs)):
            for key, style in zip(keys, styles):
                epochs, values = _series(records, key)
                if epochs:
                    name = label if len(keys) == 1 else f"{label} {key[4:]}"
                    axis.plot(epochs, values, style, marker="o", markersize=3, color=f"C{index}", label=name)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_xlim(0.5, last_epoch + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if not axis.lines:
            axis.text(0.5, 0.5, "no data yet\n(validation needs val_while_train True)", ha="center", va="center",
                      transform=axis.transAxes, color="gray")
        axis.grid(True, alpha=0.3)
        if title == "learning rate":
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if axis.lines and (len(runs) > 1 or len(keys) > 1):
            axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return figure
