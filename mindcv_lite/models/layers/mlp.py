"""Feed-forward network of a transformer block, optionally with PVTv2's depthwise convolution."""
from mindspore import nn

from .depthwise_conv import DepthwiseConv2d


class DWConv(nn.Cell):
    """PVTv2's 3x3 depthwise convolution, nested so its parameters keep mindcv's path `mlp.dwconv.dwconv.*`."""

    def __init__(self, channels):
        super().__init__()
        self.dwconv = DepthwiseConv2d(channels, kernel_size=3, stride=1, padding=1)

    def construct(self, x):
        return self.dwconv(x)


class Mlp(nn.Cell):
    """fc1 -> [ReLU] -> [depthwise conv] -> exact GELU -> dropout -> fc2 -> dropout.

    `depthwise_conv` (PVTv2) mixes neighbouring tokens of the height x width map between fc1 and GELU;
    `extra_relu` is PVTv2-li's ReLU in front of it. `nn.GELU()` in MindSpore 2.10 is the tanh approximation;
    the papers' code uses the erf form.
    """

    def __init__(self, in_features, hidden_features, out_features=None, drop=0.0, depthwise_conv=False,
                 extra_relu=False):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Dense(in_features, hidden_features)
        self.extra_relu = extra_relu
        self.relu = nn.ReLU()
        self.depthwise_conv = depthwise_conv
        if depthwise_conv:
            self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(hidden_features, out_features)
        self.drop = nn.Dropout(p=drop)

    def construct(self, x, height=0, width=0):
        x = self.fc1(x)
        if self.extra_relu:
            x = self.relu(x)
        if self.depthwise_conv:
            batch, tokens, chans = x.shape
            x = self.dwconv(x.reshape(batch, height, width, chans)).reshape(batch, tokens, chans)
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))
