"""Fine-tuning from a real checkpoint, in CPU minutes: `python -m mindcv_lite.finetune_demo`.

1. Pretrains pit_ti on the demo's 10 classes (5 colours x disc or ring, `--pretrain_per_class` images each) with
   `make demo`'s recipe, at `--image_resize` px (48: a few CPU minutes).
2. Makes a small task the checkpoint has never seen: 5 new hues x disc or ring = 10 classes, only `--per_class`
   training images each (default 10).
3. Trains that task four ways for the same steps and schedule: from scratch; from the checkpoint (its head
   replaced by a new one for the new classes); from the checkpoint with layer-wise lr decay; the same with the
   patch embedding and first stage frozen.
4. Prints the validation top-1 of each (best and last epoch) and writes `summary.json` and `compare.png`.

Everything lands in `--work_dir` (default ./runs/finetune_demo); a second call reuses the datasets and the
pretrained checkpoint.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from .demo import DEMO_CONFIG, make_demo_dataset, make_shapes_dataset
from .engine import train
from .utils.curves import plot_runs
from .utils.cli import ArgumentParser, run_command
from .utils.config import parse_args

TARGET_HUES = {"orange": 0.1, "lime": 0.3, "teal": 0.5, "violet": 0.7, "rose": 0.9}  # between the demo's 5 hues
NUM_TARGET_CLASSES = 2 * len(TARGET_HUES)  # disc or ring


def make_target_dataset(root, train_per_class, val_per_class=25, size=72, seed=1):
    """The target task's classes (`TARGET_HUES` x disc or ring) in `root/{train,val}/`; returns root."""
    return make_shapes_dataset(root, TARGET_HUES, train_per_class, val_per_class, size, seed)


def _run(config, run_dir, overrides):
    args = parse_args(["-c", str(config), "--ckpt_save_dir", str(run_dir), *overrides])
    train(args)
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {"best_top1": max(r["val_top1"] for r in records), "last_top1": records[-1]["val_top1"],
            "epochs": len(records)}


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="runs/finetune_demo")
    parser.add_argument("--pretrain_epochs", type=int, default=6)
    parser.add_argument("--pretrain_per_class", type=int, default=40, help="training images per source class")
    parser.add_argument("--image_resize", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs (the same for every variant)")
    parser.add_argument("--per_class", type=int, default=10, help="training images per target class")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    work = Path(options.work_dir)
    source = make_demo_dataset(work / f"source_data_{options.pretrain_per_class}", options.pretrain_per_class)
    target = make_target_dataset(work / f"target_data_{options.per_class}", options.per_class)

    pretrained = work / "pretrain" / "pit_ti_best.ckpt"
    if not pretrained.is_file():
        _run(DEMO_CONFIG, work / "pretrain", ["--data_dir", source, "--epoch_size", str(options.pretrain_epochs),
                                              "--decay_epochs", str(options.pretrain_epochs - 1),
                                              "--image_resize", str(options.image_resize)])
    common = ["--data_dir", target, "--num_classes", str(NUM_TARGET_CLASSES), "--batch_size", "12",
              "--epoch_size", str(options.epochs),
              "--warmup_epochs", "1", "--decay_epochs", str(options.epochs - 1), "--lr", "5e-4",
              "--keep_checkpoint_max", "1", "--image_resize", str(options.image_resize)]
    variants = {
        "scratch": [],
        "finetune": ["--ckpt_path", str(pretrained)],
        "finetune_ld": ["--ckpt_path", str(pretrained), "--layer_decay", "0.75"],
        "finetune_ld_frozen": ["--ckpt_path", str(pretrained), "--layer_decay", "0.75", "--freeze_stages", "1"],
    }
    results = {name: _run(DEMO_CONFIG, work / name, common + extra) for name, extra in variants.items()}
    summary = {"pretrain": str(pretrained), "target_train_images": NUM_TARGET_CLASSES * options.per_class, **results}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_runs([str(work / name) for name in variants], str(work / "compare.png"), list(variants))
    minutes, seconds = divmod(int(time.perf_counter() - start), 60)
    print(f"\nFine-tuning demo done in {minutes} min {seconds:02d} s: {NUM_TARGET_CLASSES} new classes, "
          f"{NUM_TARGET_CLASSES * options.per_class} "
          f"training images, {options.epochs} epochs each")
    for name, result in results.items():
        print(f"  {name:<20} top-1 best {100 * result['best_top1']:5.1f}%  last {100 * result['last_top1']:5.1f}%")
    print(f"curves: {os.path.join(options.work_dir, 'compare.png')}")
    return summary


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.finetune_demo")
