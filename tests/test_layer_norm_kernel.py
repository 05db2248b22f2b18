"""LayerNorm's formulations (MindSpore's operator; the package's CPU kernel) compute the same function: outputs and
gradients (x, gamma, beta) agree to 1e-5 relative, for 2-D to 4-D inputs, widths that are not multiples of the
kernel's vector width, both epsilons the models use, and rows far from zero (where a one-pass variance cancels)."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_lite import kernels
from mindcv_lite.models.layers import formulation as formulations, norm
from mindcv_lite.models.layers.formulation import CPU_KERNEL, NATIVE
from mindcv_lite.models.layers.norm import LayerNorm


class _WeightedSum(nn.Cell):
    def __init__(self, norm, dy):
        super().__init__()
        self.norm, self.dy = norm, dy

    def construct(self, x):
        return (self.norm(x) * self.dy).sum()


def _outputs_and_grads(norm, x, dy):
    net = _WeightedSum(norm, dy)
    grad_x, (grad_gamma, grad_beta) = ms.grad(net, grad_position=0, weights=net.trainable_params())(x)
    return [norm(x), grad_x, grad_gamma, grad_beta]


def _layer_pair(width, eps, rng):
    kernel, native = LayerNorm(width, eps, formulation=CPU_KERNEL), LayerNorm(width, eps, formulation=NATIVE)
    for layer in (kernel, native):  # the same non-trivial affine parameters in both
        layer.gamma.set_data(ms.Tensor(np.linspace(0.5, 1.5, width, dtype=np.float32)))
        layer.beta.set_data(ms.Tensor(np.linspace(-0.2, 0.3, width, dtype=np.float32)))
    return kernel, native


@pytest.mark.parametrize("shape, eps, offset", [
    ((5, 13), 1e-5, 0.0),
    ((2, 7, 20), 1e-6, 100.0),
    ((2, 3, 4, 37), 1e-6, 0.0),
    ((3, 300, 64), 1e-5, 100.0),  # more rows than one dgamma/dbeta block
], ids=["2d", "3d-offset", "4d", "3d-blocks-offset"])
def test_cpu_kernel_matches_mindspore_layer_norm(mode, shape, eps, offset):
    rng = np.random.default_rng(0)
    x = ms.Tensor((offset + rng.standard_normal(shape) * rng.uniform(0.1, 3.0, shape[:-1] + (1,))).astype(np.float32))
    dy = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    kernel, native = _layer_pair(shape[-1], eps, rng)
    for name, actual, expected in zip(("y", "dx", "dgamma", "dbeta"), _outputs_and_grads(kernel, x, dy),
                                      _outputs_and_grads(native, x, dy)):
        actual, expected = actual.asnumpy(), expected.asnumpy()
        assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max(), (name, np.abs(actual - expected).max())


def test_epsilon_reaches_the_kernel(pynative):
    """A constant row normalises to zero over sqrt(eps): the kernel must use the layer's epsilon, not a default."""
    x = ms.Tensor(np.zeros((1, 9), np.float32) + np.eye(1, 9, dtype=np.float32) * 1e-3)
    for eps in (1e-5, 1e-6):
        kernel, native = LayerNorm(9, eps, formulation=CPU_KERNEL), LayerNorm(9, eps, formulation=NATIVE)
        np.testing.assert_allclose(kernel(x).asnumpy(), native(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_cpu_kernel_rejects_float16_with_a_clear_error(pynative):
    layer = LayerNorm(8, 1e-6, formulation=CPU_KERNEL)
    with pytest.raises(TypeError, match="float32 only"):
        layer(ms.Tensor(np.zeros((2, 8), np.float16)))


def test_layer_norm_follows_the_device_target(monkeypatch):
    assert ms.get_context("device_target") == "CPU"
    assert LayerNorm(8, 1e-6).formulation == CPU_KERNEL
    with formulations.portable_formulations():
        assert LayerNorm(8, 1e-6).formulation == NATIVE
    monkeypatch.setattr(norm, "use_native_ops", lambda: True)  # Ascend / GPU
    assert LayerNorm(8, 1e-6).formulation == NATIVE
    monkeypatch.setattr(norm, "use_native_ops", lambda: False)
    monkeypatch.setattr(kernels, "library_path", lambda: None)
    monkeypatch.setitem(formulations._state, "warned", True)  # the warning itself: test_conv_formulations
    assert LayerNorm(8, 1e-6).formulation == NATIVE
