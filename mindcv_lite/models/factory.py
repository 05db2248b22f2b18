"""`create_model`, with mindcv's signature."""
from .checkpoint import load_checkpoint
from .registry import model_entrypoint


def create_model(model_name, num_classes=1000, pretrained=False, in_channels=3, checkpoint_path="", **kwargs):
    """Build a registered model; `checkpoint_path` loads any supported checkpoint (mindcv, timm/PyTorch, ours).

    kwargs go to the model (`drop_rate`, `drop_path_rate`, `img_size`, ...); a kwarg that is None is ignored,
    so config values left unset fall back to the model's defaults.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = model_entrypoint(model_name)(pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                         **kwargs)
    if checkpoint_path:
        load_checkpoint(model, checkpoint_path)
    return model
