"""Strided convolutions computed as one matrix product over stride-sized blocks.

Patch embeddings (PiT 16/8, PVT 4/4 and 2/2, PVTv2's overlapping 7/4 and 3/2) and PVT's spatial reduction
(8/8 ... 2/2) are such convolutions. MindSpore 2.10's CPU `Conv2d` is pathologically slow for them (3->64, k16 s8
on 16x3x224x224: 2.2 s against 9 ms in PyTorch; 64->128, k3 s2 on 16x64x56x56: 2.8 s), while a matmul over
stride-sized blocks is fast. A kernel that is not a multiple of the stride is zero-extended to the next multiple.
The weight keeps the `Conv2d` layout (out, in, k, k), so checkpoints stay interchangeable.
"""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from .padding import zero_pad


class PatchConv2d(nn.Cell):
    """`Conv2d(in_chans, out_chans, kernel_size, stride, padding)` with bias, on channels-last tensors.

    Input (B, H, W, C_in) and output (B, H_out, W_out, C_out), with the usual
    H_out = (H + 2 * padding - kernel_size) // stride + 1; the padding is symmetric (zeros).
    """

    def __init__(self, in_chans, out_chans, kernel_size, stride, padding=0):
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.blocks_per_kernel = -(-kernel_size // stride)
        # PyTorch's Conv2d default init, so a model built here starts where the reference starts.
        fan_in = in_chans * kernel_size * kernel_size
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_chans, in_chans, kernel_size, kernel_size),
                                            ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(1 / math.sqrt(fan_in)), (out_chans,), ms.float32), name="bias")

    def output_size(self, height, width):
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def _block_weight(self):
        """(s*s*C_in, m*m*C_out): row order (i, j, c) matches the blocks, column order (a, b, o) the kernel offset."""
        m, s = self.blocks_per_kernel, self.stride
        w = self.weight
        extra = m * s - self.kernel_size
        w = zero_pad(zero_pad(w, 2, 0, extra), 3, 0, extra)
        w = w.reshape(self.out_chans, self.in_chans, m, s, m, s)
        w = w.transpose(3, 5, 1, 2, 4, 0)
        return w.reshape(s * s * self.in_chans, m * m * self.out_chans)

    def construct(self, x):
        batch, height, width, chans = x.shape
        m, s, p = self.blocks_per_kernel, self.stride, self.padding
        out_h, out_w = self.output_size(height, width)
        rows, cols = out_h + m - 1, out_w + m - 1
        # The zero-extended kernel may read past the padded input: extend it with zeros too.
        x = zero_pad(x, 1, p, max(p, rows * s - height - p))
        x = zero_pad(x, 2, p, max(p, cols * s - width - p))
        x = x[:, :rows * s, :cols * s, :]
        x = x.reshape(batch, rows, s, cols, s, chans).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, rows, cols, s * s * chans)
        y = ops.matmul(x, self._block_weight())
        if m == 1:
            return y + self.bias
        y = y.reshape(batch, rows, cols, m, m, self.out_chans)
        out = y[:, 0:out_h, 0:out_w, 0, 0, :]
        for a in range(m):
            for b in range(m):
                if a + b > 0:
                    out = out + y[:, a:a + out_h, b:b + out_w, a, b, :]
        return out + self.bias

