"""Create an optimizer by name (mindcv's names and keys), with weight-decay filtering and layer-wise lr decay."""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from mindspore import Parameter, nn

from ..models import layer_ids
from .adamw import AdamW
from .adan import Adan
from .lamb import Lamb
from .lion import Lion
from .nadam import NAdam

__all__ = ["OPTIMIZERS", "WEIGHT_DECAY_FILTERS", "create_optimizer", "param_groups_weight_decay"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "lion", "nadam", "adan", "rmsprop", "adagrad", "lamb")
WEIGHT_DECAY_FILTERS = ("disable", "auto", "norm_and_bias")
# The epsilon each optimizer uses when `eps` is None: mindcv's. mindcv's `--eps` default (1e-10) reaches only
# rmsprop; its adam/adamw/nadam/adan keep their 1e-8 and lamb MindSpore's 1e-6.
DEFAULT_EPS = {"adam": 1e-8, "adamw": 1e-8, "nadam": 1e-8, "adan": 1e-8, "rmsprop": 1e-10, "lamb": 1e-6}
_NESTEROV_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def _decay_rule(weight_decay_filter: str, no_weight_decay: Iterable[str]) -> Callable[[Parameter], bool]:
    """Whether a parameter gets weight decay under ``weight_decay_filter``."""
    no_weight_decay = tuple(no_weight_decay)
    if weight_decay_filter == "norm_and_bias":
        return lambda param: not (param.ndim <= 1 or any(key in param.name for key in no_weight_decay))
    if weight_decay_filter == "auto":  # MindSpore's own filter, what nn.Optimizer does with a flat parameter list
        return lambda param: "beta" not in param.name and "gamma" not in param.name
    return lambda param: True


def param_groups_weight_decay(
    params: Sequence[Parameter], weight_decay: float, no_weight_decay: Iterable[str] = ()
) -> List[dict]:
    """Split ``params`` into a decayed group and a group without weight decay, for ``nn.Optimizer``.

    Exempt are 1-D parameters (norm gamma/beta and biases, whatever their names) and parameters whose name contains
    one of the ``no_weight_decay`` strings (e.g. ``{"pos_embed", "cls_token"}``, which also matches PVT's
    ``pos_embed1``..``pos_embed4``). The ``order_params`` entry keeps the optimizer's state in ``params`` order.
    """
    decays = _decay_rule("norm_and_bias", no_weight_decay)
    return [
        {"params": [p for p in params if decays(p)], "weight_decay": weight_decay},
        {"params": [p for p in params if not decays(p)], "weight_decay": 0.0},
        {"order_params": list(params)},
    ]


def _scaled(lr, scale: float):
    return [value * scale for value in lr] if isinstance(lr, (list, tuple)) else lr * scale


def _param_groups(params, lr, weight_decay, decays, layer_of: Optional[Dict[str, tuple]]):
    """nn.Optimizer groups by (layer, decayed); ``layer_of`` maps names to (layer, lr scale), None = no layer decay."""
    groups = {}
    for param in params:
        layer, scale = layer_of[param.name] if layer_of is not None else (None, None)
        key = (layer, decays(param))
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if key[1] else 0.0}
            if layer_of is not None:
                groups[key]["lr"] = _scaled(lr, scale)
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0] or 0, not k[1]))] + [{"order_params": params}]


def _layer_scales(model: nn.Cell, layer_decay: float) -> Dict[str, tuple]:
    """{name: (layer, lr scale)} from the model's own grouping (stem first, blocks in order, head last)."""
    if not hasattr(model, "group_matcher"):
        raise ValueError(f"layer_decay needs a model with group_matcher(); {type(model).__name__} has none")
    layer_of, num_layers = layer_ids(model)
    return {name: (layer, layer_decay ** (num_layers - 1 - layer)) for name, layer in layer_of.items()}


