"""DeiT's knowledge-distillation loss (Touvron et al. 2021, `losses.py`), with the teacher's logits passed in.

The teacher itself runs in the train step (`mindcv_lite.engine.distillation`), so this cell stays a pure function
of (student outputs, targets, teacher logits) that a numpy formula can check.
"""
import mindspore as ms
from mindspore import nn, ops

__all__ = ["DISTILLATION_TYPES", "DistillationLoss"]

DISTILLATION_TYPES = ("soft", "hard")


class DistillationLoss(nn.Cell):
    """`(1 - alpha) * base_loss(class_logits, targets) + alpha * distillation_loss(dist_logits, teacher_logits)`.

    `outputs` is a distilled model's `(class_logits, dist_logits)` in training, or one logits tensor that serves as
    both (logit distillation of an ordinary model). The base loss gets the targets unchanged, so label smoothing
    and mixup/cutmix soft targets work as without distillation.
    soft: `KL(softmax(teacher / tau) || softmax(student / tau)) * tau**2`, summed and divided by the number of
    elements of the student's logits (batch x classes), exactly DeiT's normalisation.
    hard: cross-entropy of the distillation head against the teacher's argmax.
    """

    def __init__(self, base_loss, distillation_type, alpha=0.5, tau=1.0):
        super().__init__()
        if distillation_type not in DISTILLATION_TYPES:
            raise ValueError(f"distillation_type must be one of {', '.join(DISTILLATION_TYPES)}, got "
                             f"{distillation_type!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation_alpha must be in [0, 1], got {alpha}")
        if tau <= 0:
            raise ValueError(f"distillation_tau must be > 0, got {tau}")
        self.base_loss = base_loss
        self.soft = distillation_type == "soft"
        self.alpha = alpha
        self.tau = tau

    def construct(self, outputs, targets, teacher_logits):
        if isinstance(outputs, tuple):
            class_logits, dist_logits = outputs
        else:
            class_logits, dist_logits = outputs, outputs
        base = self.base_loss(class_logits, targets)
        dist_logits = dist_logits.astype(ms.float32)
        teacher_logits = ops.stop_gradient(teacher_logits.astype(ms.float32))
        if self.soft:
            student_log_probs = ops.log_softmax(dist_logits / self.tau, axis=-1)
            teacher_log_probs = ops.log_softmax(teacher_logits / self.tau, axis=-1)
            kl = (ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs)).sum()
            distillation = kl * (self.tau * self.tau) / dist_logits.size
        else:
            distillation = ops.cross_entropy(dist_logits, ops.argmax(teacher_logits, dim=-1))
        return (1.0 - self.alpha) * base.astype(ms.float32) + self.alpha * distillation
