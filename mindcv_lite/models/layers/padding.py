"""Zero padding by concatenation.

`ops.pad` in MindSpore 2.10 is slow on CPU and its PadV3 has no ONNX export; concatenating zero blocks is fast,
differentiable and exports to every format.
"""
from mindspore import ops


def zero_pad(x, axis, before, after):
    """`x` with `before` zeros prepended and `after` zeros appended along `axis`; a negative `after` crops."""
    if after < 0:
        x = x[:, :x.shape[1] + after] if axis == 1 else x[:, :, :x.shape[2] + after]
        after = 0
    if before == 0 and after == 0:
        return x
    parts = []
    if before > 0:
        parts.append(ops.zeros(x.shape[:axis] + (before,) + x.shape[axis + 1:], x.dtype))
    parts.append(x)
    if after > 0:
        parts.append(ops.zeros(x.shape[:axis] + (after,) + x.shape[axis + 1:], x.dtype))
    return ops.concat(parts, axis=axis)


def pad_to_blocks(x, padding, rows, cols, stride):
    """Channels-last (B, H, W, C) zero-padded by `padding` (top, left) and padded or cropped at the bottom/right
    to exactly (rows * stride, cols * stride): the extent a strided kernel reads, split into stride-sized blocks."""
    height, width = x.shape[1], x.shape[2]
    x = zero_pad(x, 1, padding, rows * stride - height - padding)
    return zero_pad(x, 2, padding, cols * stride - width - padding)


def shifted_windows(x, num_rows, num_cols, out_h, out_w):
    """The windows x[:, a:a + out_h, b:b + out_w] of a channels-last map for a < `num_rows`, b < `num_cols`, row-major.

    Each window is cut by slices along one axis each: MindSpore 2.10's CPU StridedSlice copies contiguous runs
    only when a single axis changes; otherwise it walks the tensor element by element.
    """
    columns = []
    for b in range(num_cols):
        columns.append(x if x.shape[2] == out_w else x[:, :, b:b + out_w])
    windows = []
    for a in range(num_rows):
        for column in columns:
            windows.append(column if column.shape[1] == out_h else column[:, a:a + out_h])
    return windows
