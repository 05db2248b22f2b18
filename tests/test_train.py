"""train.py end to end on generated images: checkpoints, exact resume (also after SIGTERM), damaged checkpoints,
NaN handling, fine-tuning, bad settings and folders."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from _image_folders import make_image_folder
from mindcv_lite.engine import EvalStep, NonFiniteLossError, train
from mindcv_lite.engine.interruption import TrainingStopped
from mindcv_lite.models import create_model, read_checkpoint
from mindcv_lite.utils.config import parse_args

REPO = Path(__file__).resolve().parents[1]
PIT_TI_MINDCV = Path(__file__).parent / "fixtures" / "reference" / "mindcv" / "pit_ti.tsv"


RECIPE = REPO / "configs" / "pit" / "pit_ti_ascend.yaml"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), num_classes=3, per_class=8, size=(32, 32), ext=".png")


def _argv(data_dir, ckpt_dir, *extra):
    """pit_ti's recipe with its full augmentation (RandAugment, random erasing, Mixup/CutMix) at 32 px, 2 epochs
    of 6 steps. Stochastic depth is off: its random draws live in MindSpore's kernels, which no checkpoint holds."""
    return [
        "-c", str(RECIPE), "--data_dir", str(data_dir), "--ckpt_save_dir", str(ckpt_dir), "--distribute", "False",
        "--image_resize", "32", "--num_classes", "3", "--drop_path_rate", "0", "--batch_size", "4", "--epoch_size",
        "2", "--warmup_epochs", "1", "--decay_epochs", "1", "--lr", "1e-3", "--num_parallel_workers", "2",
        "--log_interval", "3", "--device_target", "CPU", "--ema", "True", "--val_while_train", "True",
        "--keep_checkpoint_max", "1", *extra,
    ]  # fmt: skip


def _args(data_dir, ckpt_dir, *extra):
    return parse_args(_argv(data_dir, ckpt_dir, *extra))


NO_VAL = ("--val_while_train", "False")  # validation does not touch the training state: skipped for speed


@pytest.fixture(scope="module")
def one_epoch_run(data_dir, tmp_path_factory):
    """Epoch 1 of the two-epoch run, stopped there (its schedule's warmup equals the full run's)."""
    ckpt_dir = tmp_path_factory.mktemp("one_epoch")
    train(_args(data_dir, ckpt_dir, "--epoch_size", "1"))
    return ckpt_dir


@pytest.fixture(scope="module")
def two_epoch_run(data_dir, tmp_path_factory):
    """The uninterrupted run that resumed runs must reproduce."""
    ckpt_dir = tmp_path_factory.mktemp("two_epochs")
    train(_args(data_dir, ckpt_dir, *NO_VAL))
    return ckpt_dir


def _entries_equal(a, b):
    assert sorted(a) == sorted(b)
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(b[key], value, err_msg=key)  # bit for bit
        else:
            assert b[key] == value, key


