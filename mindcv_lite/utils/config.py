"""Training/validation arguments, compatible with mindcv's ``config.py``: same names, same meanings.

A YAML file given with ``-c/--config`` sets the defaults of the parser, and command-line flags override them, so
``python train.py -c configs/pit/pit_xs_ascend.yaml --lr 0.002`` runs the recipe with another learning rate.
Unknown keys, in the YAML or on the command line, stop the run with the closest valid name: a typo must not
silently train with a default.
"""
import argparse
import difflib
import logging
from typing import Callable, List, Optional, Sequence

import yaml

from .cli import ArgumentParser
from .io import atomic_path

__all__ = ["add_validate_arguments", "create_parser", "parse_args", "save_config", "str2bool"]

_logger = logging.getLogger(__name__)

AddArguments = Callable[[argparse.ArgumentParser], None]

_TRUE_STRINGS = ("true", "1", "yes")
_FALSE_STRINGS = ("false", "0", "no")


def str2bool(value) -> bool:
    """Read a boolean from True/False, 1/0 or yes/no (case-insensitive)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE_STRINGS + _FALSE_STRINGS:
        return value.lower() in _TRUE_STRINGS
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False, 1/0, yes/no), got {value!r}")


def _int(value) -> int:
    """An integer; unlike ``int`` it refuses 2.5 and True instead of truncating them."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None


def _float(value) -> float:
    """A float; accepts YAML's '1e-3' (a string to PyYAML) but not True."""
    if isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None


def _number_or_str(value):
    """A number if it reads as one, else the string (mindcv's ``re_value``: 0, 'random', ...)."""
    if not isinstance(value, str):
        return value
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


class _FloatOrList(argparse.Action):
    """``--color_jitter 0.4`` gives 0.4 and ``--color_jitter 0.4 0.4 0.4`` gives a list, as the YAML can."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else values)


class _FilterBiasAndBn(argparse.Action):
    """mindcv's older ``--filter_bias_and_bn True/False`` sets ``weight_decay_filter``, so one name holds the choice."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.weight_decay_filter = _weight_decay_filter_from(values)


def _weight_decay_filter_from(filter_bias_and_bn: bool) -> str:
    return "norm_and_bias" if filter_bias_and_bn else "disable"


def _bool_flag(group, name, default, help_text):
    # nargs='?' + const=True: a bare `--flag` means True, as in mindcv.
    group.add_argument(name, type=str2bool, nargs="?", const=True, default=default, help=help_text)


