"""LayerNorm with the epsilon spelled out: MindSpore 2.10's `nn.LayerNorm` defaults to 1e-7, the reference
PyTorch code uses 1e-5 (nn.LayerNorm default) or 1e-6, and the difference shows in the logits."""
from mindspore import nn


class LayerNorm(nn.LayerNorm):
    """Normalise over the last axis; parameters are `gamma`/`beta` as in every MindSpore checkpoint."""

    def __init__(self, dim, eps):
        super().__init__((dim,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
