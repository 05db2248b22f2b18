"""Cross-entropy losses with label smoothing, for integer labels and for soft (mixup/cutmix) targets.

Label smoothing is applied here, in the loss, for both kinds of labels (as mindcv does): a mixup/cutmix data
pipeline must hand over the mixed one-hot targets without smoothing them itself, or they are smoothed twice.
"""
from typing import Optional, Sequence, Union

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

__all__ = ["LOSSES", "BinaryCrossEntropySmooth", "CrossEntropySmooth", "create_loss"]

LOSSES = ("CE", "BCE")
_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropySmooth(nn.Cell):
    """Softmax cross-entropy with label smoothing.

    Labels are class indices of shape (N,) (integer dtype) or target probabilities of shape (N, C) (float dtype,
    e.g. from mixup/cutmix); the smoothed target is ``target * (1 - smoothing) + smoothing / C`` in both cases.
    ``weight`` (C,) rescales each class, with ``mindspore.ops.cross_entropy``'s (= PyTorch's) normalisation.
    """

    def __init__(self, smoothing=0.0, reduction="mean", weight=None):
        super().__init__()
        self.smoothing = smoothing
        self.reduction = reduction
        self.weight = weight

    def construct(self, logits, labels):
        return ops.cross_entropy(
            logits, labels, weight=self.weight, reduction=self.reduction, label_smoothing=self.smoothing
        )


class BinaryCrossEntropySmooth(nn.Cell):
    """Sigmoid binary cross-entropy per class, with label smoothing.

    Integer labels (N,) are one-hot encoded first; float labels (N, C) are used as given. The target is then
    smoothed to ``target * (1 - smoothing) + smoothing / C``. ``weight`` (C,) rescales each class's term.
    """

    def __init__(self, smoothing=0.0, reduction="mean", weight=None):
        super().__init__()
        self.smoothing = smoothing
        self.reduction = reduction
        self.weight = weight
        self.on_value = Tensor(1.0, ms.float32)
        self.off_value = Tensor(0.0, ms.float32)

    def _targets(self, logits, labels):
        num_classes = logits.shape[-1]
        if labels.ndim == logits.ndim - 1:
            labels = ops.one_hot(labels, num_classes, self.on_value, self.off_value)
        labels = labels.astype(logits.dtype)
        if self.smoothing > 0:
            labels = labels * (1.0 - self.smoothing) + self.smoothing / num_classes
        return labels

    def construct(self, logits, labels):
        targets = self._targets(logits, labels)
        return ops.binary_cross_entropy_with_logits(logits, targets, weight=self.weight, reduction=self.reduction)


def create_loss(
    name: str = "CE",
    weight: Optional[Union[Tensor, Sequence[float]]] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> nn.Cell:
    """Create a loss cell by name: 'CE' (softmax cross-entropy) or 'BCE' (sigmoid binary cross-entropy).

    Names are case-insensitive. ``weight`` is an optional per-class rescaling of shape (C,). The cell is called as
    ``loss(logits, labels)`` with integer labels (N,) or soft targets (N, C); see the classes for details.
    """
    loss_name = name.upper()
    if loss_name not in LOSSES:
        raise ValueError(f"Unknown loss '{name}'. Choose one of {', '.join(LOSSES)} (case-insensitive).")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Unknown reduction '{reduction}'. Choose one of {', '.join(_REDUCTIONS)}.")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
    if weight is not None and not isinstance(weight, Tensor):
        weight = Tensor(np.asarray(weight, dtype=np.float32))
    loss_cls = CrossEntropySmooth if loss_name == "CE" else BinaryCrossEntropySmooth
    return loss_cls(smoothing=label_smoothing, reduction=reduction, weight=weight)
