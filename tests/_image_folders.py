"""Small ImageNet-layout folders generated on the fly, shared by the data, training and inference tests."""
import os

import numpy as np
from PIL import Image


def write_image(path, size=(40, 30), mode="RGB", seed=0, class_index=0):
    """Write an image whose colour depends on `class_index`, so a model can learn the classes.

    `size` is (width, height); the format follows the file extension (JPEG, PNG, BMP, ...).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    base = np.zeros((height, width, 3), np.float32)
    base[..., class_index % 3] = 160 + 40 * (class_index // 3)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)
    return path


def make_image_folder(root, splits=("train", "val"), num_classes=3, per_class=4, size=(40, 30), ext=".jpg"):
    """Create `root/<split>/class_<i>/img_<j><ext>`; returns root. Images differ per split, class and index."""
    for split_index, split in enumerate(splits):
        for class_index in range(num_classes):
            for image_index in range(per_class):
                seed = (split_index * 1000 + class_index) * 1000 + image_index
                path = os.path.join(root, split, f"class_{class_index}", f"img_{image_index}{ext}")
                write_image(path, size=size, seed=seed, class_index=class_index)
    return str(root)
