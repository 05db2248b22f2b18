"""Feed-forward variants of a transformer block. Both take tokens (B, N, C) and the token map's `height` and
`width` (the plain one ignores them), so blocks can swap them freely."""
from mindspore import nn

from ... import kernels
from .depthwise_conv import DepthwiseConv2d
from .formulation import CPU_KERNEL
from .gelu import ExactGELU
from .linear import Linear


class Mlp(nn.Cell):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout.

    When fc1 and the GELU both run as this package's CPU kernels, inference computes them as one kernel
    (`kernels.linear_gelu`, with fc1's parameters): MindSpore 2.10's CPU runtime keeps fc1's output and the GELU's
    alive at once, 2 x 98 MB in PVT's stage 1 at batch 16, which set pvt_tiny's peak (900 -> 802 MB). Training keeps
    the two kernels: the fused backward recomputes fc1's GEMM instead of keeping its output, which saved 140 MB of
    pvt_tiny's 1.96 GB training peak but cost 13% more CPU time per step (2 cores, November 2026).
    """

    def __init__(self, in_features, hidden_features, drop=0.0):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features)
        self.act = ExactGELU()
        self.fc2 = Linear(hidden_features, in_features)
        self.drop = nn.Dropout(p=drop)
        self.fuse_fc1_act = self.fc1.formulation == CPU_KERNEL and self.act.formulation == CPU_KERNEL
        if self.fuse_fc1_act:
            self.fc1_act = kernels.linear_gelu()

    def construct(self, x, height, width):
        if self.fuse_fc1_act and not self.training:
            x = self.fc1_act(x, self.fc1.weight, self.fc1.bias)
        else:
            x = self.act(self.fc1(x))
        x = self.drop(x)
        return self.drop(self.fc2(x))


class MlpWithDepthwiseConv(nn.Cell):
    """PVTv2's feed-forward: fc1 -> [ReLU] -> 3x3 depthwise conv over the token map -> exact GELU -> dropout ->
    fc2 -> dropout. `extra_relu` is PVTv2-li's ReLU."""

    def __init__(self, in_features, hidden_features, drop=0.0, extra_relu=False):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features)
        self.relu = nn.ReLU() if extra_relu else nn.Identity()
        self.dwconv = DepthwiseConv2d(hidden_features, kernel_size=3, stride=1, padding=1)
        self.act = ExactGELU()
        self.fc2 = Linear(hidden_features, in_features)
        self.drop = nn.Dropout(p=drop)

    def construct(self, x, height, width):
        x = self.relu(self.fc1(x))
        batch, tokens, chans = x.shape
        x = self.dwconv(x.reshape(batch, height, width, chans)).reshape(batch, tokens, chans)
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))
