"""Model speed: `python -m mindcv_lite.benchmark --model pit_ti --batch-size 16 --what infer --mode graph`.

Prints one JSON object: first-step time (graph compilation included), images/s as the median over the steady
steps that follow, and the process's peak resident memory.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import mindspore as ms
from mindspore import nn

from .models import create_model

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def build_step(model, what, num_classes):
    """A callable running one inference or one training step (forward, backward, AdamW update)."""
    if what == "infer":
        model.set_train(False)
        return model
    model.set_train(True)
    loss = nn.CrossEntropyLoss()
    optimizer = nn.AdamWeightDecay(model.trainable_params(), learning_rate=1e-4, weight_decay=0.05)
    return nn.TrainOneStepCell(nn.WithLossCell(model, loss), optimizer)


def run(model_name, batch_size=16, what="infer", mode="graph", img_size=224, steps=5, num_classes=1000):
    ms.set_context(mode=MODES[mode], device_target="CPU")
    model = create_model(model_name, num_classes=num_classes, img_size=img_size)
    step = build_step(model, what, num_classes)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32))
    labels = ms.Tensor(rng.integers(0, num_classes, batch_size).astype(np.int32))
    inputs = (images,) if what == "infer" else (images, labels)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        step(*inputs).asnumpy()
        times.append(time.perf_counter() - start)
    steady = statistics.median(times[1:])
    return {
        "model": model_name, "what": what, "mode": mode, "batch_size": batch_size, "img_size": img_size,
        "first_step_s": round(times[0], 3), "step_s": round(steady, 4),
        "images_per_s": round(batch_size / steady, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pit_ti")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--what", choices=("infer", "train"), default="infer")
    parser.add_argument("--mode", choices=tuple(MODES), default="graph")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="steady steps timed after the first")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.model, args.batch_size, args.what, args.mode, args.img_size, args.steps,
                         args.num_classes)))


if __name__ == "__main__":
    main()
