"""Multi-head self-attention variants: plain (PiT), spatial-reduction (PVT, PVTv2) and linear spatial-reduction
(PVTv2-li). Every variant takes tokens (B, N, C) and the token map's `height` and `width`, so blocks can swap
them freely; the plain one ignores the map size."""
from mindspore import nn, ops

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, check_formulation, kernel_or, use_native_ops
from .gelu import ExactGELU
from .linear import Linear
from .norm import LayerNorm
from .patch_conv import PatchConv2d
from .pool import adaptive_avg_pool

# PVTv2-li pools keys and values to this grid whatever the input size.
LINEAR_SR_GRID = 7


class _MultiHeadAttention(nn.Cell):
    """Queries from the tokens, keys and values from `_key_value_input` (the tokens, or a reduced map).

    Two formulations with the same parameters (`formulation` forces one, see `formulation.py`): MindSpore's batched
    matmuls and softmax over heads split out of the channels (Ascend, GPU, export), or on CPU this package's fused
    kernel, which reads the heads in place and keeps no (B, heads, N, M) scores: MindSpore 2.10's CPU graph runtime
    keeps every intermediate alive, ~370 MB of a PiT training step per first-stage block. The kernel has no dropout
    on the attention probabilities, so layers with `attn_drop > 0` use the native formulation (every model's
    default rate is 0).
    """

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, fused_kv=False,
                 formulation=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        # The reference checkpoints' layouts: PVT stores a fused `kv` projection, PiT separate `k` and `v`.
        self.fused_kv = fused_kv
        self.q = Linear(dim, dim, has_bias=qkv_bias)
        if fused_kv:
            self.kv = Linear(dim, dim * 2, has_bias=qkv_bias)
        else:
            self.k = Linear(dim, dim, has_bias=qkv_bias)
            self.v = Linear(dim, dim, has_bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop)
        kernel_fits = attn_drop == 0
        if formulation is None:
            formulation = NATIVE if use_native_ops() or not kernel_fits else kernel_or(NATIVE)
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL) if kernel_fits else (NATIVE,))
        if self.formulation == CPU_KERNEL:
            self.attention = kernels.multi_head_attention(num_heads)
        else:
            self.attn_drop = nn.Dropout(p=attn_drop)
            # Primitives, not ops.matmul: MindSpore 2.10 differentiates ops.matmul (BatchMatMulExt) through explicit
            # Transposes (PiT's 730-token attention: 0.24 vs 0.20 CPU s for the backward of one batch of 16).
            self.scores = ops.BatchMatMul(transpose_b=True)
            self.weighted_sum = ops.BatchMatMul()

    def _split_heads(self, x):
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def _key_value_input(self, x, height, width):
        return x

    def construct(self, x, height, width):
        kv_input = self._key_value_input(x, height, width)
        if self.fused_kv:
            kv = self.kv(kv_input)
            dim = x.shape[-1]
            k, v = kv[:, :, :dim], kv[:, :, dim:]
        else:
            k, v = self.k(kv_input), self.v(kv_input)
        if self.formulation == CPU_KERNEL:
            out = self.attention(self.q(x), k, v)[0]
        else:
            out = self._native_attention(self.q(x) * self.scale, k, v)
        return self.proj_drop(self.proj(out))

    def _native_attention(self, q, k, v):
        batch, tokens, dim = q.shape
        attn = ops.softmax(self.scores(self._split_heads(q), self._split_heads(k)), axis=-1)
        out = self.weighted_sum(self.attn_drop(attn), self._split_heads(v))
        return out.transpose(0, 2, 1, 3).reshape(batch, tokens, dim)


class Attention(_MultiHeadAttention):
    """Plain multi-head self-attention with separate q, k, v projections (PiT, timm's layout)."""

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, formulation=None):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, fused_kv=False, formulation=formulation)


class SpatialReductionAttention(_MultiHeadAttention):
    """PVT's attention: with `sr_ratio > 1`, keys and values come from the token map reduced by a
    stride-`sr_ratio` convolution and LayerNorm (eps 1e-5, as in the PVT code)."""

    def __init__(self, dim, num_heads, sr_ratio, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, sr_norm_eps=1e-5,
                 formulation=None):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, fused_kv=True, formulation=formulation)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = PatchConv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = LayerNorm(dim, eps=sr_norm_eps)

    def _key_value_input(self, x, height, width):
        if self.sr_ratio == 1:
            return x
        batch, _, dim = x.shape
        reduced = self.sr(x.reshape(batch, height, width, dim))
        return self.norm(reduced.reshape(batch, -1, dim))


class LinearSRAttention(_MultiHeadAttention):
    """PVTv2-li's attention: keys and values from the map average-pooled to 7x7, then a 1x1 convolution,
    LayerNorm (eps 1e-5) and exact GELU; linear in the number of tokens."""

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, sr_norm_eps=1e-5,
                 formulation=None):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, fused_kv=True, formulation=formulation)
        self.sr = PatchConv2d(dim, dim, kernel_size=1, stride=1)
        self.norm = LayerNorm(dim, eps=sr_norm_eps)
        self.act = ExactGELU()

    def _key_value_input(self, x, height, width):
        batch, _, dim = x.shape
        pooled = self.sr(adaptive_avg_pool(x.reshape(batch, height, width, dim), LINEAR_SR_GRID))
        return self.act(self.norm(pooled.reshape(batch, -1, dim)))
