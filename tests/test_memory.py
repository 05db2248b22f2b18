"""Compiler memory goes back to the operating system after each graph compilation (utils/memory.py)."""
import numpy as np
import mindspore as ms
from mindspore import nn

from mindcv_lite.benchmark import build_step
from mindcv_lite.engine.train_step import EvalStep, TrainStep
from mindcv_lite.models.base import VisionModel
from mindcv_lite.utils import memory


class _Double(memory.ReleasesCompilerMemory):
    def construct(self, x):
        return x * 2


def test_the_heap_is_released_once_per_compiled_graph(monkeypatch):
    ms.set_context(mode=ms.GRAPH_MODE)
    releases = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: releases.append(1))
    cell = _Double()
    for _ in range(3):  # one compilation, then cached lookups
        np.testing.assert_allclose(cell(ms.Tensor(np.ones(4, np.float32))).asnumpy(), 2.0)
    assert len(releases) == 1
    cell(ms.Tensor(np.ones(5, np.float32)))  # a new input shape: a second graph
    assert len(releases) == 2


def test_release_free_heap_returns_the_pages_on_glibc():
    assert memory.release_free_heap() is True  # this machine's Python runs on glibc


def test_every_compiled_entry_point_releases():
    """The cells train.py, validate.py, infer.py and the benchmark call."""
    for cls in (VisionModel, TrainStep, EvalStep, type(build_step(nn.Dense(2, 2), "train"))):
        assert issubclass(cls, memory.ReleasesCompilerMemory), cls
