"""Multi-head self-attention, optionally with PVT's spatial-reduction keys and values."""
from mindspore import nn, ops

from .norm import LayerNorm
from .patch_conv import PatchConv2d
from .pool import adaptive_avg_pool

# PVTv2-li pools keys and values to this grid whatever the input size.
LINEAR_SR_GRID = 7


class Attention(nn.Cell):
    """Multi-head self-attention over tokens (B, N, C).

    `sr_ratio > 1` (PVT): keys and values are computed from the token map reduced by a stride-`sr_ratio`
    convolution followed by LayerNorm (eps 1e-5, as in the PVT code); the map size is then passed to
    `construct`. `linear_sr` (PVTv2-li) instead average-pools the map to 7x7, then 1x1 convolution, LayerNorm
    and exact GELU. `fused_kv` chooses the parameter layout of the reference checkpoints: PVT stores a fused
    `kv` projection, PiT separate `k` and `v`. Both compute the same function.
    """

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, sr_ratio=1, fused_kv=False,
                 sr_norm_eps=1e-5, linear_sr=False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_kv = fused_kv
        self.q = nn.Dense(dim, dim, has_bias=qkv_bias)
        if fused_kv:
            self.kv = nn.Dense(dim, dim * 2, has_bias=qkv_bias)
        else:
            self.k = nn.Dense(dim, dim, has_bias=qkv_bias)
            self.v = nn.Dense(dim, dim, has_bias=qkv_bias)
        self.attn_drop = nn.Dropout(p=attn_drop)
        self.proj = nn.Dense(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop)
        self.sr_ratio = sr_ratio
        self.linear_sr = linear_sr
        if linear_sr:
            self.sr = PatchConv2d(dim, dim, kernel_size=1, stride=1)
            self.norm = LayerNorm(dim, eps=sr_norm_eps)
            self.act = nn.GELU(approximate=False)
        elif sr_ratio > 1:
            self.sr = PatchConv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = LayerNorm(dim, eps=sr_norm_eps)

    def _split_heads(self, x):
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x, height=0, width=0):
        batch, tokens, dim = x.shape
        q = self._split_heads(self.q(x) * self.scale)
        kv_input = x
        if self.linear_sr:
            kv_input = self.sr(adaptive_avg_pool(x.reshape(batch, height, width, dim), LINEAR_SR_GRID))
            kv_input = self.act(self.norm(kv_input.reshape(batch, -1, dim)))
        elif self.sr_ratio > 1:
            kv_input = self.sr(x.reshape(batch, height, width, dim))
            kv_input = self.norm(kv_input.reshape(batch, -1, dim))
        if self.fused_kv:
            kv = self.kv(kv_input)
            k, v = kv[:, :, :dim], kv[:, :, dim:]
        else:
            k, v = self.k(kv_input), self.v(kv_input)
        attn = ops.softmax(ops.matmul(q, self._split_heads(k).transpose(0, 1, 3, 2)), axis=-1)
        out = ops.matmul(self.attn_drop(attn), self._split_heads(v))
        out = out.transpose(0, 2, 1, 3).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(out))
