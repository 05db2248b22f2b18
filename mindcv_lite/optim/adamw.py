"""AdamW with bias correction (Loshchilov & Hutter), as mindcv's AdamW and torch.optim.AdamW compute it.

MindSpore's own ``nn.AdamWeightDecay`` skips Adam's bias correction (its first updates are ~3x larger) and has no
``loss_scale`` argument, so it neither reproduces the mindcv recipes nor unscales gradients under a fixed loss scale.
"""
import mindspore as ms
from mindspore import ops

from .adam_moments import AdamMoments, adamw_direction, write_back

__all__ = ["AdamW"]

_adamw_update = ops.MultitypeFuncGraph("adamw_update")


@_adamw_update.register("Tuple", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _update_param(coefficients, lr, weight_decay, param, m, v, grad, decay_flag, optim_filter):
    """One AdamW step for one parameter, computed in float32 whatever the parameter's dtype."""
    if not optim_filter:
        return grad
    param_fp32 = ops.cast(param, ms.float32)
    direction, next_m, next_v = adamw_direction(coefficients, weight_decay, param_fp32, m, v, grad, decay_flag)
    return write_back(param_fp32 - lr * direction, param, m, v, next_m, next_v)


class AdamW(AdamMoments):
    """Adam with decoupled weight decay: ``p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)``.

    State: ``adam_m.<param>``, ``adam_v.<param>``, ``beta1_power``, ``beta2_power`` (beta ** steps taken, for the
    bias correction), ``global_step`` and ``learning_rate``; loss scale and weight decay as in :class:`AdamMoments`.
    """

    update = _adamw_update

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 loss_scale=1.0):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, loss_scale, state_prefix="adam")
