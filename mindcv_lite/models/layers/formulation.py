"""Which formulation the shared layers compute with: MindSpore's native kernels, the package's CPU kernels, or
rewrites into other standard ops.

On Ascend and GPU MindSpore's native operators (`Conv2D` with symmetric padding, grouped for depthwise, BatchMatMul
and softmax, Dense, exact GELU) are the fast and memory-lean path. On CPU, MindSpore 2.10's kernels are
pathologically slow for the strided patch embeddings (3->64, k16 s8 on 16x3x224x224: 2.2 s against 9 ms in PyTorch)
and grouped convolutions, and its CPU graph runtime keeps what a multi-op formulation computes in between (attention
scores, a Dense's MatMul and BiasAdd outputs, a Transpose's compile-time index table), so the layers use this
package's C++ kernels (`mindcv_lite.kernels`), one node each, with the same parameters; rewrites into other standard
operators serve export and a missing kernel library.

A layer reads its formulation once, when it is built (after the device is set).
"""
import contextlib
import warnings

import mindspore as ms

from ... import kernels

NATIVE = "native"          # MindSpore's own operator (Ascend, GPU)
CPU_KERNEL = "cpu_kernel"  # this package's C++ kernel, an ops.Custom "aot" operator (CPU)
REWRITE = "rewrite"        # other standard operators computing the same function (CPU; exports to every format)

_state = {"kernels_enabled": True, "warned": False}


def use_native_ops():
    """True unless MindSpore runs on CPU (then the layers pick a CPU kernel, or a rewrite where none fits)."""
    return ms.get_context("device_target") != "CPU"


def check_formulation(formulation, allowed):
    if formulation not in allowed:
        raise ValueError(f"formulation {formulation!r} is not available for this layer: use one of {allowed}")
    if formulation == CPU_KERNEL and kernels.library_path() is None:
        raise RuntimeError("the CPU kernel library was not built: run `pip install -e .` (or "
                           "`python setup.py build_ext --inplace`) in the source checkout")
    return formulation


def kernel_or(fallback):
    """On CPU: the package's kernel when its library was built (and kernels are not disabled), else `fallback`.

    A missing library is not an error (the package still imports and computes the same function everywhere), but
    it is reported once: the fallbacks need more memory and time on CPU.
    """
    if not _state["kernels_enabled"]:
        return fallback
    if kernels.library_path() is not None:
        return CPU_KERNEL
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn("mindcv_lite's CPU kernels were not built (no C++ compiler at install time?): the layers fall "
                      "back to MindSpore's operators, which compute the same function with more memory and time. "
                      "Build the kernels with `pip install -e .` or `python setup.py build_ext --inplace`.",
                      RuntimeWarning, stacklevel=3)
    return fallback


@contextlib.contextmanager
def portable_formulations():
    """Layers built inside use only MindSpore's standard operators (export: a graph with a Custom operator would
    point at this machine's kernel library, and ONNX has no such operator)."""
    previous = _state["kernels_enabled"]
    _state["kernels_enabled"] = False
    try:
        yield
    finally:
        _state["kernels_enabled"] = previous
