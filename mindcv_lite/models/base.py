"""The contract every model family meets, written once: the stage loop, the classifier, layer grouping and grad
checkpointing live here; a family supplies its stem, its stages and its head.

A family subclasses `VisionModel`, builds `self.stages` (a CellList of stages; each stage has `blocks` and maps
`(x, tokens) -> (x, tokens)`: x the channels-last token map (B, H, W, C) (the first stage may read the images
(B, C, H, W) as they are), tokens the prefix (class) tokens (B, T, C) or None), and defines
`forward_stem(images) -> (x, tokens)`, `forward_norm(x, tokens)` (the features the head reads) and
`forward_head(features, pre_logits=False)`. It ends `__init__` with `self.init_model()`.
`public_name(path)` maps attribute paths to the parameter names its checkpoints use (mindcv's), and
`to_mindcv_key` the names written by train.py to what mindcv loads.
"""
import re
from collections import defaultdict

from mindspore import nn

from ..utils.memory import ReleasesCompilerMemory
from .layers import Linear, init_weights

__all__ = ["MATCH_PREV_GROUP", "VisionModel", "group_parameters", "layer_ids"]

# A matcher entry with this suffix joins the group sorted just before it (timm's `_manipulate.MATCH_PREV_GROUP`).
MATCH_PREV_GROUP = (99999,)


class VisionModel(ReleasesCompilerMemory):
    """Base of every classifier in the zoo (see the module docstring for what a family provides)."""

    # Attributes holding a classifier (a distilled model has two); `reset_classifier` replaces them.
    classifier_names = ("head",)

    def __init__(self, num_classes, num_features):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = num_features
        self.grad_checkpointing = False

    def init_model(self):
        """Reference initialisation of every weight, then each parameter gets its public (checkpoint) name."""
        init_weights(self)
        for path, param in self.parameters_and_names():
            param.name = self.public_name(path)

    def public_name(self, path):
        """The checkpoint name of the parameter at attribute `path` (mindcv's names; identity by default)."""
        return path

    def to_mindcv_key(self, name):
        """The name mindcv gives our parameter `name`, so checkpoints written by train.py load into mindcv."""
        return name

    # -- classifier ------------------------------------------------------------------------------------------
    def create_head(self, num_classes):
        return Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self):
        heads = tuple(getattr(self, n) for n in self.classifier_names if getattr(self, n, None) is not None)
        return heads[0] if len(heads) == 1 else heads

    def reset_classifier(self, num_classes):
        """New classifier(s) for `num_classes` (0: none, the model returns pre-logits features)."""
        self.num_classes = num_classes
        for name in self.classifier_names:
            if getattr(self, name, None) is not None:
                head = self.create_head(num_classes)
                init_weights(head)
                setattr(self, name, head)

    def no_weight_decay(self):
        """Position embeddings and tokens are not decayed (timm and mindcv agree); names as `Parameter.name`."""
        return {p.name for path, p in self.parameters_and_names()
                if path.rsplit(".", 1)[-1] in ("pos_embed", "cls_token")}

    # -- the stage loop --------------------------------------------------------------------------------------
    def forward_features(self, x):
        """Images (B, C, H, W) -> normalised tokens the head reads."""
        x, tokens = self.forward_stem(x)
        for stage in self.stages:
            x, tokens = stage(x, tokens)
        return self.forward_norm(x, tokens)

    def forward_intermediates(self, x, indices):
        """Images (B, C, H, W) -> tuple of NCHW maps after the stages in `indices`, in that order."""
        x, tokens = self.forward_stem(x)
        maps = []
        for i in range(max(indices) + 1):
            x, tokens = self.stages[i](x, tokens)
            maps.append(x)
        return tuple([maps[i].transpose(0, 3, 1, 2) for i in indices])

    def construct(self, x):
        return self.forward_head(self.forward_features(x))

    # -- training hooks --------------------------------------------------------------------------------------
    def group_matcher(self, coarse=False):
        """timm's layer grouping over attribute paths: the stem (everything before the stages and stage 0's
        embedding), then each block (`coarse`: each stage); a stage's embedding / pooling joins its first block,
        its norm its last; the final norm and head stay unmatched (the last group)."""
        stem = r"^(?!stages\.|norm\.|head)|^stages\.0\.(?!blocks\.|norm\.)"
        if coarse:
            return dict(stem=stem, blocks=r"^stages\.(\d+)\.")
        return dict(stem=stem, blocks=[(r"^stages\.(\d+)\.norm\.", MATCH_PREV_GROUP),
                                       (r"^stages\.(\d+)\.blocks\.(\d+)\.", None),
                                       (r"^stages\.(\d+)\.", (0,))])

    def blocks(self):
        """The residual blocks in forward order (what grad checkpointing recomputes)."""
        return [block for stage in self.stages for block in stage.blocks]

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
    are `Parameter.name`, the names optimizers and checkpoints use; the matcher reads attribute paths."""
    from .features import FeatureListNet
    if isinstance(model, FeatureListNet):
        model = model.model
    named = list(model.parameters_and_names())
    groups = group_parameters([path for path, _ in named], model.group_matcher(coarse=coarse))
    ids = {param.name: groups[path] for path, param in named}
    return ids, max(ids.values()) + 1 if ids else 0
