"""The exact (erf) GELU of every model: MindSpore's operator, this package's fused CPU kernel, or (deployment
graphs) a form without the Erf operator."""
from mindspore import nn, ops

from ... import kernels
from .formulation import CPU_KERNEL, NATIVE, check_formulation, kernel_or, use_native_ops

_SQRT_HALF = 0.7071067811865476
# Abramowitz & Stegun 7.1.26: erfc(z) = poly(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0; |error| <= 1.5e-7.
_ERFC_P = 0.3275911
_ERFC_COEFFS = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class ExactGELU(nn.Cell):
    """x * Phi(x). `nn.GELU()` in MindSpore 2.10 is the tanh approximation; the papers' code uses this erf form.

    Two formulations (`formulation` forces one, see `formulation.py`): MindSpore's `nn.GELU(approximate=False)`, or
    on CPU this package's fused kernel (MindSpore 2.10 runs the exact GELU on CPU as Div, Erf, Add and Mul, 36% of
    pvt_tiny's inference time, and keeps each of their outputs in memory).
    """

    def __init__(self, formulation=None):
        super().__init__()
        if formulation is None:
            formulation = NATIVE if use_native_ops() else kernel_or(NATIVE)
        self.formulation = check_formulation(formulation, (NATIVE, CPU_KERNEL))
        self.gelu = kernels.gelu_exact() if self.formulation == CPU_KERNEL else nn.GELU(approximate=False)

    def construct(self, x):
        return self.gelu(x)


class ErfFreeGELU(nn.Cell):
    """Exact GELU to within 1e-7 without the Erf operator, which MindSpore 2.10 cannot export to ONNX
    ("Exporting Erf operator is not yet supported"): x * Phi(x) = relu(x) - |x| / 2 * erfc(|x| / sqrt(2))."""

    def construct(self, x):
        magnitude = ops.abs(x)
        z = magnitude * _SQRT_HALF
        t = ops.ones_like(z) / (1.0 + _ERFC_P * z)  # a scalar numerator becomes Reciprocal: no ONNX export
        poly = _ERFC_COEFFS[4]
        for coeff in _ERFC_COEFFS[3::-1]:
            poly = poly * t + coeff
        erfc = poly * t * ops.exp(-z * z)
        return ops.relu(x) - 0.5 * magnitude * erfc


def replace_exact_gelu(model):
    """Swap every exact (erf) GELU in `model` (`ExactGELU`, `nn.GELU(approximate=False)`) for `ErfFreeGELU`;
    returns how many were swapped."""
    swapped = 0
    for _, cell in list(model.cells_and_names()):
        for name, child in list(cell.name_cells().items()):
            # MindSpore 2.10's nn.GELU.approximate: 'tanh' or 'none'
            if isinstance(child, ExactGELU) or isinstance(child, nn.GELU) and child.approximate == "none":
                setattr(cell, name, ErfFreeGELU())
                swapped += 1
    return swapped