# fmt: off
def _add_mindcv_arguments(parser: argparse.ArgumentParser) -> None:
    """mindcv's arguments, with its defaults except where noted in the help."""
    group = parser.add_argument_group("System")
    group.add_argument("--mode", type=_int, default=0, choices=[0, 1],
                       help="MindSpore execution mode: 0 = GRAPH_MODE, 1 = PYNATIVE_MODE")
    _bool_flag(group, "--distribute", False, "Data-parallel training over all launched workers")
    _bool_flag(group, "--val_while_train", False, "Validate during training")
    group.add_argument("--val_interval", type=_int, default=1, help="Validate every N epochs")
    group.add_argument("--log_interval", type=_int, default=100, help="Log every N steps")
    group.add_argument("--seed", type=_int, default=42, help="Seed for numpy, random and MindSpore")
    group.add_argument("--device_target", type=str, default=None, choices=["Ascend", "GPU", "CPU"],
                       help="Device to run on; None = Ascend when present, else CPU")
    group.add_argument("--jit_level", type=str, default="O0", choices=["O0", "O1", "O2"],
                       help="MindSpore graph compilation level (mindcv_lite): O0 kernel by kernel, O1 adds fusion "
                            "passes, O2 whole graphs on Ascend (mindcv forces O2 in graph mode)")
    _bool_flag(group, "--compile_cache", True, "Reuse compiled graphs across runs of the same configuration "
               "(MindSpore's compile cache; mindcv_lite)")
    group.add_argument("--compile_cache_dir", type=str, default="",
                       help="Compile cache root; '' = $MINDCV_LITE_HOME/compile, else ~/.cache/mindcv_lite/compile "
                            "(mindcv_lite)")

    group = parser.add_argument_group("Dataset")
    group.add_argument("--dataset", type=str, default="imagenet", help="Dataset type")
    group.add_argument("--data_dir", type=str, default="./", help="Dataset root directory")
    group.add_argument("--train_split", type=str, default="train", help="Training split subfolder")
    group.add_argument("--val_split", type=str, default="val", help="Validation split subfolder")
    _bool_flag(group, "--dataset_download", False, "Download the dataset if the type supports it")
    group.add_argument("--num_parallel_workers", type=_int, default=8,
                       help="Data-loading worker processes")
    _bool_flag(group, "--shuffle", True, "Shuffle the training set")
    _bool_flag(group, "--eval_shuffle", False, "Read the validation set in a shuffled order (seeded by seed)")
    group.add_argument("--num_samples", type=_int, default=None,
                       help="Use only this many samples; None = all")
    group.add_argument("--batch_size", type=_int, default=128, help="Batch size per device")
    _bool_flag(group, "--drop_remainder", True, "Drop the last incomplete training batch")
    group.add_argument("--aug_repeats", type=_int, default=0,
                       help="Repeated augmentation: each sample N times per epoch; 0 or 1 = off")

    group = parser.add_argument_group("Augmentation")
    group.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="image_resize", type=_int,
                       default=None, help="Input image size; None = the model's pretrained input size")
    group.add_argument("--scale", type=_float, nargs=2, default=[0.08, 1.0], metavar=("MIN", "MAX"),
                       help="Random-resized-crop area range")
    group.add_argument("--ratio", type=_float, nargs=2, default=[0.75, 1.333], metavar=("MIN", "MAX"),
                       help="Random-resized-crop aspect-ratio range")
    group.add_argument("--hflip", type=_float, default=0.5, help="Horizontal flip probability")
    group.add_argument("--vflip", type=_float, default=0.0, help="Vertical flip probability")
    group.add_argument("--color_jitter", type=_float, nargs="+", action=_FloatOrList, default=0.4,
                       help="Color jitter strength, or brightness contrast saturation [hue]")
    group.add_argument("--interpolation", type=str, default=None,
                       help="Resize interpolation, e.g. bilinear, bicubic; None = the model's pretrained one")
    group.add_argument("--auto_augment", type=str, default=None,
                       help="AutoAugment policy, e.g. randaug-m9-mstd0.5-inc1; None = off")
    group.add_argument("--aug_splits", type=_int, default=0, choices=[0, 3],
                       help="Augmentation splits: 3 = every sample enters a step three times, clean and with two "
                            "independent auto_augment draws (3 x batch_size images; needs auto_augment); 0 = off")
    group.add_argument("--re_prob", type=_float, default=0.0, help="Random erasing probability")
    group.add_argument("--re_scale", type=_float, nargs=2, default=[0.02, 0.33], metavar=("MIN", "MAX"),
                       help="Random erasing area range")
    group.add_argument("--re_ratio", type=_float, nargs=2, default=[0.3, 3.3], metavar=("MIN", "MAX"),
                       help="Random erasing aspect-ratio range")
    group.add_argument("--re_value", type=_number_or_str, default=0,
                       help="Random erasing fill: a number or 'random'")
    group.add_argument("--re_max_attempts", type=_int, default=10,
                       help="Random erasing attempts before giving up")
    group.add_argument("--mean", type=_float, nargs="+", default=None,
                       help="Per-channel mean, 0-255 scale; None = the model's pretrained one")
    group.add_argument("--std", type=_float, nargs="+", default=None,
                       help="Per-channel std, 0-255 scale; None = the model's pretrained one")
    group.add_argument("--crop_pct", type=_float, default=None,
                       help="Center-crop fraction at eval; None = the model's pretrained one")
    group.add_argument("--mixup", type=_float, default=0.0, help="Mixup alpha; 0 = off")
    group.add_argument("--cutmix", type=_float, default=0.0, help="CutMix alpha; 0 = off")
    group.add_argument("--cutmix_prob", type=_float, default=1.0,
                       help="Probability of applying mixup or cutmix to a batch")

    group = parser.add_argument_group("Model")
    group.add_argument("--model", type=str, default="pit_ti", help="Model name, e.g. pit_xs, pvt_tiny, pvt_v2_b0")
    group.add_argument("--num_classes", type=_int, default=None,
                       help="Number of classes; None = read from the dataset")
    group.add_argument("--in_channels", type=_int, default=3, help="Input channels")
    group.add_argument("--drop_rate", type=_float, default=None, help="Dropout rate; None = model default")
    group.add_argument("--drop_path_rate", type=_float, default=None,
                       help="Stochastic depth rate; None = model default")
    _bool_flag(group, "--pretrained", False, "Start from pretrained weights")
    group.add_argument("--ckpt_path", type=str, default="",
                       help="Load model weights from this checkpoint; '' = none")
    group.add_argument("--resume", type=str, default="",
                       help="Resume training (model, optimizer, epoch) from this checkpoint; '' = none")
    _bool_flag(group, "--resume_opt", False,
               "mindcv's spelling of resume: with ckpt_path, continue the run saved there (weights, optimizer, lr "
               "position, epoch), as --resume ckpt_path")
    group.add_argument("--keep_checkpoint_max", type=_int, default=10, help="Checkpoints to keep")
    group.add_argument("--ckpt_save_dir", type=str, default="./ckpt", help="Checkpoint directory")
    group.add_argument("--ckpt_save_interval", type=_int, default=1, help="Save every N epochs")
    group.add_argument("--ckpt_save_steps", type=_int, default=0,
                       help="Also save a mid-epoch checkpoint every N steps (only the newest is kept); 0 = never")
    group.add_argument("--ckpt_save_policy", type=str, default="latest_k", choices=["latest_k", "top_k"],
                       help="Keep the latest or the best (needs val_while_train) checkpoints")
    group.add_argument("--epoch_size", type=_int, default=90, help="Training epochs")
    _bool_flag(group, "--dataset_sink_mode", True, "Feed data through the device queue")
    _bool_flag(group, "--ema", False, "Keep an exponential moving average of the weights")
    group.add_argument("--ema_decay", type=_float, default=0.9999, help="EMA decay")
    _bool_flag(group, "--clip_grad", False, "Clip gradients by global norm")
    group.add_argument("--clip_value", type=_float, default=15.0, help="Gradient clipping norm")
    group.add_argument("--layer_decay", type=_float, default=None,
                       help="Layer-wise lr decay: layer i of L trains at lr * layer_decay ** (L - 1 - i) (stem 0, "
                            "blocks in order, head last); None = off. 0.65-0.85 is usual for fine-tuning")
    group.add_argument("--gradient_accumulation_steps", type=_int, default=1,
                       help="Accumulate gradients over N batches per update")

    group = parser.add_argument_group("Optimizer")
    group.add_argument("--opt", type=str.lower, default="adam",
                       choices=["sgd", "momentum", "nesterov", "adam", "adamw", "lion", "nadam", "adan", "rmsprop",
                                "adagrad", "lamb"],
                       help="Optimizer")
    group.add_argument("--momentum", type=_float, default=0.9, help="Momentum for sgd/momentum/nesterov/rmsprop")
    group.add_argument("--weight_decay", type=_float, default=1e-6, help="Weight decay")
    _bool_flag(group, "--use_nesterov", False, "Nesterov momentum")
    group.add_argument("--weight_decay_filter", type=str, default="disable",
                       choices=["disable", "auto", "norm_and_bias"],
                       help="Parameters without weight decay: disable = none (mindcv's default); norm_and_bias = "
                            "norms, biases and the model's no_weight_decay() (position embeddings, class tokens); "
                            "auto = MindSpore's gamma/beta filter")
    group.add_argument("--filter_bias_and_bn", type=str2bool, nargs="?", const=True, action=_FilterBiasAndBn,
                       default=argparse.SUPPRESS,
                       help="Older mindcv spelling: True = --weight_decay_filter norm_and_bias, False = disable")
    group.add_argument("--eps", type=_float, default=None,
                       help="Epsilon of adam/adamw/nadam/adan/rmsprop/lamb; None = mindcv's per optimizer: 1e-10 for "
                            "rmsprop (mindcv's --eps default, which only rmsprop reads), 1e-8 adam/adamw/nadam/adan, "
                            "1e-6 lamb")

    group = parser.add_argument_group("Scheduler")
    group.add_argument("--scheduler", type=str, default="cosine_decay",
                       choices=["constant", "cosine_decay", "exponential_decay", "polynomial_decay", "step_decay",
                                "multi_step_decay", "one_cycle", "cyclic"],
                       help="Learning-rate schedule after warmup; one_cycle and cyclic span the whole run "
                            "(warmup_epochs 0)")
    group.add_argument("--lr", type=_float, default=0.001, help="Peak learning rate")
    group.add_argument("--min_lr", type=_float, default=1e-6, help="Final cosine learning rate")
    group.add_argument("--warmup_epochs", type=_int, default=3, help="Linear warmup epochs")
    group.add_argument("--warmup_factor", type=_float, default=0.0,
                       help="Warmup starts at lr * warmup_factor")
    group.add_argument("--decay_epochs", type=_int, default=100,
                       help="Cosine length / step_decay period, in epochs after warmup")
    group.add_argument("--decay_rate", type=_float, default=0.9,
                       help="Factor of exponential/step/multi-step decay")
    group.add_argument("--multi_step_decay_milestones", type=_int, nargs="+", default=[30, 60, 90],
                       help="Epochs after warmup where multi_step_decay multiplies lr by decay_rate")
    _bool_flag(group, "--lr_epoch_stair", False, "Keep lr constant within each epoch")
    group.add_argument("--num_cycles", type=_int, default=1, help="Cosine cycles, or cyclic's triangles")
    group.add_argument("--cycle_decay", type=_float, default=1.0,
                       help="Peak lr factor from one cosine cycle to the next")

    group = parser.add_argument_group("Loss")
    group.add_argument("--loss", type=str.upper, default="CE", choices=["CE", "BCE"],
                       help="CE (softmax cross-entropy) or BCE (sigmoid binary cross-entropy); any case")
    group.add_argument("--label_smoothing", type=_float, default=0.0, help="Label smoothing")
    group.add_argument("--reduction", type=str, default="mean", choices=["mean", "sum", "none"],
                       help="Loss reduction")

    group = parser.add_argument_group("Mixed precision")
    group.add_argument("--amp_level", type=str, default="O0", choices=["O0", "O1", "O2", "O3", "auto"],
                       help="Automatic mixed precision level for training")
    group.add_argument("--val_amp_level", type=str, default="O0", choices=["O0", "O1", "O2", "O3", "auto"],
                       help="Automatic mixed precision level of validate.py (validation during training follows "
                            "amp_level)")
    group.add_argument("--amp_cast_list", type=str, default=None,
                       help="mindspore.nn cells cast to float16 at amp_level O1, or kept in float32 at O2, e.g. "
                            "'[nn.Dense, nn.Conv2d]'; None = MindSpore's lists (Dense/Conv*; BatchNorm*/LayerNorm)")
    group.add_argument("--loss_scale_type", type=str, default="fixed", choices=["fixed", "dynamic", "auto"],
                       help="Loss scaling")
    group.add_argument("--loss_scale", type=_float, default=1.0, help="(Initial) loss scale")
    _bool_flag(group, "--drop_overflow_update", False,
               "Skip the update of a step whose gradients overflow")

    group = parser.add_argument_group("Fine-tuning (mindcv_lite)")
    _bool_flag(group, "--freeze_backbone", False, "Train only the classifier (linear probe)")
    group.add_argument("--freeze_stages", type=_int, default=0,
                       help="Freeze the patch embedding and the first K stages (0 = none frozen)")
    _bool_flag(group, "--recompute", False,
               "Gradient checkpointing: recompute each block's activations in backward (less memory, more time)")
