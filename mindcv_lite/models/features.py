"""Classifiers as multi-scale backbones for detection and segmentation (`create_model(..., features_only=True)`)."""
from mindspore import nn

__all__ = ["FeatureListNet"]


class FeatureListNet(nn.Cell):
    """The stages `out_indices` of a classifier, returned as a tuple of NCHW feature maps.

    The classifier head is removed; parameter names stay the classifier's (no prefix), so a classifier
    checkpoint loads into the backbone strictly, its head ignored. `feature_info` lists the selected stages'
    channels (`num_chs`) and stride (`reduction`).
    """

    def __init__(self, model, out_indices=None):
        super().__init__(auto_prefix=False)
        num_stages = len(model.feature_info)
        out_indices = tuple(range(num_stages)) if out_indices is None else tuple(out_indices)
        normalised = tuple(i + num_stages if i < 0 else i for i in out_indices)
        if not normalised or any(i < 0 or i >= num_stages for i in normalised) or \
                len(set(normalised)) != len(normalised):
            raise ValueError(f"out_indices {out_indices} must name distinct stages of the {num_stages} of "
                             f"{type(model).__name__} (0..{num_stages - 1}, or negative from the end)")
        model.reset_classifier(0)
        self.model = model
        self.out_indices = normalised
        self.feature_info = [dict(model.feature_info[i], stage=i) for i in normalised]
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})

    def checkpoint_filter_fn(self, state_dict, model):
        """A classifier checkpoint minus its classifier, then the classifier's own key mapping."""
        heads = self.pretrained_cfg.get("classifier", "head")
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        state = {k: v for k, v in state_dict.items() if not k.startswith(tuple(f"{h}." for h in heads))}
        filter_fn = getattr(self.model, "checkpoint_filter_fn", None)
        return filter_fn(state, self.model) if filter_fn is not None else state

    def group_matcher(self, coarse=False):
        return self.model.group_matcher(coarse)

    def set_grad_checkpointing(self, enable=True):
        self.model.set_grad_checkpointing(enable)

    def construct(self, x):
        return self.model.forward_intermediates(x, self.out_indices)
