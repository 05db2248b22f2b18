"""msrun with 2 local CPU workers over 127.0.0.1: data-parallel training keeps the ranks in sync, a crash ends
the job with a non-zero exit instead of a hang. Each test pays ~20-30 s of cluster start-up."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _image_folders import make_image_folder

REPO = Path(__file__).resolve().parents[1]
MSRUN = Path(sys.executable).parent / "msrun"

pytestmark = pytest.mark.skipif(not MSRUN.exists(), reason="msrun is not installed next to this python")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _msrun(script, args, log_dir, timeout=240):
    """Run `script args` on 2 local workers; returns (exit code, seconds)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MS_NODE_TIMEOUT="10", PYTHONPATH=str(REPO))
    command = [str(MSRUN), "--worker_num", "2", "--local_worker_num", "2", "--master_port", str(_free_port()),
               "--log_dir", str(log_dir), "--join", "True", "--cluster_time_out", "30", str(script), *args]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return code, time.monotonic() - start


def _train_args(data_dir, ckpt_dir):
    return ["--data_dir", str(data_dir), "--ckpt_save_dir", str(ckpt_dir), "--distribute", "True", "--model",
            "pit_ti", "--image_resize", "32", "--batch_size", "4", "--epoch_size", "1", "--warmup_epochs", "0",
            "--decay_epochs", "1", "--opt", "adamw", "--lr", "1e-3", "--num_parallel_workers", "1",
            "--log_interval", "1", "--device_target", "CPU", "--val_while_train", "True"]


def test_two_workers_train_in_sync(tmp_path):
    data_dir = make_image_folder(tmp_path / "data", num_classes=3, per_class=8, size=(32, 32), ext=".png")
    code, _ = _msrun(REPO / "train.py", _train_args(data_dir, tmp_path / "ckpt"), tmp_path / "logs")
    logs = [(tmp_path / "logs" / f"worker_{rank}.log").read_text() for rank in (0, 1)]
    assert code == 0, logs[0][-3000:]
    fingerprints = [re.findall(r"\[rank (\d)\] INFO Weights identical on all 2 ranks \(fingerprint (\S+)\)", log)
                    for log in logs]
    assert fingerprints[0] == [("0", fingerprints[0][0][1])] and fingerprints[1] == [("1", fingerprints[0][0][1])]
    assert "3 steps of 8 images, 2 workers" in logs[0]  # 24 images sharded over 2 ranks, 4 per rank
    (record,) = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert record["val_num_images"] == 24  # each rank validated 12; the counts were summed over ranks
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["pit_ti-1_3.ckpt", "pit_ti_best.ckpt"]
    assert {p.name for p in (tmp_path / "ckpt").glob("train_rank*.log")} == {"train_rank0.log", "train_rank1.log"}


def test_a_crashing_worker_ends_the_job_quickly(tmp_path):
    data_dir = make_image_folder(tmp_path / "data", num_classes=3, per_class=8, size=(32, 32), ext=".png")
    script = tmp_path / "crash_rank1.py"
    script.write_text(
        "import sys\n"
        "from mindspore.communication import get_rank\n"
        "from mindcv_lite.engine import trainer\n"
        "update = trainer.EpochProgress.update\n"
        "def crash_on_rank1(self, loss, lr):\n"
        "    if get_rank() == 1:\n"
        "        sys.exit('rank 1 crashes on purpose')\n"
        "    update(self, loss, lr)\n"
        "trainer.EpochProgress.update = crash_on_rank1\n"
        "import train\n"
        "train.main()\n"
    )
    args = _train_args(data_dir, tmp_path / "ckpt") + ["--epoch_size", "50"]
    code, seconds = _msrun(script, args, tmp_path / "logs", timeout=180)
    assert code != 0
    assert seconds < 120, f"msrun took {seconds:.0f} s to notice the crash"
    assert "rank 1 crashes on purpose" in (tmp_path / "logs" / "worker_1.log").read_text()
