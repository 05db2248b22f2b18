"""Shared fixtures: execution mode, and the reference parameter tables / weights / goldens in fixtures/."""
import csv
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

REFERENCE_DIR = Path(__file__).parent / "fixtures" / "reference"


def _load_reference_weights_module():
    """Import reference_weights.py by path: putting its folder on sys.path would make its `torch/` data folder
    importable as a fake `torch` package."""
    spec = importlib.util.spec_from_file_location("reference_weights", REFERENCE_DIR / "reference_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_reference = _load_reference_weights_module()
read_param_table, reference_input, reference_weights = (_reference.read_param_table, _reference.reference_input,
                                                        _reference.reference_weights)

ms.set_context(device_target="CPU")
# train.py / validate.py keep MindSpore's compile cache under MINDCV_LITE_HOME: not in the user's home during tests.
os.environ["MINDCV_LITE_HOME"] = tempfile.mkdtemp(prefix="mindcv_lite_home_")


# What every test starts from: the execution mode and compile-cache switches as the session found them.
_BASELINE_MODE = ms.get_context("mode")
_BASELINE_CACHE_ENV = {name: os.environ.get(name) for name in ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")}


@pytest.fixture(autouse=True)
def _fresh_execution_settings():
    """`train()` / `validate()` run in-process (also from module-scoped fixtures) set the execution mode and
    MindSpore's compile-cache switches for the whole process, as they should for a command; put the session's
    back after each test, so a later test neither compiles in graph mode nor loads a cached graph it did not ask
    for (a stale cached graph ignores attribute changes such as set_distilled_training)."""
    yield
    if ms.get_context("mode") != _BASELINE_MODE:
        ms.set_context(mode=_BASELINE_MODE)
    for name, value in _BASELINE_CACHE_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(params=[ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def mode(request):
    """Run the test once in graph mode and once in pynative mode."""
    previous = ms.get_context("mode")
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=previous)


@pytest.fixture
def pynative():
    """Run the test in pynative mode only (cheap, where graph mode adds nothing the test checks)."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)


def reference_table(layout, name):
    """Rows (dict with name, shape, dtype[, attr_path]) of `fixtures/reference/<layout>/<name>.tsv`."""
    with open(REFERENCE_DIR / layout / f"{name}.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def reference_state(layout, name):
    """Deterministic weights of the reference recipe, keyed as the reference implementation names them."""
    return reference_weights(read_param_table(REFERENCE_DIR / layout / f"{name}.tsv"))


def golden_logits(layout, name):
    return np.load(REFERENCE_DIR / layout / f"{name}.golden.npz")["logits"]


__all__ = ["golden_logits", "reference_input", "reference_state", "reference_table"]
