"""The model contract's training hooks: layer grouping (layer_ids), grad checkpointing, distilled training."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_lite import create_model
from mindcv_lite.models import layer_ids


def _tiny(name, img_size=64):
    return create_model(name, num_classes=5, img_size=img_size)


@pytest.mark.parametrize("name", ["pit_ti_distilled", "pvt_tiny", "pvt_v2_b2_li"])
@pytest.mark.parametrize("coarse", [False, True])
def test_layer_ids_stem_first_blocks_in_order_head_last(name, coarse):
    model = _tiny(name)
    ids, num_layers = layer_ids(model, coarse=coarse)
    names = [p.name for p in model.get_parameters()]
    assert set(ids) == set(names) and sorted(set(ids.values())) == list(range(num_layers))
    first_conv = model.pretrained_cfg["first_conv"]
    assert ids[model.public_name(f"{first_conv}.weight")] == 0
    assert {ids[n] for n in names if n.startswith(("head.", "head_dist.", "norm."))} == {num_layers - 1}
    # Each block's parameters share one layer, and the layers follow the blocks' forward order.
    block_layers = []
    for block in model.blocks():
        layers = {ids[p.name] for p in block.get_parameters()}
        assert len(layers) == 1
        block_layers.append(layers.pop())
    assert block_layers == sorted(block_layers) and 0 < block_layers[0] and block_layers[-1] < num_layers - 1
    if coarse:
        assert num_layers == len(model.feature_info) + 2
    else:
        assert block_layers == list(range(1, len(model.blocks()) + 1)) and num_layers == len(block_layers) + 2


def _loss_and_grads(model, x, y):
    loss_fn = nn.CrossEntropyLoss()

    def forward(images, labels):
        return loss_fn(model(images), labels)

    grad_fn = ms.value_and_grad(forward, None, model.trainable_params())
    loss, grads = grad_fn(x, y)
    return float(loss.asnumpy()), [g.asnumpy() for g in grads]


def test_grad_checkpointing_gives_the_same_loss_and_grads_in_graph_mode():
    check_grad_checkpointing("pit_ti", image_size=32)


def check_grad_checkpointing(name, image_size):
    """Recompute per block: same loss and gradients as without, in graph mode; and it cannot be switched off."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        plain = _tiny(name, image_size)
        checkpointed = _tiny(name, image_size)
        ms.load_param_into_net(checkpointed, {p.name: ms.Parameter(p.data.copy(), p.name)
                                              for p in plain.get_parameters()})
        checkpointed.set_grad_checkpointing()
        assert all(block._has_config_recompute for block in checkpointed.blocks())  # MindSpore 2.10 attribute
        x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, image_size, image_size)), ms.float32)
        y = ms.Tensor(np.array([1, 3]), ms.int32)
        loss, grads = _loss_and_grads(plain, x, y)
        loss_rc, grads_rc = _loss_and_grads(checkpointed, x, y)
    finally:
        ms.set_context(mode=previous)
    assert loss_rc == pytest.approx(loss, rel=1e-6)
    for g, g_rc in zip(grads, grads_rc):
        np.testing.assert_allclose(g_rc, g, rtol=1e-5, atol=1e-7)
    with pytest.raises(RuntimeError, match="cannot be switched off"):
        checkpointed.set_grad_checkpointing(False)


def test_distilled_training_returns_both_heads_in_training_only():
    model = _tiny("pit_ti_distilled", img_size=32)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)), ms.float32)
    model.set_train(False)
    mean = model(x).asnumpy()
    model.set_distilled_training()
    np.testing.assert_array_equal(model(x).asnumpy(), mean)  # eval unchanged
    model.set_train(True)
    logits, dist_logits = model(x)
    np.testing.assert_allclose((logits.asnumpy() + dist_logits.asnumpy()) / 2, mean, rtol=1e-6, atol=1e-6)
    model.set_distilled_training(False)
    assert isinstance(model(x), ms.Tensor)
    with pytest.raises(ValueError, match="distilled PiT"):
        _tiny("pit_ti", img_size=32).set_distilled_training()
