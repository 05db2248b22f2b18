"""Knowledge distillation (DeiT): the loss against numpy, the frozen teacher inside the train step, train.py runs
that distil (a student learns a teacher's answers, exact resume, bad settings stop before training); under msrun:
test_msrun.py's two-node run distils."""
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import mindspore as ms
from mindspore import Tensor, nn

from _image_folders import make_image_folder
from mindcv_lite.data import create_dataset, create_loader, create_transforms
from mindcv_lite.engine import TrainStep, save_train_checkpoint, train
from mindcv_lite.engine.distillation import create_teacher
from mindcv_lite.loss import DistillationLoss, create_loss
from mindcv_lite.models import create_model, read_checkpoint, save_checkpoint
from mindcv_lite.utils.config import parse_args

RNG = np.random.default_rng(0)
NUM_CLASSES = 5
CLASS_LOGITS = RNG.standard_normal((4, NUM_CLASSES)).astype(np.float32) * 2
DIST_LOGITS = RNG.standard_normal((4, NUM_CLASSES)).astype(np.float32) * 2
TEACHER_LOGITS = RNG.standard_normal((4, NUM_CLASSES)).astype(np.float32) * 3
LABELS = np.array([0, 2, 4, 1], np.int32)
MIXED = RNG.random((4, NUM_CLASSES)).astype(np.float32)
MIXED /= MIXED.sum(axis=1, keepdims=True)  # mixup/cutmix-like targets


def _log_softmax(x):
    x = x.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _deit_loss(class_logits, dist_logits, teacher_logits, targets, kind, alpha, tau, smoothing):
    """DeiT's losses.py in numpy: base cross-entropy (smoothed, soft targets) mixed with the distillation term."""
    if targets.ndim == 1:
        targets = np.eye(NUM_CLASSES)[targets]
    targets = targets * (1 - smoothing) + smoothing / NUM_CLASSES
    base = -(targets * _log_softmax(class_logits)).sum(axis=1).mean()
    if kind == "soft":
        # F.kl_div(log_softmax(s/T), log_softmax(t/T), reduction='sum', log_target=True) * T * T / s.numel()
        student, teacher = _log_softmax(dist_logits / tau), _log_softmax(teacher_logits / tau)
        distillation = (np.exp(teacher) * (teacher - student)).sum() * tau * tau / dist_logits.size
    else:
        distillation = -_log_softmax(dist_logits)[np.arange(len(dist_logits)), teacher_logits.argmax(axis=1)].mean()
    return base * (1 - alpha) + distillation * alpha