def create_optimizer(
    model_or_params: Union[nn.Cell, Sequence[Parameter]],
    opt: str = "adam",
    lr: Union[float, Sequence[float]] = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay_filter: str = "disable",
    layer_decay: Optional[float] = None,
    loss_scale: float = 1.0,
    schedule_decay: float = 4e-3,
    eps: Optional[float] = None,
    no_weight_decay: Iterable[str] = (),
) -> nn.Optimizer:
    """Create optimizer ``opt`` (one of ``OPTIMIZERS``, case-insensitive) with mindcv's arguments and defaults.

    Args:
        model_or_params: a network (its trainable parameters are optimised, so frozen ones get no state, and its
            ``no_weight_decay()`` names are exempt under 'norm_and_bias') or a list of parameters.
        lr: a float, or one learning rate per step (``create_scheduler``'s list), indexed by ``global_step``.
        weight_decay: decoupled (``lr * weight_decay * p``) for adamw, lion, lamb and adan (proximal); L2 added to
            the gradient for sgd, momentum, nesterov, adam, nadam, rmsprop and adagrad.
        momentum: for sgd, momentum, nesterov and rmsprop. ``nesterov``: Nesterov momentum for sgd, momentum and
            adam; 'nesterov' is momentum with it on.
        weight_decay_filter: which parameters skip weight decay. 'disable' (default, as mindcv): none;
            'norm_and_bias': 1-D parameters (norms, biases) and names matching ``no_weight_decay``; 'auto':
            MindSpore's built-in filter (names containing 'beta' or 'gamma').
        layer_decay: layer-wise lr decay (timm/BEiT): layer ``i`` of ``L`` (the model's ``layer_ids``: stem 0,
            blocks in order, head ``L - 1``) trains at ``lr * layer_decay ** (L - 1 - i)``. Needs a model. As in
            mindcv and timm, 1-D parameters and ``no_weight_decay()`` then skip weight decay under 'disable' too.
        loss_scale: gradients are divided by it before the update (fixed loss scale without overflow checks).
        schedule_decay: nadam's momentum schedule.
        eps: denominator term of adam, adamw, nadam, adan, rmsprop and lamb; None = ``DEFAULT_EPS`` (mindcv's).
        no_weight_decay: extra parameter-name substrings exempt from weight decay under 'norm_and_bias'.
    """
    opt = opt.lower()
    if opt not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer '{opt}'. Choose one of {', '.join(OPTIMIZERS)}.")
    if weight_decay_filter not in WEIGHT_DECAY_FILTERS:
        raise ValueError(
            f"Unknown weight_decay_filter '{weight_decay_filter}'. Choose one of {', '.join(WEIGHT_DECAY_FILTERS)}."
        )
    if eps is not None and opt not in DEFAULT_EPS:
        raise ValueError(f"eps applies to {', '.join(DEFAULT_EPS)}, not to '{opt}': leave eps unset (None).")
    if nesterov and opt not in _NESTEROV_OPTIMIZERS:
        raise ValueError(f"nesterov applies to {', '.join(_NESTEROV_OPTIMIZERS)}, not to '{opt}': set it to False.")
    if layer_decay is not None and not layer_decay > 0:
        raise ValueError(f"layer_decay must be > 0 (typically 0.65-0.85 for fine-tuning), got {layer_decay}.")

    no_weight_decay = set(no_weight_decay)
    if isinstance(model_or_params, nn.Cell):
        if hasattr(model_or_params, "no_weight_decay"):
            no_weight_decay |= set(model_or_params.no_weight_decay())
        params = model_or_params.trainable_params()
    elif layer_decay is not None:
        raise ValueError("layer_decay needs the model (its layer grouping), not a list of parameters.")
    else:
        params = list(model_or_params)
    if not params:
        raise ValueError("create_optimizer got no trainable parameters (is everything frozen?).")

    layer_of = None
    if layer_decay is not None:
        layer_of = _layer_scales(model_or_params, layer_decay)
        if weight_decay_filter == "disable":  # mindcv and timm exempt these whenever layer_decay is set
            weight_decay_filter = "norm_and_bias"
    groups = _param_groups(params, lr, weight_decay, _decay_rule(weight_decay_filter, no_weight_decay), layer_of)
    eps = DEFAULT_EPS.get(opt) if eps is None else eps
    common = dict(learning_rate=lr, weight_decay=0.0, loss_scale=loss_scale)  # each group carries its weight decay
    if opt == "sgd":
        return nn.SGD(groups, momentum=momentum, nesterov=nesterov, **common)
    if opt == "nesterov" or (opt == "momentum" and nesterov):
        # MindSpore 2.10's CPU ApplyMomentum ignores use_nesterov; SGD's Nesterov update is the same arithmetic
        # (v = momentum * v + g from v = 0; p -= lr * (g + momentum * v)).
        return nn.SGD(groups, momentum=momentum, nesterov=True, **common)
    if opt == "momentum":
        return nn.Momentum(groups, momentum=momentum, **common)
    if opt == "adam":
        return nn.Adam(groups, use_nesterov=nesterov, eps=eps, **common)
    if opt == "adamw":
        return AdamW(groups, eps=eps, **common)
    if opt == "lion":
        return Lion(groups, **common)
    if opt == "nadam":
        return NAdam(groups, eps=eps, schedule_decay=schedule_decay, **common)
    if opt == "adan":
        return Adan(groups, eps=eps, **common)
    if opt == "rmsprop":
        return nn.RMSProp(groups, momentum=momentum, epsilon=eps, **common)
    if opt == "adagrad":
        return nn.Adagrad(groups, **common)
    return Lamb(groups, eps=eps, **common)
