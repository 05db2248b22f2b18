"""Adan (Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm"), as the authors' sail-sg/Adan computes it.

MindSpore 2.10 has no Adan. mindcv's own Adan differs from the paper (its betas enter as ``1 - beta``, no bias
correction, weight decay scaled per element); this one follows the authors' implementation, with their defaults.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from .adam_moments import set_loss_scale

__all__ = ["Adan"]

_adan_update = ops.MultitypeFuncGraph("adan_update")


@_adan_update.register(
    "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
    "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool", "Bool",
)
def _update_param(beta1, beta2, beta3, eps, bias_correction1, bias_correction2, bias_correction3, has_previous, lr,
                  weight_decay, param, m, diff_avg, n, previous_grad, grad, decay_flag, optim_filter):
    """One Adan step for one parameter, computed in float32 whatever the parameter's dtype."""
    if not optim_filter:
        return grad
    grad_fp32 = ops.cast(grad, ms.float32)
    diff = (grad_fp32 - ops.cast(previous_grad, ms.float32)) * has_previous  # 0 at the first step
    next_m = beta1 * ops.cast(m, ms.float32) + (1.0 - beta1) * grad_fp32
    next_diff_avg = beta2 * ops.cast(diff_avg, ms.float32) + (1.0 - beta2) * diff
    next_n = beta3 * ops.cast(n, ms.float32) + (1.0 - beta3) * ops.square(grad_fp32 + beta2 * diff)
    denom = ops.sqrt(next_n / bias_correction3) + eps
    update = (next_m / bias_correction1 + beta2 * next_diff_avg / bias_correction2) / denom
    next_param = ops.cast(param, ms.float32) - lr * update
    if decay_flag:
        next_param = next_param / (1.0 + lr * weight_decay)  # the paper's proximal (decoupled) weight decay
    next_param = ops.depend(next_param, ops.assign(param, ops.cast(next_param, param.dtype)))
    next_param = ops.depend(next_param, ops.assign(m, ops.cast(next_m, m.dtype)))
    next_param = ops.depend(next_param, ops.assign(diff_avg, ops.cast(next_diff_avg, diff_avg.dtype)))
    next_param = ops.depend(next_param, ops.assign(n, ops.cast(next_n, n.dtype)))
    next_param = ops.depend(next_param, ops.assign(previous_grad, ops.cast(grad_fp32, previous_grad.dtype)))
    return ops.cast(next_param, param.dtype)


class Adan(nn.Optimizer):
    """Adan: Nesterov-style momentum from the gradient and the gradient difference ``d = g_t - g_{t-1}``.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) d``, ``n = b3 n + (1-b3) (g + b2 d)^2``,
    ``p = (p - lr (m/(1-b1^t) + b2 v/(1-b2^t)) / (sqrt(n/(1-b3^t)) + eps)) / (1 + lr * weight_decay)``.
    State parameters: ``adan_m``, ``adan_v``, ``adan_n``, ``adan_prev_grad`` (per parameter), ``global_step`` and
    ``learning_rate``. Gradients are divided by ``loss_scale`` first; weight decay follows ``nn.Optimizer`` groups.
    """

    def __init__(self, params, learning_rate=1e-3, beta1=0.98, beta2=0.92, beta3=0.99, eps=1e-8, weight_decay=0.0,
                 loss_scale=1.0):
        super().__init__(learning_rate, params, weight_decay)
        set_loss_scale(self, loss_scale)
        if not all(0.0 <= beta < 1.0 for beta in (beta1, beta2, beta3)):
            raise ValueError(f"Adan needs 0 <= beta1, beta2, beta3 < 1, got {beta1}, {beta2}, {beta3}.")
        if eps <= 0:
            raise ValueError(f"Adan needs eps > 0, got {eps}.")
        self.beta1, self.beta2, self.beta3 = (Tensor(np.array([beta], np.float32)) for beta in (beta1, beta2, beta3))
        self.eps = Tensor(np.array([eps], np.float32))
        self.moments = self._parameters.clone(prefix="adan_m", init="zeros")
        self.diff_averages = self._parameters.clone(prefix="adan_v", init="zeros")
        self.squared_averages = self._parameters.clone(prefix="adan_n", init="zeros")
        self.previous_grads = self._parameters.clone(prefix="adan_prev_grad", init="zeros")

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        has_previous = ops.cast(self.global_step > 0, ms.float32)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        step = ops.cast(self.global_step, ms.float32)
        corrections = (1.0 - ops.pow(self.beta1, step), 1.0 - ops.pow(self.beta2, step),
                       1.0 - ops.pow(self.beta3, step))
        # Arguments are spelled out: graph mode compiles neither a partial of a partial nor *-unpacking.
        if self.is_group_lr:
            result = self.hyper_map(
                ops.partial(_adan_update, self.beta1, self.beta2, self.beta3, self.eps, corrections[0],
                            corrections[1], corrections[2], has_previous),
                lr, weight_decay, self._parameters, self.moments, self.diff_averages, self.squared_averages,
                self.previous_grads, gradients, self.decay_flags, self.optim_filter,
            )
        elif self.is_group:
            result = self.hyper_map(
                ops.partial(_adan_update, self.beta1, self.beta2, self.beta3, self.eps, corrections[0],
                            corrections[1], corrections[2], has_previous, lr),
                weight_decay, self._parameters, self.moments, self.diff_averages, self.squared_averages,
                self.previous_grads, gradients, self.decay_flags, self.optim_filter,
            )
        else:
            result = self.hyper_map(
                ops.partial(_adan_update, self.beta1, self.beta2, self.beta3, self.eps, corrections[0],
                            corrections[1], corrections[2], has_previous, lr, weight_decay),
                self._parameters, self.moments, self.diff_averages, self.squared_averages, self.previous_grads,
                gradients, self.decay_flags, self.optim_filter,
            )
        if self.use_parallel:
            self.broadcast_params(result)
        return result
