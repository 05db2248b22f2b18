"""The main job in a few CPU minutes: `python -m mindcv_lite.demo` (or `make demo`).

Generates a small 10-class image dataset (5 colours x filled disc or ring, on noisy backgrounds), trains pit_ti
on it with its recipe `mindcv_lite/recipes/pit_ti_cpu_demo.yaml` (shipped in the package; `configs/pit/` links to
it) through the same engine as train.py, then validates the best checkpoint as validate.py does and prints its
top-1. Extra arguments override the config, e.g. `--epoch_size 3`.
"""
import colorsys
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .engine import train, validate
from .utils.cli import run_command
from .utils.config import add_validate_arguments, parse_args

DEMO_CONFIG = Path(__file__).resolve().parent / "recipes" / "pit_ti_cpu_demo.yaml"  # shipped with the package
COLOURS = ("red", "yellow", "green", "blue", "magenta")
SHAPES = ("disc", "ring")


def draw_shape(rng, hue, shape, size):
    """One image: a disc or ring of jittered `hue` (0-1), random size and place on grey noise."""
    background = rng.normal(rng.uniform(60, 190), 30, (size, size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    hue = (hue + rng.normal(0, 0.04)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    extent = rng.uniform(0.3, 0.6) * size
    left, top = rng.uniform(0, size - extent, 2)
    box = (left, top, left + extent, top + extent)
    draw = ImageDraw.Draw(image)
    fill = tuple(int(255 * c) for c in rgb)
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    else:
        draw.ellipse(box, outline=fill, width=max(2, int(extent / 8)))
    return image


def make_shapes_dataset(root, hues, train_per_class, val_per_class, size=72, seed=0):
    """Write `root/{train,val}/<name>_<shape>/*.png`, one class per (hue, shape), `hues` mapping names to hues (0-1),
    unless the folders are already there; returns root."""
    root = Path(root)
    if (root / "val").is_dir() and (root / "train").is_dir():
        return str(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for shape in SHAPES:
            for name, hue in hues.items():
                folder = root / split / f"{name}_{shape}"
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(count):
                    draw_shape(rng, hue, shape, size).save(folder / f"{index:04d}.png")
    return str(root)


def make_demo_dataset(root, train_per_class=80, val_per_class=20, size=72, seed=0):
    """The demo's 10 classes (5 colours x disc or ring) in `root/{train,val}/<colour>_<shape>/`; returns root."""
    hues = {colour: index / len(COLOURS) for index, colour in enumerate(COLOURS)}
    return make_shapes_dataset(root, hues, train_per_class, val_per_class, size, seed)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    args = parse_args(["-c", str(DEMO_CONFIG), *argv])
    make_demo_dataset(args.data_dir)
    train(args)
    best = os.path.join(args.ckpt_save_dir, f"{args.model}_best.ckpt")
    val_args = parse_args(["-c", os.path.join(args.ckpt_save_dir, "config.yaml"), "--ckpt_path", best],
                          add_arguments=add_validate_arguments)
    metrics = validate(val_args)
    minutes, seconds = divmod(int(time.perf_counter() - start), 60)
    print(f"\nDemo done in {minutes} min {seconds:02d} s: {args.model} trained on {args.data_dir} "
          f"({len(COLOURS) * len(SHAPES)} classes); best checkpoint {best}\n"
          f"top-1 {100 * metrics['top1']:.1f}%  top-5 {100 * metrics['top5']:.1f}%  "
          f"({metrics['num_images']} validation images)")
    return metrics


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.demo")
