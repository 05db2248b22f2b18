"""TrainStep / EvalStep: the compiled steps of train.py, on a tiny PiT in graph and pynative mode."""
import errno
import json
import logging
import math
import os
import re
import signal

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_lite.engine import CheckpointManager, EvalStep, TrainStep, load_train_checkpoint, save_train_checkpoint
from mindcv_lite.engine.checkpointing import CheckpointWriteError
from mindcv_lite.engine.interruption import StopSignals
from mindcv_lite.engine.progress import EpochProgress, LossMeter, NonFiniteLossError, format_duration
from mindcv_lite.loss import create_loss
from mindcv_lite.models import load_checkpoint, read_checkpoint
from mindcv_lite.models import pit
from mindcv_lite.models.pit import PoolingTransformer
from mindcv_lite.optim import create_optimizer


def _tiny_pit(seed=0):
    ms.set_seed(seed)
    return PoolingTransformer(img_size=32, base_dims=(16, 16), depth=(1, 1), heads=(1, 2), num_classes=3)


def _batch(size=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(size, dtype=np.int32) % 3
    images = (rng.normal(0, 0.2, (size, 3, 32, 32)) + labels[:, None, None, None]).astype(np.float32)
    return ms.Tensor(images), ms.Tensor(labels)


def _weights(model):
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def test_loss_goes_down(mode):
    model = _tiny_pit()
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "adamw", lr=3e-3, weight_decay=0.05))
    images, labels = _batch()
    losses = [float(step(images, labels)[0].asnumpy()) for _ in range(6)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_matches_mindspore_train_one_step_cell_under_a_fixed_loss_scale():
    images, labels = _batch()
    results = []
    for wrap in ("reference", "ours"):
        model = _tiny_pit()
        optimizer = create_optimizer(model, "adamw", lr=1e-3)
        if wrap == "reference":
            step = nn.TrainOneStepCell(nn.WithLossCell(model, create_loss("CE")), optimizer)
            losses = [float(step(images, labels).asnumpy()) for _ in range(3)]
        else:  # 1024: the scale must cancel out exactly (a power of two)
            step = TrainStep(model, create_loss("CE"), optimizer, loss_scale=1024.0)
            losses = [float(step(images, labels)[0].asnumpy()) for _ in range(3)]
        results.append((losses, _weights(model)))
    assert results[0][0] == results[1][0]
    for name, value in results[0][1].items():
        np.testing.assert_array_equal(results[1][1][name], value, err_msg=name)


def test_dynamic_loss_scale_skips_overflowing_steps_then_grows():
    model = _tiny_pit()
    optimizer = create_optimizer(model, "sgd", lr=0.1)
    step = TrainStep(model, create_loss("CE"), optimizer, loss_scale=1024.0, dynamic_loss_scale=True,
                     scale_window=2)
    images, labels = _batch()
    before = _weights(model)
    # One infinite pixel makes every gradient non-finite, whatever the layers' formulation: an overflow of huge but
    # finite scaled gradients would depend on how each kernel sums.
    corrupt = images.asnumpy().copy()
    corrupt[0, 0, 0, 0] = np.inf
    _, overflow = step(ms.Tensor(corrupt), labels)
    assert bool(overflow.asnumpy()) and float(step.scale_sense.asnumpy()) == 512.0
    for name, value in _weights(model).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert int(optimizer.global_step.asnumpy()[0]) == 0
    ms.ops.assign(step.scale_sense, ms.Tensor(8.0, ms.float32))
    for expected_scale in (8.0, 16.0, 16.0, 32.0):  # doubles after every scale_window=2 good steps
        _, overflow = step(images, labels)
        assert not bool(overflow.asnumpy())
        assert float(step.scale_sense.asnumpy()) == expected_scale
    assert int(optimizer.global_step.asnumpy()[0]) == 4


def test_gradient_accumulation_equals_one_big_batch(mode):
    images, labels = _batch(8)
    results = []
    for accumulation in (1, 2):
        model = _tiny_pit()
        step = TrainStep(model, create_loss("CE"), create_optimizer(model, "sgd", lr=0.1),
                         accumulation_steps=accumulation)
        if accumulation == 1:
            step(images, labels)
        else:
            step(images[:4], labels[:4], False)
            step(images[4:], labels[4:], True)
        results.append(_weights(model))
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_ema_follows_mindcv_rule_and_clipping_bounds_the_update():
    model = _tiny_pit()
    decay = 0.9
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "sgd", lr=1.0), ema=True, ema_decay=decay,
                     clip_grad=True, clip_value=1e-3)
    before = _weights(model)
    step(*_batch())
    after = _weights(model)
    delta = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in before))
    assert 0 < delta <= 1e-3 * (1 + 1e-4)  # sgd with lr 1: the update is the clipped gradient
    d = decay * (1 - math.exp(-1 / 2000))
    for ema in step.ema_weights:
        name = ema.name[len("ema."):]
        np.testing.assert_allclose(ema.asnumpy(), d * before[name] + (1 - d) * after[name], rtol=1e-5, atol=1e-7)


