"""PVTv2: parameter counts, mindcv's names, numerical parity with timm, both checkpoint layouts, any input size."""
import numpy as np
import pytest
from safetensors.numpy import save_file

import mindspore as ms
from mindspore import ops

from conftest import golden_logits, reference_input, reference_state, reference_table
from mindcv_lite import create_model, list_models
from mindcv_lite.models import read_checkpoint
from mindcv_lite.models.layers import PatchConv2d
from mindcv_lite.models.layers.pool import adaptive_avg_pool
from mindcv_lite.models.pvt_v2 import PyramidVisionTransformerV2, checkpoint_filter_fn

# timm's trainable-parameter counts (issue #5).
PARAM_COUNTS = {
    "pvt_v2_b0": 3_666_760,
    "pvt_v2_b1": 14_009_000,
    "pvt_v2_b2": 25_362_856,
    "pvt_v2_b3": 45_238_696,
    "pvt_v2_b4": 62_556_072,
    "pvt_v2_b5": 81_956_008,
    "pvt_v2_b2_li": 22_553_512,
}


def _num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.trainable_params())


def _images(size, batch=1, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32))


def test_all_variants_registered():
    assert list_models("pvt_v2_*") == sorted(PARAM_COUNTS)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_equals_timm(name):
    assert _num_params(create_model(name)) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v2_b1"])
def test_parameter_names_and_shapes_are_mindcv_s(name):
    ours = sorted((p.name, tuple(p.shape)) for p in create_model(name).get_parameters())
    reference = sorted((r["name"], tuple(int(s) for s in r["shape"].strip("[]").split(","))) for r in
                       reference_table("mindcv", name))
    assert ours == reference


@pytest.mark.parametrize("kernel, stride, size", [(7, 4, 30), (3, 2, 15), (3, 2, 8)])
def test_overlapping_patch_conv_pads_symmetrically_like_pytorch(kernel, stride, size, mode):
    """Equals Conv2d(padding=k//2) with explicit symmetric padding, at odd and even sizes."""
    conv = PatchConv2d(4, 6, kernel, stride, padding=kernel // 2)
    x = np.random.default_rng(0).standard_normal((2, size, size, 4)).astype(np.float32)
    ours = conv(ms.Tensor(x)).asnumpy()
    reference = ops.conv2d(ms.Tensor(x.transpose(0, 3, 1, 2)), conv.weight, conv.bias, stride=stride,
                           pad_mode="pad", padding=kernel // 2).asnumpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


def assert_reproduces_timm_logits(model):
    model.set_train(False)
    logits = model(ms.Tensor(reference_input())).asnumpy()
    reference = golden_logits("torch", "pvt_v2_b0")
    assert np.abs(logits - reference).max() / np.abs(reference).max() <= 2e-5


def test_timm_layout_reproduces_timm_logits(tmp_path, mode):
    path = tmp_path / "pvt_v2_b0.safetensors"
    save_file(reference_state("torch", "pvt_v2_b0"), str(path))
    assert_reproduces_timm_logits(create_model("pvt_v2_b0", checkpoint_path=str(path)))


def test_mindcv_layout_checkpoint_round_trips_to_timm_logits(tmp_path):
    """Our .ckpt holds exactly mindcv's keys and shapes, and that layout reproduces the timm logits."""
    timm_path = tmp_path / "timm.safetensors"
    save_file(reference_state("torch", "pvt_v2_b0"), str(timm_path))
    ckpt_path = tmp_path / "mindcv_layout.ckpt"
    ms.save_checkpoint(create_model("pvt_v2_b0", checkpoint_path=str(timm_path)), str(ckpt_path))
    entries = read_checkpoint(ckpt_path)
    table = reference_table("mindcv", "pvt_v2_b0")
    assert sorted((k, tuple(v.shape)) for k, v in entries.items()) == \
        sorted((r["name"], tuple(int(s) for s in r["shape"].strip("[]").split(","))) for r in table)

    assert_reproduces_timm_logits(create_model("pvt_v2_b0", checkpoint_path=str(ckpt_path)))


def test_mindcv_recipe_weights_load_strictly(tmp_path):
    state = reference_state("mindcv", "pvt_v2_b0")
    path = tmp_path / "pvt_v2_b0.ckpt"
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], str(path))
    model = create_model("pvt_v2_b0", checkpoint_path=str(path))
    loaded = {p.name: p.asnumpy() for p in model.get_parameters()}
    assert set(loaded) == set(state)
    assert all(np.array_equal(loaded[k], state[k]) for k in state)


def test_authors_keys_are_mapped():
    keys = ["patch_embed1.proj.weight", "block2.1.mlp.dwconv.dwconv.bias", "norm4.weight", "block1.0.norm1.weight",
            "stages.2.downsample.norm.bias", "stages.0.blocks.1.mlp.dwconv.weight", "patch_embed.norm.weight"]
    mapped = list(checkpoint_filter_fn(dict.fromkeys(keys), None))
    assert mapped == ["patch_embed_list.0.proj.weight", "block_list.1.1.mlp.dwconv.dwconv.bias", "norm_list.3.weight",
                      "block_list.0.0.norm1.weight", "patch_embed_list.2.norm.bias",
                      "block_list.0.1.mlp.dwconv.dwconv.weight", "patch_embed_list.0.norm.weight"]


@pytest.mark.parametrize("name, size", [("pvt_v2_b0", 96), ("pvt_v2_b2_li", 64)])
def test_any_input_size(name, size, mode):
    model = create_model(name, num_classes=5)
    model.set_train(False)
    assert model(_images(size)).shape == (1, 5)


@pytest.mark.parametrize("height, width", [(14, 28), (9, 30), (2, 2)])
def test_linear_sr_pool_matches_adaptive_avg_pool(height, width, mode):
    """Both paths (sizes divisible by 7, and not) equal MindSpore's AdaptiveAvgPool2D, gradients too."""
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, height, width, 3)).astype(np.float32))

    def ours(x):
        return adaptive_avg_pool(x, 7)

    def reference(x):
        return ops.adaptive_avg_pool2d(x.transpose(0, 3, 1, 2), 7).transpose(0, 2, 3, 1)

    def ours_loss(x):
        return (ours(x) ** 2).sum()

    def reference_loss(x):
        return (reference(x) ** 2).sum()

    np.testing.assert_allclose(ours(x).asnumpy(), reference(x).asnumpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ms.grad(ours_loss)(x).asnumpy(), ms.grad(reference_loss)(x).asnumpy(), rtol=1e-5,
                               atol=1e-6)


def test_bad_stage_arguments_are_rejected():
    with pytest.raises(ValueError, match="4 entries"):
        PyramidVisionTransformerV2(depths=(2, 2, 2))
