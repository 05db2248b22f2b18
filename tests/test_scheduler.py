"""Per-step learning rates against values worked out by hand from mindcv's definitions."""
import math

import pytest

from mindcv_lite.scheduler import SCHEDULERS, create_scheduler


def _close(actual, expected):
    assert len(actual) == len(expected)
    assert actual == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_warmup_is_linear_per_step_from_warmup_factor_then_constant():
    lrs = create_scheduler(2, "constant", lr=0.1, warmup_epochs=2, warmup_factor=0.0, num_epochs=4)
    _close(lrs, [0.0, 0.025, 0.05, 0.075] + [0.1] * 4)


def test_cosine_decay_per_step_reaches_min_lr_and_stays():
    lrs = create_scheduler(2, "cosine_decay", lr=1.0, min_lr=0.0, warmup_epochs=1, warmup_factor=0.5,
                           decay_epochs=2, num_epochs=4)
    # warmup 0.5 -> 1 over 2 steps; cosine over 2 epochs = 4 steps at epochs 0, 0.5, 1, 1.5; then min_lr.
    _close(lrs, [0.5, 0.75, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)),
                 0.0, 0.0])


def test_cosine_cycles_restart_with_decayed_peak():
    lrs = create_scheduler(1, "cosine_decay", lr=1.0, min_lr=0.1, warmup_epochs=0, decay_epochs=2, num_epochs=5,
                           num_cycles=2, cycle_decay=0.5)
    # cycle 1 peaks at 1.0, cycle 2 at 0.5; half-way down each is min_lr + (peak - min_lr) / 2.
    _close(lrs, [1.0, 0.55, 0.5, 0.3, 0.1])


def test_epoch_stair_holds_each_epochs_first_value():
    lrs = create_scheduler(2, "cosine_decay", lr=1.0, min_lr=0.0, warmup_epochs=2, warmup_factor=0.0,
                           decay_epochs=2, num_epochs=4, lr_epoch_stair=True)
    _close(lrs, [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 0.5, 0.5])
    per_step = create_scheduler(3, "cosine_decay", lr=1.0, warmup_epochs=1, decay_epochs=4, num_epochs=5)
    stair = create_scheduler(3, "cosine_decay", lr=1.0, warmup_epochs=1, decay_epochs=4, num_epochs=5,
                             lr_epoch_stair=True)
    _close(stair, [per_step[step - step % 3] for step in range(15)])


def test_step_decay_every_decay_epochs():
    lrs = create_scheduler(2, "step_decay", lr=1.0, warmup_epochs=0, decay_epochs=2, decay_rate=0.5, num_epochs=5)
    _close(lrs, [1.0] * 4 + [0.5] * 4 + [0.25] * 2)


