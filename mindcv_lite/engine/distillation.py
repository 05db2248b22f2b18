"""Knowledge distillation's teacher: checked settings, loaded weights, frozen inside the compiled train step.

The teacher is built at the student's image size (PiT resamples its position embedding on load, PVT v1 at run
time, PVTv2 has none), so it sees exactly the student's (mixed, augmented) batch: no resize. Its parameters are
renamed `teacher.*`, never trained, never in the optimizer, EMA or gradient all-reduce, and left out of the
training checkpoints (resume reloads the teacher from `teacher_ckpt`).
"""
import os

from mindspore import nn, ops

from ..loss import DISTILLATION_TYPES
from ..models import create_model, is_model, read_checkpoint
from ..models.checkpoint import checkpoint_num_classes, load_state, model_state

__all__ = ["TEACHER_PREFIX", "FrozenTeacher", "check_distillation_args", "create_teacher"]

TEACHER_PREFIX = "teacher."
_DEFAULT_ALPHA, _DEFAULT_TAU = 0.5, 1.0


def check_distillation_args(args):
    """Refuse inconsistent distillation settings before anything is built or trained."""
    kind = args.distillation_type
    if kind == "none":
        set_anyway = [f"{key}={getattr(args, key)!r}" for key, unset in (
            ("teacher_model", ""), ("teacher_ckpt", ""), ("distillation_alpha", _DEFAULT_ALPHA),
            ("distillation_tau", _DEFAULT_TAU)) if getattr(args, key) != unset]
        if set_anyway:
            raise ValueError(f"distillation_type is none but {', '.join(set_anyway)} given: set distillation_type "
                             "soft or hard to distil, or remove the distillation settings")
        return
    if kind not in DISTILLATION_TYPES:
        raise ValueError(f"distillation_type must be none, soft or hard, got {kind!r}")
    if not args.teacher_model:
        raise ValueError(f"distillation_type {kind} needs a teacher: set teacher_model (any registered model, e.g. "
                         "pvt_v2_b2) and teacher_ckpt (its trained weights)")
    if not is_model(args.teacher_model):
        raise ValueError(f"teacher_model {args.teacher_model!r} is not a registered model (see "
                         "mindcv_lite.list_models())")
    if not args.teacher_ckpt:
        raise ValueError(f"teacher_model {args.teacher_model} has no teacher_ckpt: a teacher with random weights "
                         "teaches noise. Set teacher_ckpt to its trained weights (mindcv, timm/PyTorch or ours)")
    if not os.path.isfile(args.teacher_ckpt):
        raise FileNotFoundError(f"teacher_ckpt {args.teacher_ckpt!r} does not exist")
    if not 0.0 <= args.distillation_alpha <= 1.0:
        raise ValueError(f"distillation_alpha must be in [0, 1], got {args.distillation_alpha}")
    if args.distillation_tau <= 0:
        raise ValueError(f"distillation_tau must be > 0, got {args.distillation_tau}")


class FrozenTeacher(nn.Cell):
    """`teacher(images)` -> the teacher's logits, always in inference mode and without gradient."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        model.update_parameters_name(TEACHER_PREFIX)  # never mistaken for (or clashing with) the student's
        for param in model.get_parameters():
            param.requires_grad = False
        self.model = model
        self.set_train(False)

    def add_flags_recursive(self, **flags):
        # The train step's set_train(True) reaches every sub-cell through here: the teacher must stay in
        # inference mode (no dropout / drop-path), whatever the student does.
        if "training" in flags:
            flags["training"] = False
        return super().add_flags_recursive(**flags)

    def construct(self, images):
        return ops.stop_gradient(self.model(images))


def create_teacher(model_name, checkpoint_path, num_classes, image_size, in_channels=3):
    """The teacher with its trained weights, for `num_classes` classes at the student's `image_size`."""
    model = create_model(model_name, num_classes=num_classes, in_channels=in_channels, img_size=image_size)
    state = model_state(model, read_checkpoint(checkpoint_path))
    teacher_classes = checkpoint_num_classes(model, state)
    if teacher_classes is not None and teacher_classes != num_classes:
        raise ValueError(f"teacher_ckpt {checkpoint_path!r} classifies {teacher_classes} classes, the student "
                         f"{num_classes}: distil from a teacher trained (or fine-tuned) on the student's classes")
    load_state(model, state, checkpoint_path)
    return FrozenTeacher(model)
