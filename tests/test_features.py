"""Backbones for dense prediction: `create_model(name, features_only=True, out_indices=...)`."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from mindcv_lite import create_model, save_checkpoint
from mindcv_lite.models import CheckpointMismatchError


def _images(size, batch=1, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32))


def _shapes(outputs):
    return [tuple(o.shape[1:]) for o in outputs]


@pytest.mark.parametrize("name, size, out_indices, expected", [
    ("pvt_tiny", 224, None, [(64, 56, 56), (128, 28, 28), (320, 14, 14), (512, 7, 7)]),
    ("pit_ti", 224, None, [(64, 27, 27), (128, 14, 14), (256, 7, 7)]),
    ("pvt_tiny", 256, (1,), [(128, 32, 32)]),
    ("pvt_v2_b0", 224, (0, -1), [(32, 56, 56), (256, 7, 7)]),
])
def test_feature_maps_are_nchw_with_the_documented_shapes(name, size, out_indices, expected, mode):
    img_size = {} if name.startswith("pvt_v2") else {"img_size": size}
    model = create_model(name, features_only=True, out_indices=out_indices, **img_size)
    model.set_train(False)
    outputs = model(_images(size))
    assert isinstance(outputs, tuple)
    assert _shapes(outputs) == expected
    assert [info["num_chs"] for info in model.feature_info] == [shape[0] for shape in expected]
    for info, shape in zip(model.feature_info, expected):
        assert -(-size // info["reduction"]) in (shape[1], shape[1] + 1)


def test_classifier_checkpoint_loads_into_backbone_head_ignored(tmp_path):
    """PVTv2's pooled features are the mean of the last map: the backbone reproduces the classifier's."""
    classifier = create_model("pvt_v2_b0", num_classes=10)
    path = save_checkpoint(classifier, tmp_path / "classifier.ckpt")
    backbone = create_model("pvt_v2_b0", features_only=True, out_indices=(3,), checkpoint_path=str(path))
    assert not any(p.name.startswith("head.") for p in backbone.get_parameters())
    classifier.set_train(False)
    backbone.set_train(False)
    x = _images(64, batch=2)
    pooled = classifier.forward_head(classifier.forward_features(x), pre_logits=True).asnumpy()
    (last,) = backbone(x)
    np.testing.assert_allclose(last.asnumpy().mean(axis=(2, 3)), pooled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["pit_ti_distilled", "pvt_tiny"])
def test_classifier_weights_land_in_backbone(name, tmp_path):
    classifier = create_model(name, num_classes=4, img_size=64)
    path = save_checkpoint(classifier, tmp_path / "classifier.ckpt")
    backbone = create_model(name, img_size=64, features_only=True, checkpoint_path=str(path))
    expected = {p.name: p.asnumpy() for p in classifier.get_parameters() if not p.name.startswith("head")}
    loaded = {p.name: p.asnumpy() for p in backbone.get_parameters()}
    assert set(loaded) == set(expected)
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)


def test_backbone_checkpoint_of_another_model_is_rejected(tmp_path):
    path = save_checkpoint(create_model("pvt_v2_b0", features_only=True), tmp_path / "b0.ckpt")
    with pytest.raises(CheckpointMismatchError):
        create_model("pvt_v2_b1", features_only=True, checkpoint_path=str(path))


def test_backbone_trains(mode):
    """Gradients reach every stage's parameters through the feature maps."""
    model = create_model("pvt_tiny", img_size=64, features_only=True, out_indices=(0, 3))
    model.set_train(True)
    params = model.trainable_params()

    def loss_fn(x):
        first, last = model(x)
        return first.mean() + (last ** 2).mean()

    grads = ms.grad(loss_fn, None, params)(_images(64, batch=2))
    with_gradient = {p.name for p, g in zip(params, grads) if np.any(g.asnumpy())}
    assert {"patch_embed1.proj.weight", "Blocks.0.0.mlp.fc1.weight", "Blocks.3.1.attn.kv.weight"} <= with_gradient


@pytest.mark.parametrize("kwargs, match", [
    (dict(features_only=True, out_indices=(4,)), "out_indices"),
    (dict(features_only=True, out_indices=(1, 1)), "distinct"),
    (dict(out_indices=(1,)), "features_only=True"),
])
def test_bad_out_indices_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("pvt_v2_b0", **kwargs)


def test_pit_backbone_rejects_input_of_another_size():
    model = create_model("pit_ti", img_size=64, features_only=True)
    with pytest.raises(ValueError, match="img_size=96"):
        model(ops.zeros((1, 3, 96, 96), ms.float32))
