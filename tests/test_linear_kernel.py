"""The linear layer's formulations (nn.Dense's MatMul and BiasAdd; the package's fused CPU kernel) compute the same
function with the same parameters: outputs and gradients agree to 1e-5 relative. So do the MLP's fc1 + exact GELU
as one kernel and as nn.Dense followed by MindSpore's GELU."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindcv_lite import kernels
from mindcv_lite.models.layers import Linear, Mlp
from mindcv_lite.models.layers import formulation as formulations
from mindcv_lite.models.layers.formulation import CPU_KERNEL, NATIVE


def _assert_close(actual, expected):
    scale = np.abs(expected).max()
    assert scale > 0 and np.abs(actual - expected).max() <= 1e-5 * scale, (np.abs(actual - expected).max(), scale)


class _Gradients(nn.Cell):
    """The gradients of sum(layer(x) * weights) with respect to x and the layer's parameters."""

    def __init__(self, layer, weights):
        super().__init__()
        self.layer, self.weights = layer, weights
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)
        self.params = layer.trainable_params()

    def loss(self, x):
        return (self.layer(x) * self.weights).sum()

    def construct(self, x):
        return self.grad(self.loss, self.params)(x)


@pytest.mark.parametrize("x_shape, out_features, has_bias", [
    ((5, 7), 3, True),          # 2-D input
    ((2, 9, 13), 19, True),     # tokens (B, N, C), sizes not multiples of 8
    ((2, 9, 13), 19, False),    # no bias (qkv_bias=False)
    ((2, 3, 2000, 40), 6, True),  # 4-D; rows in several tiles, the weight gradient split by columns
], ids=["2d", "3d", "3d-no-bias", "4d"])
def test_kernel_matches_native_dense(x_shape, out_features, has_bias, mode):
    rng = np.random.default_rng(0)
    native = Linear(x_shape[-1], out_features, has_bias=has_bias, formulation=NATIVE)
    kernel = Linear(x_shape[-1], out_features, has_bias=has_bias, formulation=CPU_KERNEL)
    if has_bias:  # nonzero, unlike the initialisation
        native.bias.set_data(ms.Tensor(rng.standard_normal(out_features).astype(np.float32)))
    for mine, theirs in zip(kernel.trainable_params(), native.trainable_params()):
        mine.set_data(theirs.data.copy())
    x = ms.Tensor(rng.standard_normal(x_shape).astype(np.float32))
    weights = ms.Tensor(rng.standard_normal(x_shape[:-1] + (out_features,)).astype(np.float32))
    out = kernel(x)
    assert out.shape == x_shape[:-1] + (out_features,)
    _assert_close(out.asnumpy(), native(x).asnumpy())
    (dx,), grads = _Gradients(kernel, weights)(x)
    (expected_dx,), expected_grads = _Gradients(native, weights)(x)
    assert len(grads) == (2 if has_bias else 1)
    for grad, expected in zip((dx,) + tuple(grads), (expected_dx,) + tuple(expected_grads)):
        _assert_close(grad.asnumpy(), expected.asnumpy())


class _DenseThenGelu(nn.Cell):
    """GELU(dense(x)), as the fused kernel or as nn.Dense's operators and MindSpore's exact GELU."""

    def __init__(self, dense, fused):
        super().__init__()
        self.dense, self.fused = dense, fused
        self.gelu = nn.GELU(approximate=False)
        self.linear_gelu = kernels.linear_gelu()

    def construct(self, x):
        if self.fused:
            return self.linear_gelu(x, self.dense.weight, self.dense.bias)
        return self.gelu(self.dense(x))


