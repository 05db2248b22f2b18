"""Optimizers, parameter groups and freezing (mindcv semantics)."""
from .adamw import AdamW
from .adan import Adan
from .freeze import freeze_parameters
from .lamb import Lamb
from .lion import Lion
from .nadam import NAdam
from .optim_factory import DEFAULT_EPS, OPTIMIZERS, WEIGHT_DECAY_FILTERS, create_optimizer, param_groups_weight_decay

__all__ = ["DEFAULT_EPS", "OPTIMIZERS", "WEIGHT_DECAY_FILTERS", "AdamW", "Adan", "Lamb", "Lion", "NAdam",
           "create_optimizer", "freeze_parameters", "param_groups_weight_decay"]
