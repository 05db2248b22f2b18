"""Every command goes through utils/cli.run_command: a user error is one line on stderr and a non-zero exit."""
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mindcv_lite.models import create_model, save_checkpoint
from mindcv_lite.utils.cli import run_command

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["infer", "export", "convert", "benchmark", "demo", "plot", "average_checkpoints", "data.benchmark"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_runs_through_the_shared_wrapper(command):
    source = (REPO / "mindcv_lite" / (command.replace(".", "/") + ".py")).read_text()
    assert f'run_command(main, "python -m mindcv_lite.{command}")' in source.split('if __name__ == "__main__":')[-1]
    for script in ("train.py", "validate.py"):
        assert f'run_command(main, "{script}")' in (REPO / script).read_text()


def _bad_calls(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    missing = str(tmp_path / "missing.ckpt")
    return [
        ("infer", ["--model", "pit_ti", "--ckpt_path", missing, str(tmp_path / "no_such.png")], "no_such.png"),
        ("export", ["--model", "pit_ti", "--ckpt_path", missing, "--output", str(tmp_path / "m")], "missing.ckpt"),
        ("convert", [missing, str(tmp_path / "out.ckpt"), "--model", "pit_ti"], "missing.ckpt"),
        ("benchmark", ["--model", "no_such_model"], "Unknown model 'no_such_model'"),
        ("demo", ["--data_dir", str(tmp_path / "demo"), "--ckpt_save_dir", str(blocker / "ckpt")], "a_file/ckpt"),
        ("plot", [str(tmp_path / "no_run")], "no_run"),
        ("average_checkpoints", [str(tmp_path)], "checkpoints.json"),
        ("data.benchmark", ["--data", str(tmp_path / "no_images")], "no_images"),
        ("benchmark", ["--batch-size", "many"], "argument --batch-size"),  # argparse's own errors: one line too
        ("average_checkpoints", [str(tmp_path), "--no_such_flag"], "--no_such_flag"),
    ]  # fmt: skip


def test_a_user_error_is_one_line_and_a_non_zero_exit(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command, argv, names in _bad_calls(tmp_path):
        module = importlib.import_module(f"mindcv_lite.{command}")
        with pytest.raises(SystemExit) as stopped:
            run_command(module.main, f"python -m mindcv_lite.{command}", argv)
        assert stopped.value.code not in (0, None), command
        stderr = capsys.readouterr().err.strip()
        if isinstance(stopped.value.code, str):  # the command's own sys.exit(message): printed by Python on exit
            stderr = stopped.value.code
        assert "Traceback" not in stderr, (command, stderr)
        errors = [line for line in stderr.splitlines() if "error" in line or line.startswith(command.split(".")[-1])]
        assert len(errors) == 1 and names in errors[0], (command, stderr)
        assert not [line for line in stderr.splitlines() if line.startswith("usage:")], (command, stderr)


def test_infer_classifies_the_readable_images_and_names_the_unreadable_one(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for index in range(2):
        images.append(tmp_path / f"good{index}.png")
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images[-1])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    ckpt = save_checkpoint(create_model("pit_ti", num_classes=3, img_size=32), tmp_path / "pit.ckpt")
    result = subprocess.run([sys.executable, "-m", "mindcv_lite.infer", "--model", "pit_ti", "--ckpt_path", str(ckpt),
                             "--image_size", "32", str(images[0]), str(broken), str(images[1])],
                            cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stdout.splitlines() if not line.startswith(" ")] == [str(p) for p in images]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("python -m mindcv_lite.infer:")]
    assert "error: 1 of 3 images could not be read and were skipped" in error and "broken.jpg" in error
