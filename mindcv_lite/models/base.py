"""The contract every model family meets, written once: the methods the engine, fine-tuning and the tools call.

A family subclasses `VisionModel` and provides `forward_features`, `forward_head(x, pre_logits=False)`,
`forward_intermediates(x, indices)`, `get_classifier`, `reset_classifier(num_classes)`, `no_weight_decay()`,
`feature_info`, `group_matcher(coarse=False)` and `blocks()`; the base derives grad checkpointing from `blocks()`
and the layer grouping (`layer_ids`) from `group_matcher`.
"""
import re
from collections import defaultdict

from mindspore import nn

__all__ = ["MATCH_PREV_GROUP", "VisionModel", "group_parameters", "layer_ids"]

# A matcher entry with this suffix joins the group sorted just before it (timm's `_manipulate.MATCH_PREV_GROUP`).
MATCH_PREV_GROUP = (99999,)


class VisionModel(nn.Cell):
    """Base of every classifier in the zoo (see the module docstring for what a family provides)."""

    def __init__(self):
        super().__init__()
        self.grad_checkpointing = False

    def group_matcher(self, coarse=False):
        """timm's layer grouping: {'stem': regex, 'blocks': regex or [(regex, suffix), ...]} over parameter names.

        Regex groups give the ordinal of a parameter (`stage`, `block`); `coarse` groups whole stages."""
        raise NotImplementedError(f"{type(self).__name__} must define group_matcher(coarse=False)")

    def blocks(self):
        """The residual blocks in forward order (what grad checkpointing recomputes)."""
        raise NotImplementedError(f"{type(self).__name__} must define blocks()")

    def set_grad_checkpointing(self, enable=True):
        """Recompute each block's activations in the backward pass instead of keeping them (less memory, one
        more forward). MindSpore 2.10's `Cell.recompute()` cannot be undone, so disabling after enabling raises."""
        if not enable:
            if self.grad_checkpointing:
                raise RuntimeError("grad checkpointing cannot be switched off again (MindSpore 2.10 `Cell.recompute` "
                                   "is one-way): build a new model instead")
            return
        if not self.grad_checkpointing:
            for block in self.blocks():
                block.recompute()
            self.grad_checkpointing = True


def _ordinal(name, compiled):
    for pattern, prefix, suffix in compiled:
        match = pattern.match(name)
        if match:
            parts = prefix + tuple(g for g in match.groups() if g is not None) + (suffix or ())
            return tuple(float(p) for p in parts)
    return (float("inf"),)  # unmatched (final norm, head): the last group


def group_parameters(names, matcher):
    """{name: group index} for parameter `names` under a timm-style `matcher` dict (timm's `group_with_matcher`):
    groups ordered by (matcher entry, regex groups), unmatched names last."""
    compiled = []
    for group_ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        entries = spec if isinstance(spec, (list, tuple)) else [(spec, None)]
        compiled += [(re.compile(regex), (group_ordinal,), suffix) for regex, suffix in entries]
    grouping = defaultdict(list)
    for name in names:
        grouping[_ordinal(name, compiled)].append(name)
    layer, result = -1, {}
    for key in sorted(grouping):
        if layer < 0 or key[-1] != MATCH_PREV_GROUP[0]:
            layer += 1
        for name in grouping[key]:
            result[name] = layer
    return result


def layer_ids(model, coarse=False):
    """(dict parameter name -> layer index, number of layers) for layer-wise lr decay and freezing.

    Layer 0 is the stem (patch embedding, position embedding, tokens), then each block in order; whatever the
    matcher leaves unmatched (final norm, head) is the last layer, as timm's `param_groups_layer_decay`. Names
    are `Parameter.name`, the names optimizers and checkpoints use."""
    names = [p.name for p in model.get_parameters()]
    groups = group_parameters(names, model.group_matcher(coarse=coarse))
    return groups, max(groups.values()) + 1 if groups else 0
