"""The base of the optimizers that keep Adam's two moments (AdamW, Lamb, NAdam): state, checks, loss scale, and the
one ``hyper_map`` over the parameters, so that each optimizer only writes its per-parameter update.

Adan keeps four per-parameter states and Lion one, so they do not fit this shape and stay on their own.
"""
import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

__all__ = ["AdamMoments", "adamw_direction", "next_moments", "set_loss_scale", "write_back"]


def set_loss_scale(optimizer: nn.Optimizer, loss_scale: float) -> None:
    """Make ``optimizer.scale_grad`` divide gradients by ``loss_scale``, leaving weight decay alone.

    ``nn.Optimizer(loss_scale=...)`` also multiplies weight decay by the loss scale, which is right for optimizers
    that add the decay to the still-scaled gradient, and wrong here: these optimizers apply weight decay themselves,
    after the gradients are unscaled.
    """
    if loss_scale <= 0:
        raise ValueError(f"loss_scale must be positive, got {loss_scale}.")
    optimizer.loss_scale = float(loss_scale)
    optimizer.reciprocal_scale = Tensor(1.0 / loss_scale, ms.float32)
    optimizer.need_scale = loss_scale != 1.0


def next_moments(beta1, beta2, m, v, grad_fp32):
    """Adam's moment updates in float32: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``."""
    next_m = beta1 * ops.cast(m, ms.float32) + (1.0 - beta1) * grad_fp32
    next_v = beta2 * ops.cast(v, ms.float32) + (1.0 - beta2) * ops.square(grad_fp32)
    return next_m, next_v


def adamw_direction(coefficients, weight_decay, param_fp32, m, v, grad, decay_flag):
    """AdamW's step direction ``m_hat / (sqrt(v_hat) + eps) + weight_decay * p`` (decay when ``decay_flag``), with
    the new moments: (direction, next_m, next_v). ``coefficients`` are :meth:`AdamMoments.step_coefficients`'."""
    beta1, beta2, eps, bias_correction1, bias_correction2 = coefficients
    next_m, next_v = next_moments(beta1, beta2, m, v, ops.cast(grad, ms.float32))
    direction = (next_m / bias_correction1) / (ops.sqrt(next_v / bias_correction2) + eps)
    if decay_flag:
        direction = direction + weight_decay * param_fp32
    return direction, next_m, next_v


def write_back(next_param, param, m, v, next_m, next_v):
    """Assign the new parameter and moments (in their own dtypes); returns the new parameter."""
    next_param = ops.depend(next_param, ops.assign(param, ops.cast(next_param, param.dtype)))
    next_param = ops.depend(next_param, ops.assign(m, ops.cast(next_m, m.dtype)))
    next_param = ops.depend(next_param, ops.assign(v, ops.cast(next_v, v.dtype)))
    return ops.cast(next_param, param.dtype)


class AdamMoments(nn.Optimizer):
    """Adam-moment optimizer: ``<prefix>_m.<param>`` and ``<prefix>_v.<param>`` per parameter, ``beta2_power`` and a
    first-moment power (``beta1_power`` for Adam's bias correction) as state, with ``global_step`` and
    ``learning_rate``. Gradients are divided by ``loss_scale`` first. Weight decay follows ``nn.Optimizer``: per
    group when ``params`` are groups, otherwise skipping parameters whose names contain 'beta' or 'gamma'.

    A subclass sets ``update``, an ``ops.MultitypeFuncGraph`` called per parameter as
    ``update(coefficients, lr, weight_decay, param, m, v, grad, decay_flag, optim_filter)``, where
    ``coefficients`` is the tuple ``step_coefficients()`` returns for the step (by default
    ``(beta1, beta2, eps, 1 - beta1^t, 1 - beta2^t)``, Adam's bias corrections).
    """

    update = None

    def __init__(self, params, learning_rate, beta1, beta2, eps, weight_decay, loss_scale, state_prefix,
                 first_moment_power="beta1_power"):
        super().__init__(learning_rate, params, weight_decay)
        set_loss_scale(self, loss_scale)
        name = type(self).__name__
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"{name} needs 0 <= beta1, beta2 < 1, got beta1={beta1}, beta2={beta2}.")
        if eps <= 0:
            raise ValueError(f"{name} needs eps > 0, got {eps}.")
        self.beta1 = Tensor(np.array([beta1], np.float32))
        self.beta2 = Tensor(np.array([beta2], np.float32))
        self.eps = Tensor(np.array([eps], np.float32))
        self.moments1 = self._parameters.clone(prefix=f"{state_prefix}_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix=f"{state_prefix}_v", init="zeros")
        self.first_moment_power = Parameter(initializer(1.0, [1], ms.float32), name=first_moment_power)
        self.beta2_power = Parameter(initializer(1.0, [1], ms.float32), name="beta2_power")

    @staticmethod
    def advance(power, factor):
        """``power *= factor``; returns the new value."""
        value = power * factor
        ops.assign(power, value)
        return value

    def step_coefficients(self):
        """Adam's: the betas, eps and the bias corrections ``1 - beta^t`` of this step."""
        beta1_power = self.advance(self.first_moment_power, self.beta1)
        beta2_power = self.advance(self.beta2_power, self.beta2)
        return self.beta1, self.beta2, self.eps, 1.0 - beta1_power, 1.0 - beta2_power

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        coefficients = self.step_coefficients()
        # Per-group lr and weight decay are mapped with the parameters; graph mode compiles no partial of a partial.
        if self.is_group_lr:
            result = self.hyper_map(ops.partial(self.update, coefficients), lr, weight_decay, self._parameters,
                                    self.moments1, self.moments2, gradients, self.decay_flags, self.optim_filter)
        elif self.is_group:
            result = self.hyper_map(ops.partial(self.update, coefficients, lr), weight_decay, self._parameters,
                                    self.moments1, self.moments2, gradients, self.decay_flags, self.optim_filter)
        else:
            result = self.hyper_map(ops.partial(self.update, coefficients, lr, weight_decay), self._parameters,
                                    self.moments1, self.moments2, gradients, self.decay_flags, self.optim_filter)
        if self.use_parallel:
            self.broadcast_params(result)
        return result