class TwoHeads(nn.Cell):
    """Builds the (class, distillation) logits tuple inside the graph, as a distilled model returns it."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def construct(self, class_logits, dist_logits, targets, teacher_logits):
        return self.loss((class_logits, dist_logits), targets, teacher_logits)


@pytest.mark.parametrize("kind, alpha, tau, targets, smoothing", [
    ("soft", 0.5, 1.0, LABELS, 0.0), ("soft", 0.3, 3.0, MIXED, 0.1), ("hard", 0.5, 1.0, LABELS, 0.1),
    ("hard", 0.7, 1.0, MIXED, 0.0)], ids=["soft", "soft-tau3-mixup-smoothed", "hard-smoothed", "hard-mixup"])
def test_loss_matches_deit_formula(mode, kind, alpha, tau, targets, smoothing):
    loss = DistillationLoss(create_loss("CE", label_smoothing=smoothing), kind, alpha=alpha, tau=tau)
    two_heads = float(TwoHeads(loss)(Tensor(CLASS_LOGITS), Tensor(DIST_LOGITS), Tensor(targets),
                                     Tensor(TEACHER_LOGITS)).asnumpy())
    expected = _deit_loss(CLASS_LOGITS, DIST_LOGITS, TEACHER_LOGITS, targets, kind, alpha, tau, smoothing)
    assert two_heads == pytest.approx(expected, rel=1e-5)
    one_head = float(loss(Tensor(CLASS_LOGITS), Tensor(targets), Tensor(TEACHER_LOGITS)).asnumpy())
    expected = _deit_loss(CLASS_LOGITS, CLASS_LOGITS, TEACHER_LOGITS, targets, kind, alpha, tau, smoothing)
    assert one_head == pytest.approx(expected, rel=1e-5)  # an ordinary model distils on its only head


def test_loss_refuses_bad_settings():
    base = create_loss("CE")
    with pytest.raises(ValueError, match="distillation_type must be one of soft, hard"):
        DistillationLoss(base, "none")
    with pytest.raises(ValueError, match="distillation_alpha"):
        DistillationLoss(base, "soft", alpha=1.5)
    with pytest.raises(ValueError, match="distillation_tau"):
        DistillationLoss(base, "soft", tau=0.0)


def _student_and_teacher(tmp_path, teacher_name="pvt_v2_b0"):
    """pit_ti student and a teacher whose dropout would show if it ran in training mode, at 32 px."""
    teacher = create_model(teacher_name, num_classes=3, img_size=32, drop_rate=0.5)
    teacher_ckpt = str(tmp_path / "teacher.ckpt")
    save_checkpoint(teacher, teacher_ckpt)
    student = create_model("pit_ti", num_classes=3, img_size=32)
    return student, create_teacher(teacher_name, teacher_ckpt, 3, 32), teacher_ckpt


def test_teacher_is_frozen_in_the_train_step_and_absent_from_its_checkpoint(tmp_path, pynative):
    student, teacher, _ = _student_and_teacher(tmp_path)
    loss_fn = DistillationLoss(create_loss("CE", label_smoothing=0.1), "soft", alpha=0.5, tau=2.0)
    optimizer = nn.AdamWeightDecay(student.trainable_params(), learning_rate=1e-3)
    step = TrainStep(student, loss_fn, optimizer, ema=True, teacher=teacher)
    step.set_train(True)
    assert student.training and not any(cell.training for _, cell in teacher.cells_and_names())
    teacher_before = {p.name: p.asnumpy().copy() for p in teacher.get_parameters()}
    assert teacher_before and all(name.startswith("teacher.") for name in teacher_before)
    assert not {id(p) for p in teacher.get_parameters()} & {id(p) for p in optimizer.parameters + step.ema_weights}

    images = Tensor(RNG.standard_normal((4, 3, 32, 32)).astype(np.float32))
    labels = Tensor(MIXED[:, :3] / MIXED[:, :3].sum(axis=1, keepdims=True))
    # the step's loss is the DeiT loss against the teacher's inference-mode logits of the same images
    expected = float(loss_fn(student(images), labels, teacher.model(images)).asnumpy())
    student_before = student.trainable_params()[0].asnumpy().copy()
    loss, _ = step(images, labels)
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-5)
    assert not np.array_equal(student.trainable_params()[0].asnumpy(), student_before)
    for param in teacher.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), teacher_before[param.name], err_msg=param.name)

    save_train_checkpoint(str(tmp_path / "student.ckpt"), step, student, "pit_ti", 1, 2, ["a", "b", "c"])
    saved = read_checkpoint(str(tmp_path / "student.ckpt"))
    assert not [key for key in saved if "teacher" in key]
    assert len([k for k in saved if k.startswith("ema.")]) == len(list(student.get_parameters()))
    create_model("pit_ti", num_classes=3, img_size=32, checkpoint_path=str(tmp_path / "student.ckpt"))  # strict


# --- train.py runs -------------------------------------------------------------------------------------------------
STUDENT_EPOCHS = 8


def _train_args(data_dir, ckpt_dir, model, epochs, *extra):
    return parse_args([
        "--data_dir", str(data_dir), "--ckpt_save_dir", str(ckpt_dir), "--model", model, "--image_resize", "32",
        "--batch_size", "4", "--epoch_size", str(epochs), "--warmup_epochs", "0", "--decay_epochs", str(epochs),
        "--opt", "adamw", "--lr", "2e-3", "--num_parallel_workers", "1", "--device_target", "CPU", "--mode", "0",
        "--hflip", "0", "--scale", "1", "1", "--ratio", "1", "1", "--color_jitter", "0", "--log_interval", "100",
        "--keep_checkpoint_max", "2", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def student_data(tmp_path_factory):
    return Path(make_image_folder(tmp_path_factory.mktemp("student_data"), splits=("train",), num_classes=3,
                                  per_class=8, size=(32, 32), ext=".png"))


def _training_batch(data_dir):
    """All training images as the (augmentation-free) training pipeline feeds them, and their labels."""
    dataset = create_dataset("imagenet", root=str(data_dir), split="train", shuffle=False, num_parallel_workers=1)
    transform = create_transforms("imagenet", image_resize=32, is_training=True, scale=(1, 1), ratio=(1, 1), hflip=0,
                                  color_jitter=0)
    loader = create_loader(dataset, 64, drop_remainder=False, is_training=True, num_classes=3, transform=transform,
                           num_parallel_workers=1)
    images, labels = next(loader.create_tuple_iterator())
    return images, labels.asnumpy()


@pytest.fixture(scope="module")
def teacher_ckpt(student_data, tmp_path_factory):
    """A pit_ti that answers with the classes rotated (class_0's images -> class_1, ...), so a student that agrees
    with it learnt from the teacher, not from the labels. Its head is fitted by least squares on its own (random)
    features of the training images: training a teacher would cost a graph compilation."""
    images, labels = _training_batch(student_data)
    teacher = create_model("pit_ti", num_classes=3, img_size=32)
    teacher.set_train(False)
    features = teacher.forward_head(teacher.forward_features(images), pre_logits=True).asnumpy().astype(np.float64)
    design = np.hstack([features, np.ones((len(features), 1))])
    solution = np.linalg.lstsq(design, np.eye(3)[(labels + 1) % 3] * 4 - 2, rcond=None)[0]
    teacher.head.weight.set_data(Tensor(solution[:-1].T.astype(np.float32)))
    teacher.head.bias.set_data(Tensor(solution[-1].astype(np.float32)))
    np.testing.assert_array_equal(teacher(images).asnumpy().argmax(axis=1), (labels + 1) % 3)
    path = tmp_path_factory.mktemp("teacher") / "rotated_pit_ti.ckpt"
    save_checkpoint(teacher, str(path))
    return path


def _distill_args(data_dir, ckpt_dir, teacher_ckpt, epochs, *extra):
    """Hard distillation alone (alpha 1: the labels do not train the distillation head, nor compete with the
    teacher for the shared tokens), with EMA, dynamic loss scaling and updates from 2 batches of 2."""
    return _train_args(data_dir, ckpt_dir, "pit_ti_distilled", epochs, "--distillation_type", "hard",
                       "--distillation_alpha", "1.0", "--teacher_model", "pit_ti", "--teacher_ckpt",
                       str(teacher_ckpt), "--ema", "True",
                       "--batch_size", "2", "--gradient_accumulation_steps", "2", "--loss_scale_type", "dynamic",
                       "--loss_scale", "1024", "--lr", "1e-3", *extra)


@pytest.fixture(scope="module")
def distill_run(student_data, teacher_ckpt, tmp_path_factory):
    """8 epochs in graph mode; the resume test reruns the last one (one graph compilation each)."""
    ckpt_dir = tmp_path_factory.mktemp("student")
    train(_distill_args(student_data, ckpt_dir, teacher_ckpt, STUDENT_EPOCHS))
    return ckpt_dir


def test_distilled_pit_learns_the_teachers_answers(student_data, teacher_ckpt, distill_run):
    """The distillation head answers as the teacher does, not as the labels say."""
    images, labels = _training_batch(student_data)
    teacher = create_model("pit_ti", num_classes=3, img_size=32, checkpoint_path=str(teacher_ckpt))
    student = create_model("pit_ti_distilled", num_classes=3, img_size=32,
                           checkpoint_path=str(distill_run / f"pit_ti_distilled-{STUDENT_EPOCHS}_12.ckpt"))
    teacher.set_train(False)
    student.set_train(False)
    teacher_answers = teacher(images).asnumpy().argmax(axis=1)
    distillation_head = student.head_dist(student.forward_features(images)[:, 1]).asnumpy().argmax(axis=1)
    assert (distillation_head == teacher_answers).mean() > 0.9
    assert (distillation_head == labels).mean() < 0.5  # it learnt the teacher's (rotated) answers, not the labels

    config = yaml.safe_load((distill_run / "config.yaml").read_text())
    assert (config["distillation_type"], config["teacher_model"], config["distillation_alpha"]) == ("hard", "pit_ti",
                                                                                                   1.0)
    saved = read_checkpoint(str(distill_run / f"pit_ti_distilled-{STUDENT_EPOCHS}_12.ckpt"))
    assert "head_dist.weight" in saved and not [key for key in saved if "teacher" in key]


def test_distillation_resumes_exactly(student_data, teacher_ckpt, distill_run, tmp_path):
    """The last epoch again from the checkpoint before it (teacher reloaded from teacher_ckpt): same weights,
    optimizer moments, EMA and loss scale."""
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(distill_run, resumed_dir)
    final = f"pit_ti_distilled-{STUDENT_EPOCHS}_12.ckpt"
    os.remove(resumed_dir / final)
    train(_distill_args(student_data, resumed_dir, teacher_ckpt, STUDENT_EPOCHS, "--resume",
                        str(resumed_dir / f"pit_ti_distilled-{STUDENT_EPOCHS - 1}_12.ckpt")))
    full, resumed = read_checkpoint(str(distill_run / final)), read_checkpoint(str(resumed_dir / final))
    assert sorted(full) == sorted(resumed)
    for key, value in full.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(resumed[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("extra, message", [
    (("--teacher_model", "pit_ti"), "distillation_type is none but teacher_model='pit_ti' given"),
    (("--distillation_alpha", "0.7"), "distillation_type is none but distillation_alpha=0.7 given"),
    (("--distillation_type", "soft"), "distillation_type soft needs a teacher"),
    (("--distillation_type", "soft", "--teacher_model", "pit_tiny"), "'pit_tiny' is not a registered model"),
    (("--distillation_type", "hard", "--teacher_model", "pit_ti"), "a teacher with random weights"),
    (("--distillation_type", "hard", "--teacher_model", "pit_ti", "--teacher_ckpt", "nowhere.ckpt"),
     "'nowhere.ckpt' does not exist"),
    (("--distillation_type", "soft", "--teacher_model", "pit_ti", "--teacher_ckpt", "{five_classes}"),
     "classifies 5 classes, the student 3"),
], ids=["none-with-teacher", "none-with-alpha", "no-teacher", "unknown-teacher", "no-ckpt", "missing-ckpt",
        "other-classes"])
def test_inconsistent_settings_stop_before_training(student_data, tmp_path, extra, message):
    five_classes = str(tmp_path / "five_classes.ckpt")
    if "{five_classes}" in extra:
        save_checkpoint(create_model("pit_ti", num_classes=5, img_size=32), five_classes)
    extra = [value.format(five_classes=five_classes) for value in extra]
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        train(_train_args(student_data, tmp_path / "run", "pit_ti", 1, *extra))
    assert not (tmp_path / "run" / "config.yaml").exists()
