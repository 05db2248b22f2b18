"""Optimizers and parameter groups (mindcv semantics)."""
from .adamw import AdamW
from .lion import Lion
from .optim_factory import OPTIMIZERS, WEIGHT_DECAY_FILTERS, create_optimizer, param_groups_weight_decay

__all__ = ["OPTIMIZERS", "WEIGHT_DECAY_FILTERS", "AdamW", "Lion", "create_optimizer", "param_groups_weight_decay"]
