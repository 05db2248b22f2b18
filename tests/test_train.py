"""train.py end to end on generated images: checkpoints, exact resume, NaN handling, fine-tuning, bad settings."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

from _image_folders import make_image_folder
from mindcv_lite.engine import NonFiniteLossError, train
from mindcv_lite.models import create_model, read_checkpoint
from mindcv_lite.utils.config import parse_args

REPO = Path(__file__).resolve().parents[1]
PIT_TI_MINDCV = Path(__file__).parent / "fixtures" / "reference" / "mindcv" / "pit_ti.tsv"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # square images and no augmentation: the crop is the whole image, so runs are reproducible
    return make_image_folder(tmp_path_factory.mktemp("data"), num_classes=3, per_class=8, size=(32, 32), ext=".png")


def _args(data_dir, ckpt_dir, *extra):
    return parse_args([
        "--data_dir", str(data_dir), "--ckpt_save_dir", str(ckpt_dir), "--model", "pit_ti", "--image_resize", "32",
        "--batch_size", "4", "--epoch_size", "2", "--warmup_epochs", "1", "--decay_epochs", "1", "--opt", "adamw",
        "--lr", "1e-3", "--weight_decay", "0.05", "--num_parallel_workers", "2", "--log_interval", "3",
        "--device_target", "CPU", "--mode", "0", "--hflip", "0", "--scale", "1", "1", "--ratio", "1", "1",
        "--color_jitter", "0", "--ema", "True", "--val_while_train", "True", "--keep_checkpoint_max", "1",
        *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def one_epoch_run(data_dir, tmp_path_factory):
    """Epoch 1 of the two-epoch run, stopped there (its schedule's warmup equals the full run's)."""
    ckpt_dir = tmp_path_factory.mktemp("one_epoch")
    train(_args(data_dir, ckpt_dir, "--epoch_size", "1"))
    return ckpt_dir


def _entries_equal(a, b):
    assert sorted(a) == sorted(b)
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(b[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
        else:
            assert b[key] == value, key


def test_two_epochs_equal_one_plus_resumed_one(data_dir, one_epoch_run, tmp_path, caplog):
    full_dir = tmp_path / "full"
    no_val = ("--val_while_train", "False")  # validation does not touch the training state: skipped for speed
    train(_args(data_dir, full_dir, "--amp_level", "O2", "--dataset_sink_mode", "True", *no_val))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("amp_level=O2" in w for w in warnings) == 1, warnings
    assert sum("dataset_sink_mode" in w for w in warnings) == 1, warnings

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(one_epoch_run, resumed_dir)
    train(_args(data_dir, resumed_dir, "--resume", "auto", *no_val))
    full = read_checkpoint(full_dir / "pit_ti-2_6.ckpt")
    _entries_equal(full, read_checkpoint(resumed_dir / "pit_ti-2_6.ckpt"))
    metrics = [json.loads(line) for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # the resumed run continued the file


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
        "checkpoints.json", "config.yaml", "metrics.jsonl", "pit_ti-1_6.ckpt", "pit_ti_best.ckpt", "train.log"])
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
                "--epoch_size", "1", "--lr", "0", "--weight_decay", "0", "--ema", "False",
                "--val_while_train", "False", "--num_samples", "4", "--warmup_epochs", "0"))
    tuned = read_checkpoint(tmp_path / "ft" / "pit_ti-1_1.ckpt")
    assert tuned["head.weight"].shape == (2, 256) and source["head.weight"].shape == (3, 256)
    for key in ("pos_embed", "0.blocks.1.blocks.2.mlp.fc2.weight", "1.conv.weight", "norm.gamma"):
        np.testing.assert_array_equal(tuned[key], source[key], err_msg=key)


@pytest.mark.parametrize("extra, error, message", [
    (["--amp_cast_list", "[nn.Dense]"], ValueError, "amp_cast_list"),
    (["--ckpt_save_policy", "top_k", "--val_while_train", "False"], ValueError, "val_while_train"),
    (["--resume", "auto", "--ckpt_path", "x.ckpt"], ValueError, "not both"),
    (["--resume", "missing.ckpt"], FileNotFoundError, "missing.ckpt"),
    (["--num_classes", "2"], ValueError, "3 class folders but num_classes=2"),
    (["--distribute", "True"], ValueError, "msrun --worker_num"),
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
