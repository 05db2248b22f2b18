"""Fine-tuning: layer-wise lr decay, freezing, recompute, a shortened recipe through train(), and the mindcv keys
aug_splits, resume_opt and eval_shuffle."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import mindspore as ms
from mindspore import nn

from _image_folders import make_image_folder
from mindcv_lite import create_model
from mindcv_lite.engine import train
from mindcv_lite.engine.evaluate import create_eval_loader
from mindcv_lite.engine.trainer import _check_args, _create_train_loader
from mindcv_lite.models import read_checkpoint, save_checkpoint
from mindcv_lite.models.pvt_v2 import PyramidVisionTransformerV2
from mindcv_lite.optim import create_optimizer, freeze_parameters
from mindcv_lite.utils.config import parse_args

# Layer of each parameter-name prefix, worked out by hand from the architectures (timm's rule: stem 0, blocks in
# order, a downsampling embedding with the block after it, a stage norm with the block before it, head last).
LAYERS = {
    # pit_ti: depths (2, 6, 4) -> 12 blocks, L = 14
    "pit_ti": (14, {"pos_embed": 0, "cls_token": 0, "patch_embed.": 0, "transformers.0.blocks.0.": 1,
                    "transformers.0.blocks.1.": 2, "pools.0.": 3, "transformers.1.blocks.0.": 3,
                    "transformers.1.blocks.5.": 8, "pools.1.": 9, "transformers.2.blocks.3.": 12, "norm.": 13,
                    "head.": 13}),
    # pvt_tiny: depths (2, 2, 2, 2) -> 8 blocks, L = 10
    "pvt_tiny": (10, {"patch_embed1.": 0, "pos_embed1": 0, "cls_token": 0, "Blocks.0.0.": 1, "Blocks.0.1.": 2,
                      "patch_embed2.": 3, "pos_embed2": 3, "Blocks.1.0.": 3, "pos_embed4": 7, "Blocks.3.1.": 8,
                      "norm.": 9, "head.": 9}),
    # pvt_v2_b0: depths (2, 2, 2, 2) -> 8 blocks, L = 10
    "pvt_v2_b0": (10, {"patch_embed_list.0.": 0, "block_list.0.0.": 1, "block_list.0.1.": 2, "norm_list.0.": 2,
                       "patch_embed_list.1.": 3, "block_list.3.1.": 8, "norm_list.3.": 8, "head.": 9}),
}


def _expected_layer(name, prefixes):
    matches = [layer for prefix, layer in prefixes.items() if name.startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


@pytest.mark.parametrize("model_name", sorted(LAYERS))
def test_layer_decay_group_lrs_match_hand_computed_layers(model_name):
    num_layers, prefixes = LAYERS[model_name]
    model = create_model(model_name, num_classes=5)
    optimizer = create_optimizer(model, "adamw", lr=[1.0, 0.5], weight_decay=0.1, layer_decay=0.5,
                                 weight_decay_filter="norm_and_bias")
    no_decay = model.no_weight_decay()
    checked = set()
    for param, weight_decay in zip(optimizer._parameters, optimizer.weight_decay):
        layer = _expected_layer(param.name, prefixes)
        if layer is not None:
            scale = 0.5 ** (num_layers - 1 - layer)
            np.testing.assert_allclose(optimizer.get_lr_parameter(param).asnumpy(), [scale, 0.5 * scale],
                                       rtol=1e-6, err_msg=param.name)
            checked.add(next(prefix for prefix in prefixes if param.name.startswith(prefix)))
        exempt = param.ndim <= 1 or any(key in param.name for key in no_decay)
        assert float(weight_decay) == pytest.approx(0.0 if exempt else 0.1), param.name
    assert checked == set(prefixes)  # every hand-computed entry met a parameter


def test_layer_decay_exempts_norms_and_biases_as_mindcv_does_under_the_default_filter():
    # mindcv's create_optimizer (and timm's) put 1-D parameters in no-decay groups whenever layer_decay is set.
    model = create_model("pvt_v2_b0", num_classes=5)
    optimizer = create_optimizer(model, "adamw", lr=1.0, weight_decay=0.1, layer_decay=0.9)
    for param, weight_decay in zip(optimizer._parameters, optimizer.weight_decay):
        assert float(weight_decay) == pytest.approx(0.0 if param.ndim <= 1 else 0.1), param.name
    assert float(optimizer.get_lr_parameter(model.head.weight).asnumpy()) == pytest.approx(1.0)
    assert float(optimizer.get_lr_parameter(model.stages[0].patch_embed.proj.weight).asnumpy()) == pytest.approx(0.9**9)


@pytest.mark.parametrize("model_name, stages, frozen_prefixes", [
    ("pit_ti", 1, ("pos_embed", "cls_token", "patch_embed.", "transformers.0.")),
    ("pvt_tiny", 2, ("patch_embed1.", "pos_embed1", "cls_token", "Blocks.0.", "patch_embed2.", "pos_embed2",
                     "Blocks.1.")),
    ("pvt_v2_b0", 1, ("patch_embed_list.0.", "block_list.0.", "norm_list.0.")),
])
def test_freeze_stages_freezes_the_embedding_and_first_stages(model_name, stages, frozen_prefixes):
    model = create_model(model_name, num_classes=5)
    frozen = set(freeze_parameters(model, freeze_stages=stages))
    assert frozen == {p.name for p in model.get_parameters() if p.name.startswith(frozen_prefixes)}
    optimizer = create_optimizer(model, "adamw", lr=1e-3)
    assert frozen.isdisjoint(p.name for p in optimizer.get_parameters())  # no optimizer state for them


def test_freeze_backbone_trains_only_the_classifier():
    model = create_model("pit_ti", num_classes=5)
    freeze_parameters(model, freeze_backbone=True)
    assert {p.name for p in model.trainable_params()} == {"head.weight", "head.bias"}
    with pytest.raises(ValueError, match="has 3 stages"):
        freeze_parameters(create_model("pit_ti", num_classes=5), freeze_stages=4)


class _GradStep(nn.Cell):
    """Loss and gradients as one compiled cell, as the train step computes them."""

    def __init__(self, loss_net, weights):
        super().__init__(auto_prefix=False)
        self.grad_fn = ms.value_and_grad(loss_net, None, weights)

    def construct(self, images, labels):
        return self.grad_fn(images, labels)


def test_recompute_gives_the_same_loss_and_gradients():
    # Graph mode: MindSpore's recompute acts on the compiled graph only.
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        rng = np.random.default_rng(0)
        images = ms.Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
        labels = ms.Tensor(np.array([0, 2], np.int32))
        results = []
        weights = None
        for recompute in (False, True):
            model = PyramidVisionTransformerV2(img_size=32, num_classes=3, depths=(1, 1, 1, 1),
                                               embed_dims=(8, 16, 40, 64))  # small: two graph compiles
            if weights is None:
                weights = {p.name: p.asnumpy() for p in model.get_parameters()}
            for param in model.get_parameters():
                param.set_data(ms.Tensor(weights[param.name]))
            if recompute:
                model.set_grad_checkpointing()
            step = _GradStep(nn.WithLossCell(model, nn.CrossEntropyLoss()), model.trainable_params())
            step.set_train(True)
            loss, grads = step(images, labels)
            results.append((float(loss.asnumpy()), [g.asnumpy() for g in grads]))
    finally:
        ms.set_context(mode=previous)
    (loss, grads), (loss_rc, grads_rc) = results
    assert loss_rc == pytest.approx(loss, rel=1e-6)
    assert len(grads) == len(grads_rc)
    for g, g_rc in zip(grads, grads_rc):
        np.testing.assert_allclose(g_rc, g, rtol=1e-4, atol=1e-6)


def test_shortened_recipe_with_frozen_stages_and_layer_decay_trains(tmp_path, caplog):
    # A recipe's 10 warmup epochs in a 1-epoch fine-tune: one warning, then training; frozen weights stay
    # bit-identical, the others move; curves.png is drawn.
    data_dir = make_image_folder(tmp_path / "data", num_classes=3, per_class=4, size=(32, 32), ext=".png")
    model = create_model("pit_ti", num_classes=3, img_size=32)
    initial = {p.name: p.asnumpy().copy() for p in model.get_parameters()}
    save_checkpoint(model, str(tmp_path / "init.ckpt"))
    run_dir = tmp_path / "run"
    args = parse_args([
        "--data_dir", str(data_dir), "--ckpt_save_dir", str(run_dir), "--model", "pit_ti", "--image_resize", "32",
        "--batch_size", "4", "--epoch_size", "1", "--warmup_epochs", "10", "--decay_epochs", "490", "--opt", "adamw",
        "--lr", "1e-3", "--num_parallel_workers", "1", "--device_target", "CPU", "--mode", "0", "--hflip", "0",
        "--scale", "1", "1", "--ratio", "1", "1", "--color_jitter", "0", "--ckpt_path", str(tmp_path / "init.ckpt"),
        "--freeze_stages", "2", "--layer_decay", "0.75", "--warmup_factor", "0.5",
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        train(args)
    assert len([r for r in caplog.records if "longer than the run" in r.getMessage()]) == 1
    trained = create_model("pit_ti", num_classes=3, img_size=32, checkpoint_path=str(run_dir / "pit_ti-1_3.ckpt"))
    frozen = ("pos_embed", "cls_token", "patch_embed.", "transformers.0.", "transformers.1.", "pools.0.")
    for param in trained.get_parameters():
        if param.name.startswith(frozen):
            np.testing.assert_array_equal(param.asnumpy(), initial[param.name], err_msg=param.name)
        elif param.name.startswith(("head.", "transformers.2.blocks.3.mlp")):
            assert not np.array_equal(param.asnumpy(), initial[param.name]), param.name
    moments = [key for key in read_checkpoint(str(run_dir / "pit_ti-1_3.ckpt")) if key.startswith("adam_m.")]
    assert len(moments) == sum(not name.startswith(frozen) for name in initial)  # no state for frozen weights
    assert (run_dir / "curves.png").stat().st_size > 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())  # the new keys reproduce the run
    assert (saved["layer_decay"], saved["freeze_stages"], saved["freeze_backbone"], saved["recompute"]) == \
        (0.75, 2, False, False)

    # mindcv's resume_opt with ckpt_path continues that run (here: already finished) instead of starting anew.
    args.ckpt_path, args.resume_opt = str(run_dir / "pit_ti-1_3.ckpt"), True
    with caplog.at_level(logging.INFO):
        assert train(args) == {}
    assert any("Nothing to do: the checkpoint already finished epoch 1" in r.getMessage() for r in caplog.records)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["resume"] == str(run_dir / "pit_ti-1_3.ckpt")


_CPU = SimpleNamespace(device_target="CPU", distributed=False, world_size=1, rank=0)


def _folder_args(data_dir, *extra):
    return parse_args(["--data_dir", str(data_dir), "--image_resize", "32", "--batch_size", "4", "--seed", "7",
                       "--num_parallel_workers", "1", "--device_target", "CPU", *extra])


def _first_batch(loader):
    images, labels = next(loader.create_tuple_iterator(num_epochs=1))
    return images.asnumpy(), labels.asnumpy()


def test_aug_splits_feeds_a_clean_and_two_auto_augmented_views_of_each_sample(tmp_path):
    data_dir = make_image_folder(tmp_path, splits=("train",), num_classes=2, per_class=4, size=(32, 32))
    recipe = ("--hflip", "0.5", "--color_jitter", "0")
    split = _folder_args(data_dir, *recipe, "--aug_splits", "3", "--auto_augment", "randaug-m9-mstd0.5",
                         "--re_prob", "0.5")
    images, labels = _first_batch(_create_train_loader(split, _CPU)[1])
    plain_images, plain_labels = _first_batch(_create_train_loader(_folder_args(data_dir, *recipe), _CPU)[1])
    assert images.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(labels, np.tile(plain_labels, 3))
    # the clean third is the same crops and flips without auto_augment or erasing; the other two differ apart
    np.testing.assert_array_equal(images[:4], plain_images)
    assert not np.array_equal(images[4:8], images[8:]) and not np.array_equal(images[:4], images[4:8])
    with pytest.raises(ValueError, match="set auto_augment"):
        _check_args(_folder_args(data_dir, "--aug_splits", "3"), _CPU)


def test_recompute_in_graph_mode_on_cpu_says_it_saves_little_memory(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("mindcv_lite.engine.runtime._warned", set())
    with caplog.at_level(logging.WARNING):
        _check_args(_folder_args(tmp_path, "--recompute", "--mode", "1"), _CPU)
        assert not [r for r in caplog.records if "recompute" in r.getMessage()]
        _check_args(_folder_args(tmp_path, "--recompute", "--mode", "0"), _CPU)
    assert [r for r in caplog.records if "recompute saves little memory in graph mode" in r.getMessage()]


def test_resume_opt_needs_ckpt_path_and_excludes_resume(tmp_path):
    with pytest.raises(ValueError, match="set ckpt_path"):
        _check_args(_folder_args(tmp_path, "--resume_opt"), _CPU)
    with pytest.raises(ValueError, match="not both"):
        _check_args(_folder_args(tmp_path, "--resume_opt", "--ckpt_path", "a.ckpt", "--resume", "auto"), _CPU)


def test_eval_shuffle_reads_the_validation_set_in_a_seeded_shuffled_order(tmp_path):
    data_dir = make_image_folder(tmp_path, splits=("val",), num_classes=4, per_class=3, size=(32, 32))

    def labels(*extra):
        loader = create_eval_loader(_folder_args(data_dir, "--batch_size", "12", *extra), _CPU, "val")[1]
        return _first_batch(loader)[1]

    in_order, shuffled = labels(), labels("--eval_shuffle", "True")
    np.testing.assert_array_equal(in_order, np.repeat(np.arange(4), 3))
    assert sorted(shuffled) == sorted(in_order) and not np.array_equal(shuffled, in_order)
    np.testing.assert_array_equal(labels("--eval_shuffle", "True"), shuffled)  # the same order every time
