"""NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam"), as mindcv's NAdam and torch.optim.NAdam compute it.

MindSpore 2.10 has no NAdam. Weight decay is L2 (added to the gradient), as in mindcv and torch.
"""
import mindspore as ms
from mindspore import Tensor, ops

from .adam_moments import AdamMoments, next_moments, write_back

__all__ = ["NAdam"]

_nadam_update = ops.MultitypeFuncGraph("nadam_update")


@_nadam_update.register("Tuple", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _update_param(coefficients, lr, weight_decay, param, m, v, grad, decay_flag, optim_filter):
    """One NAdam step for one parameter, computed in float32 whatever the parameter's dtype."""
    if not optim_filter:
        return grad
    beta1, beta2, eps, grad_coef, momentum_coef, bias_correction2 = coefficients
    param_fp32 = ops.cast(param, ms.float32)
    grad_fp32 = ops.cast(grad, ms.float32)
    if decay_flag:
        grad_fp32 = grad_fp32 + weight_decay * param_fp32
    next_m, next_v = next_moments(beta1, beta2, m, v, grad_fp32)
    denom = ops.sqrt(next_v / bias_correction2) + eps
    next_param = param_fp32 - lr * (grad_coef * grad_fp32 + momentum_coef * next_m) / denom
    return write_back(next_param, param, m, v, next_m, next_v)


class NAdam(AdamMoments):
    """Adam with Nesterov momentum, momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * schedule_decay))``.

    ``p -= lr * ((1 - mu_t) / (1 - prod mu_1..t) * g + mu_{t+1} / (1 - prod mu_1..t+1) * m) / (sqrt(v_hat) + eps)``,
    with ``g`` the gradient plus ``weight_decay * p`` (L2). State: ``nadam_m.<param>``, ``nadam_v.<param>``,
    ``mu_product``, ``beta2_power``, ``global_step`` and ``learning_rate``; loss scale and weight-decay groups as
    in :class:`AdamMoments`.
    """

    update = _nadam_update

    def __init__(self, params, learning_rate=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 loss_scale=1.0, schedule_decay=4e-3):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, loss_scale, state_prefix="nadam",
                         first_moment_power="mu_product")
        self.schedule_decay = float(schedule_decay)

    def _mu(self, step):
        return self.beta1 * (1.0 - 0.5 * ops.pow(Tensor(0.96, ms.float32), step * self.schedule_decay))

    def step_coefficients(self):
        """The momentum-schedule coefficients of the gradient and of the first moment, and v's bias correction."""
        step = ops.cast(self.global_step, ms.float32)
        mu, mu_next = self._mu(step), self._mu(step + 1.0)
        mu_product = self.advance(self.first_moment_power, mu)
        beta2_power = self.advance(self.beta2_power, self.beta2)
        grad_coef = (1.0 - mu) / (1.0 - mu_product)
        momentum_coef = mu_next / (1.0 - mu_product * mu_next)
        return self.beta1, self.beta2, self.eps, grad_coef, momentum_coef, 1.0 - beta2_power