def test_multi_step_decay_milestones_count_from_end_of_warmup():
    # mindcv counts the main schedule's epochs from the end of the warmup: milestone 1 is training epoch 2.
    lrs = create_scheduler(1, "multi_step_decay", lr=1.0, warmup_epochs=1, warmup_factor=0.0, decay_rate=0.1,
                           milestones=[3, 1], num_epochs=6)
    _close(lrs, [0.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_exponential_decay_per_step_and_per_epoch():
    _close(create_scheduler(2, "exponential_decay", lr=1.0, warmup_epochs=0, decay_rate=0.5, num_epochs=2),
           [1.0, 0.5**0.5, 0.5, 0.5**1.5])
    _close(create_scheduler(2, "exponential_decay", lr=1.0, warmup_epochs=0, decay_rate=0.5, num_epochs=2,
                            lr_epoch_stair=True), [1.0, 1.0, 0.5, 0.5])


def test_polynomial_decay_reaches_zero_at_the_end_of_the_run_with_decay_rate_as_power():
    # mindcv's polynomial_refined_lr over the epochs after the warmup: lr * (1 - epoch / 4) ** 2
    lrs = create_scheduler(2, "polynomial_decay", lr=1.0, warmup_epochs=1, warmup_factor=0.0, decay_rate=2.0,
                           num_epochs=5)
    _close(lrs, [0.0, 0.5] + [(1 - step / 8) ** 2 for step in range(8)])


def test_one_cycle_rises_from_lr_over_25_for_30_percent_then_falls_to_min_lr():
    # torch's OneCycleLR (mindcv's one_cycle_lr): 20 steps, the peak at step 0.3 * 20 - 1 = 5, cosine both ways.
    lrs = create_scheduler(4, "one_cycle", lr=1.0, min_lr=0.001, warmup_epochs=0, num_epochs=5)
    start = 1.0 / 25
    rise = [1.0 + (start - 1.0) * 0.5 * (1 + math.cos(math.pi * step / 5)) for step in range(6)]
    fall = [0.001 + (1.0 - 0.001) * 0.5 * (1 + math.cos(math.pi * (step - 5) / 14)) for step in range(6, 20)]
    _close(lrs, rise + fall)
    assert (lrs[0], lrs[5], lrs[-1]) == pytest.approx((0.04, 1.0, 0.001))


def test_cyclic_is_num_cycles_linear_triangles_between_min_lr_and_lr():
    # torch's CyclicLR (mindcv's cyclic_lr): 12 steps, 2 cycles -> up for 3 steps, down for 3.
    lrs = create_scheduler(3, "cyclic", lr=1.0, min_lr=0.25, warmup_epochs=0, num_epochs=4, num_cycles=2)
    triangle = [0.25, 0.5, 0.75, 1.0, 0.75, 0.5]
    _close(lrs, triangle * 2)


@pytest.mark.parametrize("scheduler", ["one_cycle", "cyclic"])
def test_whole_run_schedules_refuse_a_warmup_or_per_epoch_values_as_mindcv_does(scheduler):
    with pytest.raises(ValueError, match="warmup_epochs 0 and lr_epoch_stair False"):
        create_scheduler(4, scheduler, warmup_epochs=3, num_epochs=5)
    with pytest.raises(ValueError, match="warmup_epochs 0 and lr_epoch_stair False"):
        create_scheduler(4, scheduler, warmup_epochs=0, num_epochs=5, lr_epoch_stair=True)
    with pytest.raises(ValueError, match="steps"):
        create_scheduler(1, scheduler, warmup_epochs=0, num_epochs=1, num_cycles=2)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_one_value_per_step(scheduler):
    warmup_epochs = 0 if scheduler in ("one_cycle", "cyclic") else 2
    lrs = create_scheduler(7, scheduler, warmup_epochs=warmup_epochs, decay_epochs=3, milestones=[2], num_epochs=9)
    assert len(lrs) == 63 and all(isinstance(lr, float) for lr in lrs)


def test_pit_xs_recipe_schedule():
    steps_per_epoch = 10
    lrs = create_scheduler(steps_per_epoch, "cosine_decay", lr=0.001, min_lr=1e-5, warmup_epochs=10,
                           decay_epochs=590, num_epochs=600)
    assert len(lrs) == 6000 and lrs[0] == 0.0
    assert max(lrs) == lrs[100] == pytest.approx(0.001)  # peak right after the 10 warmup epochs
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-10)  # last step: 0.1 epoch before the end of the cosine


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="cosine"):
        create_scheduler(10, "cosine")
    with pytest.raises(ValueError, match="warmup_epochs"):
        create_scheduler(10, "constant", warmup_epochs=-1, num_epochs=3)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        create_scheduler(0, "constant")


def _warnings(caplog):
    return [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("mindcv_lite.scheduler")]


def test_shortened_recipe_warns_once_and_fits_warmup_and_decay_into_the_run(caplog):
    # pit_xs's recipe (warmup 10, cosine 590 epochs) run for 12 epochs: warmup 10 epochs, the cosine over the last 2.
    lrs = create_scheduler(2, "cosine_decay", lr=1.0, min_lr=0.0, warmup_epochs=10, warmup_factor=0.0,
                           decay_epochs=590, num_epochs=12)
    assert len(_warnings(caplog)) == 1 and "longer than the run" in _warnings(caplog)[0].getMessage()
    _close(lrs, [step / 20 for step in range(20)] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])


def test_warmup_longer_than_the_run_warms_up_over_the_whole_run(caplog):
    # `--epoch_size 6` with the recipe's warmup_epochs 10 (mindcv's example): warm up over the 6 epochs.
    lrs = create_scheduler(1, "cosine_decay", lr=1.0, min_lr=0.0, warmup_epochs=10, warmup_factor=0.4,
                           decay_epochs=490, num_epochs=6)
    assert len(_warnings(caplog)) == 1 and "no decay phase" in _warnings(caplog)[0].getMessage()
    _close(lrs, [0.4 + 0.6 * step / 6 for step in range(6)])
    single = create_scheduler(3, "step_decay", lr=1.0, warmup_epochs=5, decay_epochs=2, num_epochs=1)
    _close(single, [0.0, 1 / 3, 2 / 3])


def test_full_length_recipe_does_not_warn(caplog):
    create_scheduler(2, "cosine_decay", warmup_epochs=10, decay_epochs=590, num_epochs=600)
    assert not _warnings(caplog)
