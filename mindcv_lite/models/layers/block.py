"""Pre-norm transformer block, composed from an attention variant and a feed-forward variant."""
from mindspore import nn

from .drop_path import DropPath
from .norm import LayerNorm


class Block(nn.Cell):
    """x + attn(norm1(x)), then x + mlp(norm2(x)), each branch with stochastic depth.

    `attn` and `mlp` are cells taking (tokens, height, width): `Attention`, `SpatialReductionAttention` or
    `LinearSRAttention`, and `Mlp` or `MlpWithDepthwiseConv`. Every family here uses LayerNorm eps 1e-6.
    """

    def __init__(self, dim, attn, mlp, drop_path=0.0, norm_eps=1e-6):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.mlp = mlp

    def construct(self, x, height, width):
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))
