"""Pre-norm transformer block shared by PiT and PVT."""
from mindspore import nn

from .attention import Attention
from .drop_path import DropPath
from .mlp import Mlp
from .norm import LayerNorm


class Block(nn.Cell):
    """x + attn(norm1(x)), then x + mlp(norm2(x)), each branch with stochastic depth.

    All families use LayerNorm eps 1e-6 here; `sr_ratio`/`fused_kv` select PVT's attention, `linear_sr` PVTv2-li's,
    and `conv_mlp` PVTv2's feed-forward with a depthwise convolution (with PVTv2-li's extra ReLU if `linear_sr`).
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, proj_drop=0.0, attn_drop=0.0, drop_path=0.0,
                 sr_ratio=1, fused_kv=False, norm_eps=1e-6, linear_sr=False, conv_mlp=False):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                              sr_ratio=sr_ratio, fused_kv=fused_kv, linear_sr=linear_sr)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, depthwise_conv=conv_mlp,
                       extra_relu=conv_mlp and linear_sr)

    def construct(self, x, height=0, width=0):
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))
