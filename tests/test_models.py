"""Every registered model through the same contract (timm's sweep): build, names and counts against the reference
tables, forward and backward in pynative mode (and in graph mode for one model per set of cells), and the uniform
model interface. Nothing here is specific to a family: a registered family is swept by being registered."""
import functools

import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from conftest import reference_table
from mindcv_lite import create_model, list_models
from mindcv_lite.models import model_entrypoint

ALL_MODELS = list_models()
# pvt_v2_b1..b5 differ from b0 only in width and depth (b2_li has its own code paths): the forward/backward sweep
# takes b0 and b2_li, the others run forward only; test_pvt_v2.py checks all their parameter counts.
SWEEP_MODELS = list_models(exclude_filters=["pvt_v2_b[1-5]"])
DEEPER_VARIANTS = sorted(set(ALL_MODELS) - set(SWEEP_MODELS))
# Small inputs keep the sweep fast: 64 suits every family (a multiple of 32 that PiT's patch stride tiles).
SWEEP_IMG_SIZE = 64
NUM_CLASSES = 7

# The reference implementations' trainable-parameter counts (issue #2, from timm / whai362/PVT).
PARAM_COUNTS = {
    "pit_ti": 4_847_272,
    "pit_xs": 10_618_888,
    "pit_s": 23_461_912,
    "pit_b": 73_764_840,
    "pit_ti_distilled": 5_104_336,
    "pvt_tiny": 13_229_288,
    "pvt_small": 24_485_864,
    "pvt_medium": 44_208_104,
    "pvt_large": 61_369_320,
}
MINDCV_TABLES = ["pit_ti", "pit_xs", "pit_s", "pit_b", "pvt_tiny", "pvt_small", "pvt_medium", "pvt_large"]
TORCH_TABLES = {"pit_ti": "pit_ti_224", "pit_xs": "pit_xs_224", "pit_s": "pit_s_224", "pit_b": "pit_b_224",
                "pit_ti_distilled": "pit_ti_distilled_224", "pit_s_distilled": "pit_s_distilled_224",
                "pvt_tiny": "pvt_tiny", "pvt_small": "pvt_small", "pvt_medium": "pvt_medium", "pvt_large": "pvt_large"}


def _small_model(name, **kwargs):
    return create_model(name, num_classes=NUM_CLASSES, img_size=SWEEP_IMG_SIZE, **kwargs)


@functools.lru_cache(maxsize=None)
def _default_model(name):
    """The 224x224 ImageNet model, built once per name for the read-only tests (pit_b takes seconds)."""
    return create_model(name)


@functools.lru_cache(maxsize=None)
def _sweep_model(name):
    """The small model the forward/backward sweep trains in both modes (the modes do not interfere)."""
    return _small_model(name)


def _cell_signature(name):
    """What graph compilation of a model depends on: its family, the kinds of cells it is built from and its heads."""
    model = _sweep_model(name)
    heads = model.get_classifier()
    return (model_entrypoint(name).__module__, frozenset(type(c).__name__ for _, c in model.cells_and_names()),
            len(heads) if isinstance(heads, tuple) else 1)


@functools.lru_cache(maxsize=None)
def _graph_representative(name):
    """The smallest sweep model built from the same cells as `name`: compiling each variant in graph mode costs
    minutes and tests nothing more than one of them does (pynative still runs every model)."""
    if name not in SWEEP_MODELS:
        return name
    same = [other for other in SWEEP_MODELS if _cell_signature(other) == _cell_signature(name)]
    return min(same, key=lambda other: (_num_params(_sweep_model(other)), other))


def _num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.trainable_params())


def _table_size(rows):
    return sum(int(np.prod([int(s) for s in r["shape"].strip("[]").split(",") if s.strip()])) for r in rows)


def test_registry_holds_both_families():
    assert set(ALL_MODELS) >= set(PARAM_COUNTS) | {"pit_xs_distilled", "pit_s_distilled", "pit_b_distilled"}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_equals_reference(name):
    assert _num_params(_default_model(name)) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(TORCH_TABLES))
def test_parameter_count_equals_pytorch_state_dict(name):
    assert _num_params(_default_model(name)) == _table_size(reference_table("torch", TORCH_TABLES[name]))


@pytest.mark.parametrize("name", MINDCV_TABLES)
def test_parameter_names_and_shapes_are_mindcv_attribute_paths(name):
    """Names are attribute paths, never the prefix-less names an appended CellList gives."""
    ours = [(p.name, list(p.shape)) for p in _default_model(name).get_parameters()]
    reference = [(r["attr_path"], [int(s) for s in r["shape"].strip("[]").split(",")]) for r in
                 reference_table("mindcv", name)]
    assert sorted(ours) == sorted(reference)


