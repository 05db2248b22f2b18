"""A new model family written here, outside the package, through the documented contract (README "Adding a model
family"): a `VisionModel` subclass, a pretrained config and `@register_model`. The shared sweep, features_only,
layer grouping, grad checkpointing, the checkpoint round trip and ONNX export then work for it untouched."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

import test_export as export_checks
import test_model_contract as contract_checks
import test_models as sweep
from mindcv_lite import create_model, list_models, save_checkpoint
from mindcv_lite.export import export_model
from mindcv_lite.models import VisionModel, layer_ids, register_model
from mindcv_lite.models.helpers import build_model_with_cfg
from mindcv_lite.models.layers import Attention, Block, LayerNorm, Mlp, PatchConv2d
from mindcv_lite.models.registry import pretrained_cfg

NAME = "toy_vit"


class ToyStage(nn.Cell):
    """Strided patch embedding, then plain transformer blocks over the map's tokens."""

    def __init__(self, in_dim, dim, stride, depth, num_heads):
        super().__init__()
        self.patch_embed = PatchConv2d(in_dim, dim, kernel_size=stride, stride=stride)
        self.blocks = nn.CellList([Block(dim, Attention(dim, num_heads), Mlp(dim, 2 * dim)) for _ in range(depth)])

    def construct(self, x, tokens):
        x = self.patch_embed(x)
        batch, height, width, dim = x.shape
        x = x.reshape(batch, height * width, dim)
        for block in self.blocks:
            x = block(x, height, width)
        return x.reshape(batch, height, width, dim), tokens


class ToyViT(VisionModel):
    """Two stages at strides 4 and 8, mean-pooled head."""

    def __init__(self, img_size=64, in_chans=3, num_classes=1000, dims=(16, 32), depths=(1, 2), drop_rate=0.0,
                 drop_path_rate=0.0):
        super().__init__(num_classes, dims[-1])
        in_dims = (in_chans,) + tuple(dims[:-1])
        self.stages = nn.CellList([ToyStage(in_dims[i], dims[i], 4 if i == 0 else 2, depths[i], num_heads=2)
                                   for i in range(len(dims))])
        self.norm = LayerNorm(dims[-1], eps=1e-6)
        self.head = self.create_head(num_classes)
        self.feature_info = [dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}")
                             for i in range(len(dims))]
        self.init_model()

    def forward_stem(self, x):
        return x.transpose(0, 2, 3, 1), None

    def forward_norm(self, x, tokens):
        batch, height, width, dim = x.shape
        return self.norm(x.reshape(batch, height * width, dim))

    def forward_head(self, x, pre_logits=False):
        x = x.mean(axis=1)
        return x if pre_logits else self.head(x)


pretrained_cfgs = {NAME: pretrained_cfg(input_size=(3, 64, 64), first_conv="stages.0.patch_embed")}


@register_model
def toy_vit(pretrained=False, **kwargs):
    return build_model_with_cfg(ToyViT, NAME, pretrained, None, **kwargs)


def test_registered_like_every_model():
    assert NAME in list_models("toy_*")


def test_model_sweep_forward_backward(mode):
    sweep.test_forward_backward_every_parameter_gets_a_gradient(NAME, mode)


def test_model_sweep_uniform_interface():
    sweep.test_uniform_interface(NAME)


def test_features_only_and_classifier_checkpoint(tmp_path):
    classifier = create_model(NAME, num_classes=4)
    backbone = create_model(NAME, features_only=True,
                            checkpoint_path=str(save_checkpoint(classifier, tmp_path / "toy.ckpt")))
    maps = backbone(ms.Tensor(np.zeros((2, 3, 64, 64), np.float32)))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16), (2, 32, 8, 8)]
    backbone_ids, classifier_ids = layer_ids(backbone)[0], layer_ids(classifier)[0]
    assert backbone_ids == {k: v for k, v in classifier_ids.items() if not k.startswith("head.")}


@pytest.mark.parametrize("coarse", [False, True])
def test_layer_grouping(coarse):
    contract_checks.test_layer_ids_stem_first_blocks_in_order_head_last(NAME, coarse)


def test_grad_checkpointing():
    contract_checks.check_grad_checkpointing(NAME, image_size=64)


def test_checkpoint_round_trip(tmp_path):
    model = create_model(NAME, num_classes=3)
    path = save_checkpoint(model, tmp_path / "toy.safetensors")
    loaded = create_model(NAME, num_classes=3, checkpoint_path=str(path))
    assert {p.name: p.asnumpy().tolist() for p in loaded.get_parameters()} == \
        {p.name: p.asnumpy().tolist() for p in model.get_parameters()}


def test_onnx_export(tmp_path):
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        ckpt, images, logits = export_checks._trained_like_checkpoint(NAME, tmp_path)
        path = export_model(NAME, tmp_path / "toy", "ONNX", ckpt_path=str(ckpt), num_classes=export_checks.NUM_CLASSES,
                            image_size=export_checks.SIZE, batch_size=2)
    finally:
        ms.set_context(mode=previous)
    assert export_checks._relative_error(export_checks._run_onnx(path, images), logits) <= 1e-4
