"""Stochastic depth: drop whole residual branches per sample while training."""
import mindspore as ms
from mindspore import nn, ops


class DropPath(nn.Cell):
    """Zero a sample's residual branch with probability `drop_prob` and rescale the survivors (timm semantics)."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.keep_prob = 1.0 - drop_prob

    def construct(self, x):
        if not self.training or self.keep_prob == 1.0:
            return x
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(self.keep_prob + ops.uniform(mask_shape, ms.Tensor(0.0), ms.Tensor(1.0), dtype=x.dtype))
        return x / self.keep_prob * mask
