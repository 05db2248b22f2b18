"""Depthwise (grouped) convolution on channels-last maps: PiT's pooling and PVTv2's MLP convolution."""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer


class DepthwiseConv2d(nn.Cell):
    """`Conv2d(channels, channels * multiplier, kernel_size, stride, padding, groups=channels)` with bias.

    Input (B, H, W, C) and output (B, H_out, W_out, C * multiplier); output channel `c * multiplier + r`
    reads input channel `c`, the PyTorch grouped-convolution order. Padding is explicit and symmetric
    (MindSpore's `nn.Conv2d` default 'same' pads asymmetrically). Written with the Conv2D primitive: summing
    strided slices instead trips MindSpore 2.10's CPU StridedSliceGrad ("input memory out of bounds").
    """

    def __init__(self, channels, multiplier=1, kernel_size=3, stride=1, padding=1):
        super().__init__()
        out_chans = channels * multiplier
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_chans, 1, kernel_size, kernel_size),
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(1 / math.sqrt(kernel_size * kernel_size)), (out_chans,),
                                          ms.float32), name="bias")
        # Sizes as tuples: MindSpore 2.10's ONNX exporter fails on integer ones ("Cast value from type Int64Imm
        # to ValueTuple failed").
        self.conv = ops.Conv2D(out_channel=out_chans, kernel_size=(kernel_size,) * 2, pad_mode="pad",
                               pad=(padding,) * 4, stride=(stride,) * 2, group=channels)

    def construct(self, x):
        x = self.conv(x.transpose(0, 3, 1, 2), self.weight)
        return x.transpose(0, 2, 3, 1) + self.bias