def test_eval_step_counts_top1_top5_and_summed_loss(mode):
    model = _tiny_pit()
    images, labels = _batch(6)
    loss_sum, top1, topk = EvalStep(model, create_loss("CE"), num_classes=3)(images, labels)
    model.set_train(False)
    logits = model(images).asnumpy()
    expected_loss = -np.log(np.exp(logits - logits.max(1, keepdims=True)) /
                            np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    expected_loss = expected_loss[np.arange(6), labels.asnumpy()].sum()
    assert float(loss_sum.asnumpy()) == pytest.approx(expected_loss, rel=1e-5)
    assert int(top1.asnumpy()) == int(np.sum(logits.argmax(1) == labels.asnumpy()))
    assert int(topk.asnumpy()) == 6  # k = min(5, 3 classes): every label is within the top 3


def _fake_write(path):
    with open(path, "w") as f:
        f.write("checkpoint")


def test_training_state_is_handed_to_the_checkpoint_door_and_skipped_when_loading_weights(pynative, tmp_path):
    # nadam (mu_product), EMA (train.ema_updates), a dynamic loss scale and accumulation: names no list in
    # models/ knows; the engine hands them over as training state and the file records them.
    model = _tiny_pit()
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "nadam", lr=1e-3), loss_scale=8.0,
                     dynamic_loss_scale=True, accumulation_steps=2, ema=True)
    images, labels = _batch()
    step(images, labels, False)
    step(images, labels, True)
    path = str(tmp_path / "tiny-1_2.ckpt")
    save_train_checkpoint(path, step, model, "tiny", epoch=1, global_step=2, class_names=["a", "b", "c"])
    entries = read_checkpoint(path)
    assert {"mu_product", "train.ema_updates", "loss_scale_good_steps", "scale_sense"} <= set(entries)

    weights_only = _tiny_pit(seed=1)
    weights_only.checkpoint_filter_fn = pit.checkpoint_filter_fn  # as create_model sets it: mindcv's names
    load_checkpoint(weights_only, path)  # strict: any state taken for a weight would be "unexpected"
    for name, value in _weights(model).items():
        np.testing.assert_array_equal(_weights(weights_only)[name], value, err_msg=name)

    resumed_model = _tiny_pit(seed=1)
    resumed = TrainStep(resumed_model, create_loss("CE"), create_optimizer(resumed_model, "nadam", lr=1e-3),
                        loss_scale=8.0, dynamic_loss_scale=True, accumulation_steps=2, ema=True)
    assert load_train_checkpoint(path, resumed, resumed_model, "tiny", ["a", "b", "c"]) == (1, 2)
    for param, original in zip(resumed.get_parameters(), step.get_parameters()):
        np.testing.assert_array_equal(param.asnumpy(), original.asnumpy(), err_msg=param.name)


def test_checkpoint_manager_latest_k_with_interval(tmp_path):
    manager = CheckpointManager(str(tmp_path), "pit_ti", keep_max=2, policy="latest_k", save_interval=2)
    for epoch, top1 in zip(range(1, 6), (0.1, 0.5, 0.4, 0.3, 0.2)):
        manager.save(_fake_write, epoch, steps_per_epoch=7, num_epochs=5, top1=top1)
    # saved after epochs 2, 4 and 5 (the last); the two newest kept; best = epoch 2's 0.5
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["pit_ti-4_7.ckpt", "pit_ti-5_7.ckpt",
                                                               "pit_ti_best.ckpt"]
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert (index["best"]["epoch"], index["best"]["top1"], index["latest"]["file"]) == (2, 0.5, "pit_ti-5_7.ckpt")
    assert CheckpointManager(str(tmp_path), "pit_ti", resume=True).latest() == str(tmp_path / "pit_ti-5_7.ckpt")


