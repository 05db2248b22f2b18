"""Feed-forward variants of a transformer block. Both take tokens (B, N, C) and the token map's `height` and
`width` (the plain one ignores them), so blocks can swap them freely."""
from mindspore import nn

from .depthwise_conv import DepthwiseConv2d
from .gelu import ExactGELU
from .linear import Linear


class Mlp(nn.Cell):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, in_features, hidden_features, drop=0.0):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features)
        self.act = ExactGELU()
        self.fc2 = Linear(hidden_features, in_features)
        self.drop = nn.Dropout(p=drop)

    def construct(self, x, height, width):
        x = self.drop(self.act(self.fc1(x)))
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
