"""The attention layers' formulations (MindSpore's batched matmuls and softmax; the package's fused CPU kernel)
compute the same function with the same parameters: outputs and gradients agree to 1e-5 relative."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindcv_lite import kernels
from mindcv_lite.models.layers import formulation as formulations
from mindcv_lite.models.layers.attention import Attention, LinearSRAttention, SpatialReductionAttention
from mindcv_lite.models.layers.formulation import CPU_KERNEL, NATIVE


def _assert_close(actual, expected, scale=None):
    scale = np.abs(expected).max() if scale is None else scale
    assert np.abs(actual - expected).max() <= 1e-5 * scale, (np.abs(actual - expected).max(), scale)


def _tensor(rng, shape):
    return ms.Tensor(rng.standard_normal(shape).astype(np.float32))


class _KernelLoss(nn.Cell):
    def __init__(self, num_heads, weights):
        super().__init__()
        self.attention, self.weights = kernels.multi_head_attention(num_heads), weights

    def construct(self, q, k, v):
        return (self.attention(q, k, v)[0] * self.weights).sum()


class _NativeLoss(nn.Cell):
    """The native formulation's own code path (a layer's `_native_attention`), on q scaled as the layer does."""

    def __init__(self, layer, weights):
        super().__init__()
        self.layer, self.weights = layer, weights

    def construct(self, q, k, v):
        return (self.layer._native_attention(q * self.layer.scale, k, v) * self.weights).sum()


@pytest.mark.parametrize("batch, queries, keys, heads, head_dim", [
    (2, 9, 9, 1, 4),     # self-attention, one head
    (2, 17, 17, 2, 8),   # PiT: odd token count (class token), two heads
    (2, 17, 5, 3, 6),    # PVT: keys and values from a reduced map (M < N), three heads
], ids=["N9-M9-h1-d4", "N17-M17-h2-d8", "N17-M5-h3-d6"])
def test_kernel_matches_native_attention(batch, queries, keys, heads, head_dim, mode):
    rng = np.random.default_rng(0)
    dim = heads * head_dim
    q, k, v = _tensor(rng, (batch, queries, dim)), _tensor(rng, (batch, keys, dim)), _tensor(rng, (batch, keys, dim))
    weights = _tensor(rng, (batch, queries, dim))
    native = Attention(dim, heads, formulation=NATIVE)
    out, lse = kernels.multi_head_attention(heads)(q, k, v)
    _assert_close(out.asnumpy(), native._native_attention(q * native.scale, k, v).asnumpy())
    assert lse.shape == (batch, heads, queries)
    grads = ms.grad(_KernelLoss(heads, weights), grad_position=(0, 1, 2))(q, k, v)
    expected = ms.grad(_NativeLoss(native, weights), grad_position=(0, 1, 2))(q, k, v)
    for grad, reference in zip(grads, expected):
        _assert_close(grad.asnumpy(), reference.asnumpy())


class _Gradients(nn.Cell):
    def __init__(self, layer, height, width, weights):
        super().__init__()
        self.layer, self.height, self.width, self.weights = layer, height, width, weights
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)
        self.params = layer.trainable_params()

    def loss(self, x):
        return (self.layer(x, self.height, self.width) * self.weights).sum()

    def construct(self, x):
        return self.grad(self.loss, self.params)(x)


LAYERS = [
    (Attention, (12, 2), (3, 3)),                          # PiT
    (SpatialReductionAttention, (12, 3, 2), (5, 4)),       # PVT, keys from a map reduced 2x
    (LinearSRAttention, (8, 1), (9, 8)),                   # PVTv2-li, keys from a 7x7 pooled map
]


@pytest.mark.parametrize("layer_cls, args, size", LAYERS, ids=[layer[0].__name__ for layer in LAYERS])
def test_layers_compute_the_same_with_either_formulation(layer_cls, args, size, mode):
    native, kernel = layer_cls(*args, formulation=NATIVE), layer_cls(*args, formulation=CPU_KERNEL)
    for a, b in zip(native.get_parameters(), kernel.get_parameters()):
        assert a.name == b.name and a.shape == b.shape
        b.set_data(a.value())
    rng = np.random.default_rng(1)
    height, width = size
    x, weights = _tensor(rng, (2, height * width, args[0])), _tensor(rng, (2, height * width, args[0]))
    _assert_close(kernel(x, height, width).asnumpy(), native(x, height, width).asnumpy())
    (grad_x,), grad_params = _Gradients(kernel, height, width, weights)(x)
    (expected_x,), expected_params = _Gradients(native, height, width, weights)(x)
    _assert_close(grad_x.asnumpy(), expected_x.asnumpy())
    assert len(grad_params) == len(expected_params) > 0
    # relative to the largest parameter gradient: the key bias's is zero but for rounding (softmax ignores a
    # constant added to every score of a row)
    scale = max(np.abs(expected.asnumpy()).max() for expected in expected_params)
    for grad, expected in zip(grad_params, expected_params):
        _assert_close(grad.asnumpy(), expected.asnumpy(), scale)


def test_attention_follows_the_device_target():
    """The kernel on this CPU machine; MindSpore's operators for export and for dropout on the probabilities."""
    assert ms.get_context("device_target") == "CPU"
    assert kernels.library_path() is not None, "the install step (pip install -e .) did not build the CPU kernels"
    assert Attention(8, 2).formulation == CPU_KERNEL
    assert SpatialReductionAttention(8, 2, 2).formulation == CPU_KERNEL
    assert LinearSRAttention(8, 2).formulation == CPU_KERNEL
    assert Attention(8, 2, attn_drop=0.1).formulation == NATIVE
    with formulations.portable_formulations():
        assert Attention(8, 2).formulation == NATIVE
    with pytest.raises(ValueError, match="cpu_kernel"):
        Attention(8, 2, attn_drop=0.1, formulation=CPU_KERNEL)


def test_kernel_rejects_float16_and_malformed_shapes_with_clear_errors(pynative):
    attention = kernels.multi_head_attention(2)
    half = ms.Tensor(np.zeros((1, 3, 4), np.float16))
    with pytest.raises(TypeError, match="float32 only"):
        attention(half, half, half)
    q, k = ms.Tensor(np.zeros((1, 3, 6), np.float32)), ms.Tensor(np.zeros((1, 5, 4), np.float32))
    with pytest.raises(ValueError, match="divisible by 2 heads"):
        attention(q, k, k)
