"""mindcv_lite: PiT and PVT vision transformers for MindSpore."""
from .models import create_model, list_models, load_checkpoint, save_checkpoint

__all__ = ["create_model", "list_models", "load_checkpoint", "save_checkpoint"]
__version__ = "0.1.0"
