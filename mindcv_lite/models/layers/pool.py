"""Adaptive average pooling of channels-last maps (PVTv2-li's key/value reduction to a fixed 7x7 grid)."""
from mindspore import ops


def adaptive_avg_pool(x, output_size):
    """(B, H, W, C) -> (B, output_size, output_size, C) with PyTorch `AdaptiveAvgPool2d` semantics.

    When the grid divides the map (224-multiple inputs), a reshape-and-mean: faster on CPU than MindSpore 2.10's
    AdaptiveAvgPool2D, and exportable to ONNX, which that operator is not.
    """
    batch, height, width, chans = x.shape
    if height % output_size == 0 and width % output_size == 0:
        x = x.reshape(batch, output_size, height // output_size, output_size, width // output_size, chans)
        return x.mean(axis=(2, 4))
    x = ops.adaptive_avg_pool2d(x.transpose(0, 3, 1, 2), output_size)
    return x.transpose(0, 2, 3, 1)
