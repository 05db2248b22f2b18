"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes").

MindSpore 2.10's ``nn.Lamb`` has no CPU kernel (its fused ``Lamb`` primitive fails to select one), so this one,
written with plain ops, runs everywhere; it computes MindSpore's documented rule and accepts ``loss_scale``.
"""
import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from .adamw import _set_loss_scale

__all__ = ["Lamb"]

_lamb_update = ops.MultitypeFuncGraph("lamb_update")


@_lamb_update.register(
    "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
    "Bool", "Bool",
)
def _update_param(beta1, beta2, eps, bias_correction1, bias_correction2, lr, weight_decay, param, m, v, grad,
                  decay_flag, optim_filter):
    """One LAMB step for one parameter (one layer's trust ratio), computed in float32."""
    if not optim_filter:
        return grad
    param_fp32 = ops.cast(param, ms.float32)
    grad_fp32 = ops.cast(grad, ms.float32)
    next_m = beta1 * ops.cast(m, ms.float32) + (1.0 - beta1) * grad_fp32
    next_v = beta2 * ops.cast(v, ms.float32) + (1.0 - beta2) * ops.square(grad_fp32)
    update = (next_m / bias_correction1) / (ops.sqrt(next_v / bias_correction2) + eps)
    if decay_flag:
        update = update + weight_decay * param_fp32
    weight_norm = ops.norm(param_fp32)
    update_norm = ops.norm(update)
    # The trust ratio is 1 when either norm is 0 (fresh zero-initialised weights, zero update).
    usable = ops.logical_and(weight_norm > 0.0, update_norm > 0.0)
    trust_ratio = ops.select(usable, weight_norm / ops.select(usable, update_norm, ops.ones_like(update_norm)),
                             ops.ones_like(weight_norm))
    next_param = param_fp32 - lr * trust_ratio * update
    next_param = ops.depend(next_param, ops.assign(param, ops.cast(next_param, param.dtype)))
    next_param = ops.depend(next_param, ops.assign(m, ops.cast(next_m, m.dtype)))
    next_param = ops.depend(next_param, ops.assign(v, ops.cast(next_v, v.dtype)))
    return ops.cast(next_param, param.dtype)


class Lamb(nn.Optimizer):
    """LAMB: AdamW's update ``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p``, rescaled per parameter by the
    trust ratio ``||p|| / ||r||``: ``p -= lr * ||p|| / ||r|| * r``.

    State parameters: ``lamb_m.<param>``, ``lamb_v.<param>``, ``beta1_power``, ``beta2_power``, ``global_step`` and
    ``learning_rate``. Gradients are divided by ``loss_scale`` first; weight decay follows ``nn.Optimizer``.
    """

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0,
                 loss_scale=1.0):
        super().__init__(learning_rate, params, weight_decay)
        _set_loss_scale(self, loss_scale)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"Lamb needs 0 <= beta1, beta2 < 1, got beta1={beta1}, beta2={beta2}.")
        if eps <= 0:
            raise ValueError(f"Lamb needs eps > 0, got {eps}.")
        self.beta1 = Tensor(np.array([beta1], np.float32))
        self.beta2 = Tensor(np.array([beta2], np.float32))
        self.eps = Tensor(np.array([eps], np.float32))
        self.moments1 = self._parameters.clone(prefix="lamb_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="lamb_v", init="zeros")
        self.beta1_power = Parameter(initializer(1.0, [1], ms.float32), name="beta1_power")
        self.beta2_power = Parameter(initializer(1.0, [1], ms.float32), name="beta2_power")

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        beta1_power = self.beta1_power * self.beta1
        beta2_power = self.beta2_power * self.beta2
        ops.assign(self.beta1_power, beta1_power)
        ops.assign(self.beta2_power, beta2_power)
        bias_correction1 = 1.0 - beta1_power
        bias_correction2 = 1.0 - beta2_power
        # Arguments are spelled out: graph mode compiles neither a partial of a partial nor *-unpacking.
        if self.is_group_lr:
            result = self.hyper_map(
                ops.partial(_lamb_update, self.beta1, self.beta2, self.eps, bias_correction1, bias_correction2),
                lr, weight_decay, self._parameters, self.moments1, self.moments2, gradients, self.decay_flags,
                self.optim_filter,
            )
        elif self.is_group:
            result = self.hyper_map(
                ops.partial(_lamb_update, self.beta1, self.beta2, self.eps, bias_correction1, bias_correction2, lr),
                weight_decay, self._parameters, self.moments1, self.moments2, gradients, self.decay_flags,
                self.optim_filter,
            )
        else:
            result = self.hyper_map(
                ops.partial(_lamb_update, self.beta1, self.beta2, self.eps, bias_correction1, bias_correction2, lr,
                            weight_decay),
                self._parameters, self.moments1, self.moments2, gradients, self.decay_flags, self.optim_filter,
            )
        if self.use_parallel:
            self.broadcast_params(result)
        return result
