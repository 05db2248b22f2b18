"""Create an optimizer by name, with weight decay kept off norms, biases, position embeddings and class tokens."""
from typing import Iterable, List, Optional, Sequence, Union

from mindspore import Parameter, nn

from .adamw import AdamW
from .lion import Lion

__all__ = ["OPTIMIZERS", "WEIGHT_DECAY_FILTERS", "create_optimizer", "param_groups_weight_decay"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "lion")
WEIGHT_DECAY_FILTERS = ("disable", "auto", "norm_and_bias")


def param_groups_weight_decay(
    params: Sequence[Parameter], weight_decay: float, no_weight_decay: Iterable[str] = ()
) -> List[dict]:
    """Split ``params`` into a decayed group and a group without weight decay, for ``nn.Optimizer``.

    Exempt are 1-D parameters (norm gamma/beta and biases, whatever their names) and parameters whose name contains
    one of the ``no_weight_decay`` strings (e.g. ``{"pos_embed", "cls_token"}``, which also matches PVT's
    ``pos_embed1``..``pos_embed4``). The ``order_params`` entry keeps the optimizer's state in ``params`` order.
    """
    no_weight_decay = tuple(no_weight_decay)
    decay, no_decay = [], []
    for param in params:
        exempt = param.ndim <= 1 or any(key in param.name for key in no_weight_decay)
        (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"order_params": list(params)},
    ]


def create_optimizer(
    model_or_params: Union[nn.Cell, Sequence[Parameter]],
    opt: str = "adam",
    lr: Union[float, Sequence[float]] = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay_filter: str = "norm_and_bias",
    layer_decay: Optional[float] = None,
    loss_scale: float = 1.0,
    eps: Optional[float] = None,
    no_weight_decay: Iterable[str] = (),
) -> nn.Optimizer:
    """Create optimizer ``opt`` ('sgd', 'momentum', 'adam', 'adamw', 'lion'; case-insensitive).

    Args:
        model_or_params: a network (its trainable parameters are optimised and its ``no_weight_decay()`` names, if
            it has that method, are exempt from weight decay) or a list of parameters.
        lr: a float, or one learning rate per step (``create_scheduler``'s list), indexed by ``global_step``.
        weight_decay: decoupled (``lr * weight_decay * p``) for adamw and lion; L2 added to the gradient otherwise.
        momentum: for sgd and momentum. ``nesterov``: Nesterov momentum for sgd, momentum and adam.
        weight_decay_filter: which parameters skip weight decay. 'norm_and_bias' (default): 1-D parameters (norms,
            biases) and names matching ``no_weight_decay``; 'disable': none; 'auto': MindSpore's built-in filter
            (names containing 'beta' or 'gamma'). mindcv's default is 'disable'; the PiT/PVT papers exempt them.
        layer_decay: layer-wise learning-rate decay; not supported (raises if set).
        loss_scale: gradients are divided by it before the update (fixed loss scale without overflow checks).
        eps: denominator term of adam/adamw; None keeps their default, 1e-8 (mindcv's too).
        no_weight_decay: extra parameter-name substrings exempt from weight decay.
    """
    opt = opt.lower()
    if opt not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer '{opt}'. Choose one of {', '.join(OPTIMIZERS)}.")
    if weight_decay_filter not in WEIGHT_DECAY_FILTERS:
        raise ValueError(
            f"Unknown weight_decay_filter '{weight_decay_filter}'. Choose one of {', '.join(WEIGHT_DECAY_FILTERS)}."
        )
    if layer_decay is not None:
        raise ValueError(
            f"layer_decay={layer_decay} is not supported: the PiT/PVT recipes train without layer-wise lr decay. "
            "Remove layer_decay from the config (or set it to null)."
        )
    if eps is not None and opt not in ("adam", "adamw"):
        raise ValueError(f"eps applies to adam and adamw only, not to '{opt}': leave eps unset (None).")
    if nesterov and opt not in ("sgd", "momentum", "adam"):
        raise ValueError(f"nesterov applies to sgd, momentum and adam, not to '{opt}': set it to False.")

    no_weight_decay = set(no_weight_decay)
    if isinstance(model_or_params, nn.Cell):
        if hasattr(model_or_params, "no_weight_decay"):
            no_weight_decay |= set(model_or_params.no_weight_decay())
        params = model_or_params.trainable_params()
    else:
        params = list(model_or_params)
    if not params:
        raise ValueError("create_optimizer got no trainable parameters.")

    if weight_decay_filter == "norm_and_bias":
        params = param_groups_weight_decay(params, weight_decay, no_weight_decay)
        weight_decay = 0.0  # each group carries its own
    elif weight_decay_filter == "disable":
        params = [{"params": params, "weight_decay": weight_decay}]
        weight_decay = 0.0
    # 'auto': a flat list and a scalar weight_decay, so nn.Optimizer skips names containing 'beta' or 'gamma'.

    eps_arg = {} if eps is None else {"eps": eps}
    if opt == "sgd":
        return nn.SGD(params, learning_rate=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                      loss_scale=loss_scale)
    if opt == "momentum":
        return nn.Momentum(params, learning_rate=lr, momentum=momentum, weight_decay=weight_decay,
                           use_nesterov=nesterov, loss_scale=loss_scale)
    if opt == "adam":
        return nn.Adam(params, learning_rate=lr, weight_decay=weight_decay, use_nesterov=nesterov,
                       loss_scale=loss_scale, **eps_arg)
    if opt == "adamw":
        return AdamW(params, learning_rate=lr, weight_decay=weight_decay, loss_scale=loss_scale, **eps_arg)
    return Lion(params, learning_rate=lr, weight_decay=weight_decay, loss_scale=loss_scale)
