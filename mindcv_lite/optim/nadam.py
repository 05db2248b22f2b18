"""NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam"), as mindcv's NAdam and torch.optim.NAdam compute it.

MindSpore 2.10 has no NAdam. Weight decay is L2 (added to the gradient), as in mindcv and torch.
"""
import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

__all__ = ["NAdam"]

_nadam_update = ops.MultitypeFuncGraph("nadam_update")


@_nadam_update.register(
    "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
    "Bool",
)
def _update_param(beta1, beta2, eps, grad_coef, momentum_coef, bias_correction2, lr, param, m, v, grad,
                  optim_filter):
    """One NAdam step for one parameter, computed in float32 whatever the parameter's dtype."""
    if not optim_filter:
        return grad
    grad_fp32 = ops.cast(grad, ms.float32)
    next_m = beta1 * ops.cast(m, ms.float32) + (1.0 - beta1) * grad_fp32
    next_v = beta2 * ops.cast(v, ms.float32) + (1.0 - beta2) * ops.square(grad_fp32)
    denom = ops.sqrt(next_v / bias_correction2) + eps
    next_param = ops.cast(param, ms.float32) - lr * (grad_coef * grad_fp32 + momentum_coef * next_m) / denom
    next_param = ops.depend(next_param, ops.assign(param, ops.cast(next_param, param.dtype)))
    next_param = ops.depend(next_param, ops.assign(m, ops.cast(next_m, m.dtype)))
    next_param = ops.depend(next_param, ops.assign(v, ops.cast(next_v, v.dtype)))
    return ops.cast(next_param, param.dtype)


class NAdam(nn.Optimizer):
    """Adam with Nesterov momentum, momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * schedule_decay))``.

    ``p -= lr * ((1 - mu_t) / (1 - prod mu_1..t) * g + mu_{t+1} / (1 - prod mu_1..t+1) * m) / (sqrt(v_hat) + eps)``.
    State parameters: ``nadam_m.<param>``, ``nadam_v.<param>``, ``mu_product``, ``beta2_power``, ``global_step``
    and ``learning_rate``. Gradients are divided by ``loss_scale``; weight decay follows ``nn.Optimizer``.
    """

    def __init__(self, params, learning_rate=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 loss_scale=1.0, schedule_decay=4e-3):
        super().__init__(learning_rate, params, weight_decay, loss_scale)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"NAdam needs 0 <= beta1, beta2 < 1, got beta1={beta1}, beta2={beta2}.")
        if eps <= 0:
            raise ValueError(f"NAdam needs eps > 0, got {eps}.")
        self.beta1 = Tensor(np.array([beta1], np.float32))
        self.beta2 = Tensor(np.array([beta2], np.float32))
        self.eps = Tensor(np.array([eps], np.float32))
        self.schedule_decay = float(schedule_decay)
        self.moments1 = self._parameters.clone(prefix="nadam_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="nadam_v", init="zeros")
        self.mu_product = Parameter(initializer(1.0, [1], ms.float32), name="mu_product")
        self.beta2_power = Parameter(initializer(1.0, [1], ms.float32), name="beta2_power")

    def _mu(self, step):
        return self.beta1 * (1.0 - 0.5 * ops.pow(Tensor(0.96, ms.float32), step * self.schedule_decay))

    def construct(self, gradients):
        gradients = self.decay_weight(gradients)
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        step = ops.cast(self.global_step, ms.float32)
        mu, mu_next = self._mu(step), self._mu(step + 1.0)
        mu_product = self.mu_product * mu
        ops.assign(self.mu_product, mu_product)
        beta2_power = self.beta2_power * self.beta2
        ops.assign(self.beta2_power, beta2_power)
        grad_coef = (1.0 - mu) / (1.0 - mu_product)
        momentum_coef = mu_next / (1.0 - mu_product * mu_next)
        bias_correction2 = 1.0 - beta2_power
        # Arguments are spelled out: graph mode compiles neither a partial of a partial nor *-unpacking.
        if self.is_group_lr:
            result = self.hyper_map(
                ops.partial(_nadam_update, self.beta1, self.beta2, self.eps, grad_coef, momentum_coef,
                            bias_correction2),
                lr, self._parameters, self.moments1, self.moments2, gradients, self.optim_filter,
            )
        else:
            result = self.hyper_map(
                ops.partial(_nadam_update, self.beta1, self.beta2, self.eps, grad_coef, momentum_coef,
                            bias_correction2, lr),
                self._parameters, self.moments1, self.moments2, gradients, self.optim_filter,
            )
        if self.use_parallel:
            self.broadcast_params(result)
        return result
