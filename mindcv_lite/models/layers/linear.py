"""The linear layer of every block and head: nn.Dense, computed on CPU by this package's fused kernel."""
from mindspore import nn

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, check_formulation, kernel_or, use_native_ops


class Linear(nn.Dense):
    """y = x W^T + b over the last axis of x, with nn.Dense's parameters (`weight` (out, in), `bias` (out,)).

    A subclass of nn.Dense, so everything that looks for Dense cells treats it as one: the initialisation
    (`init_weights`), mixed precision's cell lists (MindSpore's white list, mindcv's `amp_cast_list "[nn.Dense]"`),
    checkpoints (same parameter names). Two formulations (`formulation` forces one, see `formulation.py`): nn.Dense's
    own (Ascend, GPU, export, float16), or on CPU this package's fused kernel: MindSpore 2.10 runs Dense on CPU as
    Reshape, MatMul, BiasAdd, Reshape and keeps both the MatMul and BiasAdd outputs alive (2 x 98 MB for PVT's
    stage-1 fc1 at batch 16), and its BiasAddGrad is slow; the kernel is one node writing its output once.
    """

    def __init__(self, in_channels, out_channels, has_bias=True, formulation=None):
        super().__init__(in_channels, out_channels, has_bias=has_bias)
        if formulation is None:
            formulation = NATIVE if use_native_ops() else kernel_or(NATIVE)
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL))
        if self.formulation == CPU_KERNEL:
            self.linear = kernels.linear(has_bias)

    def construct(self, x):
        if self.formulation == NATIVE:
            return super().construct(x)
        if self.has_bias:
            return self.linear(x, self.weight, self.bias)
        return self.linear(x, self.weight)
