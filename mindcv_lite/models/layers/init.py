"""Weight initialisation matching the reference code: truncated normal (std .02) for linear layers and
embeddings, zero biases, unit LayerNorm scales."""
import mindspore as ms
from mindspore import nn
from mindspore.common.initializer import TruncatedNormal, initializer


def trunc_normal(shape, std=0.02):
    return initializer(TruncatedNormal(sigma=std), shape, ms.float32)


def init_weights(model):
    for _, cell in model.cells_and_names():
        if isinstance(cell, nn.Dense):
            cell.weight.set_data(trunc_normal(cell.weight.shape))
            if cell.bias is not None:
                cell.bias.set_data(initializer("zeros", cell.bias.shape, ms.float32))
        elif isinstance(cell, nn.LayerNorm):
            cell.gamma.set_data(initializer("ones", cell.gamma.shape, ms.float32))
            cell.beta.set_data(initializer("zeros", cell.beta.shape, ms.float32))
