"""Position-embedding resampling with PyTorch `F.interpolate` semantics (align_corners=False, no antialias).

The reference implementations resize position embeddings with `F.interpolate`: PVT bilinearly at run time
for inputs of another size, timm bicubically when loading a checkpoint into a model built for another size.
The same resampling is written here as separable interpolation matrices, so a checkpoint resampled here
equals one resampled by the reference code.
"""
import numpy as np
from mindspore import ops


def _cubic_weights(t, a=-0.75):
    """PyTorch's cubic convolution coefficients for taps at offsets -1, 0, 1, 2."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def interpolation_matrix(in_size, out_size, mode):
    """(out_size, in_size) matrix M with out = M @ in along one axis, for mode 'bilinear' or 'bicubic'."""
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size), np.float64)
    for dst in range(out_size):
        src = scale * (dst + 0.5) - 0.5
        if mode == "bilinear":
            src = max(src, 0.0)
            lo = int(src)
            frac = src - lo
            hi = lo + 1 if lo < in_size - 1 else lo
            matrix[dst, lo] += 1.0 - frac
            matrix[dst, hi] += frac
        elif mode == "bicubic":
            lo = int(np.floor(src))
            for offset, weight in zip(range(-1, 3), _cubic_weights(src - lo)):
                matrix[dst, min(max(lo + offset, 0), in_size - 1)] += weight
        else:
            raise ValueError(f"unknown interpolation mode {mode!r}: use 'bilinear' or 'bicubic'")
    return matrix


def resample_pos_embed_grid(grid, new_hw, mode):
    """Resample a (H, W, C) numpy grid to (new_h, new_w, C)."""
    rows = interpolation_matrix(grid.shape[0], new_hw[0], mode)
    cols = interpolation_matrix(grid.shape[1], new_hw[1], mode)
    out = np.einsum("ih,hwc,jw->ijc", rows, grid.astype(np.float64), cols)
    return out.astype(grid.dtype)


def resize_pos_embed_bilinear(pos_embed, src_hw, dst_hw):
    """Run-time resize of tokens (1, H*W, C) from grid `src_hw` to `dst_hw` (PVT's `_get_pos_embed`)."""
    channels = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, src_hw[0], src_hw[1], channels).transpose(0, 3, 1, 2)
    grid = ops.interpolate(grid, size=dst_hw, mode="bilinear", align_corners=False)
    return grid.reshape(1, channels, dst_hw[0] * dst_hw[1]).transpose(0, 2, 1)
