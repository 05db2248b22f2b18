"""Adaptive average pooling of channels-last maps (PVTv2-li's key/value reduction to a fixed 7x7 grid)."""
from mindspore import ops


def _adaptive_mean(x, axis, output_size):
    """Mean over PyTorch's adaptive windows [floor(i * n / out), ceil((i + 1) * n / out)) along axis 1 or 2."""
    size = x.shape[axis]
    parts = []
    for i in range(output_size):
        start, end = (i * size) // output_size, -(-((i + 1) * size) // output_size)
        window = x[:, start:end] if axis == 1 else x[:, :, start:end]
        parts.append(window.mean(axis=axis, keep_dims=True))
    return ops.concat(parts, axis=axis)


def adaptive_avg_pool(x, output_size):
    """(B, H, W, C) -> (B, output_size, output_size, C) with PyTorch `AdaptiveAvgPool2d` semantics.

    When the grid divides the map (224-multiple inputs), one reshape-and-mean; otherwise a mean per window.
    Both export to ONNX, which MindSpore 2.10's AdaptiveAvgPool2D does not, and are faster on CPU.
    """
    batch, height, width, chans = x.shape
    if height % output_size == 0 and width % output_size == 0:
        x = x.reshape(batch, output_size, height // output_size, output_size, width // output_size, chans)
        return x.mean(axis=(2, 4))
    return _adaptive_mean(_adaptive_mean(x, 1, output_size), 2, output_size)
