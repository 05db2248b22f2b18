"""One optimisation step as one compiled cell, and one evaluation step.

`TrainStep` does forward, backward, the gradient all-reduce (data parallel), loss scaling, gradient clipping,
gradient accumulation, the optimizer update and the EMA update, and with knowledge distillation the teacher's
forward pass on the same batch. Its state (loss scale, EMA weights, accumulated gradients) lives in Parameters,
so a checkpoint of the cell's parameters (without the teacher's) resumes it exactly.
"""
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore.amp import all_finite

from ..utils.memory import ReleasesCompilerMemory

__all__ = ["EvalStep", "TrainStep"]

_scale_grad = ops.MultitypeFuncGraph("scale_grad")


@_scale_grad.register("Tensor", "Tensor")
def _scale_one_grad(scale, grad):
    return grad * ops.cast(scale, grad.dtype)


_ema_update = ops.MultitypeFuncGraph("ema_update")


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_one(decay, ema, weight):
    return ops.assign(ema, ema * decay + (1.0 - decay) * weight)


_zero = ops.MultitypeFuncGraph("zero")


@_zero.register("Tensor")
def _zero_one(param):
    return ops.assign(param, ops.zeros_like(param))


def _float32(outputs):
    """Logits (a tensor or a tuple of them) in float32: under amp_level O2/O3 the network returns float16, and the
    loss is computed in float32 (as mindcv's loss wrapper does)."""
    return ops.functional.mixed_precision_cast(ms.float32, outputs)


