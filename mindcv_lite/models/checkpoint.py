"""One door for every checkpoint layout: ours, mindcv's, and the original authors' / timm's PyTorch weights.

`load_checkpoint` reads the file (.ckpt, .safetensors, or .pth/.pt/.bin when torch is installed), drops
training state (optimizer moments, step counters, EMA copies), lets the model's `checkpoint_filter_fn` map
foreign key names onto ours, and then loads strictly: anything missing, unexpected or mis-shaped is an error
that lists it. The only tolerated difference is the classifier when `num_classes` differs (fine-tuning).
"""
import json
import logging
import os

import numpy as np
import mindspore as ms

from ..utils.io import atomic_path

_logger = logging.getLogger(__name__)

# mindcv's training checkpoints store MindSpore's optimizer and loss-scale state beside the weights under these
# names (per-weight slots such as `adam_m.<weight>`, and counters); part of mindcv's file layout, like its
# parameter names. Any other training state is listed in the file by whoever wrote it (TRAINING_STATE_KEY).
MINDCV_TRAINING_STATE = ("adam_m.", "adam_v.", "moment1.", "moment2.", "moments.", "moment.", "mean_grad.",
                         "mean_square.", "accum.", "stat.", "lamb_m.", "lamb_v.", "lion_m.", "nadam_m.", "nadam_v.",
                         "ema.", "global_step", "learning_rate", "momentum", "beta1_power", "beta2_power",
                         "scale_sense", "current_iterator_step", "last_overflow_iterator_step", "updates",
                         "epoch_num", "step_num")

# Where `save_checkpoint` records the names of the training state it was handed (`extra`), so that loading the
# weights skips exactly those, whatever optimizer or engine wrote them.
TRAINING_STATE_KEY = "checkpoint.training_state"

# Where train.py stores the training set's class names beside the weights (infer.py shows them).
CLASS_NAMES_KEY = "train.class_names"


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model."""


def _training_state_names(entries):
    """Names (exact, or prefixes ending in '.') of the non-weight entries: mindcv's, and those the file lists."""
    listed = entries.get(TRAINING_STATE_KEY)
    return MINDCV_TRAINING_STATE + (tuple(json.loads(listed)) if isinstance(listed, str) else ())


def _state_name(key, weight_names):
    """`adam_m.<weight>` -> 'adam_m.' (one prefix for a whole slot); any other name stays as it is."""
    dot = key.find(".")
    while dot != -1:
        if key[dot + 1:] in weight_names:
            return key[:dot + 1]
        dot = key.find(".", dot + 1)
    return key


def _read_torch(path):
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{path} is a PyTorch file and torch is not installed: install torch, or convert it once "
                          f"elsewhere with safetensors (`safetensors.torch.save_file(state_dict, 'x.safetensors')`) "
                          f"and load the .safetensors file") from exc
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for nested in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(nested), dict):
            obj = obj[nested]
    return {k[7:] if k.startswith("module.") else k: v.float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in obj.items() if hasattr(v, "numpy")}


def _sniff_format(path):
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK":
        return ".pth"
    if len(head) == 9 and head[8:9] == b"{":
        return ".safetensors"
    return ".ckpt"


def read_checkpoint(path):
    """All entries of a checkpoint file as {name: numpy array or scalar}, whatever its format."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".ckpt", ".safetensors", ".pth", ".pt", ".bin"):
        ext = _sniff_format(path)
    try:
        if ext == ".safetensors":
            from safetensors.numpy import load_file
            return dict(load_file(path))
        if ext in (".pth", ".pt", ".bin"):
            return _read_torch(path)
        entries = ms.load_checkpoint(path)
    except (ImportError, FileNotFoundError):
        raise
    except Exception as exc:  # MindSpore and safetensors raise assorted types for a damaged file
        raise ValueError(f"cannot read checkpoint {path!r}: the file is corrupt or not a {ext} checkpoint "
                         f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") \
            from exc
    return {k: v.asnumpy() if hasattr(v, "asnumpy") else v for k, v in entries.items()}


def model_weights(entries, use_ema=False):
    """The model's weights among checkpoint entries: training state is dropped; `use_ema` takes the `ema.` copies."""
    if use_ema:
        ema = {k[4:]: v for k, v in entries.items() if k.startswith("ema.")}
        if not ema:
            raise ValueError("use_ema=True but the checkpoint holds no `ema.*` weights")
        return ema
    state = _training_state_names(entries)
    prefixes = tuple(name for name in state if name.endswith("."))
    return {k: v for k, v in entries.items()
            if isinstance(v, np.ndarray) and k not in state and not k.startswith(prefixes)}


