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

SCHEDULERS = ("constant", "cosine_decay", "exponential_decay", "polynomial_decay", "step_decay", "multi_step_decay",
              "one_cycle", "cyclic")
# Schedules that warm up by themselves over the whole run: mindcv refuses a warmup or per-epoch values with them.
_WHOLE_RUN_SCHEDULERS = ("one_cycle", "cyclic")
_ONE_CYCLE_DIV_FACTOR = 25.0  # mindcv's (and torch's OneCycleLR) initial lr = lr / 25
_ONE_CYCLE_PCT_START = 0.3  # the share of the steps spent rising


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
    - ``polynomial_decay``: ``lr * (1 - epoch / main_epochs) ** decay_rate``, reaching 0 at the end of the run
      (``main_epochs`` = ``num_epochs - warmup_epochs``; mindcv uses ``decay_rate`` as the power).
    - ``step_decay``: ``lr * decay_rate ** (epoch // decay_epochs)``, changing at epoch boundaries.
    - ``multi_step_decay``: ``lr * decay_rate ** (number of milestones <= epoch)``, changing at epoch boundaries.
    - ``one_cycle`` (torch's OneCycleLR, two phases, cosine): from ``lr / 25`` up to ``lr`` over the first 30% of
      the steps, then down to ``min_lr`` at the last step.
    - ``cyclic`` (torch's CyclicLR, triangular): ``num_cycles`` linear triangles between ``min_lr`` and ``lr``
      over the run, each rising for half of it.

    ``one_cycle`` and ``cyclic`` span the whole run and warm up by themselves: as in mindcv they need
    ``warmup_epochs`` 0 and ``lr_epoch_stair`` False.

    ``epoch`` is fractional (``step / steps_per_epoch``) unless ``lr_epoch_stair`` is True, which holds the value of
    each epoch's first step for the whole epoch.

    A recipe longer than the run (``warmup_epochs`` + ``decay_epochs * num_cycles`` > ``num_epochs``, e.g. a
    600-epoch recipe run for 6) logs one warning and is fitted to the run: the warmup keeps its length when it fits
    (else spans the whole run) and the cosine decays to ``min_lr`` over the epochs left.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}: is the training set empty?")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler '{scheduler}'. Choose one of {', '.join(SCHEDULERS)}.")
    if warmup_epochs < 0 or num_epochs <= 0:
        raise ValueError(f"need warmup_epochs >= 0 and num_epochs > 0, got {warmup_epochs} and {num_epochs}.")
    if scheduler in _WHOLE_RUN_SCHEDULERS:
        return _whole_run_schedule(scheduler, steps_per_epoch * num_epochs, lr, min_lr, warmup_epochs,
                                   lr_epoch_stair, num_cycles)
    if scheduler in ("cosine_decay", "step_decay") and decay_epochs <= 0:
        raise ValueError(f"scheduler '{scheduler}' needs decay_epochs > 0, got {decay_epochs}.")
    total_steps = num_epochs * steps_per_epoch
    warmup_steps = min(warmup_epochs, num_epochs) * steps_per_epoch
    cycle_steps = decay_epochs * steps_per_epoch
    recipe_epochs = warmup_epochs + (decay_epochs * num_cycles if scheduler == "cosine_decay" else 0)
    if recipe_epochs > num_epochs:
        # A shortened recipe (a quick run, a fine-tune): warm up over what fits, then decay over what is left.
        if scheduler == "cosine_decay" and total_steps > warmup_steps:
            cycle_steps = min(cycle_steps, max((total_steps - warmup_steps) // num_cycles, 1))
        _logger.warning(
            "The schedule (warmup_epochs %d%s) is longer than the run (%d epochs): warming up over %d epoch(s)%s.",
            warmup_epochs, f" + decay_epochs {decay_epochs} x {num_cycles} cycle(s)" if scheduler == "cosine_decay"
            else "", num_epochs, warmup_steps // steps_per_epoch,
            f", cosine decay over {cycle_steps / steps_per_epoch:g} epoch(s) per cycle"
            if scheduler == "cosine_decay" and total_steps > warmup_steps else ", no decay phase",
        )
    milestones = sorted(milestones or ())
    main_epochs = num_epochs - min(warmup_epochs, num_epochs)

    def epoch_of(step):
        epoch = step / steps_per_epoch
        return math.floor(epoch) if lr_epoch_stair else epoch

    def warmup_lr(step):
        return lr * (warmup_factor + (1.0 - warmup_factor) * epoch_of(step) * steps_per_epoch / warmup_steps)

    def main_lr(step):
        epoch = epoch_of(step)
        if scheduler == "constant":
            return lr
        if scheduler == "cosine_decay":
            cycle, step_in_cycle = divmod(step, cycle_steps)
            if cycle >= num_cycles:
                return min_lr
            peak = lr * cycle_decay**cycle
            progress = epoch_of(step_in_cycle) * steps_per_epoch / cycle_steps
            return min_lr + 0.5 * (peak - min_lr) * (1.0 + math.cos(math.pi * progress))
        if scheduler == "exponential_decay":
            return lr * decay_rate**epoch
        if scheduler == "polynomial_decay":
            return lr * (1.0 - epoch / main_epochs) ** decay_rate
        if scheduler == "step_decay":
            return lr * decay_rate ** (math.floor(epoch) // decay_epochs)
        return lr * decay_rate ** bisect_right(milestones, math.floor(epoch))

    return [warmup_lr(step) for step in range(warmup_steps)] + [main_lr(step)
                                                                 for step in range(total_steps - warmup_steps)]


def _whole_run_schedule(scheduler, total_steps, lr, min_lr, warmup_epochs, lr_epoch_stair, num_cycles):
    """mindcv's one_cycle and cyclic: per-step values over the whole run, without a separate warmup."""
    if warmup_epochs > 0 or lr_epoch_stair:
        raise ValueError(f"scheduler '{scheduler}' warms up by itself and changes lr every step: set "
                         f"warmup_epochs 0 and lr_epoch_stair False (got {warmup_epochs} and {lr_epoch_stair}).")
    if scheduler == "one_cycle":
        rise_end = _ONE_CYCLE_PCT_START * total_steps - 1  # the step at which lr peaks, as torch counts it
        if rise_end <= 0:
            raise ValueError(f"one_cycle needs at least 4 steps in the run, got {total_steps}.")
        start, end = lr / _ONE_CYCLE_DIV_FACTOR, total_steps - 1

        def anneal(first, last, progress):  # cosine from `first` (progress 0) to `last` (progress 1)
            return last + (first - last) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return [anneal(start, lr, step / rise_end) if step <= rise_end
                else anneal(lr, min_lr, (step - rise_end) / (end - rise_end)) for step in range(total_steps)]
    if num_cycles < 1:
        raise ValueError(f"cyclic needs num_cycles >= 1, got {num_cycles}.")
    half_cycle = total_steps // num_cycles // 2
    if half_cycle < 1:
        raise ValueError(f"cyclic with num_cycles={num_cycles} needs at least {2 * num_cycles} steps in the run, got "
                         f"{total_steps}: lower num_cycles.")
    # the position in the current triangle, 0 at min_lr, 1 at lr
    return [min_lr + (lr - min_lr) * (1.0 - abs(step % (2 * half_cycle) / half_cycle - 1.0))
            for step in range(total_steps)]
