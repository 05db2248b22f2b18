"""`create_model`, with mindcv's signature."""
from .checkpoint import load_checkpoint
from .features import FeatureListNet
from .registry import model_entrypoint


def create_model(model_name, num_classes=1000, pretrained=False, in_channels=3, checkpoint_path="", features_only=False,
                 out_indices=None, **kwargs):
    """Build a registered model; `checkpoint_path` loads any supported checkpoint (mindcv, timm/PyTorch, ours).

    `features_only` returns the backbone instead (a `FeatureListNet`): its output is a tuple of NCHW maps of
    the stages `out_indices` (default all), described by `model.feature_info`; a classifier checkpoint loads
    into it with the head ignored.

    kwargs go to the model (`drop_rate`, `drop_path_rate`, `img_size`, ...); a kwarg that is None is ignored,
    so config values left unset fall back to the model's defaults.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = model_entrypoint(model_name)(pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                         **kwargs)
    if features_only:
        model = FeatureListNet(model, out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices selects backbone stages: pass features_only=True with it")
    if checkpoint_path:
        load_checkpoint(model, checkpoint_path)
    return model
