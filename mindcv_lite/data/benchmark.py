"""Data-pipeline throughput: images/s and CPU-ms per image, on a generated ImageNet-like folder.

    python -m mindcv_lite.data.benchmark [--images 512] [--workers 1 2] [--auto_augment randaug-m9-mstd0.5-inc1 ...]

Pipelines measured at --image_resize, with --batch_size; the augmentation flags (mindcv's names) default to
pit_ti's recipe (mindcv's pit_ti_ascend):
  base   MindSpore's ImageFolderDataset + RandomCropDecodeResize/flip/Normalize/HWC2CHW (the C++ yardstick)
  train  this package with that augmentation: RandAugment m9-mstd0.5-inc1, random erasing 0.25 ("random"
         fill), mixup 0.8 / cutmix 1.0
  eval   this package's eval pipeline (resize int(224 / crop_pct), centre crop 224)
CPU-ms per image is the process CPU time (all threads) divided by images, so it is the cost a device host pays
whatever the worker count. Each figure is the best of --rounds rounds (other processes on the machine only
ever make a round slower), and the rounds interleave the pipelines so that they see the same machine load.
"""
import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image
import mindspore.dataset as ds
import mindspore.dataset.vision as vision

from ..utils.cli import ArgumentParser, run_command
from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, interpolation_mode
from .dataset import create_dataset
from .loader import create_loader
from .transforms import create_transforms

# pit_ti's recipe (mindcv's configs/pit/pit_ti_ascend.yaml): what the benchmark measures unless told otherwise
PIT_TI_RECIPE = dict(image_resize=224, interpolation="bicubic", crop_pct=0.875, auto_augment="randaug-m9-mstd0.5-inc1",
                     re_prob=0.25, re_value="random", mixup=0.8, cutmix=1.0, cutmix_prob=1.0, batch_size=128)
SCALE, RATIO = (0.08, 1.0), (0.75, 1.333)  # random-resized-crop ranges: mindcv's defaults, also the recipe's


def _number_or_str(value):
    try:
        return float(value)
    except ValueError:
        return value


def _recipe(args):
    """(transform kwargs, create_loader mix kwargs) from the command line."""
    transform = dict(image_resize=args.image_resize, interpolation=args.interpolation, crop_pct=args.crop_pct,
                     auto_augment=args.auto_augment or None, re_prob=args.re_prob, re_value=args.re_value,
                     scale=SCALE, ratio=RATIO, mean=list(IMAGENET_DEFAULT_MEAN), std=list(IMAGENET_DEFAULT_STD))
    mix = dict(mixup=args.mixup, cutmix=args.cutmix, cutmix_prob=args.cutmix_prob)
    return transform, mix


