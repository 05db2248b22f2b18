from . import pit, pvt, pvt_v2  # noqa: F401 - registers the models
from .base import VisionModel, layer_ids
from .checkpoint import CheckpointMismatchError, load_checkpoint, read_checkpoint, save_checkpoint
from .factory import create_model
from .registry import get_pretrained_cfg, is_model, list_models, model_entrypoint, register_model

__all__ = [
    "CheckpointMismatchError",
    "create_model",
    "get_pretrained_cfg",
    "is_model",
    "layer_ids",
    "list_models",
    "load_checkpoint",
    "model_entrypoint",
    "read_checkpoint",
    "register_model",
    "save_checkpoint",
    "VisionModel",
]
