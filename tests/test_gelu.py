"""The exact GELU's formulations (MindSpore's operator; the package's CPU kernel) compute the same function: outputs
and gradients agree to 1e-5 relative, over the whole float range where GELU is not saturated."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_lite import kernels
from mindcv_lite.models.layers import formulation as formulations
from mindcv_lite.models.layers.formulation import CPU_KERNEL, NATIVE
from mindcv_lite.models.layers.gelu import ExactGELU


class _WeightedSum(nn.Cell):
    def __init__(self, gelu, dy):
        super().__init__()
        self.gelu, self.dy = gelu, dy

    def construct(self, x):
        return (self.gelu(x) * self.dy).sum()


def _value_and_grad(gelu, x, dy):
    return ms.value_and_grad(_WeightedSum(gelu, dy))(x)


def _assert_close(actual, expected):
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max(), np.abs(actual - expected).max()


def test_cpu_kernel_matches_mindspore_gelu(mode):
    rng = np.random.default_rng(0)
    values = np.concatenate([np.linspace(-12, 12, 481), 3 * rng.standard_normal(671)]).astype(np.float32)
    x = ms.Tensor(values.reshape(2, 4, 144))
    dy = ms.Tensor(rng.standard_normal((2, 4, 144)).astype(np.float32))
    kernel, native = ExactGELU(CPU_KERNEL), ExactGELU(NATIVE)
    _assert_close(kernel(x).asnumpy(), native(x).asnumpy())
    _assert_close(_value_and_grad(kernel, x, dy)[1].asnumpy(), _value_and_grad(native, x, dy)[1].asnumpy())


def test_gelu_follows_the_device_target(monkeypatch):
    assert ms.get_context("device_target") == "CPU"
    assert ExactGELU().formulation == CPU_KERNEL
    with formulations.portable_formulations():
        assert ExactGELU().formulation == NATIVE
    monkeypatch.setattr(kernels, "library_path", lambda: None)
    monkeypatch.setitem(formulations._state, "warned", True)  # the warning itself: test_conv_formulations
    assert isinstance(ExactGELU().gelu, nn.GELU)  # MindSpore's exact GELU without the kernel library