# fmt: on


def _add_distillation_arguments(parser: argparse.ArgumentParser) -> None:
    """Knowledge distillation (not in mindcv): DeiT's arguments, in snake_case."""
    group = parser.add_argument_group("Distillation")
    group.add_argument("--distillation_type", type=str, default="none", choices=["none", "soft", "hard"],
                       help="Distil from teacher_model: soft (KL at temperature tau) or hard (teacher's argmax)")
    group.add_argument("--teacher_model", type=str, default="", help="Teacher: any registered model name")
    group.add_argument("--teacher_ckpt", type=str, default="",
                       help="The teacher's trained weights (any layout create_model loads); required to distil")
    group.add_argument("--distillation_alpha", type=_float, default=0.5,
                       help="Weight of the distillation loss; the base loss gets 1 - alpha")
    group.add_argument("--distillation_tau", type=_float, default=1.0, help="Temperature of soft distillation")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """validate.py's own flags, on top of the training arguments (it reads the same recipes)."""
    group = parser.add_argument_group("Validation")
    group.add_argument("--output_json", type=str, default="",
                       help="Also write the metrics (top1, top5 as fractions, loss, num_images) to this JSON file")


def create_parser(add_arguments: Optional[AddArguments] = None) -> argparse.ArgumentParser:
    """The argument parser; ``add_arguments(parser)`` adds a script's own flags (e.g. validate.py's)."""
    parser = ArgumentParser(
        description="mindcv_lite training and validation (mindcv-compatible arguments)",
        usage="%(prog)s [-c CONFIG.yaml] [--name value ...]   (-h lists all arguments)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # shows the defaults in force, YAML included
        allow_abbrev=False,  # `--warmup 5` must fail, not guess an argument
    )
    parser.add_argument("-c", "--config", type=str, default="",
                        help="YAML file whose keys set the defaults; flags given here override it")
    _add_mindcv_arguments(parser)
    _add_distillation_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    return parser


