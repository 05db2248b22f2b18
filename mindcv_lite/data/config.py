"""The data config of a run (timm's `resolve_data_config`): what the recipe or command line set wins, the rest
comes from the model's pretrained config, so published weights are evaluated the way they were trained
(PiT / PVT: bicubic, crop 0.9)."""
from .constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["DATA_CONFIG_KEYS", "resolve_data_config"]

DATA_CONFIG_KEYS = ("image_resize", "interpolation", "crop_pct", "mean", "std")


def resolve_data_config(args, pretrained_cfg=None):
    """{image_resize, interpolation, crop_pct, mean, std} for `args` (a dict; a missing or None value is unset).

    Unset values come from `pretrained_cfg` (a model's `pretrained_cfg` dict: `input_size`, `interpolation`,
    `crop_pct`, and `mean`/`std` on the 0-1 scale, here 0-255 as MindSpore's Normalize sees uint8 pixels), then
    from the ImageNet defaults. The data package takes the dict, not the model, so it never imports models."""
    cfg = pretrained_cfg or {}
    defaults = {
        "image_resize": cfg["input_size"][-1] if "input_size" in cfg else 224,
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": cfg.get("crop_pct", DEFAULT_CROP_PCT),
        "mean": [m * 255 for m in cfg["mean"]] if "mean" in cfg else list(IMAGENET_DEFAULT_MEAN),
        "std": [s * 255 for s in cfg["std"]] if "std" in cfg else list(IMAGENET_DEFAULT_STD),
    }
    return {key: args[key] if args.get(key) is not None else defaults[key] for key in DATA_CONFIG_KEYS}
