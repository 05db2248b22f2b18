"""Depthwise (grouped) convolution on channels-last maps: PiT's pooling and PVTv2's MLP convolution."""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, REWRITE, check_formulation, kernel_or, use_native_ops
from .padding import pad_to_blocks, shifted_windows


class DepthwiseConv2d(nn.Cell):
    """`Conv2d(channels, channels * multiplier, kernel_size, stride, padding, groups=channels)` with bias.

    Input (B, H, W, C) and output (B, H_out, W_out, C * multiplier); output channel `c * multiplier + r`
    reads input channel `c`, the PyTorch grouped-convolution order. Padding is explicit and symmetric
    (MindSpore's `nn.Conv2d` default 'same' pads asymmetrically).

    Three formulations with the same parameters, chosen once from the device target (`formulation` forces one, see
    `formulation.py`): the grouped `Conv2D` primitive (Ascend, GPU); on CPU this package's C++ kernel (stride 1 or 2,
    padding kernel_size // 2: PVTv2's 3x3 and PiT's stride-2 pooling), because MindSpore 2.10's CPU grouped Conv2D
    was over half of pvt_v2_b0's inference time; otherwise (other strides or paddings, export, no C++ compiler at
    install) one multiply-add per kernel tap over shifted windows of the once-padded map, fast but a node per tap (most
    of pit_ti's compile time) whose products MindSpore's CPU graph runtime all keeps alive. The rewrite handles a
    stride by splitting the map into stride x stride phases first, so every window is a unit-step slice (strided slices
    trip MindSpore 2.10's CPU StridedSliceGrad: "input memory out of bounds").
    """

    def __init__(self, channels, multiplier=1, kernel_size=3, stride=1, padding=1, formulation=None):
        super().__init__()
        out_chans = channels * multiplier
        self.channels, self.multiplier = channels, multiplier
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_chans, 1, kernel_size, kernel_size),
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(1 / math.sqrt(kernel_size * kernel_size)), (out_chans,),
                                          ms.float32), name="bias")
        kernel_fits = stride in (1, 2) and padding == kernel_size // 2
        if formulation is None:
            formulation = NATIVE if use_native_ops() else kernel_or(REWRITE) if kernel_fits else REWRITE
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL, REWRITE) if kernel_fits
                                             else (NATIVE, REWRITE))
        if self.formulation == CPU_KERNEL:
            self.kernel = kernels.depthwise_conv(stride)
        elif self.formulation == NATIVE:
            # Sizes as tuples: MindSpore 2.10's ONNX exporter fails on integer ones ("Cast value from type Int64Imm
            # to ValueTuple failed").
            self.conv = ops.Conv2D(out_channel=out_chans, kernel_size=(kernel_size,) * 2, pad_mode="pad",
                                   pad=(padding,) * 4, stride=(stride,) * 2, group=channels)

    def construct(self, x):
        if self.formulation == CPU_KERNEL:
            return self.kernel(x, self.weight, self.bias)
        if self.formulation == NATIVE:
            return self.conv(x.transpose(0, 3, 1, 2), self.weight).transpose(0, 2, 3, 1) + self.bias
        batch, height, width, chans = x.shape
        k, s, r = self.kernel_size, self.stride, self.multiplier
        out_h = (height + 2 * self.padding - k) // s + 1
        out_w = (width + 2 * self.padding - k) // s + 1
        blocks = -(-k // s)
        rows, cols = out_h + blocks - 1, out_w + blocks - 1
        x = pad_to_blocks(x, self.padding, rows, cols, s)
        if s > 1:
            # (s*s*B, rows, cols, C): phase (i, j) of every stride-sized block is the batch slice i*s + j.
            x = x.reshape(batch, rows, s, cols, s, chans).transpose(2, 4, 0, 1, 3, 5).reshape(-1, rows, cols, chans)
        taps = self.weight.reshape(chans, r, k * k).transpose(2, 0, 1)  # (k*k, C, r)
        if r == 1:
            taps = taps.reshape(k * k, chans)
        terms = []
        for i in range(min(s, k)):
            for j in range(min(s, k)):
                phase = x if s == 1 else x[(i * s + j) * batch:(i * s + j + 1) * batch]
                num_rows, num_cols = -(-(k - i) // s), -(-(k - j) // s)
                windows = shifted_windows(phase, num_rows, num_cols, out_h, out_w)
                for a in range(num_rows):
                    for b in range(num_cols):
                        window = windows[a * num_cols + b]
                        if r > 1:
                            window = window.reshape(batch, out_h, out_w, chans, 1)
                        terms.append(window * taps[(a * s + i) * k + b * s + j])
        out = ops.addn(terms)
        if r > 1:
            out = out.reshape(batch, out_h, out_w, chans * r)
        return out + self.bias