def test_checkpoint_manager_top_k_keeps_the_best_and_the_newest(tmp_path):
    manager = CheckpointManager(str(tmp_path), "m", keep_max=2, policy="top_k")
    for epoch, top1 in enumerate((0.3, 0.9, 0.1, 0.8, 0.2), start=1):
        manager.save(_fake_write, epoch, steps_per_epoch=3, num_epochs=5, top1=top1)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["m-2_3.ckpt", "m-4_3.ckpt", "m-5_3.ckpt",
                                                               "m_best.ckpt"]
    with pytest.raises(ValueError, match="latest_k or top_k"):
        CheckpointManager(str(tmp_path), "m", policy="best")


def test_a_write_killed_midway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = _tiny_pit()
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "adamw", lr=1e-3))
    manager = CheckpointManager(str(tmp_path), "tiny", keep_max=5)

    def write(path):
        save_train_checkpoint(path, step, model, "tiny", epoch=1, global_step=3, class_names=["a", "b", "c"])

    manager.save(write, 1, steps_per_epoch=3, num_epochs=3)
    path = tmp_path / "tiny-1_3.ckpt"
    original = path.read_bytes()

    def killed(save_obj, ckpt_file_name, **kwargs):
        with open(ckpt_file_name, "wb") as f:
            f.write(original[: len(original) // 2])
        raise KeyboardInterrupt  # as a kill would stop the process in the middle of the write

    monkeypatch.setattr(ms, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        manager.save(write, 1, steps_per_epoch=3, num_epochs=3)  # overwriting epoch 1's file
    with pytest.raises(KeyboardInterrupt):
        manager.save(write, 2, steps_per_epoch=3, num_epochs=3)
    assert path.read_bytes() == original and not (tmp_path / "tiny-2_3.ckpt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints.json", "tiny-1_3.ckpt"]  # no temp files left
    assert json.loads((tmp_path / "checkpoints.json").read_text())["latest"]["file"] == "tiny-1_3.ckpt"
    assert int(read_checkpoint(str(path))["epoch_num"]) == 1


def test_a_failed_write_stops_with_a_message_and_keeps_every_earlier_checkpoint(tmp_path, monkeypatch):
    model = _tiny_pit()
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "adamw", lr=1e-3))
    manager = CheckpointManager(str(tmp_path), "tiny", keep_max=5)

    def write(path):
        save_train_checkpoint(path, step, model, "tiny", epoch=1, global_step=3, class_names=["a", "b", "c"])

    manager.save(write, 1, steps_per_epoch=3, num_epochs=3)
    manager.save_step(write, 2, epoch_step=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(save_obj, ckpt_file_name, **kwargs):
        with open(ckpt_file_name, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ms, "save_checkpoint", disk_full)
    for save in (lambda: manager.save_step(write, 2, epoch_step=2), lambda: manager.save(write, 2, 3, 3)):
        with pytest.raises(CheckpointWriteError, match=r"tiny-2_\d.ckpt' failed \(.*No space left on device\)\. "
                                                       r"Training stopped; every earlier checkpoint is intact "
                                                       r"\(latest: .*tiny-2_1.ckpt\)") as failed:
            save()
        assert failed.value.exit_code == 74
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing lost, no temp file left


def test_mid_epoch_checkpoints_are_kept_apart_and_the_index_rebuilds_from_the_files(tmp_path):
    manager = CheckpointManager(str(tmp_path), "m", keep_max=2)
    manager.save(_fake_write, 1, steps_per_epoch=4, num_epochs=5)
    for epoch_step in (1, 2, 3):  # only the newest mid-epoch checkpoint is kept; keep_max counts epochs only
        manager.save_step(_fake_write, 2, epoch_step)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["m-1_4.ckpt", "m-2_3.ckpt"]
    assert manager.resume_candidates() == [str(tmp_path / "m-2_3.ckpt"), str(tmp_path / "m-1_4.ckpt")]
    manager.save(_fake_write, 2, steps_per_epoch=4, num_epochs=5)  # supersedes the mid-epoch one
    manager.save(_fake_write, 3, steps_per_epoch=4, num_epochs=5)
    manager.save_step(_fake_write, 4, 1)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["m-2_4.ckpt", "m-3_4.ckpt", "m-4_1.ckpt"]

    (tmp_path / "checkpoints.json").write_text("{")
    rebuilt = CheckpointManager(str(tmp_path), "m", resume=True)
    assert rebuilt.resume_candidates() == [str(tmp_path / n) for n in ("m-4_1.ckpt", "m-3_4.ckpt", "m-2_4.ckpt")]
    (tmp_path / "checkpoints.json").unlink()  # a kill before the first index write: the files still count
    assert CheckpointManager(str(tmp_path), "m", resume=True).latest() == str(tmp_path / "m-4_1.ckpt")


def test_progress_logs_every_log_interval_steps_with_loss_lr_rate_and_eta(caplog):
    logger = logging.getLogger("progress-test")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress = EpochProgress(epoch=2, num_epochs=3, steps=7, images_per_step=16, log_interval=3, use_bar=False,
                                 logger=logger)
        losses = []
        for step in range(7):
            losses.append(float(step))
            if progress.advance():
                progress.log(sum(losses) / len(losses), lr=1e-3)
                losses = []
        summary = progress.close(mean_loss=3.0)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("  ")[0] for line in lines] == ["epoch 2/3 step 3/7", "epoch 2/3 step 6/7", "epoch 2/3 step 7/7"]
    assert all(re.search(r"loss \d+\.\d{4}  lr 1\.000e-03  [\d.]+ img/s  eta \d\d:\d\d \(run \d\d:\d\d\)", line)
               for line in lines)
    assert "loss 1.0000" in lines[0] and "loss 4.0000" in lines[1] and "loss 6.0000" in lines[2]
    assert summary["loss"] == 3.0 and summary["images_per_s"] > 0


def test_loss_meter_sums_on_the_device_and_names_the_first_nonfinite_step(mode):
    def feed(meter, losses, overflows):
        for loss, overflow in zip(losses, overflows):
            meter.update(ms.Tensor(loss, ms.float32), ms.Tensor(overflow))

    # loss scaling on: non-finite steps are skipped and left out of the means
    meter = LossMeter(steps_per_epoch=4, nonfinite_ok=True)
    feed(meter, [1.0, float("nan"), 3.0], [False, True, False])
    meter.sync()
    assert meter.pop_interval() == 2.0
    feed(meter, [float("inf"), 6.0], [True, False])
    meter.sync()
    assert meter.pop_interval() == 6.0 and meter.pop_epoch() == (10.0 / 3, 2)

    # resumed at global step 5 (epoch 2, step 1 done): the first NaN (global step 7) is named, not the later inf
    meter = LossMeter(steps_per_epoch=4, first_step=5, checkpoint_dir="ckpt_dir")
    feed(meter, [1.0, float("nan"), 2.0, float("inf")], [False] * 4)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 3 \(global step 7\).*ckpt_dir"):
        meter.sync()


def test_progress_bar_replaces_log_lines_on_a_terminal(caplog, capsys):
    logger = logging.getLogger("progress-test")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress = EpochProgress(epoch=1, num_epochs=1, steps=4, images_per_step=8, log_interval=1, use_bar=True,
                                 logger=logger)
        for _ in range(4):
            if progress.advance():
                progress.log(0.5, lr=0.1)
        progress.close(0.5)
    assert not caplog.records
    assert "epoch 1/1" in capsys.readouterr().err and format_duration(3725) == "1:02:05"


def test_a_stop_signal_is_announced_by_the_step_loop_not_inside_the_handler(caplog):
    """The handler only records the signal: logging from it fails when the signal interrupts a log line being
    written (a reentrant write to stdout); the next `requested()` after a step logs it, once."""
    with caplog.at_level(logging.WARNING), StopSignals() as stops:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.signal_name == "SIGTERM" and "SIGTERM received" not in caplog.text
        assert stops.requested() and stops.received()
        assert caplog.text.count("SIGTERM received: stopping after the current step") == 1