class TrainStep(ReleasesCompilerMemory):
    """`step(images, labels)` -> (loss, overflow): one training step of `network` under `loss_fn`.

    Loss scaling: the loss is multiplied by `scale_sense` before backward and the gradients divided by it
    afterwards, here rather than in the optimizer, so that clipping sees true gradients. With
    `dynamic_loss_scale` a step whose gradients overflow is skipped and the scale divided by `scale_factor`;
    after `scale_window` good steps it is multiplied by it (MindSpore's DynamicLossScaleManager rule).
    `drop_overflow_update` skips overflowing steps under a fixed scale too. `overflow` is False when unchecked.

    Gradient accumulation: call with `update=False` for the first `accumulation_steps - 1` batches and
    `update=True` for the last; the update uses the mean gradient. EMA (mindcv's rule):
    `ema = d * ema + (1 - d) * w` with `d = ema_decay * (1 - exp(-updates / 2000))`, over all network weights.

    Distillation: `teacher` (a `FrozenTeacher`) gives logits for the same images, and the loss is called as
    `loss_fn(outputs, labels, teacher_logits)`; the gradients, their all-reduce, the optimizer and EMA cover the
    student's weights only.
    """

    def __init__(self, network, loss_fn, optimizer, loss_scale=1.0, dynamic_loss_scale=False,
                 drop_overflow_update=False, scale_factor=2.0, scale_window=2000, clip_grad=False, clip_value=15.0,
                 accumulation_steps=1, ema=False, ema_decay=0.9999, distributed=False, teacher=None):
        # auto_prefix=False: wrapping must not rename the network's parameters to `network.*` (MindSpore 2.10
        # renames on attachment), or checkpoints would no longer match the bare model.
        super().__init__(auto_prefix=False)
        if accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {accumulation_steps}")
        self.network = network
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.teacher = teacher
        loss_with_scale = self._scaled_loss if teacher is None else self._scaled_distillation_loss
        self.grad_fn = ops.value_and_grad(loss_with_scale, None, self.weights)
        # Without the reducer each rank would silently step on its own gradients.
        self.grad_reducer = nn.DistributedGradReducer(self.weights, mean=True) if distributed else ops.identity
        self.hyper_map = ops.HyperMap()

        self.scale_sense = Parameter(Tensor(loss_scale, ms.float32), name="scale_sense", requires_grad=False)
        self.dynamic_loss_scale = dynamic_loss_scale
        self.check_overflow = dynamic_loss_scale or drop_overflow_update
        self.scale_factor = Tensor(scale_factor, ms.float32)
        self.scale_window = scale_window
        if dynamic_loss_scale:
            self.loss_scale_good_steps = Parameter(Tensor(0, ms.int32), name="loss_scale_good_steps",
                                                   requires_grad=False)
        self.no_overflow = Tensor(False)

        self.clip_grad = clip_grad
        self.clip_value = clip_value
        self.accumulation_steps = accumulation_steps
        if accumulation_steps > 1:
            self.accumulated_grads = self.weights.clone(prefix="train.accum_grad", init="zeros")

        self.ema = ema
        if ema:
            self.ema_decay = ema_decay
            self.ema_source = ParameterTuple(network.get_parameters())
            self.ema_weights = self.ema_source.clone(prefix="ema", init="same")
            self.ema_updates = Parameter(Tensor(0.0, ms.float32), name="train.ema_updates", requires_grad=False)

    def _scaled_loss(self, images, labels):
        loss = self.loss_fn(_float32(self.network(images)), labels)
        return loss * self.scale_sense.astype(loss.dtype)

    def _scaled_distillation_loss(self, images, labels, teacher_logits):
        loss = self.loss_fn(_float32(self.network(images)), labels, _float32(teacher_logits))
        return loss * self.scale_sense.astype(loss.dtype)

    def construct(self, images, labels, update=True):
        scale = self.scale_sense
        if self.teacher is None:
            scaled_loss, grads = self.grad_fn(images, labels)
        else:
            scaled_loss, grads = self.grad_fn(images, labels, self.teacher(images))
        loss = scaled_loss / scale.astype(scaled_loss.dtype)
        grads = self.grad_reducer(grads)
        grads = self.hyper_map(ops.partial(_scale_grad, 1.0 / scale), grads)
        if self.accumulation_steps > 1:
            self.hyper_map(ops.assign_add, self.accumulated_grads, grads)
            if not update:
                return loss, self.no_overflow
            grads = self.hyper_map(ops.partial(_scale_grad, Tensor(1.0 / self.accumulation_steps, ms.float32)),
                                   self.accumulated_grads)
        overflow = self.no_overflow
        if self.check_overflow:
            overflow = ops.logical_not(all_finite(grads))
            if self.dynamic_loss_scale:
                self._update_loss_scale(overflow)
            if not overflow:
                loss = ops.depend(loss, self._apply(grads))
        else:
            loss = ops.depend(loss, self._apply(grads))
        if self.accumulation_steps > 1:
            loss = ops.depend(loss, self.hyper_map(_zero, self.accumulated_grads))
        return loss, overflow

    def _apply(self, grads):
        if self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.clip_value)
        done = self.optimizer(grads)
        if self.ema:
            updates = ops.depend(self.ema_updates + 1.0, done)
            done = ops.assign(self.ema_updates, updates)
            decay = self.ema_decay * (1.0 - ops.exp(-updates / 2000.0))
            done = ops.depend(done, self.hyper_map(ops.partial(_ema_update, decay), self.ema_weights,
                                                   self.ema_source))
        return done

    def _update_loss_scale(self, overflow):
        scale = self.scale_sense
        good_steps = self.loss_scale_good_steps + 1
        grow = good_steps >= self.scale_window
        new_scale = ops.select(overflow, ops.maximum(scale / self.scale_factor, ops.ones_like(scale)),
                               ops.select(grow, scale * self.scale_factor, scale))
        new_good_steps = ops.select(ops.logical_or(overflow, grow), ops.zeros_like(good_steps), good_steps)
        ops.assign(self.loss_scale_good_steps, new_good_steps)
        return ops.assign(self.scale_sense, new_scale)


class EvalStep(ReleasesCompilerMemory):
    """`step(images, labels)` -> (summed loss, top-1 hits, top-k hits) of one batch; k = min(5, classes)."""

    def __init__(self, network, loss_fn, num_classes):
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn
        self.k = min(5, num_classes)

    def construct(self, images, labels):
        logits = self.network(images).astype(ms.float32)
        loss = self.loss_fn(logits, labels) * labels.shape[0]
        _, top = ops.topk(logits, self.k)
        hits = ops.equal(top, labels.reshape(-1, 1).astype(top.dtype))
        return loss, hits[:, 0].sum(), hits.any(axis=1).sum()
