"""Average checkpoints into one (timm's avg_checkpoints): often a little better than any one of them.

    python -m mindcv_lite.average_checkpoints RUN_DIR [-n 5] [--use_ema] [--output FILE]
    python -m mindcv_lite.average_checkpoints a.ckpt b.ckpt c.ckpt --output avg.ckpt [--use_ema]

With a run directory, the `-n` checkpoints with the best validation top-1 listed in its `checkpoints.json` are
averaged (the run needs `val_while_train: True`; `ckpt_save_policy: top_k` keeps the best ones on disk). The
output holds only the model's weights (plus the run's model and class names), under the same names as the inputs,
so `create_model(checkpoint_path=...)`, validate.py and mindcv load it.
"""
import argparse
import json
import os
import sys

import numpy as np

from .engine.checkpointing import CLASS_NAMES_KEY, MANIFEST, MODEL_KEY
from .models import read_checkpoint, save_checkpoint
from .models.checkpoint import model_weights
from .utils.cli import ArgumentParser, run_command

__all__ = ["average_checkpoints", "top_checkpoints"]


def top_checkpoints(run_dir, num):
    """The `num` checkpoint files of `run_dir` with the best validation top-1, best first."""
    manifest_path = os.path.join(run_dir, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(f"{manifest_path} not found: give a run directory (ckpt_save_dir) or checkpoint files")
    with open(manifest_path) as f:
        entries = json.load(f)["checkpoints"]
    ranked = sorted((e for e in entries if e.get("top1") is not None), key=lambda e: (e["top1"], e["epoch"]),
                    reverse=True)
    if not ranked:
        raise ValueError(f"{manifest_path} lists no validation top-1: train with val_while_train True, or pass the "
                         "checkpoint files to average")
    if len(ranked) < num:
        print(f"average_checkpoints: only {len(ranked)} checkpoints with a top-1 in {run_dir}, averaging those",
              file=sys.stderr)
    return [os.path.join(run_dir, e["file"]) for e in ranked[:num]]


def average_checkpoints(paths, output, use_ema=False):
    """Write the element-wise mean of the weights in `paths` to `output`; returns the averaged {name: array}."""
    if not paths:
        raise ValueError("no checkpoints to average")
    total, reference, extra = None, None, {}
    for path in paths:
        entries = read_checkpoint(path)
        weights = model_weights(entries, use_ema)
        if total is None:
            reference = {k: (v.shape, v.dtype) for k, v in weights.items()}
            total = {k: np.zeros(v.shape, np.float64) for k, v in weights.items()}
            extra = {k: entries[k] for k in (MODEL_KEY, CLASS_NAMES_KEY) if k in entries}
        elif {k: v.shape for k, v in weights.items()} != {k: shape for k, (shape, _) in reference.items()}:
            raise ValueError(f"{path} holds other weights than {paths[0]} (another model or number of classes): "
                             "average checkpoints of one run")
        for key, value in weights.items():
            total[key] += value
    averaged = {k: (v / len(paths)).astype(reference[k][1]) for k, v in total.items()}
    save_checkpoint(averaged, output, extra if output.endswith(".ckpt") else None)
    return averaged


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="a run directory (its checkpoints.json), or checkpoint files")
    parser.add_argument("-n", "--num", type=int, default=5, help="with a run directory: how many of the best")
    parser.add_argument("--output", default="", help="file to write (.ckpt or .safetensors); default with a run "
                        "directory: RUN_DIR/averaged_top<n>.ckpt")
    parser.add_argument("--use_ema", action="store_true", help="average the checkpoints' EMA weights")
    args = parser.parse_args(argv)
    try:
        if len(args.inputs) == 1 and os.path.isdir(args.inputs[0]):
            if args.num < 1:
                raise ValueError(f"-n must be >= 1, got {args.num}")
            paths = top_checkpoints(args.inputs[0], args.num)
            output = args.output or os.path.join(args.inputs[0], f"averaged_top{args.num}.ckpt")
        else:
            if not args.output:
                raise ValueError("--output is required when averaging a list of files")
            paths, output = args.inputs, args.output
        averaged = average_checkpoints(paths, output, args.use_ema)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"average_checkpoints: {error}")
    print(f"wrote {output}: mean of {len(paths)} checkpoints ({len(averaged)} tensors"
          f"{', EMA weights' if args.use_ema else ''}): {', '.join(os.path.basename(p) for p in paths)}")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.average_checkpoints")
