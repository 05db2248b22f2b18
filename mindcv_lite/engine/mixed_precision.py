"""Automatic mixed precision with mindcv's options: `amp_level`, `amp_cast_list` (training) and `val_amp_level`
(validate.py).

mindcv's cell-level rules (mindcv/utils/amp.py), applied to the model in place:
  O1  cells of the white list compute in float16, their outputs go back to float32;
  O2  every cell computes in float16 except those of the black list (float32, outputs back to float16);
  O3  every cell computes in float16.
`amp_cast_list` replaces the white list (O1) or the black list (O2); the defaults are MindSpore's cell lists
(`mindspore.amp.get_white_list`: Dense, Conv*; `get_black_list`: BatchNorm*, LayerNorm). `auto` is MindSpore's
operator-level mode. The model's outputs may then be float16: TrainStep and EvalStep compute the loss in float32.

MindSpore 2.10 workaround: its own O1 and custom white lists rebuild the network with `mindspore.rewrite`, which
re-imports the model's source as a top-level module and fails on a package (ImportError: attempted relative
import); the cell-level rules here, mindcv's, need no rewrite.
"""
import difflib

import mindspore as ms
from mindspore import nn

__all__ = ["AMP_LEVELS", "FLOAT16_DEVICES", "apply_mixed_precision", "check_amp_args", "parse_cast_list"]

AMP_LEVELS = ("O0", "O1", "O2", "O3", "auto")
# float16 is slower than float32 on CPU (MindSpore 2.10's CPU kernels): there the levels fall back to O0
FLOAT16_DEVICES = ("Ascend", "GPU")


def _cells(classes):
    return tuple(c for c in classes if isinstance(c, type) and issubclass(c, nn.Cell))


def parse_cast_list(text):
    """mindcv's `amp_cast_list` string, e.g. "[nn.Conv2d, nn.Dense]", as a tuple of `mindspore.nn` Cell classes.

    mindcv evaluates the string as Python; here each name is looked up in `mindspore.nn` (with or without the
    `nn.` prefix), so a misspelt one is an error naming it instead of a NameError, and nothing else runs."""
    names = [name.strip() for name in text.strip().strip("[]()").split(",") if name.strip()]
    if not names:
        raise ValueError(f"amp_cast_list={text!r} names no cell: write e.g. \"[nn.Dense, nn.Conv2d]\"")
    cells = []
    for name in names:
        attribute = name[3:] if name.startswith("nn.") else name
        cell = getattr(nn, attribute, None)
        if not (isinstance(cell, type) and issubclass(cell, nn.Cell)):
            close = difflib.get_close_matches(attribute, [n for n in dir(nn) if _cells([getattr(nn, n)])], n=1)
            hint = f": did you mean nn.{close[0]}?" if close else ""
            raise ValueError(f"amp_cast_list={text!r}: {name!r} is not a mindspore.nn cell class{hint}")
        cells.append(cell)
    return tuple(cells)


def check_amp_args(amp_level, amp_cast_list):
    """Refuse an `amp_cast_list` that cannot act (mindcv ignores it silently at O0, O3 and auto)."""
    if amp_cast_list is None:
        return
    parse_cast_list(amp_cast_list)
    if amp_level not in ("O1", "O2"):
        raise ValueError(f"amp_cast_list={amp_cast_list!r} only acts with amp_level O1 (the cells cast to float16) "
                         f"or O2 (the cells kept in float32), not amp_level={amp_level}: set amp_level O1 or O2, "
                         "or remove amp_cast_list")


def _cast_cells(network, cell_types, dtype, output_dtype):
    """Cells of `cell_types` below `network` compute in `dtype`; their outputs are cast to `output_dtype`."""
    replaced = False
    for name, cell in list(network.name_cells().items()):
        if isinstance(cell, cell_types):
            network._cells[name] = _CastOutput(cell.to_float(dtype), output_dtype)  # as mindcv and MindSpore do
            replaced = True
        else:
            _cast_cells(cell, cell_types, dtype, output_dtype)
    if replaced and isinstance(network, nn.SequentialCell):
        network.cell_list = list(network.cells())  # SequentialCell runs its own list, not _cells


class _CastOutput(nn.Cell):
    def __init__(self, cell, dtype):
        super().__init__(auto_prefix=False)  # the wrapped cell's Parameter names stay as they are
        self.cell = cell
        self.dtype = dtype

    def construct(self, *inputs):
        return self.cell(*inputs).astype(self.dtype)


def apply_mixed_precision(network, amp_level, amp_cast_list=None):
    """Apply `amp_level` (and mindcv's `amp_cast_list`) to `network` in place; returns it."""
    if amp_level not in AMP_LEVELS:
        raise ValueError(f"amp_level must be one of {', '.join(AMP_LEVELS)}, got {amp_level!r}")
    check_amp_args(amp_level, amp_cast_list)
    custom = parse_cast_list(amp_cast_list) if amp_cast_list is not None else None
    if amp_level == "O1":
        _cast_cells(network, custom or _cells(ms.amp.get_white_list()), ms.float16, ms.float32)
    elif amp_level == "O2":
        network.to_float(ms.float16)
        _cast_cells(network, custom or _cells(ms.amp.get_black_list()), ms.float32, ms.float16)
    elif amp_level == "O3":
        network.to_float(ms.float16)
    elif amp_level == "auto":
        if ms.amp.auto_mixed_precision(network, "auto") is not network:
            raise RuntimeError("mindspore.amp.auto_mixed_precision('auto') replaced the network instead of "
                               "decorating it: this MindSpore version needs another amp_level")
    return network
