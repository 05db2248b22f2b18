"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"); MindSpore 2.10 has no nn.Lion."""
import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from .adam_moments import set_loss_scale

__all__ = ["Lion"]

_lion_update = ops.MultitypeFuncGraph("lion_update")


@_lion_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _update_param(beta1, beta2, lr, weight_decay, param, m, grad, decay_flag, optim_filter):
    """One Lion step for one parameter, computed in float32 whatever the parameter's dtype."""
    if not optim_filter:
        return grad
    param_fp32 = ops.cast(param, ms.float32)
    grad_fp32 = ops.cast(grad, ms.float32)
    m_fp32 = ops.cast(m, ms.float32)
    update = ops.sign(beta1 * m_fp32 + (1.0 - beta1) * grad_fp32)
    if decay_flag:
        update = update + weight_decay * param_fp32
    next_param = param_fp32 - lr * update
    next_m = beta2 * m_fp32 + (1.0 - beta2) * grad_fp32
    next_param = ops.depend(next_param, ops.assign(param, ops.cast(next_param, param.dtype)))
    next_param = ops.depend(next_param, ops.assign(m, ops.cast(next_m, m.dtype)))
    return ops.cast(next_param, param.dtype)


class Lion(nn.Optimizer):
    """Lion: ``p -= lr * (sign(beta1 * m + (1 - beta1) * g) + weight_decay * p)``, ``m = beta2 * m + (1 - beta2) * g``.

    Use a learning rate 3-10x smaller and a weight decay 3-10x larger than for AdamW. State parameters:
    ``lion_m.<param>``, ``global_step`` and ``learning_rate``. Gradients are divided by ``loss_scale`` first;
    weight decay follows ``nn.Optimizer`` as in :class:`AdamW`.
    """

    def __init__(self, params, learning_rate=2e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, loss_scale=1.0):
        super().__init__(learning_rate, params, weight_decay)
        set_loss_scale(self, loss_scale)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"Lion needs 0 <= beta1, beta2 < 1, got beta1={beta1}, beta2={beta2}.")
        self.beta1 = Tensor(np.array([beta1], np.float32))
        self.beta2 = Tensor(np.array([beta2], np.float32))
        self.moments = self._parameters.clone(prefix="lion_m", init="zeros")

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        # Arguments are spelled out: graph mode compiles neither a partial of a partial nor *-unpacking.
        if self.is_group_lr:
            result = self.hyper_map(
                ops.partial(_lion_update, self.beta1, self.beta2),
                lr, weight_decay, self._parameters, self.moments, gradients, self.decay_flags, self.optim_filter,
            )
        elif self.is_group:
            result = self.hyper_map(
                ops.partial(_lion_update, self.beta1, self.beta2, lr),
                weight_decay, self._parameters, self.moments, gradients, self.decay_flags, self.optim_filter,
            )
        else:
            result = self.hyper_map(
                ops.partial(_lion_update, self.beta1, self.beta2, lr, weight_decay),
                self._parameters, self.moments, gradients, self.decay_flags, self.optim_filter,
            )
        if self.use_parallel:
            self.broadcast_params(result)
        return result
