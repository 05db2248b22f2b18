"""The package's own CPU kernels, as MindSpore `ops.Custom` "aot" operators with their backward.

The C++ sources in this folder are compiled into one library by the package's install step (`pip install -e .`, or
`python setup.py build_ext --inplace` in a source checkout). `library_path()` is None when it was not built; the
layers then keep their portable formulation (see `models/layers/formulation.py`).
"""
import functools
import os
import sysconfig

import mindspore as ms
from mindspore import ops

_LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "_cpu_kernels" + sysconfig.get_config_var("EXT_SUFFIX"))


def library_path():
    """The built kernel library, or None when the install step did not build it."""
    return _LIBRARY if os.path.isfile(_LIBRARY) else None


def _float32_like(name):
    def infer_dtype(*dtypes):
        # Custom's infer functions get tensor types (`Tensor[Float32]`), the element type behind them
        if any(getattr(dtype, "element_type", lambda: dtype)() != ms.float32 for dtype in dtypes):
            raise TypeError(f"the {name} CPU kernel computes in float32 only, got {dtypes}: run the model in float32 "
                            "on CPU (amp_level O0)")
        return dtypes[0]
    return infer_dtype


def _custom(function, out_shape, out_dtype, bprop=None):
    if library_path() is None:
        raise RuntimeError(f"mindcv_lite's CPU kernel library {_LIBRARY} is missing: build it with "
                           "`pip install -e .` (or `python setup.py build_ext --inplace`) in the source checkout")
    return ops.Custom(f"{_LIBRARY}:{function}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot",
                      bprop=bprop)


