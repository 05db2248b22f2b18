"""Freezing for linear probes and partial fine-tuning: frozen parameters leave the trainable set.

A frozen parameter has `requires_grad=False`, so `create_optimizer` (which takes `trainable_params()`) gives it no
optimizer state and the train step, which differentiates with respect to the optimizer's parameters, computes no
gradient for it: it stays bit-identical through training.
"""
import logging
from typing import List

from mindspore import nn

from ..models import layer_ids

__all__ = ["freeze_parameters"]

_logger = logging.getLogger(__name__)


def _classifier_names(model: nn.Cell):
    classifier = model.get_classifier()
    cells = classifier if isinstance(classifier, (tuple, list)) else (classifier,)
    return {param.name for cell in cells for param in cell.get_parameters()}


def freeze_parameters(model: nn.Cell, freeze_backbone: bool = False, freeze_stages: int = 0) -> List[str]:
    """Freeze all but the classifier (`freeze_backbone`), or the patch embedding and the first `freeze_stages`
    stages (the model's coarse `layer_ids`: stem = 0, stage k = k); returns the frozen parameter names."""
    if freeze_stages < 0:
        raise ValueError(f"freeze_stages must be >= 0 (0 = nothing frozen), got {freeze_stages}")
    if freeze_backbone:
        trained = _classifier_names(model)
        frozen = [p for p in model.get_parameters() if p.name not in trained]
    elif freeze_stages:
        stage_of, num_groups = layer_ids(model, coarse=True)
        num_stages = num_groups - 2  # the stem first, the final norm and head last
        if freeze_stages > num_stages:
            raise ValueError(f"freeze_stages={freeze_stages} but {type(model).__name__} has {num_stages} stages: "
                             f"use 1..{num_stages}, or freeze_backbone True to train only the classifier")
        frozen = [p for p in model.get_parameters() if stage_of[p.name] <= freeze_stages]
    else:
        return []
    for param in frozen:
        param.requires_grad = False
    trainable = sum(p.size for p in model.trainable_params())
    _logger.info("Frozen: %d parameter tensors (%s); %d weights still train", len(frozen),
                 "all but the classifier" if freeze_backbone else f"patch embedding + {freeze_stages} stage(s)",
                 trainable)
    return [p.name for p in frozen]
