"""Classification losses (mindcv semantics)."""
from .loss_factory import LOSSES, BinaryCrossEntropySmooth, CrossEntropySmooth, create_loss

__all__ = ["LOSSES", "BinaryCrossEntropySmooth", "CrossEntropySmooth", "create_loss"]
