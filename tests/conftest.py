"""Shared fixtures: execution mode, and the reference parameter tables / weights / goldens in fixtures/."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

REFERENCE_DIR = Path(__file__).parent / "fixtures" / "reference"
sys.path.insert(0, str(REFERENCE_DIR))
from reference_weights import read_param_table, reference_input, reference_weights  # noqa: E402

ms.set_context(device_target="CPU")


@pytest.fixture(params=[ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def mode(request):
    """Run the test once in graph mode and once in pynative mode."""
    previous = ms.get_context("mode")
    ms.set_context(mode=request.param)
    yield request.param
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