@pytest.mark.parametrize("name", SWEEP_MODELS)
def test_forward_backward_every_parameter_gets_a_gradient(name, mode):
    if mode == ms.GRAPH_MODE and _graph_representative(name) != name:
        pytest.skip(f"graph mode is compiled for {_graph_representative(name)}, built from the same cells")
    model = _sweep_model(name)
    model.set_train(True)
    size = SWEEP_IMG_SIZE
    images = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    labels = ms.Tensor(np.array([1, 5], np.int32))
    params = model.trainable_params()

    def loss_fn(x, y):
        logits = model(x)
        return ops.cross_entropy(logits, y), logits

    grad_fn = ms.value_and_grad(loss_fn, None, params, has_aux=True)
    (loss, logits), grads = grad_fn(images, labels)
    assert logits.shape == (2, NUM_CLASSES)
    assert np.isfinite(logits.asnumpy()).all() and np.isfinite(loss.asnumpy())
    without_gradient = [p.name for p, g in zip(params, grads)
                        if not np.isfinite(g.asnumpy()).all() or not np.any(g.asnumpy())]
    assert not without_gradient


@pytest.mark.parametrize("name", DEEPER_VARIANTS)
def test_deeper_variants_forward(name):
    model = create_model(name, num_classes=NUM_CLASSES, img_size=32)
    model.set_train(False)
    logits = model(ms.Tensor(np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32))).asnumpy()
    assert logits.shape == (1, NUM_CLASSES) and np.isfinite(logits).all()


@pytest.mark.parametrize("name", ["pit_ti", "pvt_tiny", "pit_ti_distilled"])
def test_eval_forward_is_deterministic_and_finite(name, mode):
    model = _small_model(name, drop_rate=0.3, drop_path_rate=0.2)
    model.set_train(False)
    size = SWEEP_IMG_SIZE
    x = ms.Tensor(np.random.default_rng(1).standard_normal((3, 3, size, size)).astype(np.float32))
    first, second = model(x).asnumpy(), model(x).asnumpy()
    assert first.shape == (3, NUM_CLASSES) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_stochastic_depth_and_dropout_act_in_training():
    model = _small_model("pit_ti", drop_rate=0.3, drop_path_rate=0.3)
    model.set_train(True)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32))
    assert not np.allclose(model(x).asnumpy(), model(x).asnumpy())


@pytest.mark.parametrize("name", SWEEP_MODELS)
def test_uniform_interface(name):
    """Classifier heads, no_weight_decay and feature_info of every model (read off the built model; the forward
    passes of the contract run once per set of cells, below)."""
    model = _sweep_model(name)
    classifiers = model.get_classifier()
    classifiers = classifiers if isinstance(classifiers, tuple) else (classifiers,)
    assert all(c.weight.shape == (NUM_CLASSES, model.num_features) for c in classifiers)
    assert len(classifiers) == (2 if name.endswith("_distilled") else 1)

    names = {p.name for p in model.get_parameters()}
    tokens_and_embeddings = {n for n in names if "pos_embed" in n or "cls_token" in n}
    assert tokens_and_embeddings <= set(model.no_weight_decay()) <= names

    assert [info["num_chs"] for info in model.feature_info][-1] == model.num_features
    reductions = [info["reduction"] for info in model.feature_info]
    assert reductions == sorted(reductions)


@pytest.mark.parametrize("name", SWEEP_MODELS)
def test_forward_head_and_reset_classifier(name):
    if _graph_representative(name) != name:
        pytest.skip(f"runs for {_graph_representative(name)}, built from the same cells")
    model = _small_model(name)
    model.set_train(False)
    size = SWEEP_IMG_SIZE
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32))
    features = model.forward_features(x)
    assert features.shape[0] == 2 and features.shape[-1] == model.num_features
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    logits = model(x).asnumpy()
    assert logits.shape == (2, NUM_CLASSES) and np.isfinite(logits).all()
    np.testing.assert_allclose(model.forward_head(features).asnumpy(), logits, rtol=1e-6, atol=1e-6)

    names = {p.name for p in model.get_parameters()}
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert {p.name for p in model.get_parameters()} == names, "reset_classifier changed parameter names"
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


def test_kwargs_that_are_none_are_ignored_and_unknown_ones_rejected():
    model = create_model("pvt_tiny", num_classes=4, img_size=None, drop_rate=None, drop_path_rate=None)
    assert model.grid_sizes[0] == 56
    with pytest.raises(TypeError, match="drop_rat"):
        create_model("pvt_tiny", drop_rat=0.1)


def test_in_channels_changes_first_convolution():
    model = create_model("pit_ti", in_channels=1, img_size=64, num_classes=2)
    assert model.patch_embed.conv.weight.shape == (64, 1, 16, 16)
    assert model(ms.Tensor(np.zeros((1, 1, 64, 64), np.float32))).shape == (1, 2)


@pytest.mark.parametrize("name, img_size, grid", [("pit_ti", 256, 31), ("pvt_tiny", 256, 64)])
def test_img_size_builds_model_for_another_resolution(name, img_size, grid):
    model = create_model(name, img_size=img_size, num_classes=2)
    embed = model.pos_embed if name.startswith("pit") else model.pos_embed1
    assert grid in embed.shape or embed.shape[1] == grid * grid
    model.set_train(False)
    assert model(ms.Tensor(np.zeros((1, 3, img_size, img_size), np.float32))).shape == (1, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(img_size=100), "divisible by 32"),
])
def test_pvt_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("pvt_tiny", **kwargs)


def test_pit_rejects_input_of_another_size_with_the_fix():
    model = create_model("pit_ti", img_size=64, num_classes=2)
    with pytest.raises(ValueError, match="img_size=96"):
        model(ms.Tensor(np.zeros((1, 3, 96, 96), np.float32)))
