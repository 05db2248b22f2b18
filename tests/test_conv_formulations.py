"""The convolution layers' formulations (native Conv2D for Ascend/GPU; on CPU the package's C++ kernel or the
matmul / multiply-add rewrites) compute the same function with the same parameters: outputs and gradients agree to
1e-5 relative."""
import warnings

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindcv_lite import kernels
from mindcv_lite.models.layers import Attention, DepthwiseConv2d, LayerNorm, Linear, PatchConv2d
from mindcv_lite.models.layers import formulation as formulations
from mindcv_lite.models.layers.formulation import CPU_KERNEL, NATIVE, REWRITE
from mindcv_lite.models.layers.gelu import ExactGELU


class _SquaredSum(nn.Cell):
    """A scalar whose gradient reaches every output element with a different weight."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def construct(self, x):
        y = self.layer(x)
        return (y * y).sum()


class _Gradients(nn.Cell):
    def __init__(self, layer):
        super().__init__()
        self.loss = _SquaredSum(layer)
        self.params = layer.trainable_params()
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)

    def construct(self, x):
        return self.grad(self.loss, self.params)(x)


def _both(layer_cls, args, formulation):
    native, other = layer_cls(*args, formulation=NATIVE), layer_cls(*args, formulation=formulation)
    for a, b in zip(native.get_parameters(), other.get_parameters()):
        assert a.name == b.name and a.shape == b.shape
        b.set_data(a.value())
    return native, other


def _assert_close(actual, expected):
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 1e-5 * scale, (np.abs(actual - expected).max(), scale)


CASES = [
    # (layer, constructor args, CPU formulation, input NHWC): every kernel/stride/padding the models use, odd sizes too
    (PatchConv2d, (3, 8, 7, 4, 3), REWRITE, (2, 30, 27, 3)),        # PVTv2 stem: overlapping 7/4
    (PatchConv2d, (4, 6, 3, 2, 1), REWRITE, (2, 15, 14, 4)),        # PVTv2 downsampling: overlapping 3/2
    (PatchConv2d, (3, 5, 16, 8, 0), REWRITE, (2, 35, 33, 3)),       # PiT stem 16/8 (last rows/columns cropped)
    (PatchConv2d, (4, 5, 4, 4, 0), REWRITE, (2, 16, 12, 4)),        # PVT patch embedding / reduction (kernel = stride)
    (PatchConv2d, (4, 5, 1, 1, 0), REWRITE, (2, 7, 7, 4)),          # PVTv2-li 1x1 reduction
    (PatchConv2d, (3, 5, 4, 4, 0, True), REWRITE, (1, 3, 8, 12)),   # channels-first input (the stems)
    (PatchConv2d, (3, 8, 7, 4, 3), CPU_KERNEL, (2, 30, 27, 3)),     # the same with the C++ kernel
    (PatchConv2d, (4, 6, 3, 2, 1), CPU_KERNEL, (2, 15, 14, 4)),
    (PatchConv2d, (3, 5, 16, 8, 0), CPU_KERNEL, (2, 35, 33, 3)),
    (PatchConv2d, (4, 5, 4, 4, 0), CPU_KERNEL, (2, 16, 12, 4)),
    (PatchConv2d, (4, 5, 1, 1, 0), CPU_KERNEL, (2, 7, 7, 4)),
    (PatchConv2d, (3, 8, 7, 4, 3, True), CPU_KERNEL, (2, 3, 30, 27)),   # kernel, channels-first: PVTv2 stem
    (PatchConv2d, (3, 5, 16, 8, 0, True), CPU_KERNEL, (1, 3, 35, 33)),  # PiT stem
    (PatchConv2d, (2, 3, 5, 1, 2), CPU_KERNEL, (10, 7, 9, 2)),      # kernel: 3 blocks of rows (across images) whose
                                                                    # inputs overlap
    (DepthwiseConv2d, (6, 1, 3, 1, 1), REWRITE, (2, 9, 8, 6)),      # PVTv2 MLP 3x3
    (DepthwiseConv2d, (6, 1, 3, 1, 1), CPU_KERNEL, (2, 9, 8, 6)),   # the same with the C++ kernel
    (DepthwiseConv2d, (5, 1, 5, 1, 2), CPU_KERNEL, (3, 4, 7, 5)),   # kernel: 5x5, a map smaller than the kernel
    (DepthwiseConv2d, (4, 2, 3, 2, 1), REWRITE, (2, 9, 10, 4)),     # PiT pooling: stride 2, channel multiplier 2
    (DepthwiseConv2d, (4, 2, 3, 2, 1), CPU_KERNEL, (2, 9, 8, 4)),   # the same with the C++ kernel, odd and even sizes
    (DepthwiseConv2d, (4, 2, 3, 2, 1), CPU_KERNEL, (2, 7, 7, 4)),
    (DepthwiseConv2d, (3, 3, 4, 2, 2), CPU_KERNEL, (2, 6, 5, 3)),   # kernel: even 4x4 (padding 2), multiplier 3
    (DepthwiseConv2d, (3, 1, 2, 1, 1), CPU_KERNEL, (1, 5, 4, 3)),   # kernel: even 2x2 at stride 1 (output one larger)
]


@pytest.mark.parametrize("layer_cls, args, formulation, shape", CASES,
                         ids=[f"{c[0].__name__}{c[1]}-{c[2]}" for c in CASES])
def test_cpu_formulation_matches_native_conv(layer_cls, args, formulation, shape, mode):
    native, rewritten = _both(layer_cls, args, formulation)
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    _assert_close(rewritten(x).asnumpy(), native(x).asnumpy())
    (grad_x,), grad_params = _Gradients(rewritten)(x)
    (expected_x,), expected_params = _Gradients(native)(x)
    _assert_close(grad_x.asnumpy(), expected_x.asnumpy())
    for grad, expected in zip(grad_params, expected_params):
        _assert_close(grad.asnumpy(), expected.asnumpy())


def test_formulation_follows_the_device_target():
    """On this CPU machine the layers pick the C++ kernel where one fits (the install step built it), else the
    rewrites; the native path is what Ascend/GPU get."""
    assert ms.get_context("device_target") == "CPU"
    assert kernels.library_path() is not None, "the install step (pip install -e .) did not build the CPU kernels"
    assert PatchConv2d(3, 4, 7, 4, 3).formulation == CPU_KERNEL
    assert PatchConv2d(3, 4, 16, 8, 0, channels_first=True).formulation == CPU_KERNEL
    assert DepthwiseConv2d(4).formulation == CPU_KERNEL
    assert DepthwiseConv2d(4, 2, 3, 2, 1).formulation == CPU_KERNEL  # PiT's pooling
    assert DepthwiseConv2d(4, 2, 3, 2, 0).formulation == REWRITE     # a padding the kernel does not compute
    with formulations.portable_formulations():
        assert DepthwiseConv2d(4).formulation == REWRITE
        assert PatchConv2d(3, 4, 7, 4, 3).formulation == REWRITE
    assert DepthwiseConv2d(4).formulation == CPU_KERNEL


@pytest.mark.parametrize("build, fallback", [
    (lambda **kwargs: DepthwiseConv2d(4, **kwargs), REWRITE),
    (lambda **kwargs: PatchConv2d(3, 4, 7, 4, 3, **kwargs), REWRITE),
    (lambda **kwargs: Linear(4, 3, **kwargs), NATIVE),
    (lambda **kwargs: Attention(8, 2, **kwargs), NATIVE),
    (lambda **kwargs: ExactGELU(**kwargs), NATIVE),
    (lambda **kwargs: LayerNorm(8, 1e-6, **kwargs), NATIVE),
], ids=["depthwise", "patch", "linear", "attention", "gelu", "layer_norm"])
def test_missing_kernel_library_falls_back_with_one_warning(monkeypatch, build, fallback):
    """Every layer with a CPU kernel computes without the library (a checkout built without a compiler): the
    first layer warns with the command that builds it, later ones are quiet; asking for the kernel is an error."""
    monkeypatch.setattr(kernels, "library_path", lambda: None)
    monkeypatch.setitem(formulations._state, "warned", False)
    with pytest.warns(RuntimeWarning, match="build_ext --inplace"):
        assert build().formulation == fallback
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build().formulation == fallback
    with pytest.raises(RuntimeError, match="pip install -e"):
        build(formulation=CPU_KERNEL)


def test_formulations_a_layer_cannot_compute_are_rejected():
    with pytest.raises(ValueError, match="cpu_kernel"):
        DepthwiseConv2d(4, 2, 3, 3, 1, formulation=CPU_KERNEL)
    with pytest.raises(ValueError, match="cpu_kernel"):
        DepthwiseConv2d(4, 2, 3, 2, 0, formulation=CPU_KERNEL)


def test_cpu_kernel_rejects_float16_with_a_clear_error(pynative):
    layer = DepthwiseConv2d(4, formulation=CPU_KERNEL)
    with pytest.raises(TypeError, match="float32 only"):
        layer(ms.Tensor(np.zeros((1, 3, 3, 4), np.float16)))


def test_patch_conv_kernel_rejects_a_mismatched_input_with_a_clear_error(pynative):
    layer = PatchConv2d(3, 4, 4, 4, formulation=CPU_KERNEL)
    with pytest.raises(ValueError, match="patch convolution kernel takes x"):
        layer(ms.Tensor(np.zeros((1, 8, 8, 5), np.float32)))
