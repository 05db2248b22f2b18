"""Strided convolutions to channels-last maps: patch embeddings (PiT 16/8, PVT 4/4 and 2/2, PVTv2's overlapping
7/4 and 3/2) and the attention's spatial reductions (8/8 ... 2/2, PVTv2-li's 1x1).

Three formulations with the same parameters, chosen once from the device target (see `formulation`):
- 'native': MindSpore's `Conv2D` with symmetric padding (Ascend, GPU);
- 'cpu_kernel' (CPU): this package's C++ kernel, im2col of a block of output rows into a per-thread buffer and one
  sgemm per block, bias in the same pass, so the graph holds one node that writes only its output. MindSpore 2.10's
  CPU Conv2D is pathologically slow for these shapes (3->64, k16 s8 on 16x3x224x224: 2.2 s against 9 ms in
  PyTorch), and the rewrite below costs memory before anything runs: the CPU Transpose kernel allocates, at graph
  compile time, ~8 bytes per element it permutes (~300 MB for pvt_tiny at batch 16);
- 'rewrite' (CPU without the kernel library, and export through `portable_formulations()`): one 2-D matmul over
  stride-sized blocks. The kernel is zero-extended to the next multiple of the stride (m x m blocks); the m x m
  neighbouring blocks of each output position are laid side by side on the channel axis (im2col over blocks).
The weight keeps the `Conv2d` layout (out, in, k, k): checkpoints stay interchangeable.
"""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, REWRITE, check_formulation, kernel_or, use_native_ops
from .padding import pad_to_blocks, shifted_windows, zero_pad


class PatchConv2d(nn.Cell):
    """`Conv2d(in_chans, out_chans, kernel_size, stride, padding)` with bias, to a channels-last map.

    Input (B, H, W, C_in), or with `channels_first` (B, C_in, H, W) (the stems: images arrive NCHW, and the CPU
    kernel reads them as they are, with no transposed copy); output (B, H_out, W_out, C_out), with the usual
    H_out = (H + 2 * padding - kernel_size) // stride + 1; the padding is symmetric (zeros).
    `formulation` (NATIVE, CPU_KERNEL or REWRITE) forces one (tests); by default it follows the device target.
    """

    def __init__(self, in_chans, out_chans, kernel_size, stride, padding=0, channels_first=False, formulation=None):
        super().__init__()
        self.in_chans, self.out_chans, self.channels_first = in_chans, out_chans, channels_first
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.blocks_per_kernel = -(-kernel_size // stride)
        # PyTorch's Conv2d default init, so a model built here starts where the reference starts.
        fan_in = in_chans * kernel_size * kernel_size
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_chans, in_chans, kernel_size, kernel_size),
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(1 / math.sqrt(fan_in)), (out_chans,), ms.float32), name="bias")
        if formulation is None:
            formulation = NATIVE if use_native_ops() else kernel_or(REWRITE)
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL, REWRITE))
        if self.formulation == CPU_KERNEL:
            self.kernel = kernels.patch_conv(stride, padding, channels_first)
            self.geometry = kernels.patch_conv_geometry(stride, padding, channels_first)
        elif self.formulation == NATIVE:
            # Sizes as tuples: MindSpore 2.10's ONNX exporter fails on integer ones.
            self.conv = ops.Conv2D(out_channel=out_chans, kernel_size=(kernel_size,) * 2, pad_mode="pad",
                                   pad=(padding,) * 4, stride=(stride,) * 2)
        else:
            # The MatMul primitive, not ops.matmul: MindSpore 2.10 differentiates ops.matmul (MatMulExt) through explicit
            # Transposes, twice the backward CPU time of the PVTv2 stem's (50176 x 192) x (192 x 32) product.
            self.matmul = ops.MatMul()

    def output_size(self, height, width):
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def _im2col_weight(self):
        """(m*m*s*s*C_in, C_out), rows in the order (a, b, i, j, c) of `_blocks`: kernel tap (a*s + i, b*s + j)."""
        m, s = self.blocks_per_kernel, self.stride
        extra = m * s - self.kernel_size
        w = zero_pad(zero_pad(self.weight, 2, 0, extra), 3, 0, extra)
        w = w.reshape(self.out_chans, self.in_chans, m, s, m, s).transpose(2, 4, 3, 5, 1, 0)
        return w.reshape(m * m * s * s * self.in_chans, self.out_chans)

    def construct(self, x):
        if self.formulation == CPU_KERNEL:
            return self.kernel(x, self.weight, self.bias, self.geometry)
        if self.formulation == NATIVE:
            x = x if self.channels_first else x.transpose(0, 3, 1, 2)
            return self.conv(x, self.weight).transpose(0, 2, 3, 1) + self.bias
        if self.channels_first:
            x = x.transpose(0, 2, 3, 1)
        batch, height, width, chans = x.shape
        m, s = self.blocks_per_kernel, self.stride
        out_h, out_w = self.output_size(height, width)
        rows, cols = out_h + m - 1, out_w + m - 1
        x = pad_to_blocks(x, self.padding, rows, cols, s)
        x = x.reshape(batch, rows, s, cols, s, chans).transpose(0, 1, 3, 2, 4, 5).reshape(batch, rows, cols, -1)
        if m > 1:
            x = ops.concat(shifted_windows(x, m, m, out_h, out_w), axis=3)
        # A 2-D matmul: MindSpore 2.10 broadcasts a 2-D weight to the batch shape of a 4-D operand (a copy per call).
        y = self.matmul(x.reshape(batch * out_h * out_w, -1), self._im2col_weight())
        return y.reshape(batch, out_h, out_w, self.out_chans) + self.bias
