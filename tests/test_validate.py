"""validate.py: metrics of a checkpoint whose accuracy is known by construction, and refusals of wrong input."""
import importlib
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _image_folders import make_image_folder
from mindcv_lite.engine import validate
from mindcv_lite.models import CheckpointMismatchError, create_model, save_checkpoint
from mindcv_lite.models.layers.formulation import portable_formulations
from mindcv_lite.utils.config import add_validate_arguments, parse_args

REPO = Path(__file__).resolve().parents[1]
evaluate_module = importlib.import_module("mindcv_lite.engine.evaluate")  # the package exports a function of that name


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 3 classes x 4 validation images; only `val` is read
    return make_image_folder(tmp_path_factory.mktemp("data"), splits=("val",), num_classes=3, per_class=4,
                             size=(32, 32), ext=".png")


@pytest.fixture(scope="module")
def always_class_0(tmp_path_factory):
    """A pit_ti checkpoint in mindcv's layout whose head ignores the features and always ranks class 0 first,
    class 1 second: top-1 = 1/3 on balanced classes, top-2 = 2/3, loss known in closed form."""
    model = create_model("pit_ti", num_classes=3, img_size=32)
    weights = {model.to_mindcv_key(p.name): p.asnumpy() for p in model.get_parameters()}
    weights["head.weight"] = np.zeros_like(weights["head.weight"])
    weights["head.bias"] = np.array([4.0, 1.0, 0.0], np.float32)
    path = tmp_path_factory.mktemp("ckpt") / "always_class_0.ckpt"
    save_checkpoint(weights, str(path))
    log_norm = math.log(math.exp(4) + math.exp(1) + 1)
    loss = np.mean([log_norm - 4, log_norm - 1, log_norm])
    return path, loss


def _args(*argv):
    return parse_args(list(argv), add_arguments=add_validate_arguments)


def test_reports_the_known_metrics_with_a_config_file(data_dir, always_class_0, tmp_path, mode):
    path, loss = always_class_0
    config = tmp_path / "pit.yaml"
    # distribute: true as in the recipes, which validate.py without msrun runs in one process
    config.write_text(f"model: pit_ti\nimage_resize: 32\nbatch_size: 5\nmode: {mode}\ndevice_target: CPU\n"
                      "num_parallel_workers: 2\ncrop_pct: 1.0\ndistribute: true\n")
    output = tmp_path / "metrics.json"
    metrics = validate(_args("-c", str(config), "--data_dir", str(data_dir), "--ckpt_path", str(path),
                             "--output_json", str(output)))
    assert metrics["num_images"] == 12
    assert metrics["top1"] == pytest.approx(1 / 3) and metrics["top5"] == 1.0
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    written = json.loads(output.read_text())
    assert {key: written[key] for key in ("top1", "top5", "num_images")} == \
        {"top1": metrics["top1"], "top5": 1.0, "num_images": 12}
    assert written["loss"] == pytest.approx(loss, rel=1e-5)


def test_val_amp_level_evaluates_in_float16_where_supported_and_in_float32_on_cpu(data_dir, always_class_0,
                                                                                  monkeypatch, caplog):
    path, loss = always_class_0
    caplog.set_level(logging.INFO, logger="mindcv_lite")
    monkeypatch.setattr(importlib.import_module("mindcv_lite.engine.runtime"), "_warned", set())  # warnings: once
    levels = []
    record = evaluate_module.apply_mixed_precision
    monkeypatch.setattr(evaluate_module, "apply_mixed_precision",
                        lambda model, level: levels.append(level) or record(model, level))
    argv = ["--model", "pit_ti", "--image_resize", "32", "--crop_pct", "1.0", "--data_dir", str(data_dir),
            "--device_target", "CPU", "--mode", "1", "--ckpt_path", str(path), "--val_amp_level", "O3"]
    metrics = validate(_args(*argv))
    assert levels == ["O0"] and "val_amp_level=O3 is for Ascend/GPU" in caplog.text
    assert "data config of pit_ti: image_resize 32, interpolation bicubic, crop_pct 1.0" in caplog.text
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    monkeypatch.setattr(evaluate_module, "FLOAT16_DEVICES", ("CPU",))  # as on Ascend: float16 on this device,
    with portable_formulations():  # with MindSpore's own operators (the package's CPU kernels are float32 only)
        metrics = validate(_args(*argv))
    assert levels == ["O0", "O3"]
    assert metrics["top1"] == pytest.approx(1 / 3) and metrics["loss"] == pytest.approx(loss, rel=1e-3)


@pytest.mark.parametrize("extra, error, message", [
    (["--ckpt_path", ""], ValueError, "--ckpt_path is required"),
    (["--ckpt_path", "nowhere.ckpt"], FileNotFoundError, "nowhere.ckpt"),
    (["--model", "pvt_tiny"], CheckpointMismatchError, "does not match model"),
    (["--num_classes", "5"], CheckpointMismatchError, "classifies 3 classes .* pass --num_classes 3"),
])  # fmt: skip
def test_refuses_anything_but_a_checkpoint_that_fits(data_dir, always_class_0, extra, error, message):
    argv = ["--model", "pit_ti", "--image_resize", "32", "--data_dir", str(data_dir), "--device_target", "CPU",
            "--ckpt_path", str(always_class_0[0]), *extra]
    with pytest.raises(error, match=message):
        validate(_args(*argv))


def test_refuses_a_dataset_with_other_classes_than_the_checkpoint(tmp_path):
    model = create_model("pit_ti", num_classes=3, img_size=32)
    path = tmp_path / "trained.ckpt"
    save_checkpoint(model, str(path), extra={"train.class_names": ["cat", "dog", "fox"]})
    data = make_image_folder(tmp_path / "data", splits=("val",), num_classes=3, per_class=1, size=(32, 32))
    with pytest.raises(CheckpointMismatchError, match="other classes"):
        validate(_args("--model", "pit_ti", "--image_resize", "32", "--data_dir", data, "--device_target", "CPU",
                       "--ckpt_path", str(path)))


def test_script_exits_with_the_error_message(tmp_path):
    result = subprocess.run([sys.executable, "validate.py", "--model=pvt_tiny", "--data_dir", str(tmp_path),
                             "--ckpt_path", str(tmp_path / "missing.ckpt"), "--device_target", "CPU"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "validate.py: error: --ckpt_path" in result.stderr and "missing.ckpt' does not exist" in result.stderr
