"""Overlay training runs into one picture: `python -m mindcv_lite.plot RUN_DIR [RUN_DIR ...] [--output F.png]`.

Each RUN_DIR is a training run's ckpt_save_dir (its metrics.jsonl); the PNG shows training loss, learning rate and
validation top-1 (solid) / top-5 (dashed) against epoch, one colour per run. Every run also keeps its own
`curves.png`, refreshed each epoch.
"""
import argparse
import sys

from .utils.cli import ArgumentParser, run_command
from .utils.curves import plot_runs


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="training runs (ckpt_save_dir with metrics.jsonl)")
    parser.add_argument("--output", default="curves.png", help="PNG file to write")
    parser.add_argument("--labels", nargs="+", default=None, help="legend names, one per run (default: folder names)")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.run_dirs):
        sys.exit(f"plot: {len(args.labels)} labels for {len(args.run_dirs)} runs: give one label per run")
    try:
        plot_runs(args.run_dirs, args.output, args.labels)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"plot: {error}")
    print(f"wrote {args.output}: {len(args.run_dirs)} run(s)")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.plot")