def _find_config_path(argv: Sequence[str]) -> str:
    """Read -c/--config before the full parse, which needs the YAML's values as its defaults."""
    probe = ArgumentParser(add_help=False, allow_abbrev=False)
    probe.add_argument("-c", "--config", type=str, default="")
    return probe.parse_known_args(argv)[0].config


# mindcv keys that mean nothing for the models here: naming one stops with the reason (not a guess at a typo).
_NOT_APPLICABLE = {
    "aux_factor": "mindcv weights the losses of auxiliary heads with it (inception_v3, googlenet); no model here "
                  "has an auxiliary head, so delete the key",
}


def _suggestion(name: str, valid: Sequence[str]) -> str:
    if name.lstrip("-") in _NOT_APPLICABLE:
        return f" {_NOT_APPLICABLE[name.lstrip('-')]}."
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _yaml_value(parser: argparse.ArgumentParser, action: argparse.Action, key: str, value, path: str):
    """Check and convert one YAML value the way the command line would, so both give the same types."""
    if value is None:
        return None
    is_list_arg = action.nargs in ("+", 2)
    try:
        if is_list_arg and isinstance(value, (list, tuple)):
            if action.nargs == 2 and len(value) != 2:
                raise argparse.ArgumentTypeError(f"expected 2 values, got {len(value)}")
            return [action.type(item) for item in value]
        if is_list_arg and not isinstance(action, _FloatOrList):
            raise argparse.ArgumentTypeError(f"expected a list, got {value!r}")
        converted = action.type(value) if action.type is not None else value
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        parser.error(f"{path}: bad value for '{key}': {error}")
    if action.choices is not None and converted not in action.choices:
        parser.error(f"{path}: '{key}' must be one of {list(action.choices)}, got {value!r}")
    return converted