def test_one_epoch_then_sigterm_mid_epoch_two_then_resume_reproduces_the_uninterrupted_run(
        data_dir, one_epoch_run, two_epoch_run, tmp_path):
    """1 epoch, resume, SIGTERM in the middle of epoch 2, resume: the weights, optimizer state and EMA at the end
    equal those of 2 epochs in one run, bit for bit (graph mode, the recipe's augmentation on)."""
    log = (two_epoch_run / "train.log").read_text()  # the recipe's Ascend settings fall back on CPU, once each
    assert log.count("amp_level=O2") == 1 and log.count("dataset_sink_mode is not available") == 1, log
    ckpt_dir = tmp_path / "resumed"
    shutil.copytree(one_epoch_run, ckpt_dir)
    argv = _argv(data_dir, ckpt_dir, "--resume", "auto", *NO_VAL, "--log_interval", "1")
    process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    signalled = None
    try:
        for line in process.stdout:
            if "epoch 2/2 step 1/6" in line:
                signalled = time.perf_counter()
                process.send_signal(signal.SIGTERM)
                break
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert signalled is not None, output
    print(f"SIGTERM to exit: {time.perf_counter() - signalled:.1f} s (graph mode)")
    assert process.returncode == 75, output
    (message,) = [line for line in output.splitlines() if line.startswith("train.py:")]
    found = re.search(r"stopped by SIGTERM at epoch 2, step (\d)/6 \(global step \d+\): checkpoint (\S+) written; "
                      r"continue with --resume auto", message)
    assert found and int(found[1]) < 6 and "Traceback" not in output, message
    assert found[2] == str(ckpt_dir / f"pit_ti-2_{found[1]}.ckpt")
    assert json.loads((ckpt_dir / "checkpoints.json").read_text())["latest"]["file"] == f"pit_ti-2_{found[1]}.ckpt"

    train(parse_args(argv))  # in this process: saves a start-up
    _entries_equal(read_checkpoint(two_epoch_run / "pit_ti-2_6.ckpt"), read_checkpoint(ckpt_dir / "pit_ti-2_6.ckpt"))
    assert sorted(p.name for p in ckpt_dir.glob("pit_ti-*.ckpt")) == ["pit_ti-2_6.ckpt"]  # mid-epoch one superseded
    metrics = [json.loads(line) for line in (ckpt_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # the resumed runs continued the file


def test_a_stop_signal_during_validation_ends_it_at_the_next_batch(data_dir, tmp_path, monkeypatch, caplog):
    """Validation can take minutes and a preempted job has seconds: SIGTERM during epoch 1's validation stops the
    run after one validation batch (of 6), with epoch 1's checkpoint (one training step) and no val_* metrics."""
    validated = []

    def signal_on_first_batch(step, *inputs):
        validated.append(inputs[1].shape[0])
        if len(validated) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return nn.Cell.__call__(step, *inputs)

    monkeypatch.setattr(EvalStep, "__call__", signal_on_first_batch)
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM at epoch 1, step 1/1 .*pit_ti-1_1\.ckpt written"):
        train(_args(data_dir, tmp_path, "--mode", "1", "--ema", "False", "--num_samples", "4"))
    assert validated == [4]
    assert "validation of epoch 1 interrupted by a stop request" in caplog.text
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and not [key for key in record if key.startswith("val_")]
    assert json.loads((tmp_path / "checkpoints.json").read_text())["latest"]["file"] == "pit_ti-1_1.ckpt"


def test_resume_auto_falls_back_past_a_damaged_checkpoint_or_index(data_dir, one_epoch_run, tmp_path, caplog):
    ckpt_dir = tmp_path / "damaged"
    shutil.copytree(one_epoch_run, ckpt_dir)
    good = (ckpt_dir / "pit_ti-1_6.ckpt").read_bytes()
    (ckpt_dir / "pit_ti-2_3.ckpt").write_bytes(good[: len(good) // 2])  # a newer mid-epoch checkpoint, truncated
    index = json.loads((ckpt_dir / "checkpoints.json").read_text())
    index["latest"] = {"epoch": 2, "top1": None, "file": "pit_ti-2_3.ckpt", "epoch_step": 3}
    index["step_checkpoints"] = [index["latest"]]
    (ckpt_dir / "checkpoints.json").write_text(json.dumps(index))
    resume = _args(data_dir, ckpt_dir, "--resume", "auto", "--epoch_size", "1", *NO_VAL)  # epoch 1: nothing left

    def messages(level):
        return [r.getMessage() for r in caplog.records if r.levelname == level]

    assert train(resume) == {}
    (warning,) = [m for m in messages("WARNING") if "ckpt" in m]
    assert "pit_ti-2_3.ckpt" in warning and "cannot be read" in warning
    assert any(m.startswith(f"Resumed from {ckpt_dir / 'pit_ti-1_6.ckpt'}") for m in messages("INFO"))
    caplog.clear()
    (ckpt_dir / "checkpoints.json").write_text('{"latest": {"file": "pit_ti-')  # cut off mid-write
    assert train(resume) == {}
    index_warning, file_warning = [m for m in messages("WARNING") if "ckpt" in m or "checkpoints.json" in m]
    assert "checkpoints.json is damaged" in index_warning and "rebuilt" in index_warning
    assert "pit_ti-2_3.ckpt" in file_warning
    assert any(m.startswith(f"Resumed from {ckpt_dir / 'pit_ti-1_6.ckpt'}") for m in messages("INFO"))
    with pytest.raises(ValueError, match="cannot read checkpoint .*pit_ti-2_3.ckpt"):
        train(_args(data_dir, ckpt_dir, "--resume", str(ckpt_dir / "pit_ti-2_3.ckpt"), *NO_VAL))


def test_checkpoint_folder_is_checked_before_training(data_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="ckpt_save_dir=.*a_file/ckpt.* cannot be created or written"):
        train(_args(data_dir, blocker / "ckpt"))
    disk_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disk_usage(path)._replace(free=2**20))
    with pytest.raises(OSError, match=r"has 1 MiB free but two checkpoints need \d+ MiB"):
        train(_args(data_dir, tmp_path / "full", *NO_VAL))
    assert not list((tmp_path / "full").glob("*.ckpt"))


def test_checkpoint_holds_weights_in_mindcv_layout_and_the_training_state(data_dir, one_epoch_run):
    path = one_epoch_run / "pit_ti-1_6.ckpt"
    entries = read_checkpoint(path)
    assert (int(entries["epoch_num"]), int(entries["step_num"]), entries["train.model"]) == (1, 6, "pit_ti")
    assert json.loads(entries["train.class_names"]) == ["class_0", "class_1", "class_2"]
    assert int(entries["global_step"][0]) == 6 and float(entries["scale_sense"]) == 1.0
    with open(PIT_TI_MINDCV, newline="") as f:
        mindcv_names = [row["name"] for row in csv.DictReader(f, delimiter="\t")]
    for prefix in ("", "adam_m.", "adam_v.", "ema."):
        assert {prefix + name for name in mindcv_names} <= set(entries), prefix
    assert "learning_rate" not in entries  # rebuilt from the config on resume
    # the data config in use is logged (here the recipe's values)
    assert "data config of pit_ti: image_resize 32, interpolation bicubic, crop_pct 0.875" in \
        (one_epoch_run / "train.log").read_text()

    # mindcv loads by Parameter.name: a network whose parameters carry mindcv's names takes every weight
    mindcv_like = create_model("pit_ti", num_classes=3, img_size=32)
    for param in mindcv_like.get_parameters():
        param.name = mindcv_like.to_mindcv_key(param.name)
    not_loaded, _ = ms.load_param_into_net(mindcv_like, ms.load_checkpoint(str(path)))
    assert not_loaded == []
    ours = create_model("pit_ti", num_classes=3, img_size=32, checkpoint_path=str(path))
    for param, mindcv_param in zip(ours.get_parameters(), mindcv_like.get_parameters()):
        np.testing.assert_array_equal(param.asnumpy(), mindcv_param.asnumpy())

    assert sorted(os.listdir(one_epoch_run)) == sorted([
        "checkpoints.json", "config.yaml", "curves.png", "metrics.jsonl", "pit_ti-1_6.ckpt", "pit_ti_best.ckpt",
        "train.log"])
    (record,) = [json.loads(line) for line in (one_epoch_run / "metrics.jsonl").read_text().splitlines()]
    assert {"epoch", "step", "loss", "lr", "val_top1", "val_top5", "val_loss", "images_per_s", "seconds"} <= set(record)
    assert record["val_num_images"] == 24
    saved = parse_args(["-c", str(one_epoch_run / "config.yaml")])
    assert (saved.model, saved.lr, saved.epoch_size, saved.ema) == ("pit_ti", 1e-3, 1, True)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(data_dir, one_epoch_run, tmp_path):
    ckpt_dir = tmp_path / "diverged"
    shutil.copytree(one_epoch_run, ckpt_dir)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step \d+ \(global step \d+\)"):
        train(_args(data_dir, ckpt_dir, "--resume", "auto", "--lr", "1e30"))
    assert json.loads((ckpt_dir / "checkpoints.json").read_text())["latest"]["file"] == "pit_ti-1_6.ckpt"
    assert not (ckpt_dir / "pit_ti-2_6.ckpt").exists()
    assert int(read_checkpoint(ckpt_dir / "pit_ti-1_6.ckpt")["epoch_num"]) == 1


def test_finetune_with_other_num_classes_in_pynative(one_epoch_run, tmp_path):
    data = make_image_folder(tmp_path / "two", num_classes=2, per_class=4, size=(32, 32), ext=".png")
    source = read_checkpoint(one_epoch_run / "pit_ti-1_6.ckpt")
    # lr 0 and no weight decay: the saved weights are exactly what was loaded, head aside
    train(_args(data, tmp_path / "ft", "--ckpt_path", str(one_epoch_run / "pit_ti-1_6.ckpt"), "--mode", "1",
                "--num_classes", "2",
                "--epoch_size", "1", "--lr", "0", "--weight_decay", "0", "--ema", "False",
                "--val_while_train", "False", "--num_samples", "4", "--warmup_epochs", "0"))
    tuned = read_checkpoint(tmp_path / "ft" / "pit_ti-1_1.ckpt")
    assert tuned["head.weight"].shape == (2, 256) and source["head.weight"].shape == (3, 256)
    for key in ("pos_embed", "0.blocks.1.blocks.2.mlp.fc2.weight", "1.conv.weight", "norm.gamma"):
        np.testing.assert_array_equal(tuned[key], source[key], err_msg=key)


@pytest.mark.parametrize("extra, error, message", [
    (["--amp_level", "O3", "--amp_cast_list", "[nn.Dense]"], ValueError, "amp_cast_list.*only acts with amp_level O1"),
    (["--amp_cast_list", "[nn.Dens]"], ValueError, "did you mean nn.Dense"),
    (["--ckpt_save_policy", "top_k", "--val_while_train", "False"], ValueError, "val_while_train"),
    (["--resume", "auto", "--ckpt_path", "x.ckpt"], ValueError, "not both"),
    (["--resume", "missing.ckpt"], FileNotFoundError, "missing.ckpt"),
    (["--num_classes", "2"], ValueError, "3 class folders but num_classes=2"),
    (["--distribute", "True"], ValueError, "msrun --worker_num"),
    (["--dataset_download", "True"], ValueError, "ImageNet cannot be downloaded"),
])  # fmt: skip
def test_bad_settings_stop_before_training(data_dir, tmp_path, monkeypatch, extra, error, message):
    for name in ("MS_ROLE", "MS_WORKER_NUM", "RANK_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(error, match=message.replace("[", r"\[")):
        train(_args(data_dir, tmp_path, *extra))
    assert not list(tmp_path.glob("*.ckpt"))


def test_script_reports_bad_input_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--data_dir", str(tmp_path / "nowhere"), "--device_target",
                             "CPU", "--ckpt_save_dir", str(tmp_path / "ckpt")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "train.py: error: Dataset root" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "train.py", "--warmup_epoch", "2"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "Did you mean '--warmup_epochs'" in result.stderr


def test_demo_dataset_has_ten_balanced_classes_in_both_splits(tmp_path):
    from mindcv_lite.data import find_classes
    from mindcv_lite.demo import make_demo_dataset

    root = make_demo_dataset(tmp_path / "demo", train_per_class=2, val_per_class=1, size=24)
    assert find_classes(root, "train") == find_classes(root, "val") == sorted(
        f"{colour}_{shape}" for colour in ("red", "yellow", "green", "blue", "magenta") for shape in ("disc", "ring"))
    assert len(list(Path(root).glob("train/*/*.png"))) == 20 and len(list(Path(root).glob("val/*/*.png"))) == 10
    assert parse_args(["-c", str(REPO / "configs" / "pit" / "pit_ti_cpu_demo.yaml")]).num_classes == 10
