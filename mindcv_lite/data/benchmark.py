"""Data-pipeline throughput: images/s and CPU-ms per image, on a generated ImageNet-like folder.

    python -m mindcv_lite.data.benchmark [--images 512] [--workers 1 2] [--batch-size 64]

Pipelines measured at 224x224:
  base   MindSpore's ImageFolderDataset + RandomCropDecodeResize/flip/Normalize/HWC2CHW (the C++ yardstick)
  train  this package with the pit_ti recipe: RandAugment m9-mstd0.5-inc1, random erasing 0.25, mixup/cutmix
  eval   this package's eval pipeline (resize 256, centre crop 224)
CPU-ms per image is the process CPU time (all threads) divided by images, so it is the cost a device host pays
whatever the worker count.
"""
import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image
import mindspore.dataset as ds
import mindspore.dataset.vision as vision
from mindspore.dataset.vision import Inter

from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .dataset import create_dataset
from .loader import create_loader
from .transforms import create_transforms

PIT_TI_RECIPE = dict(
    image_resize=224,
    scale=(0.08, 1.0),
    ratio=(0.75, 1.333),
    hflip=0.5,
    interpolation="bicubic",
    auto_augment="randaug-m9-mstd0.5-inc1",
    re_prob=0.25,
    re_value="random",
    color_jitter=0.4,
    crop_pct=0.875,
)
PIT_TI_MIX = dict(mixup=0.8, cutmix=1.0, cutmix_prob=1.0)


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


def base_pipeline(root, batch_size, workers):
    dataset = ds.ImageFolderDataset(os.path.join(root, "train"), shuffle=True, num_parallel_workers=workers)
    ops = [
        vision.RandomCropDecodeResize(224, scale=(0.08, 1.0), ratio=(0.75, 1.333), interpolation=Inter.BICUBIC),
        vision.RandomHorizontalFlip(0.5),
        vision.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        vision.HWC2CHW(),
    ]
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    return dataset.batch(batch_size, drop_remainder=True)


def train_pipeline(root, batch_size, workers):
    dataset = create_dataset("imagenet", root, "train", shuffle=True, num_parallel_workers=workers)
    transform = create_transforms("imagenet", is_training=True, **PIT_TI_RECIPE)
    return create_loader(
        dataset, batch_size, drop_remainder=True, is_training=True, num_classes=dataset.num_classes(),
        transform=transform, num_parallel_workers=workers, **PIT_TI_MIX,
    )  # fmt: skip


def eval_pipeline(root, batch_size, workers):
    dataset = create_dataset("imagenet", root, "val", shuffle=False, num_parallel_workers=workers)
    transform = create_transforms("imagenet", is_training=False, **PIT_TI_RECIPE)
    return create_loader(dataset, batch_size, transform=transform, num_parallel_workers=workers)


def measure(build, root, batch_size, workers, epochs):
    """(images/s, CPU-ms/image) over `epochs` epochs after one warm-up epoch (page cache, thread pools)."""
    for _ in build(root, batch_size, workers).create_tuple_iterator(output_numpy=True, num_epochs=1):
        pass
    images = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch in build(root, batch_size, workers).create_tuple_iterator(output_numpy=True, num_epochs=1):
            images += len(batch[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return images / wall, cpu / images * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images per split")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", help="an existing ImageNet-style root to use instead of generated images")
    args = parser.parse_args(argv)
    ds.config.set_seed(0)
    with tempfile.TemporaryDirectory(prefix="mindcv_lite_bench_") as tmp:
        root = args.data
        if root is None:
            root = tmp
            make_image_folder(root, args.images)
        print(f"{args.images} images/split, batch {args.batch_size}, {os.cpu_count()} CPUs")
        print(f"{'pipeline':<8} {'workers':>7} {'images/s':>9} {'CPU-ms/img':>10}")
        for name, build in (("base", base_pipeline), ("train", train_pipeline), ("eval", eval_pipeline)):
            for workers in args.workers:
                rate, cpu_ms = measure(build, root, args.batch_size, workers, args.epochs)
                print(f"{name:<8} {workers:>7} {rate:>9.0f} {cpu_ms:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