def _adopt_norm_names(state, model_shapes):
    """PyTorch LayerNorm `weight`/`bias` are MindSpore `gamma`/`beta`."""
    out = {}
    for key, value in state.items():
        if key not in model_shapes:
            for old, new in ((".weight", ".gamma"), (".bias", ".beta")):
                if key.endswith(old) and key[:-len(old)] + new in model_shapes:
                    key = key[:-len(old)] + new
                    break
        out[key] = value
    return out


def _classifier_names(model):
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier", "head")
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _summarise(names, limit=8):
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def model_state(model, entries, use_ema=False):
    """The checkpoint entries' weights renamed and reshaped into `model`'s layout (not yet checked or loaded)."""
    state = model_weights(entries, use_ema)
    filter_fn = getattr(model, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    shapes = {p.name: tuple(p.shape) for p in model.get_parameters()}
    return _adapt_first_conv(model, _adopt_norm_names(state, shapes), shapes)


def adapt_input_conv(in_chans, weight):
    """A first-convolution weight (O, I, kH, kW) for `in_chans` input channels (timm's `adapt_input_conv`):
    1 channel sums the RGB kernels (I > 3: each group of 3); N channels repeat RGB and rescale by 3 / N."""
    dtype = weight.dtype
    weight = weight.astype(np.float32)
    out_chans, chans, kh, kw = weight.shape
    if in_chans == 1:
        if chans > 3:
            if chans % 3:
                raise ValueError(f"cannot adapt a first convolution with {chans} input channels to 1")
            weight = weight.reshape(out_chans, chans // 3, 3, kh, kw).sum(axis=2)
        else:
            weight = weight.sum(axis=1, keepdims=True)
    elif in_chans != 3:
        if chans != 3:
            raise ValueError(f"cannot adapt a first convolution with {chans} input channels to {in_chans}")
        repeat = -(-in_chans // 3)
        weight = np.tile(weight, (1, repeat, 1, 1))[:, :in_chans] * (3 / float(in_chans))
    return weight.astype(dtype)


def _adapt_first_conv(model, state, shapes):
    """A 3-channel checkpoint in a model built with another `in_channels`: adapt its first convolution
    (`pretrained_cfg['first_conv']`) instead of failing on the shape."""
    first_conv = getattr(model, "pretrained_cfg", {}).get("first_conv")  # an attribute path, as in timm
    classifier = getattr(model, "model", model)  # features_only wraps the classifier
    key = getattr(classifier, "public_name", lambda path: path)(f"{first_conv}.weight")
    if not first_conv or key not in state or key not in shapes:
        return state
    weight, target = state[key], shapes[key]
    same_kernel = weight.shape[:1] + weight.shape[2:] == target[:1] + target[2:]
    if weight.ndim == 4 and weight.shape[1] != target[1] and same_kernel:
        _logger.info("adapting the first convolution %s from %d to %d input channels", key, weight.shape[1], target[1])
        state = dict(state, **{key: adapt_input_conv(target[1], weight)})
    return state


def checkpoint_num_classes(model, state):
    """Number of classes of the checkpoint's classifier (a `model_state` dict), or None when it has none."""
    weight = state.get(f"{_classifier_names(model)[0]}.weight")
    return None if weight is None else int(weight.shape[0])


def load_with_checkpoint_classes(model, entries, path, use_ema=False):
    """Load checkpoint `entries` (read from `path`) strictly, first resizing `model`'s classifier to the
    checkpoint's number of classes (for tools that take the classes from the checkpoint)."""
    state = model_state(model, entries, use_ema)
    num_classes = checkpoint_num_classes(model, state)
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    load_state(model, state, path)


def _differs_only_in_classes(state, shapes, keys):
    """The classifier weights have another number of outputs but fit the model's features (fine-tuning)."""
    checkpoint_shapes = [tuple(state[k].shape) for k in keys]
    return all(c[0] != m[0] and c[1:] == m[1:] for c, m in zip(checkpoint_shapes, (shapes[k] for k in keys)))


def load_checkpoint(model, path, use_ema=False):
    """Load the weights of `path` into `model` strictly; returns the names of classifier weights dropped because
    `num_classes` differs. Any other missing, unexpected or mis-shaped weight raises CheckpointMismatchError."""
    return load_state(model, model_state(model, read_checkpoint(path), use_ema), path)


def load_state(model, state, path):
    """Load a `model_state` dict read from `path` (named in errors) into `model`: see `load_checkpoint`."""
    params = {p.name: p for p in model.get_parameters()}
    shapes = {name: tuple(p.shape) for name, p in params.items()}

    dropped = []
    for head in _classifier_names(model):
        keys = [k for k in (f"{head}.weight", f"{head}.bias") if k in state]
        if keys and all(k in shapes for k in keys) and _differs_only_in_classes(state, shapes, keys):
            dropped.extend(keys)
            for key in keys:
                del state[key]
    if dropped:
        _logger.warning("%s: classifier %s has another number of classes than the model (num_classes=%s): "
                        "not loaded, it keeps its fresh initialisation", path, _summarise(dropped),
                        getattr(model, "num_classes", "?"))
    kept_fresh = {k for k in dropped if k in shapes}
    missing = set(shapes) - set(state) - kept_fresh
    unexpected = set(state) - set(shapes)
    mismatched = [f"{k} (checkpoint {tuple(state[k].shape)}, model {shapes[k]})"
                  for k in set(state) & set(shapes) if tuple(state[k].shape) != shapes[k]]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_summarise(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_summarise(unexpected)}")
        if mismatched:
            problems.append(f"wrong shape {len(mismatched)}: {_summarise(mismatched)}")
        raise CheckpointMismatchError(
            f"checkpoint {os.fspath(path)!r} does not match model {type(model).__name__}"
            f"{' (' + model.pretrained_cfg['architecture'] + ')' if hasattr(model, 'pretrained_cfg') else ''}: "
            + "; ".join(problems) + ". Is it a checkpoint of another model or image size?")
    for name, value in state.items():
        param = params[name]
        param.set_data(ms.Tensor(np.asarray(value), dtype=param.dtype))
    return dropped


def _append_value(value):
    """MindSpore stores scalars, strings and Tensors beside the weights: lists/dicts go JSON-encoded."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, np.ndarray):
        return ms.Tensor(value)
    return value


def save_checkpoint(model_or_params, path, extra=None):
    """Write weights (a Cell, or {name: array}) to `path` atomically: `.safetensors` or MindSpore `.ckpt`.

    `extra` is the training state stored beside the weights, {name: array or scalar or str} (.ckpt only; strings
    and lists are stored JSON-encoded): optimizer slots, EMA copies, counters, whatever the caller keeps. Its
    names are recorded in the file (TRAINING_STATE_KEY), so loading the weights skips them."""
    if isinstance(model_or_params, ms.nn.Cell):
        weights = {p.name: p.asnumpy() for p in model_or_params.get_parameters()}
    else:
        weights = {k: np.asarray(v.asnumpy() if hasattr(v, "asnumpy") else v) for k, v in model_or_params.items()}
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        if path.endswith(".safetensors"):
            if extra:
                raise ValueError("training state (extra=...) can only be saved in a .ckpt file")
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, tmp)
        else:
            records = [{"name": k, "data": ms.Tensor(v)} for k, v in weights.items()]
            append = None
            if extra:
                append = {k: _append_value(v.asnumpy() if hasattr(v, "asnumpy") else v) for k, v in extra.items()}
                append[TRAINING_STATE_KEY] = json.dumps(sorted({_state_name(k, weights) for k in extra}))
            ms.save_checkpoint(records, tmp, append_dict=append)
    return path
