"""Classification losses (mindcv semantics) and DeiT's distillation loss."""
from .distillation import DISTILLATION_TYPES, DistillationLoss
from .loss_factory import LOSSES, BinaryCrossEntropySmooth, CrossEntropySmooth, create_loss

__all__ = ["DISTILLATION_TYPES", "LOSSES", "BinaryCrossEntropySmooth", "CrossEntropySmooth", "DistillationLoss",
           "create_loss"]
