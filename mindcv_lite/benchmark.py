"""Model speed: `python -m mindcv_lite.benchmark --model pit_ti --batch-size 16 --what infer --mode graph`.

Prints one JSON object: first-step time (graph compilation included; `compile_s` of it), images/s as the median
over the steady steps that follow, the process CPU seconds per steady step (comparable on a loaded machine, where
wall time is not), the process's resident memory once the graph is compiled and its peak (the run's buffers come
on top of the compiled state). `--all` runs every registered model, inference and training, each in a fresh process
(peak memory is per process), and prints a table. `--profile` prints where a step's time goes instead.
"""
import argparse
import csv
import glob
import json
import os
import resource
import statistics
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from .engine.runtime import JIT_LEVELS, compile_cache_dir, configure_compilation
from .models import create_model, list_models
from .utils.cli import ArgumentParser, run_command
from .utils.memory import ReleasesCompilerMemory

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


class _TrainOneStep(ReleasesCompilerMemory, nn.TrainOneStepCell):
    """mindcv's training step (`nn.TrainOneStepCell`), returning the compiler's memory as train.py's step does."""


def build_step(model, what):
    """A callable running one inference or one training step (forward, backward, AdamW update)."""
    if what == "infer":
        model.set_train(False)
        return model
    model.set_train(True)
    loss = nn.CrossEntropyLoss()
    optimizer = nn.AdamWeightDecay(model.trainable_params(), learning_rate=1e-4, weight_decay=0.05)
    return _TrainOneStep(nn.WithLossCell(model, loss), optimizer)