@pytest.mark.parametrize("x_shape, out_features", [
    ((2, 9, 13), 19),    # sizes not multiples of 8
    ((3, 700, 24), 40),  # rows in several tiles, the weight gradient split by rows
], ids=["3d", "tiles"])
def test_linear_gelu_kernel_matches_dense_then_gelu(x_shape, out_features, mode):
    rng = np.random.default_rng(1)
    native = _DenseThenGelu(Linear(x_shape[-1], out_features, formulation=NATIVE), fused=False)
    fused = _DenseThenGelu(Linear(x_shape[-1], out_features, formulation=NATIVE), fused=True)
    native.dense.bias.set_data(ms.Tensor(rng.standard_normal(out_features).astype(np.float32)))
    for mine, theirs in zip(fused.trainable_params(), native.trainable_params()):
        mine.set_data(theirs.data.copy())
    x = ms.Tensor(rng.standard_normal(x_shape).astype(np.float32))
    weights = ms.Tensor(rng.standard_normal(x_shape[:-1] + (out_features,)).astype(np.float32))
    expected = native(x).asnumpy()
    assert (expected < 0).any() and (expected > 1).any()  # both sides of GELU's bend are exercised
    _assert_close(fused(x).asnumpy(), expected)
    (dx,), grads = _Gradients(fused, weights)(x)
    (expected_dx,), expected_grads = _Gradients(native, weights)(x)
    assert len(grads) == 2
    for grad, expected in zip((dx,) + tuple(grads), (expected_dx,) + tuple(expected_grads)):
        _assert_close(grad.asnumpy(), expected.asnumpy())


class _TokenMlp(nn.Cell):
    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def construct(self, x):
        return self.mlp(x, 1, x.shape[1])


def test_mlp_in_inference_matches_training(mode):
    """Inference runs fc1 and the GELU as one kernel, training as two: same outputs and gradients."""
    rng = np.random.default_rng(2)
    mlp = _TokenMlp(Mlp(12, 48))
    assert mlp.mlp.fuse_fc1_act
    mlp.mlp.fc1.bias.set_data(ms.Tensor(rng.standard_normal(48).astype(np.float32)))
    x = ms.Tensor(rng.standard_normal((2, 5, 12)).astype(np.float32))
    weights = ms.Tensor(rng.standard_normal((2, 5, 12)).astype(np.float32))
    results = {}
    for training in (True, False):
        mlp.set_train(training)
        (dx,), grads = _Gradients(mlp, weights)(x)
        results[training] = [mlp(x).asnumpy(), dx.asnumpy()] + [grad.asnumpy() for grad in grads]
    assert len(results[False]) == 2 + 4  # output, dx, fc1 and fc2's weight and bias
    for in_inference, in_training in zip(results[False], results[True]):
        _assert_close(in_inference, in_training)


def test_linear_is_a_dense_with_densess_parameters():
    """init_weights, mixed precision's cell lists and checkpoints look for nn.Dense and its parameter names."""
    layer = Linear(6, 4)
    assert isinstance(layer, nn.Dense)
    assert [(p.name, p.shape) for p in layer.get_parameters()] == [("weight", (4, 6)), ("bias", (4,))]
    assert [p.name for p in Linear(6, 4, has_bias=False).get_parameters()] == ["weight"]


def test_linear_follows_the_device_target():
    """The kernel on this CPU machine (the blocks' projections too); nn.Dense's operators for export."""
    assert ms.get_context("device_target") == "CPU"
    assert kernels.library_path() is not None, "the install step (pip install -e .) did not build the CPU kernels"
    assert Linear(4, 3).formulation == CPU_KERNEL
    assert Mlp(4, 8).fc1.formulation == CPU_KERNEL
    assert Mlp(4, 8).fuse_fc1_act
    with formulations.portable_formulations():
        assert Linear(4, 3).formulation == NATIVE
        assert not Mlp(4, 8).fuse_fc1_act
    with pytest.raises(ValueError, match="rewrite"):
        Linear(4, 3, formulation="rewrite")


def test_mlp_fuses_fc1_and_gelu_only_with_the_kernels(monkeypatch):
    assert Mlp(4, 8).fuse_fc1_act
    monkeypatch.setattr(kernels, "library_path", lambda: None)
    monkeypatch.setitem(formulations._state, "warned", True)  # the warning itself: test_conv_formulations
    assert not Mlp(4, 8).fuse_fc1_act


def test_kernel_rejects_float16_and_mismatched_shapes_with_clear_errors(pynative):
    layer = Linear(4, 3, formulation=CPU_KERNEL)
    with pytest.raises(TypeError, match="float32 only"):
        layer(ms.Tensor(np.zeros((2, 4), np.float16)))
    with pytest.raises(ValueError, match=r"x \(\.\.\., in\), weight \(out, in\)"):
        layer(ms.Tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"linear \+ GELU kernel takes .* bias \(out,\), got .* bias \[4\]"):
        kernels.linear_gelu()(ms.Tensor(np.zeros((2, 4), np.float32)), layer.weight, ms.Tensor(np.zeros(4, np.float32)))
