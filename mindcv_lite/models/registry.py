"""Model registry: every model is a decorated function returning a network, plus its pretrained config."""
import difflib
import fnmatch
import sys

_model_entrypoints = {}
_model_pretrained_cfgs = {}

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


def pretrained_cfg(url="", sha256_prefix="", **kwargs):
    """Defaults of a published checkpoint: how it was evaluated and where its weights live.

    mindcv names its files `<model>-<first 8 hex digits of the sha256>.ckpt`; that prefix is what we verify.
    """
    cfg = {
        "url": url,
        "sha256_prefix": sha256_prefix,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "",
        "classifier": "head",
    }
    cfg.update(kwargs)
    return cfg


def register_model(fn):
    """Register `fn` under its own name; its module's `pretrained_cfgs[name]` becomes its pretrained config."""
    name = fn.__name__
    module = sys.modules[fn.__module__]
    _model_entrypoints[name] = fn
    _model_pretrained_cfgs[name] = getattr(module, "pretrained_cfgs", {}).get(name, pretrained_cfg())
    return fn


def list_models(filter="", pretrained=False, exclude_filters=()):  # noqa: A002 - mindcv/timm argument name
    """Sorted model names matching the fnmatch pattern(s) `filter`; with `pretrained`, only those with weights."""
    patterns = [filter] if isinstance(filter, str) else list(filter)
    names = sorted(_model_entrypoints)
    if any(patterns):
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns if p)]
    for pattern in [exclude_filters] if isinstance(exclude_filters, str) else exclude_filters:
        names = [n for n in names if not fnmatch.fnmatch(n, pattern)]
    if pretrained:
        names = [n for n in names if _model_pretrained_cfgs[n]["url"]]
    return names


def is_model(model_name):
    return model_name in _model_entrypoints


def model_entrypoint(model_name):
    """The registered constructor; an unknown name raises with the closest registered names."""
    if model_name not in _model_entrypoints:
        close = difflib.get_close_matches(model_name, list(_model_entrypoints), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {model_name!r}.{hint} See mindcv_lite.list_models() for all models.")
    return _model_entrypoints[model_name]


def get_pretrained_cfg(model_name):
    model_entrypoint(model_name)
    return dict(_model_pretrained_cfgs[model_name])

