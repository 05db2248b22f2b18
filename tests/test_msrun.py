"""msrun with 2 CPU workers: data-parallel training keeps the ranks in sync, on one launcher (127.0.0.1) and on two
launchers acting as two nodes (each in its own network namespace, distilling from a teacher); a worker killed with
SIGKILL ends the whole job within 15 s; a SIGTERM to one worker stops every rank after the same step with a
checkpoint. Each test pays ~20-40 s of cluster start-up and compilation."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from _image_folders import make_image_folder
from mindcv_lite.models import create_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MSRUN = Path(sys.executable).parent / "msrun"

pytestmark = pytest.mark.skipif(not MSRUN.exists(), reason="msrun is not installed next to this python")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_msrun(args, log_dir, worker_num=2, local_worker_num=2, node_rank=-1, master_addr="127.0.0.1",
                 master_port=None, prefix=()):
    """Start `msrun ... train.py args` in its own session (so that a test can kill everything it started)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    command = [*prefix, str(MSRUN), "--worker_num", str(worker_num), "--local_worker_num", str(local_worker_num),
               "--node_rank", str(node_rank), "--master_addr", master_addr,
               "--master_port", str(master_port or _free_port()), "--log_dir", str(log_dir), "--join", "True",
               "--cluster_time_out", "60", str(REPO / "train.py"), *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(launchers):
    for launcher in launchers:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def _train_args(data_dir, ckpt_dir, epochs=1):
    """Graph mode: each worker compiles once, then steps take milliseconds. PyNative steps cost seconds each, and
    10-25x that while the other pytest worker and msrun's processes share the two cores."""
    return ["--data_dir", str(data_dir), "--ckpt_save_dir", str(ckpt_dir), "--distribute", "True", "--model",
            "pit_ti", "--image_resize", "32", "--batch_size", "4", "--epoch_size", str(epochs), "--warmup_epochs",
            "0", "--decay_epochs", "1", "--opt", "adamw", "--lr", "1e-3", "--num_parallel_workers", "1",
            "--log_interval", "1", "--device_target", "CPU", "--val_while_train", "True", "--mode", "0"]


def _image_folder(tmp_path):
    return make_image_folder(tmp_path / "data", num_classes=3, per_class=8, size=(32, 32), ext=".png")


def _wait_for(path, text, launchers, timeout=900):
    start = time.monotonic()
    while not (path.exists() and text in path.read_text()):
        assert all(launcher.poll() is None for launcher in launchers), f"msrun ended before {text!r} in {path}"
        assert time.monotonic() - start < timeout, f"no {text!r} in {path} after {timeout} s"
        time.sleep(0.2)


def _descendants(launchers):
    return [launcher_process for launcher in launchers
            for launcher_process in [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(True)]]


def _rank(process):
    """(MS_ROLE, RANK_ID) of a python process msrun started (or of a child, which inherits them)."""
    try:
        env = process.environ()
        return (env.get("MS_ROLE"), env.get("RANK_ID")) if process.name().startswith("python") else (None, None)
    except psutil.Error:
        return None, None


def _alive(processes):
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _signal_worker_1_in_epoch_2(log_dir, ckpt_dir, data_dir, signum, timeout, *extra):
    """Start 50 epochs on two local workers and send `signum` to rank 1 as soon as it is in epoch 2; returns msrun's
    exit code, the seconds from the signal to msrun's end, and the processes of the job left 5 s later."""
    launcher = _start_msrun([*_train_args(data_dir, ckpt_dir, epochs=50), *extra], log_dir)
    try:
        _wait_for(log_dir / "worker_1.log", "epoch 2/50 step 1/3", [launcher])
        processes = _descendants([launcher])
        assert {_rank(process) for process in processes} >= {("MS_SCHED", "0"), ("MS_WORKER", "0")}
        (worker,) = [process for process in psutil.Process(launcher.pid).children()
                     if _rank(process) == ("MS_WORKER", "1")]
        worker.send_signal(signum)
        signalled = time.monotonic()
        code = launcher.wait(timeout=timeout)
        ended = time.monotonic()
        while _alive(processes) and time.monotonic() - ended < 5:
            time.sleep(0.1)
        left = [(process.pid, process.name()) for process in _alive(processes)]
    finally:
        _stop([launcher])
    return code, ended - signalled, left


def test_a_killed_worker_ends_the_job_within_15_s(tmp_path):
    """Two local workers finish epoch 1 in sync (sharded training and validation, rank 0's checkpoint); rank 1 is
    then killed with SIGKILL: msrun, its scheduler and rank 0 are all gone within 15 s (MindSpore 2.10 alone: ~30 s)."""
    log_dir, ckpt_dir = tmp_path / "logs", tmp_path / "ckpt"
    code, seconds, left = _signal_worker_1_in_epoch_2(log_dir, ckpt_dir, _image_folder(tmp_path), signal.SIGKILL, 60)
    assert code != 0
    assert seconds < 15, f"msrun took {seconds:.1f} s to end the job after a worker was killed"
    assert not left, f"processes left behind: {left}"
    rank0_log = (log_dir / "worker_0.log").read_text()
    assert "50 epochs x 3 steps of 8 images, 2 workers" in rank0_log
    (record,) = [json.loads(line) for line in (ckpt_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and record["val_num_images"] == 24  # each rank validated 12; counts summed
    assert (ckpt_dir / "pit_ti-1_3.ckpt").exists()


def test_sigterm_to_one_worker_stops_every_rank_after_the_same_step_with_a_checkpoint(tmp_path):
    """A scheduler preempting the job signals a worker (here rank 1 only): both ranks stop after the same step of
    epoch 2, rank 0 writes that step's checkpoint, each rank says so in one line, and the job ends (non-zero)."""
    log_dir, ckpt_dir = tmp_path / "logs", tmp_path / "ckpt"
    # the ranks stop after the next step or two
    code, _, left = _signal_worker_1_in_epoch_2(log_dir, ckpt_dir, _image_folder(tmp_path), signal.SIGTERM, 600,
                                                "--val_while_train", "False")
    logs = [(log_dir / f"worker_{rank}.log").read_text() for rank in (0, 1)]
    stops = [re.findall(r"train\.py: stopped by (.+) at epoch 2, step (\d)/3 \(global step \d+\): (.+); continue "
                        r"with --resume auto", log) for log in logs]
    assert [len(found) for found in stops] == [1, 1], logs[0][-2000:] + logs[1][-2000:]
    (by0, step0, written0), (by1, step1, written1) = stops[0][0], stops[1][0]
    assert (by0, by1) == ("a signal on another rank", "SIGTERM") and step0 == step1
    assert written0 == f"checkpoint {ckpt_dir / f'pit_ti-2_{step0}.ckpt'} written"
    assert written1 == "rank 0 wrote the checkpoint"
    assert json.loads((ckpt_dir / "checkpoints.json").read_text())["latest"]["file"] == f"pit_ti-2_{step0}.ckpt"
    assert code != 0
    assert not left, f"processes left behind: {left}"


def _network_namespaces_or_skip(tag):
    """Create two network namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2, which exist only inside
    them); returns the namespace names."""
    if shutil.which("ip") is None:
        pytest.skip("two-node msrun test needs `ip` (apt-get install iproute2) to create network namespaces")
    names = [f"mcl{tag}a", f"mcl{tag}b"]
    created = subprocess.run(["ip", "netns", "add", names[0]], capture_output=True, text=True)
    if created.returncode != 0:
        pytest.skip(f"two-node msrun test needs network namespaces (root or CAP_SYS_ADMIN): {created.stderr.strip()}")
    try:
        commands = [["ip", "netns", "add", names[1]],
                    ["ip", "link", "add", f"v{tag}a", "netns", names[0], "type", "veth", "peer", "name", f"v{tag}b",
                     "netns", names[1]]]
        for name, device, address in zip(names, (f"v{tag}a", f"v{tag}b"), ("10.77.0.1/24", "10.77.0.2/24")):
            commands += [["ip", "-n", name, "addr", "add", address, "dev", device],
                         ["ip", "-n", name, "link", "set", device, "up"], ["ip", "-n", name, "link", "set", "lo", "up"]]
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
    except BaseException:
        _delete_namespaces(names)
        raise
    return names


def _delete_namespaces(names):
    for name in names:  # deleting a namespace also deletes its end of the veth pair
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_two_launchers_as_two_nodes_distil_in_sync(tmp_path):
    """msrun starts a scheduler in every launcher whose --master_addr is local, so the two "nodes" live in two
    network namespaces; node 0 (10.77.0.1) runs the scheduler and rank 0, node 1 (10.77.0.2) rank 1. The run
    distils from a pvt_v2_b0 teacher: every rank holds the teacher, only the students' gradients are averaged."""
    namespaces = _network_namespaces_or_skip(os.getpid() % 100000)
    data_dir, port, launchers = _image_folder(tmp_path), 8118, []
    teacher_ckpt = tmp_path / "teacher.ckpt"
    save_checkpoint(create_model("pvt_v2_b0", num_classes=3, img_size=32), str(teacher_ckpt))
    distillation = ("--distillation_type", "soft", "--teacher_model", "pvt_v2_b0", "--teacher_ckpt", str(teacher_ckpt))
    try:
        for node_rank, namespace in enumerate(namespaces):
            launchers.append(_start_msrun(
                [*_train_args(data_dir, tmp_path / f"ckpt{node_rank}"), *distillation], tmp_path / f"logs{node_rank}",
                local_worker_num=1, node_rank=node_rank, master_addr="10.77.0.1", master_port=port,
                prefix=("ip", "netns", "exec", namespace)))
        processes = _descendants(launchers)
        codes = [launcher.wait(timeout=900) for launcher in launchers]
        time.sleep(1)  # the scheduler's guardian notices its parent's end within 0.5 s
        left = [(process.pid, process.name()) for process in _alive(processes)]
    finally:
        _stop(launchers)
        _delete_namespaces(namespaces)
    logs = [(tmp_path / f"logs{rank}" / f"worker_{rank}.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert not left, f"processes left behind: {left}"
    assert "3 steps of 8 images, 2 workers" in logs[0]
    assert all("Distilling from pvt_v2_b0" in log for log in logs)
    fingerprints = [re.findall(rf"\[rank {rank}\] INFO Weights identical on all 2 ranks \(fingerprint (\S+)\)", log)
                    for rank, log in enumerate(logs)]
    assert len(fingerprints[0]) == 1 and fingerprints[0] == fingerprints[1]
    assert (tmp_path / "ckpt0" / "pit_ti-1_3.ckpt").exists() and not list((tmp_path / "ckpt1").glob("*.ckpt"))
