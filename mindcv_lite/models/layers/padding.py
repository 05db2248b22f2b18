"""Zero padding by concatenation.

`ops.pad` in MindSpore 2.10 is slow on CPU and its PadV3 has no ONNX export; concatenating zero blocks is fast,
differentiable and exports to every format.
"""
from mindspore import ops


def zero_pad(x, axis, before, after):
    """`x` with `before` zeros prepended and `after` zeros appended along `axis`."""
    if before == 0 and after == 0:
        return x
    parts = []
    if before > 0:
        parts.append(ops.zeros(x.shape[:axis] + (before,) + x.shape[axis + 1:], x.dtype))
    parts.append(x)
    if after > 0:
        parts.append(ops.zeros(x.shape[:axis] + (after,) + x.shape[axis + 1:], x.dtype))
    return ops.concat(parts, axis=axis)
