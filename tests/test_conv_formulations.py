"""The convolution layers' two formulations (native Conv2D for Ascend/GPU, matmul / multiply-add rewrites for CPU)
compute the same function with the same parameters: outputs and gradients agree to 1e-5 relative."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindcv_lite.models.layers import DepthwiseConv2d, PatchConv2d


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


def _both(layer_cls, args):
    native, rewritten = layer_cls(*args, native=True), layer_cls(*args, native=False)
    for a, b in zip(native.get_parameters(), rewritten.get_parameters()):
        assert a.name == b.name and a.shape == b.shape
        b.set_data(a.value())
    return native, rewritten


def _assert_close(actual, expected):
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 1e-5 * scale, (np.abs(actual - expected).max(), scale)


CASES = [
    # (layer, constructor args, input NHWC): every kernel/stride/padding the models use, at odd sizes too
    (PatchConv2d, (3, 8, 7, 4, 3), (2, 30, 27, 3)),      # PVTv2 stem: overlapping 7/4
    (PatchConv2d, (4, 6, 3, 2, 1), (2, 15, 14, 4)),      # PVTv2 downsampling: overlapping 3/2
    (PatchConv2d, (3, 5, 16, 8, 0), (2, 35, 33, 3)),     # PiT stem 16/8 (the last rows/columns are cropped)
    (PatchConv2d, (4, 5, 4, 4, 0), (2, 16, 12, 4)),      # PVT patch embedding / spatial reduction (kernel = stride)
    (PatchConv2d, (4, 5, 1, 1, 0), (2, 7, 7, 4)),        # PVTv2-li 1x1 reduction
    (DepthwiseConv2d, (6, 1, 3, 1, 1), (2, 9, 8, 6)),    # PVTv2 MLP 3x3
    (DepthwiseConv2d, (4, 2, 3, 2, 1), (2, 9, 10, 4)),   # PiT pooling: stride 2, channel multiplier 2
]


@pytest.mark.parametrize("layer_cls, args, shape", CASES, ids=[f"{c[0].__name__}{c[1]}" for c in CASES])
def test_cpu_formulation_matches_native_conv(layer_cls, args, shape, mode):
    native, rewritten = _both(layer_cls, args)
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    _assert_close(rewritten(x).asnumpy(), native(x).asnumpy())
    (grad_x,), grad_params = _Gradients(rewritten)(x)
    (expected_x,), expected_params = _Gradients(native)(x)
    _assert_close(grad_x.asnumpy(), expected_x.asnumpy())
    for grad, expected in zip(grad_params, expected_params):
        _assert_close(grad.asnumpy(), expected.asnumpy())


def test_formulation_follows_the_device_target():
    """On this CPU machine the layers pick the rewrites; the native path is what Ascend/GPU get."""
    assert ms.get_context("device_target") == "CPU"
    assert not PatchConv2d(3, 4, 7, 4, 3).native and not DepthwiseConv2d(4).native
