"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes").

MindSpore 2.10's ``nn.Lamb`` has no CPU kernel (its fused ``Lamb`` primitive fails to select one), so this one,
written with plain ops, runs everywhere; it computes MindSpore's documented rule and accepts ``loss_scale``.
"""
import mindspore as ms
from mindspore import ops

from .adam_moments import AdamMoments, adamw_direction, write_back

__all__ = ["Lamb"]

_lamb_update = ops.MultitypeFuncGraph("lamb_update")


@_lamb_update.register("Tuple", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _update_param(coefficients, lr, weight_decay, param, m, v, grad, decay_flag, optim_filter):
    """One LAMB step for one parameter (one layer's trust ratio), computed in float32."""
    if not optim_filter:
        return grad
    param_fp32 = ops.cast(param, ms.float32)
    update, next_m, next_v = adamw_direction(coefficients, weight_decay, param_fp32, m, v, grad, decay_flag)
    weight_norm = ops.norm(param_fp32)
    update_norm = ops.norm(update)
    # The trust ratio is 1 when either norm is 0 (fresh zero-initialised weights, zero update).
    usable = ops.logical_and(weight_norm > 0.0, update_norm > 0.0)
    trust_ratio = ops.select(usable, weight_norm / ops.select(usable, update_norm, ops.ones_like(update_norm)),
                             ops.ones_like(weight_norm))
    return write_back(param_fp32 - lr * trust_ratio * update, param, m, v, next_m, next_v)


class Lamb(AdamMoments):
    """LAMB: AdamW's update ``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p``, rescaled per parameter by the
    trust ratio ``||p|| / ||r||``: ``p -= lr * ||p|| / ||r|| * r``.

    State: ``lamb_m.<param>``, ``lamb_v.<param>``, ``beta1_power``, ``beta2_power``, ``global_step`` and
    ``learning_rate``; loss scale and weight decay as in :class:`AdamMoments`.
    """

    update = _lamb_update

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0,
                 loss_scale=1.0):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, loss_scale, state_prefix="lamb")
