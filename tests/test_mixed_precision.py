"""amp_level / amp_cast_list with mindcv's cell-level rules, checked on CPU on a small pit_ti (pynative)."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn
from mindcv_lite import create_model
from mindcv_lite.engine import TrainStep
from mindcv_lite.engine.mixed_precision import apply_mixed_precision, check_amp_args, parse_cast_list
from mindcv_lite.loss import create_loss
from mindcv_lite.models import layer_ids
from mindcv_lite.models.layers.formulation import portable_formulations
from mindcv_lite.optim import create_optimizer


def _pit(seed=0):
    """pit_ti as on Ascend/GPU, where float16 runs: MindSpore's own operators (the package's CPU kernels are float32
    only, and on CPU the engine keeps float32)."""
    ms.set_seed(seed)
    with portable_formulations():
        model = create_model("pit_ti", num_classes=3, img_size=32)
    model.set_train(False)
    return model


def _images():
    return ms.Tensor(np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32))


def _precision(model, cell_type):
    """The set of mixed-precision types (NOTSET, FP16, FP32) of the `cell_type` cells of `model`."""
    return {cell.get_mixed_precision_type().name for _, cell in model.cells_and_names() if isinstance(cell, cell_type)}


def test_cast_list_reads_mindcvs_syntax_and_names_a_wrong_cell():
    assert parse_cast_list("[nn.Dense, nn.Conv2d]") == (nn.Dense, nn.Conv2d)
    assert parse_cast_list("LayerNorm") == (nn.LayerNorm,)
    with pytest.raises(ValueError, match="'nn.Dens' is not a mindspore.nn cell class: did you mean nn.Dense"):
        parse_cast_list("[nn.Dens]")
    with pytest.raises(ValueError, match="names no cell"):
        parse_cast_list("[]")


@pytest.mark.parametrize("level", ["O0", "O3", "auto"])
def test_cast_list_with_a_level_it_cannot_act_on_is_refused(level):
    with pytest.raises(ValueError, match=f"only acts with amp_level O1 .* or O2 .*not amp_level={level}"):
        check_amp_args(level, "[nn.Dense]")
    check_amp_args(level, None)


def test_o1_casts_only_the_listed_cells_to_float16(pynative):
    reference = _pit()
    expected = reference(_images()).asnumpy()
    model = _pit()
    names, layers = [p.name for p in model.get_parameters()], layer_ids(model)
    apply_mixed_precision(model, "O1", "[nn.Dense]")
    assert _precision(model, nn.Dense) == {"FP16"} and _precision(model, nn.LayerNorm) == {"NOTSET"}
    assert [p.name for p in model.get_parameters()] == names  # checkpoints keep their keys
    assert layer_ids(model) == layers  # layer_decay and freezing group the wrapped cells as before
    logits = model(_images())
    assert logits.dtype == ms.float32  # the listed cells' outputs go back to float32
    difference = np.abs(logits.asnumpy() - expected).max()
    assert 0 < difference < 1e-2 * np.abs(expected).max()  # computed in float16: close, not identical


def test_o2_keeps_the_listed_cells_in_float32_and_the_rest_in_float16(pynative):
    default = apply_mixed_precision(_pit(), "O2")
    assert _precision(default, nn.LayerNorm) == {"FP32"} and _precision(default, nn.Dense) == {"FP16"}
    custom = apply_mixed_precision(_pit(), "O2", "[nn.Dense]")
    assert _precision(custom, nn.Dense) == {"FP32"} and _precision(custom, nn.LayerNorm) == {"FP16"}


def test_train_step_under_o3_computes_the_loss_in_float32_and_updates_the_weights(pynative):
    model = _pit()
    apply_mixed_precision(model, "O3")
    before = {p.name: p.asnumpy().copy() for p in model.trainable_params()}
    step = TrainStep(model, create_loss("CE"), create_optimizer(model, "adamw", lr=1e-3))
    model.set_train(True)
    loss, _ = step(_images(), ms.Tensor(np.array([0, 2], np.int32)))
    assert loss.dtype == ms.float32 and np.isfinite(loss.asnumpy())
    assert all(not np.array_equal(p.asnumpy(), before[p.name]) for p in model.trainable_params())