def _load_config(parser: argparse.ArgumentParser, path: str) -> dict:
    """Read a YAML config and check every key against the parser."""
    try:
        with open(path, "r") as f:
            config = yaml.safe_load(f)
    except OSError as error:
        parser.error(f"cannot read config file {path}: {error.strerror}")
    if config is None:
        return {}
    if not isinstance(config, dict):
        parser.error(f"{path}: expected a mapping of argument names to values, got {type(config).__name__}")
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    for key in config:
        if key not in actions:
            parser.error(f"{path}: unknown key '{key}'.{_suggestion(str(key), list(actions))}")
    defaults = {key: _yaml_value(parser, actions[key], key, value, path) for key, value in config.items()}
    if "filter_bias_and_bn" in defaults:
        legacy_filter = _weight_decay_filter_from(defaults.pop("filter_bias_and_bn"))
        if defaults.setdefault("weight_decay_filter", legacy_filter) != legacy_filter:
            parser.error(f"{path}: filter_bias_and_bn and weight_decay_filter disagree; keep only weight_decay_filter")
    return defaults


def _reject_unknown(parser: argparse.ArgumentParser, unknown: List[str]) -> None:
    options = [option for action in parser._actions for option in action.option_strings]
    token = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
    if token.startswith("-"):
        name = token.split("=", 1)[0]
        parser.error(f"unknown argument '{name}'.{_suggestion(name, options)}")
    parser.error(f"unexpected value '{token}': flags take the form --name value or --name=value")


def parse_args(argv: Optional[Sequence[str]] = None, add_arguments: Optional[AddArguments] = None):
    """Parse ``argv`` (default: ``sys.argv[1:]``) with the YAML given by -c/--config as defaults.

    Example: ``parse_args(["-c", "configs/pit/pit_xs_ascend.yaml", "--data_dir", "/data/imagenet"])``.
    """
    parser = create_parser(add_arguments)
    config_path = _find_config_path(argv)
    if config_path:
        defaults = _load_config(parser, config_path)
        defaults["config"] = config_path
        parser.set_defaults(**defaults)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _reject_unknown(parser, unknown)
    return args


def save_config(args: argparse.Namespace, path: str) -> None:
    """Write the resolved arguments as YAML, atomically; ``-c path`` reproduces them.

    ``config`` (the file the run was started from) is left out: it is not a setting. Call it on one rank only
    in distributed runs. Arguments a script added with ``add_arguments`` are written too, so a script that
    loads the file must add them as well.
    """
    config = {key: list(value) if isinstance(value, tuple) else value
              for key, value in vars(args).items() if key != "config"}
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False, default_flow_style=None)
    _logger.info("Config saved to %s", path)
