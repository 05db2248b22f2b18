"""Fill the run's unset data options from the model's pretrained config, and say what is used."""
import logging

from ..data import resolve_data_config
from ..models import get_pretrained_cfg

__all__ = ["apply_data_config"]

_logger = logging.getLogger(__name__)


def apply_data_config(args):
    """Set `args.image_resize/interpolation/crop_pct/mean/std` that the recipe and command line left unset from
    `args.model`'s pretrained config (timm's `resolve_data_config`); logs the values used."""
    config = resolve_data_config(vars(args), get_pretrained_cfg(args.model))
    for key, value in config.items():
        setattr(args, key, value)
    _logger.info("data config of %s: image_resize %d, interpolation %s, crop_pct %s, mean %s, std %s", args.model,
                 config["image_resize"], config["interpolation"], config["crop_pct"],
                 [round(m, 3) for m in config["mean"]], [round(s, 3) for s in config["std"]])
    return config