def make_image_folder(root, num_images, num_classes=8, size=(500, 375), seed=0):
    """JPEGs shaped and compressed like ImageNet photos (~500x375, ~80 KB): smooth colour fields plus grain."""
    rng = np.random.default_rng(seed)
    width, height = size
    for split in ("train", "val"):
        for index in range(num_images):
            class_dir = os.path.join(root, split, f"class_{index % num_classes:03d}")
            os.makedirs(class_dir, exist_ok=True)
            coarse = Image.fromarray(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8))
            pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
            pixels = np.clip(pixels + rng.integers(-20, 21, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(class_dir, f"{index:05d}.JPEG"), quality=90)


def base_pipeline(root, recipe, batch_size, workers):
    dataset = ds.ImageFolderDataset(os.path.join(root, "train"), shuffle=True, num_parallel_workers=workers)
    transform = recipe[0]
    ops = [
        vision.RandomCropDecodeResize(transform["image_resize"], scale=tuple(transform["scale"]),
                                      ratio=tuple(transform["ratio"]),
                                      interpolation=interpolation_mode(transform["interpolation"])),
        vision.RandomHorizontalFlip(0.5),
        vision.Normalize(transform["mean"], transform["std"]),
        vision.HWC2CHW(),
    ]  # fmt: skip
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    return dataset.batch(batch_size, drop_remainder=True)


def train_pipeline(root, recipe, batch_size, workers):
    transform, mix = recipe
    dataset = create_dataset("imagenet", root, "train", shuffle=True, num_parallel_workers=workers)
    return create_loader(
        dataset, batch_size, drop_remainder=True, is_training=True, num_classes=dataset.num_classes(),
        transform=create_transforms("imagenet", is_training=True, **transform), num_parallel_workers=workers, **mix,
    )  # fmt: skip


def eval_pipeline(root, recipe, batch_size, workers):
    dataset = create_dataset("imagenet", root, "val", shuffle=False, num_parallel_workers=workers)
    transform = create_transforms("imagenet", is_training=False, **recipe[0])
    return create_loader(dataset, batch_size, transform=transform, num_parallel_workers=workers)


def measure(build, root, recipe, batch_size, workers, epochs):
    """(images/s, CPU-ms/image) over `epochs` epochs after one warm-up epoch (page cache, thread pools)."""
    for _ in build(root, recipe, batch_size, workers).create_tuple_iterator(output_numpy=True, num_epochs=1):
        pass
    images = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch in build(root, recipe, batch_size, workers).create_tuple_iterator(output_numpy=True, num_epochs=1):
            images += len(batch[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return images / wall, cpu / images * 1000


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images per split")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; the best one is reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", help="an existing ImageNet-style root to use instead of generated images")
    recipe = parser.add_argument_group("augmentation (mindcv's names; defaults: pit_ti's recipe)")
    recipe.add_argument("--batch_size", "--batch-size", type=int)
    recipe.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="image_resize", type=int)
    recipe.add_argument("--interpolation")
    recipe.add_argument("--crop_pct", type=float)
    recipe.add_argument("--auto_augment", help="'' = none")
    recipe.add_argument("--re_prob", type=float)
    recipe.add_argument("--re_value", type=_number_or_str, help="a number or 'random'")
    recipe.add_argument("--mixup", type=float)
    recipe.add_argument("--cutmix", type=float)
    recipe.add_argument("--cutmix_prob", type=float)
    parser.set_defaults(**PIT_TI_RECIPE)
    args = parser.parse_args(argv)
    if args.data is not None and not os.path.isdir(os.path.join(args.data, "train")):
        raise FileNotFoundError(f"--data {args.data!r} has no train/ folder: give an ImageNet-style root "
                                "(train/<class>/*.JPEG, val/<class>/*.JPEG) or leave --data out to generate images")
    transform, mix = _recipe(args)
    batch_size = args.batch_size
    recipe = (transform, mix)
    ds.config.set_seed(0)
    pipelines = (("base", base_pipeline), ("train", train_pipeline), ("eval", eval_pipeline))
    with tempfile.TemporaryDirectory(prefix="mindcv_lite_bench_") as tmp:
        root = args.data
        if root is None:
            root = tmp
            make_image_folder(root, args.images)
        print(f"auto_augment={transform['auto_augment']} re_prob={transform['re_prob']} "
              f"re_value={transform['re_value']} mixup={mix['mixup']} cutmix={mix['cutmix']} "
              f"interpolation={transform['interpolation']} image_resize={transform['image_resize']}")  # fmt: skip
        print(f"{args.images} images/split, batch {batch_size}, {os.cpu_count()} CPUs, best of {args.rounds} rounds")
        best = {}
        for _ in range(args.rounds):
            for workers in args.workers:
                for name, build in pipelines:
                    rate, cpu_ms = measure(build, root, recipe, batch_size, workers, args.epochs)
                    old_rate, old_cpu = best.get((name, workers), (0.0, float("inf")))
                    best[name, workers] = (max(rate, old_rate), min(cpu_ms, old_cpu))
        print(f"{'pipeline':<8} {'workers':>7} {'images/s':>9} {'CPU-ms/img':>10} {'x base':>7}")
        for name, _ in pipelines:
            for workers in args.workers:
                rate, cpu_ms = best[name, workers]
                ratio = cpu_ms / best["base", workers][1]
                print(f"{name:<8} {workers:>7} {rate:>9.0f} {cpu_ms:>10.2f} {ratio:>7.2f}")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.data.benchmark")
