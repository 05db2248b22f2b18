"""LayerNorm with the epsilon spelled out: MindSpore 2.10's `nn.LayerNorm` defaults to 1e-7, the reference
PyTorch code uses 1e-5 (nn.LayerNorm default) or 1e-6, and the difference shows in the logits."""
from mindspore import nn

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, check_formulation, kernel_or, use_native_ops


class LayerNorm(nn.LayerNorm):
    """Normalise over the last axis; parameters are `gamma`/`beta` as in every MindSpore checkpoint.

    Two formulations (`formulation` forces one, see `formulation.py`): MindSpore's LayerNorm, or on CPU this
    package's kernel (MindSpore 2.10's CPU LayerNormGrad was 18-29% of the training op time of pit_ti, pvt_tiny and
    pvt_v2_b0, its LayerNorm 15-26% of inference).
    """

    def __init__(self, dim, eps, formulation=None):
        super().__init__((dim,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        if formulation is None:
            formulation = NATIVE if use_native_ops() else kernel_or(NATIVE)
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL))
        if self.formulation == CPU_KERNEL:
            self.kernel = kernels.layer_norm()
            self.epsilon_input = kernels.layer_norm_epsilon(eps)

    def construct(self, x):
        if self.formulation == CPU_KERNEL:
            return self.kernel(x, self.gamma, self.beta, self.epsilon_input)
        return super().construct(x)
