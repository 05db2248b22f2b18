"""Per-step learning-rate schedules (mindcv semantics)."""
from .scheduler_factory import SCHEDULERS, create_scheduler

__all__ = ["SCHEDULERS", "create_scheduler"]
