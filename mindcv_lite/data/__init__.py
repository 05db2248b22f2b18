"""Data pipeline: ImageNet-style folders -> robust sharded dataset -> augmented, mixed batches."""
from .auto_augment import create_auto_augment
from .config import resolve_data_config
from .constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .dataset import IMAGE_EXTENSIONS, create_dataset, find_classes, set_epoch
from .loader import create_loader
from .mixup import Mixup
from .transforms import create_transforms

__all__ = [
    "DEFAULT_CROP_PCT",
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "IMAGE_EXTENSIONS",
    "Mixup",
    "create_auto_augment",
    "create_dataset",
    "create_loader",
    "create_transforms",
    "find_classes",
    "resolve_data_config",
    "set_epoch",
]