def run(model_name, batch_size=16, what="infer", mode="graph", img_size=224, steps=5, num_classes=1000,
        jit_level="O0", compile_cache=False, recompute=False):
    ms.set_context(mode=MODES[mode], device_target="CPU")
    settings = dict(model=model_name, batch_size=batch_size, what=what, mode=mode, img_size=img_size,
                    num_classes=num_classes, jit_level=jit_level, recompute=recompute)
    configure_compilation(jit_level, compile_cache_dir(settings) if compile_cache else None)
    model = create_model(model_name, num_classes=num_classes, img_size=img_size)
    if recompute:
        model.set_grad_checkpointing()
    step = build_step(model, what)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32))
    labels = ms.Tensor(rng.integers(0, num_classes, batch_size).astype(np.int32))
    inputs = (images,) if what == "infer" else (images, labels)
    times, cpu_times = [], []
    start = time.perf_counter()
    if mode == "graph":  # compiled apart from the first run, to tell the compiler's memory from the run's
        step.compile(*inputs)
    compile_s, compiled_rss_mb = time.perf_counter() - start, _current_rss_mb()
    for i in range(steps + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        step(*inputs).asnumpy()
        times.append(time.perf_counter() - start + (compile_s if i == 0 else 0.0))
        cpu_times.append(time.process_time() - cpu_start)
    steady = statistics.median(times[1:])
    return {
        **settings, "compile_cache": compile_cache,
        "first_step_s": round(times[0], 3), "compile_s": round(compile_s, 3), "step_s": round(steady, 4),
        "images_per_s": round(batch_size / steady, 2),
        "step_cpu_s": round(statistics.median(cpu_times[1:]), 4),
        "rss_after_compile_mb": round(compiled_rss_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _current_rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def profile(model_name, batch_size=16, what="infer", mode="graph", img_size=224, steps=2, num_classes=1000,
            jit_level="O0", top=10):
    """MindSpore's CPU profiler over `steps` steps after a warm-up (compiling) step: the `top` op types and the
    `top` (layer, op) pairs by time per step, with blocks of the same kind merged (`blocks-CellList/3-Block` ->
    `blocks/Block`), as Markdown tables."""
    ms.set_context(mode=MODES[mode], device_target="CPU")
    configure_compilation(jit_level, None)
    step = build_step(create_model(model_name, num_classes=num_classes, img_size=img_size), what)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32))
    inputs = (images,) if what == "infer" else (images, ms.Tensor(rng.integers(0, num_classes, batch_size), ms.int32))
    step(*inputs).asnumpy()
    with tempfile.TemporaryDirectory() as folder:
        profiler = ms.Profiler(output_path=folder)
        for _ in range(steps):
            step(*inputs).asnumpy()
        profiler.stop()
        profiler.analyse()
        rows = []
        for path in glob.glob(os.path.join(folder, "**", "cpu_op_detail_info_*.csv"), recursive=True):
            with open(path, newline="") as handle:
                rows += list(csv.DictReader(handle))
    if not rows:
        raise RuntimeError("MindSpore's profiler wrote no CPU op table")
    by_type, by_layer, calls = defaultdict(float), defaultdict(float), defaultdict(int)
    for row in rows:
        ms_per_step = float(row["op_total_time(ms)"]) / steps
        op_type = _op_type(row["op_type"], row["full_op_name"])
        by_type[op_type] += ms_per_step
        calls[op_type] += int(row["op_occurrences"]) // steps
        layer = re.sub(r"-CellList/\d+-", "/", row["full_op_name"].rsplit("/", 1)[0]).removeprefix("Default/")
        by_layer[f"{layer} {row['op_type']}"] += ms_per_step
    total = sum(by_type.values())
    lines = [f"### {model_name} {what}: {total:.0f} ms of op time per step (summed over ops; {steps} steps)", "",
             "| op type | ms/step | share | calls/step |", "|---|---:|---:|---:|"]
    for name, ms_time in sorted(by_type.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"| {name} | {ms_time:.1f} | {ms_time / total:.1%} | {calls[name]} |")
    lines += ["", "| layer (blocks merged), op | ms/step | share |", "|---|---:|---:|"]
    for name, ms_time in sorted(by_layer.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"| {name} | {ms_time:.1f} | {ms_time / total:.1%} |")
    return "\n".join(lines)


def _op_type(op_type, full_name):
    """MindSpore's op type, except that this package's kernels (all of type `Custom`) are told apart by the layer
    class that calls them, e.g. `Custom Linear grad`. (Layers share one primitive per kernel, so the profiler files
    every layer's backward under the first layer's name: the class is right, the instance is not.)"""
    if op_type != "Custom":
        return op_type
    scopes = full_name.rsplit("/", 1)[0].split("/")  # the last part is the op itself (`Custom-op12`)
    cells = [part.split("-", 1)[1] for part in scopes if "-" in part and not part.endswith("CellList")]
    grad = " grad" if "/Grad_" in full_name else ""
    return f"Custom {cells[-1]}{grad}" if cells else op_type


class _MatMul(nn.Cell):
    def construct(self, a, b):
        return ops.matmul(a, b)


def matmul_ceiling(rows=12544, inner=256, cols=1024, repeats=5):
    """GFLOP/s of one float32 matmul (default: pvt_v2_b0's first MLP layer at batch 16) in MindSpore's graph mode
    and in numpy on this machine: the ceiling no model built from MindSpore's kernels can pass."""
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape, dtype=np.float32) for shape in ((rows, inner), (inner, cols)))
    matmul, a_ms, b_ms = _MatMul(), ms.Tensor(a), ms.Tensor(b)
    matmul(a_ms, b_ms).asnumpy()
    results = {"shape": [rows, inner, cols]}
    for name, call in (("mindspore", lambda: matmul(a_ms, b_ms).asnumpy()), ("numpy", lambda: a @ b)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        results[f"{name}_gflops"] = round(2 * rows * inner * cols / statistics.median(times) / 1e9, 1)
    return results


def _run_child(name, what, argv):
    """One benchmark in a fresh process (its own peak memory); its JSON result, also echoed to stderr."""
    command = [sys.executable, "-m", "mindcv_lite.benchmark", "--model", name, "--what", what, *argv]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        result = {"model": name, "what": what, "error": f"exit code {done.returncode}"}
    else:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def run_all(models, argv):
    """Every (model, infer/train) in a child process; returns their JSON results."""
    return [_run_child(name, what, argv) for name in models for what in ("infer", "train")]


def compare_recompute(name, argv):
    """Training without, then with recompute, each in a child process: both results and the ratios with/without."""
    without, with_recompute = _run_child(name, "train", argv), _run_child(name, "train", [*argv, "--recompute"])
    if "error" in without or "error" in with_recompute:
        return {"without": without, "with": with_recompute}
    ratios = {f"{key}_ratio": round(with_recompute[key] / without[key], 3)
              for key in ("peak_rss_mb", "step_cpu_s", "step_s")}
    return {"without": without, "with": with_recompute, **ratios}


def format_table(results):
    lines = ["| model | work | images/s | first step s | CPU s/step | RSS compiled GB | peak RSS GB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['what']} | {r['error']} | | | | |")
        else:
            lines.append(f"| {r['model']} | {r['what']} | {r['images_per_s']} | {r['first_step_s']} | "
                         f"{r['step_cpu_s']} | {r['rss_after_compile_mb'] / 1024:.2f} | {r['peak_rss_mb'] / 1024:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pit_ti")
    parser.add_argument("--all", action="store_true",
                        help="every registered model (or those matching --models), inference and training: a table")
    parser.add_argument("--models", default="*", help="with --all: fnmatch pattern(s), comma-separated")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--what", choices=("infer", "train"), default="infer")
    parser.add_argument("--mode", choices=tuple(MODES), default="graph")
    parser.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="img_size", type=int,
                        default=224, help="input size (the same flag as train.py's)")
    parser.add_argument("--steps", type=int, default=5, help="steady steps timed after the first")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--jit_level", choices=JIT_LEVELS, default="O0",
                        help="MindSpore graph compilation level (mindcv forces O2 in graph mode)")
    parser.add_argument("--compile_cache", action="store_true",
                        help="use MindSpore's compile cache (per-configuration folder, see README): run the same "
                             "command twice to time a warm first step")
    parser.add_argument("--matmul-ceiling", action="store_true",
                        help="print the GFLOP/s of one large float32 matmul in MindSpore and in numpy, then exit")
    parser.add_argument("--profile", action="store_true",
                        help="print the top ten op types and layers by time per step (MindSpore's CPU profiler) "
                             "instead of the JSON result")
    parser.add_argument("--recompute", action="store_true",
                        help="training: recompute each block's activations in backward (model.set_grad_checkpointing)")
    parser.add_argument("--recompute-compare", action="store_true",
                        help="training without and with --recompute, each in its own process: both results and "
                             "the ratios (peak memory, CPU and wall seconds per step)")
    args = parser.parse_args(argv)
    if args.matmul_ceiling:
        print(json.dumps(matmul_ceiling()))
        return
    if args.profile:
        print(profile(args.model, args.batch_size, args.what, args.mode, args.img_size, min(args.steps, 3),
                      args.num_classes, args.jit_level))
        return
    child_argv = ["--batch-size", str(args.batch_size), "--mode", args.mode, "--image_resize", str(args.img_size),
                  "--steps", str(args.steps), "--num-classes", str(args.num_classes), "--jit_level", args.jit_level]
    if args.recompute_compare:
        print(json.dumps(compare_recompute(args.model, child_argv + ["--compile_cache"] * args.compile_cache)))
        return
    if args.all:
        child_argv += [flag for flag in ("--compile_cache", "--recompute") if getattr(args, flag[2:])]
        models = list_models(args.models.split(","))
        if not models:
            parser.error(f"--models {args.models!r} matches no registered model; see mindcv_lite.list_models()")
        print(format_table(run_all(models, child_argv)))
        return
    print(json.dumps(run(args.model, args.batch_size, args.what, args.mode, args.img_size, args.steps,
                         args.num_classes, args.jit_level, args.compile_cache, args.recompute)))


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.benchmark")