@functools.cache
def depthwise_conv(stride):
    """(x (B, H, W, C), weight (C * r, 1, K, K), bias (C * r,)) -> depthwise convolution with r output channels per
    input channel (channel c * r + q reads c), stride 1 or 2, zero padding K // 2: (B, H_out, W_out, C * r). One
    primitive per stride and process, shared by every layer (an aot kernel sees only shapes: the stride is its name)."""
    if stride not in (1, 2):
        raise ValueError(f"the depthwise convolution CPU kernel has strides 1 and 2, got {stride}: use the layer's "
                         "'rewrite' formulation")
    name = f"DepthwiseConvStride{stride}"
    check = _float32_like("depthwise convolution")

    def out_shape(x, weight, bias):
        k = weight[2]
        return [x[0], (x[1] + 2 * (k // 2) - k) // stride + 1, (x[2] + 2 * (k // 2) - k) // stride + 1, weight[0]]

    grad = _custom(f"{name}Grad", lambda dy, x, weight: (x, weight, [weight[0]]),
                   lambda dy, x, weight: (check(dy, x, weight),) * 3)

    def bprop(x, weight, bias, out, dout):
        return grad(dout, x, weight)

    return _custom(name, out_shape, check, bprop)


@functools.cache
def patch_conv(stride, padding, channels_first=False):
    """(x (B, H, W, C_in), or (B, C_in, H, W) with `channels_first`, weight (C_out, C_in, K, K), bias (C_out,),
    geometry) -> the convolution with that stride and symmetric zero padding, channels-last (B, H_out, W_out, C_out).
    `geometry` is `patch_conv_geometry(stride, padding, channels_first)`, a constant the layer holds: the aot kernel
    sees only shapes and pointers, and stride and padding do not follow from the shapes. One primitive per geometry
    (the output shape depends on it), shared by every layer."""
    check = _float32_like("patch convolution")

    def out_shape(x, weight, bias, geometry):
        layout = "(B, C, H, W)" if channels_first else "(B, H, W, C)"
        if len(x) == 4 and len(weight) == 4:
            chans, height, width = (x[1], x[2], x[3]) if channels_first else (x[3], x[1], x[2])
            if weight[1] == chans and weight[2] == weight[3] and list(bias) == [weight[0]] and \
                    min(height, width) + 2 * padding >= weight[2]:
                return [x[0], (height + 2 * padding - weight[2]) // stride + 1,
                        (width + 2 * padding - weight[2]) // stride + 1, weight[0]]
        raise ValueError(f"the patch convolution kernel takes x {layout} at least as large as the padded kernel, "
                         f"weight (C_out, C, K, K) and bias (C_out,), got x {x}, weight {weight}, bias {bias}")

    grad_input = _custom("PatchConvGradInput", lambda dy, x, weight, geometry: x,
                         lambda dy, x, weight, geometry: check(dy, x, weight))
    grad_weight = _custom("PatchConvGradWeight", lambda dy, x, weight, geometry: (weight, [weight[0]]),
                          lambda dy, x, weight, geometry: (check(dy, x, weight),) * 2)

    def bprop(x, weight, bias, geometry, out, dout):
        # (two kernels: a graph that needs no dx, the stem's images, drops the first as dead code)
        dweight, dbias = grad_weight(dout, x, weight, geometry)
        return grad_input(dout, x, weight, geometry), dweight, dbias, ops.zeros_like(geometry)

    return _custom("PatchConv", out_shape, lambda x, weight, bias, geometry: check(x, weight, bias), bprop)


def patch_conv_geometry(stride, padding, channels_first=False):
    """The constant int32 input that carries `patch_conv`'s stride, padding and input layout to the kernel."""
    return ms.Tensor([stride, padding, int(channels_first)], ms.int32)


@functools.cache
def gelu_exact():
    """x -> x * Phi(x), the exact (erf) GELU, float32 of any shape; its backward reads only x."""
    check = _float32_like("exact GELU")
    grad = _custom("GeluExactGrad", lambda dy, x: x, check)

    def bprop(x, out, dout):
        return (grad(dout, x),)

    return _custom("GeluExact", lambda x: x, check, bprop)


@functools.cache
def multi_head_attention(num_heads):
    """(q (B, N, C), k (B, M, C), v (B, M, C)) -> (out (B, N, C), lse (B, num_heads, N)): per head h (channels
    h*d..(h+1)*d, d = C / num_heads), out_h = softmax(q_h k_h^T / sqrt(d)) v_h, and lse the rows' log-sum-exp of the
    scaled scores, which the backward reuses. Gradients flow from `out` only: lse is for the backward. One primitive
    per head count (the count reaches the kernel as lse's shape), shared by every layer."""
    check = _float32_like("attention")

    def out_shape(q, k, v):
        if len(q) != 3 or len(k) != 3 or k != v or q[0] != k[0] or q[2] != k[2] or q[2] % num_heads:
            raise ValueError(f"the attention kernel takes q (B, N, C), k and v (B, M, C) with C divisible by "
                             f"{num_heads} heads, got q {q}, k {k}, v {v}")
        return q, [q[0], num_heads, q[1]]

    grad = _custom("MultiHeadAttentionGrad", lambda dout, q, k, v, out, lse: (q, k, v),
                   lambda *dtypes: (check(*dtypes),) * 3)

    def bprop(q, k, v, out, dout):
        return grad(dout[0], q, k, v, out[0], out[1])

    return _custom("MultiHeadAttention", out_shape, lambda q, k, v: (check(q, k, v),) * 2, bprop)


def _linear_out_shape(kernel, x, weight, *bias):
    """(..., out) for x (..., in), weight (out, in) and bias (out,) when the kernel takes one; else a ValueError."""
    if len(x) < 1 or len(weight) != 2 or x[-1] != weight[1] or any(list(b) != [weight[0]] for b in bias):
        raise ValueError(f"the {kernel} kernel takes x (..., in), weight (out, in){' and bias (out,)' if bias else ''}"
                         f", got x {x}, weight {weight}{', bias ' + str(bias[0]) if bias else ''}")
    return list(x[:-1]) + [weight[0]]


@functools.cache
def linear(has_bias):
    """(x (..., in), weight (out, in)[, bias (out,)]) -> x weight^T + bias (..., out), nn.Dense's function, writing
    its output once; the backward reads x and weight. One primitive per bias choice, shared by every layer."""
    name = "Linear" if has_bias else "LinearNoBias"
    check = _float32_like("linear")
    outputs = 3 if has_bias else 2
    grad = _custom(f"{name}Grad", lambda dy, x, weight: (x, weight, [weight[0]])[:outputs],
                   lambda *dtypes: (check(*dtypes),) * outputs)

    if has_bias:
        def bprop(x, weight, bias, out, dout):
            return grad(dout, x, weight)
    else:
        def bprop(x, weight, out, dout):
            return grad(dout, x, weight)

    return _custom(name, lambda *shapes: _linear_out_shape("linear", *shapes), check, bprop)


@functools.cache
def linear_gelu():
    """(x (..., in), weight (out, in), bias (out,)) -> GELU(x weight^T + bias), the exact GELU, written once: an MLP's
    fc1 and its activation without the pre-activation buffer. The backward reads x, weight and bias and recomputes
    the pre-activation (one more GEMM than fc1 and the GELU apart). One primitive, shared by every layer."""
    check = _float32_like("linear + GELU")
    grad = _custom("LinearGeluGrad", lambda dy, x, weight, bias: (x, weight, bias),
                   lambda *dtypes: (check(*dtypes),) * 3)

    def bprop(x, weight, bias, out, dout):
        return grad(dout, x, weight, bias)

    return _custom("LinearGelu", lambda *shapes: _linear_out_shape("linear + GELU", *shapes), check, bprop)


@functools.cache
def layer_norm():
    """(x (..., C), gamma (C,), beta (C,), eps) -> (x - mean) / sqrt(var + eps) * gamma + beta over the last axis.
    `eps` is `layer_norm_epsilon(eps)`, a constant the layer holds (the aot kernel sees only shapes and pointers). The
    backward reads x and recomputes each row's mean and variance. One primitive, shared by every layer."""
    check = _float32_like("LayerNorm")

    def out_shape(x, gamma, beta, eps):
        if len(x) < 1 or list(gamma) != [x[-1]] or list(beta) != [x[-1]]:
            raise ValueError(f"the LayerNorm kernel takes x (..., C), gamma (C,) and beta (C,), got x {x}, "
                             f"gamma {gamma}, beta {beta}")
        return x

    grad = _custom("LayerNormGrad", lambda dy, x, gamma, eps: (x, gamma, gamma),
                   lambda *dtypes: (check(*dtypes),) * 3)

    def bprop(x, gamma, beta, eps, out, dout):
        dx, dgamma, dbeta = grad(dout, x, gamma, eps)
        return dx, dgamma, dbeta, ops.zeros_like(eps)

    return _custom("LayerNorm", out_shape, check, bprop)


def layer_norm_epsilon(eps):
    """The constant float32 input that carries a LayerNorm's epsilon to `layer_norm`'s kernel."""
    return ms.Tensor([eps], ms.float32)
