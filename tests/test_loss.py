"""Losses against numpy computations of the textbook formulas, in graph and pynative mode."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv_lite.loss import create_loss

RNG = np.random.default_rng(0)
NUM_CLASSES = 5
LOGITS = RNG.standard_normal((4, NUM_CLASSES)).astype(np.float32) * 2
LABELS = np.array([0, 2, 4, 1], np.int32)
SOFT = RNG.random((4, NUM_CLASSES)).astype(np.float32)
SOFT /= SOFT.sum(axis=1, keepdims=True)  # mixup-like target distributions
CLASS_WEIGHT = np.array([1.0, 2.0, 0.5, 3.0, 1.5], np.float32)


def _log_softmax(x):
    x = x.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _smoothed(targets, smoothing):
    return targets * (1 - smoothing) + smoothing / NUM_CLASSES


def _ce_reference(logits, targets, smoothing=0.0):
    """Per-sample cross-entropy against (smoothed) target distributions."""
    return -(_smoothed(targets, smoothing) * _log_softmax(logits)).sum(axis=1)


def _bce_reference(logits, targets, smoothing=0.0, weight=1.0):
    """Per-element sigmoid binary cross-entropy, in the numerically stable form."""
    x, t = logits.astype(np.float64), _smoothed(targets, smoothing)
    return weight * (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))


def _loss(loss, logits, labels):
    return float(loss(Tensor(logits), Tensor(labels)).asnumpy())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_with_integer_labels(mode, smoothing):
    loss = create_loss("CE", label_smoothing=smoothing)
    expected = _ce_reference(LOGITS, np.eye(NUM_CLASSES)[LABELS], smoothing).mean()
    assert _loss(loss, LOGITS, LABELS) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_with_soft_targets_smooths_them_once(mode, smoothing):
    loss = create_loss("ce", label_smoothing=smoothing)
    assert _loss(loss, LOGITS, SOFT) == pytest.approx(_ce_reference(LOGITS, SOFT, smoothing).mean(), rel=1e-5)


def test_ce_reductions(mode):
    per_sample = _ce_reference(LOGITS, np.eye(NUM_CLASSES)[LABELS], 0.1)
    assert _loss(create_loss(reduction="sum", label_smoothing=0.1), LOGITS, LABELS) == pytest.approx(
        per_sample.sum(), rel=1e-5)
    none = create_loss(reduction="none", label_smoothing=0.1)(Tensor(LOGITS), Tensor(LABELS)).asnumpy()
    np.testing.assert_allclose(none, per_sample, rtol=1e-5)


def test_ce_class_weight_normalises_by_label_weights(mode):
    # PyTorch's (and MindSpore's) definition: sum_i w[y_i] * nll_i / sum_i w[y_i].
    nll = -_log_softmax(LOGITS)[np.arange(4), LABELS]
    expected = (CLASS_WEIGHT[LABELS] * nll).sum() / CLASS_WEIGHT[LABELS].sum()
    assert _loss(create_loss("CE", weight=CLASS_WEIGHT), LOGITS, LABELS) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_bce_one_hot_encodes_integer_labels(mode, smoothing):
    loss = create_loss("bce", label_smoothing=smoothing)
    expected = _bce_reference(LOGITS, np.eye(NUM_CLASSES)[LABELS], smoothing).mean()
    assert _loss(loss, LOGITS, LABELS) == pytest.approx(expected, rel=1e-5)


def test_bce_with_soft_targets_and_class_weight(mode):
    loss = create_loss("BCE", label_smoothing=0.1, weight=CLASS_WEIGHT)
    expected = _bce_reference(LOGITS, SOFT, 0.1, CLASS_WEIGHT).mean()
    assert _loss(loss, LOGITS, SOFT) == pytest.approx(expected, rel=1e-5)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="focal"):
        create_loss("focal")
    with pytest.raises(ValueError, match="reduction"):
        create_loss("CE", reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        create_loss("CE", label_smoothing=1.5)
