"""timm beside `python -m mindcv_lite.benchmark`: the same rows (batch 16, 224x224, float32, CPU, first step, median
images/s of the steady steps, CPU seconds per steady step, peak RSS), measured with PyTorch + timm in a venv of
their own (never this project's dependencies):

    python3 -m venv /tmp/timm-venv && /tmp/timm-venv/bin/pip install torch timm 'numpy<2'
    /tmp/timm-venv/bin/python tools/timm_benchmark.py --model pit_ti --what infer

Prints one JSON object with the benchmark's keys. timm has no PVT v1 (pvt_tiny ...): the issue's figures stand.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import timm

TIMM_NAMES = {"pit_ti": "pit_ti_224", "pit_xs": "pit_xs_224", "pit_s": "pit_s_224", "pit_b": "pit_b_224",
              "pit_ti_distilled": "pit_ti_distilled_224"}


def run(model_name, batch_size=16, what="infer", img_size=224, steps=5, num_classes=1000, threads=2):
    torch.set_num_threads(threads)
    name = TIMM_NAMES.get(model_name, model_name)
    if name not in timm.list_models():
        raise SystemExit(f"timm {timm.__version__} has no {name!r}")
    try:
        model = timm.create_model(name, num_classes=num_classes, img_size=img_size)
    except TypeError:  # models without position embeddings (pvt_v2) take any size and no img_size
        model = timm.create_model(name, num_classes=num_classes)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    if what == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                return model(images)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            return loss
    times, cpu_times = [], []
    for _ in range(steps + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    steady = statistics.median(times[1:])
    return {"model": model_name, "timm_model": name, "what": what, "batch_size": batch_size, "img_size": img_size,
            "torch": torch.__version__, "timm": timm.__version__, "threads": threads,
            "first_step_s": round(times[0], 3), "step_s": round(steady, 4),
            "images_per_s": round(batch_size / steady, 2), "step_cpu_s": round(statistics.median(cpu_times[1:]), 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pit_ti")
    parser.add_argument("--what", choices=("infer", "train"), default="infer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image_resize", "--img-size", dest="img_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run(args.model, args.batch_size, args.what, args.img_size, args.steps, threads=args.threads)))
