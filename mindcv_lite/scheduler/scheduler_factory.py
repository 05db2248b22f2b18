"""Learning-rate schedules as one value per training step, with mindcv's semantics.

The result is a plain list: MindSpore optimizers take it as ``learning_rate`` and index it with their
``global_step`` parameter, so the schedule lives inside the compiled graph and resumes with the optimizer state.
"""
import logging
import math
from bisect import bisect_right
from typing import List, Optional, Sequence

__all__ = ["SCHEDULERS", "create_scheduler"]

_logger = logging.getLogger(__name__)

SCHEDULERS = ("constant", "cosine_decay", "exponential_decay", "step_decay", "multi_step_decay")


def create_scheduler(
    steps_per_epoch: int,
    scheduler: str = "constant",
    lr: float = 0.01,
    min_lr: float = 1e-6,
    warmup_epochs: int = 3,
    warmup_factor: float = 0.0,
    decay_epochs: int = 10,
    decay_rate: float = 0.9,
    milestones: Optional[Sequence[int]] = None,
    num_epochs: int = 200,
    num_cycles: int = 1,
    cycle_decay: float = 1.0,
    lr_epoch_stair: bool = False,
) -> List[float]:
    """Return the learning rate of every step, ``num_epochs * steps_per_epoch`` values.

    Training is a linear warmup from ``lr * warmup_factor`` towards ``lr`` over ``warmup_epochs``, then the main
    schedule. As in mindcv, the main schedule counts its epochs from the end of the warmup, so ``decay_epochs`` and
    ``milestones`` are relative to it:

    - ``constant``: ``lr``.
    - ``cosine_decay``: cosine from ``lr`` to ``min_lr`` over ``decay_epochs``, repeated ``num_cycles`` times with
      the peak multiplied by ``cycle_decay`` each cycle; ``min_lr`` after the last cycle.
    - ``exponential_decay``: ``lr * decay_rate ** epoch``.
    - ``step_decay``: ``lr * decay_rate ** (epoch // decay_epochs)``, changing at epoch boundaries.
    - ``multi_step_decay``: ``lr * decay_rate ** (number of milestones <= epoch)``, changing at epoch boundaries.

    ``epoch`` is fractional (``step / steps_per_epoch``) unless ``lr_epoch_stair`` is True, which holds the value of
    each epoch's first step for the whole epoch.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}: is the training set empty?")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler '{scheduler}'. Choose one of {', '.join(SCHEDULERS)}.")
    if not 0 <= warmup_epochs <= num_epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be between 0 and num_epochs ({num_epochs}).")
    if scheduler in ("cosine_decay", "step_decay") and decay_epochs <= 0:
        raise ValueError(f"scheduler '{scheduler}' needs decay_epochs > 0, got {decay_epochs}.")
    if scheduler == "cosine_decay" and warmup_epochs + decay_epochs * num_cycles > num_epochs:
        _logger.warning(
            "warmup_epochs + decay_epochs * num_cycles = %d > num_epochs = %d: the cosine is cut off before min_lr.",
            warmup_epochs + decay_epochs * num_cycles, num_epochs,
        )
    milestones = sorted(milestones or ())

    def epoch_of(step):
        epoch = step / steps_per_epoch
        return math.floor(epoch) if lr_epoch_stair else epoch

    def warmup_lr(step):
        return lr * (warmup_factor + (1.0 - warmup_factor) * epoch_of(step) / warmup_epochs)

    def main_lr(step):
        epoch = epoch_of(step)
        if scheduler == "constant":
            return lr
        if scheduler == "cosine_decay":
            cycle, step_in_cycle = divmod(step, decay_epochs * steps_per_epoch)
            if cycle >= num_cycles:
                return min_lr
            peak = lr * cycle_decay**cycle
            return min_lr + 0.5 * (peak - min_lr) * (1.0 + math.cos(math.pi * epoch_of(step_in_cycle) / decay_epochs))
        if scheduler == "exponential_decay":
            return lr * decay_rate**epoch
        if scheduler == "step_decay":
            return lr * decay_rate ** (math.floor(epoch) // decay_epochs)
        return lr * decay_rate ** bisect_right(milestones, math.floor(epoch))

    warmup_steps = warmup_epochs * steps_per_epoch
    main_steps = (num_epochs - warmup_epochs) * steps_per_epoch
    return [warmup_lr(step) for step in range(warmup_steps)] + [main_lr(step) for step in range(main_steps)]
