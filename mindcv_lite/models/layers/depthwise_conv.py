"""Depthwise convolution on channels-last maps, as a sum of shifted, strided slices.

PiT's pooling (3x3, stride 2, channel multiplier 2) is a grouped convolution; summing k*k slices scaled
per channel keeps it in fast element-wise ops on MindSpore 2.10's CPU backend and needs no layout change.
"""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer


class DepthwiseConv2d(nn.Cell):
    """`Conv2d(channels, channels * multiplier, kernel_size, stride, padding, groups=channels)` with bias.

    Input (B, H, W, C) and output (B, H_out, W_out, C * multiplier); output channel `c * multiplier + r`
    reads input channel `c`, the PyTorch grouped-convolution order. Weight layout (C * multiplier, 1, k, k).
    """

    def __init__(self, channels, multiplier=1, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.channels, self.multiplier = channels, multiplier
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        out_chans = channels * multiplier
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_chans, 1, kernel_size, kernel_size),
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(1 / math.sqrt(kernel_size * kernel_size)), (out_chans,),
                                          ms.float32), name="bias")

    def construct(self, x):
        batch, height, width, chans = x.shape
        k, s, p, m = self.kernel_size, self.stride, self.padding, self.multiplier
        out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        if p > 0:
            x = ops.pad(x, (0, 0, p, p, p, p))
        taps = self.weight.reshape(chans, m, k * k)
        if m > 1:
            x = x.reshape(batch, height + 2 * p, width + 2 * p, chans, 1)
        else:
            taps = taps.reshape(chans, k * k)
        out = x[:, 0:s * (out_h - 1) + 1:s, 0:s * (out_w - 1) + 1:s] * taps[..., 0]
        for tap in range(1, k * k):
            i, j = tap // k, tap % k
            out = out + x[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s] * taps[..., tap]
        return out.reshape(batch, out_h, out_w, chans * m) + self.bias
