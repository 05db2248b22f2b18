"""Classify images: `python -m mindcv_lite.infer --model pvt_v2_b0 --ckpt_path pvt_v2_b0.ckpt cat.jpg dog.png`.

Prints the top-5 classes of each image with their probabilities. Images go through the model's pretrained eval
transform (resize the shorter side to image_size / crop_pct, centre crop, ImageNet normalisation). Class names:
ImageNet-1k's when the classifier has 1000 classes, else the class-folder names `train.py` stored in the
checkpoint, else the indices.
"""
import argparse
import json
import os
import sys

import numpy as np
import mindspore as ms
from mindspore import ops

from .data import create_transforms, resolve_data_config
from .data.image_bytes import CorruptImageError, decode_to_bmp
from .data.imagenet_classes import IMAGENET_CLASSES
from .models import create_model, get_pretrained_cfg, read_checkpoint
from .models.checkpoint import CLASS_NAMES_KEY, load_state, load_with_checkpoint_classes, model_state
from .utils.cli import ArgumentParser, run_command

__all__ = ["classify", "class_names_for", "load_images"]


def class_names_for(num_classes, entries):
    """Display names of the classes: ImageNet-1k's for 1000 classes, else the stored folder names, else indices."""
    if num_classes == len(IMAGENET_CLASSES):
        return list(IMAGENET_CLASSES)
    stored = entries.get(CLASS_NAMES_KEY)
    if stored is not None:
        names = json.loads(stored) if isinstance(stored, str) else list(stored)
        if len(names) == num_classes:
            return names
    return [str(i) for i in range(num_classes)]


def load_images(paths, image_size, crop_pct, interpolation):
    """Decode and transform each image file to one float32 batch (N, 3, image_size, image_size)."""
    transforms = create_transforms(image_resize=image_size, is_training=False, crop_pct=crop_pct,
                                   interpolation=interpolation)
    batch = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path!r}")
        with open(path, "rb") as f:
            try:
                image = np.frombuffer(decode_to_bmp(f.read()), np.uint8)
            except CorruptImageError as error:
                raise CorruptImageError(f"cannot read image {path!r}: {error}") from None
        for transform in transforms:
            image = transform(image)
        batch.append(image)
    return np.stack(batch).astype(np.float32)


def _readable(path, on_unreadable):
    try:
        with open(path, "rb") as f:
            decode_to_bmp(f.read())
            return True
    except OSError as error:
        on_unreadable(path, error.strerror or error)
    except CorruptImageError as error:
        on_unreadable(path, error)
    return False


def classify(model_name, ckpt_path, paths, num_classes=None, image_size=None, top_k=5, on_unreadable=None):
    """[(path, [(class name, probability), ...top_k]), ...] for the images in `paths`.

    `on_unreadable(path, error)`: called for a missing or undecodable image, which is then left out; without it
    such an image is an error."""
    if on_unreadable is not None:
        paths = [path for path in paths if _readable(path, on_unreadable)]
        if not paths:
            return []
    entries = read_checkpoint(ckpt_path)
    cfg = get_pretrained_cfg(model_name)
    data_config = resolve_data_config({"image_resize": image_size}, cfg)
    image_size = data_config["image_resize"]
    model = create_model(model_name, num_classes=num_classes or cfg["num_classes"], img_size=image_size)
    if num_classes:
        load_state(model, model_state(model, entries), ckpt_path)
    else:
        load_with_checkpoint_classes(model, entries, ckpt_path)
    num_classes = model.num_classes
    model.set_train(False)
    images = load_images(paths, image_size, data_config["crop_pct"], data_config["interpolation"])
    probabilities = ops.softmax(model(ms.Tensor(images)), axis=-1).asnumpy()
    names = class_names_for(num_classes, entries)
    k = min(top_k, num_classes)
    results = []
    for path, probs in zip(paths, probabilities):
        best = np.argsort(-probs, kind="stable")[:k]
        results.append((path, [(names[i], float(probs[i])) for i in best]))
    return results


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    parser.add_argument("--model", required=True, help="registered model name (see mindcv_lite.list_models())")
    parser.add_argument("--ckpt_path", required=True, help="weights: ours, mindcv's, or timm's")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="default: the number of classes of the checkpoint's classifier")
    parser.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="image_size", type=int, default=None,
                        help="input size; default: the model's pretrained input size")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--mode", type=int, choices=(0, 1), default=1,
                        help="0 graph (compiles once, faster for many images), 1 pynative (default)")
    args = parser.parse_args(argv)
    ms.set_context(mode=args.mode)
    data_config = resolve_data_config({"image_resize": args.image_size}, get_pretrained_cfg(args.model))
    print(f"data config: image_resize {data_config['image_resize']}, interpolation {data_config['interpolation']}, "
          f"crop_pct {data_config['crop_pct']}", file=sys.stderr)  # stdout holds only the results
    unreadable = []
    for path, top in classify(args.model, args.ckpt_path, args.images, args.num_classes, args.image_size,
                              args.top_k, on_unreadable=lambda path, error: unreadable.append(f"{path} ({error})")):
        print(path)
        for rank, (name, probability) in enumerate(top, 1):
            print(f"  {rank}. {name:<40s} {100 * probability:6.2f}%")
    if unreadable:
        raise ValueError(f"{len(unreadable)} of {len(args.images)} images could not be read and were skipped: "
                         f"{'; '.join(unreadable)}")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.infer")
