"""The checkpoint door: every layout users bring loads strictly, and every way it can go wrong says so."""
import logging
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import mindspore as ms

from conftest import reference_state, reference_table
from mindcv_lite import create_model, load_checkpoint, save_checkpoint
from mindcv_lite.convert import main as convert_main
from mindcv_lite.models import CheckpointMismatchError, read_checkpoint


def weights_of(model):
    return {p.name: p.asnumpy() for p in model.get_parameters()}


def assert_weights_equal(model, expected):
    ours = weights_of(model)
    assert set(ours) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


def save_mindcv_style(entries, path):
    """What mindcv's training writes: `Parameter.name` keys, tensors of any dtype, scalars as tensors."""
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in entries.items()], str(path))
    return path


@pytest.mark.parametrize("name", ["pit_ti", "pvt_tiny", "pvt_v2_b0"])
def test_train_py_writes_every_weight_under_mindcvs_name_and_shape(name):
    """What mindcv's `load_param_into_net` matches: the keys train.py writes (`to_mindcv_key` of each
    Parameter.name) are mindcv's parameter names, with mindcv's shapes, for every family."""
    model = create_model(name)
    written = sorted((model.to_mindcv_key(p.name), tuple(p.shape)) for p in model.get_parameters())
    mindcv = sorted((r["name"], tuple(int(s) for s in r["shape"].strip("[]").split(","))) for r in
                    reference_table("mindcv", name))
    assert written == mindcv


@pytest.fixture(scope="module")
def pit_ti():
    return create_model("pit_ti", img_size=64, num_classes=5)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_own_checkpoint_round_trip(pit_ti, suffix, tmp_path):
    path = save_checkpoint(pit_ti, tmp_path / f"model{suffix}")
    loaded = create_model("pit_ti", img_size=64, num_classes=5, checkpoint_path=path)
    assert_weights_equal(loaded, weights_of(pit_ti))


def test_format_is_recognised_by_content_whatever_the_extension(pit_ti, tmp_path):
    path = save_checkpoint(pit_ti, tmp_path / "model.safetensors")
    renamed = tmp_path / "model.weights"
    os.rename(path, renamed)
    assert_weights_equal(create_model("pit_ti", img_size=64, num_classes=5, checkpoint_path=str(renamed)),
                         weights_of(pit_ti))


def test_mindcv_checkpoint_with_training_state_and_float16_pos_embeds(tmp_path):
    """mindcv's PVT stores pos embeds as float16 and its training checkpoints carry optimizer and EMA state."""
    state = reference_state("mindcv", "pvt_tiny")
    assert state["pos_embed1"].dtype == np.float16
    training_state = {
        "global_step": np.array([1234], np.int32),
        "learning_rate": np.array(0.001, np.float32),
        "scale_sense": np.array(1024.0, np.float32),
        **{f"adam_m.{k}": np.zeros_like(v, np.float32) for k, v in state.items()},
        **{f"adam_v.{k}": np.ones_like(v, np.float32) for k, v in state.items()},
        **{f"ema.{k}": (v.astype(np.float32) + 1).astype(v.dtype) for k, v in state.items()},
    }
    path = save_mindcv_style({**state, **training_state}, tmp_path / "pvt_tiny-300_1251.ckpt")
    model = create_model("pvt_tiny", checkpoint_path=str(path))
    assert_weights_equal(model, {k: v.astype(np.float32) for k, v in state.items()})
    assert model.pos_embed1.dtype == ms.float32

    load_checkpoint(model, str(path), use_ema=True)
    assert_weights_equal(model, {k: (v.astype(np.float32) + 1).astype(v.dtype).astype(np.float32)
                                 for k, v in state.items()})


def test_use_ema_without_ema_weights_is_an_error(pit_ti, tmp_path):
    path = save_checkpoint(pit_ti, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="ema"):
        load_checkpoint(pit_ti, path, use_ema=True)


def test_mindcv_pit_names_map_to_attribute_paths(tmp_path):
    state = reference_state("mindcv", "pit_ti")
    assert "0.blocks.1.blocks.0.norm1.gamma" in state and "0.conv.weight" in state
    model = create_model("pit_ti", checkpoint_path=str(save_mindcv_style(state, tmp_path / "pit_ti.ckpt")))
    ours = weights_of(model)
    np.testing.assert_array_equal(ours["transformers.1.blocks.0.norm1.gamma"], state["0.blocks.1.blocks.0.norm1.gamma"])
    np.testing.assert_array_equal(ours["pools.0.conv.weight"], state["0.conv.weight"])


def test_pytorch_fused_qkv_is_split_and_norms_renamed(tmp_path):
    state = reference_state("torch", "pit_ti_224")
    path = tmp_path / "pit_ti_224.safetensors"
    save_file(state, str(path))
    ours = weights_of(create_model("pit_ti", checkpoint_path=str(path)))
    qkv = state["transformers.0.blocks.0.attn.qkv.weight"]
    for index, name in enumerate("qkv"):
        np.testing.assert_array_equal(ours[f"transformers.0.blocks.0.attn.{name}.weight"],
                                      np.split(qkv, 3, axis=0)[index])
    np.testing.assert_array_equal(ours["transformers.0.blocks.0.norm1.gamma"],
                                  state["transformers.0.blocks.0.norm1.weight"])
    np.testing.assert_array_equal(ours["pools.0.conv.weight"], state["transformers.1.pool.conv.weight"])


@pytest.mark.parametrize("name, classifiers", [("pit_ti", ["head"]), ("pit_ti_distilled", ["head", "head_dist"])])
def test_other_num_classes_drops_classifiers_with_one_warning(name, classifiers, tmp_path, caplog):
    source = create_model(name, img_size=64, num_classes=5)
    path = save_checkpoint(source, tmp_path / "source.ckpt")
    target = create_model(name, img_size=64, num_classes=3)
    fresh = weights_of(target)
    with caplog.at_level(logging.WARNING):
        dropped = load_checkpoint(target, path)
    assert sorted(dropped) == sorted(f"{c}.{p}" for c in classifiers for p in ("weight", "bias"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "num_classes=3" in warnings[0].getMessage()
    expected = weights_of(source)
    expected.update({k: fresh[k] for k in dropped})
    assert_weights_equal(target, expected)


def test_checkpoint_of_another_model_lists_what_does_not_fit(pit_ti, tmp_path):
    path = save_checkpoint(create_model("pvt_tiny", img_size=64, num_classes=5), tmp_path / "pvt.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"missing \d+: .*unexpected \d+: ") as error:
        load_checkpoint(pit_ti, path)
    assert "pvt.ckpt" in str(error.value)


@pytest.mark.parametrize("damage, match", [
    (lambda s: s.pop("transformers.0.blocks.0.attn.q.weight"), r"missing 1: transformers\.0\.blocks\.0\.attn\.q\.weight"),
    (lambda s: s.update(extra_weight=np.zeros(3, np.float32)), r"unexpected 1: extra_weight"),
    (lambda s: s.update({"cls_token": np.zeros((1, 1, 7), np.float32)}), r"wrong shape 1: cls_token \(checkpoint \(1, 1, 7\)"),
])
def test_missing_unexpected_and_misshaped_weights_are_errors(pit_ti, damage, match, tmp_path):
    state = weights_of(pit_ti)
    damage(state)
    path = save_checkpoint(state, tmp_path / "damaged.ckpt")
    before = weights_of(pit_ti)
    with pytest.raises(CheckpointMismatchError, match=match):
        load_checkpoint(pit_ti, path)
    assert_weights_equal(pit_ti, before)  # nothing half-loaded


def test_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        create_model("pit_ti", img_size=64, checkpoint_path=missing)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_corrupt_file_names_it(pit_ti, suffix, tmp_path):
    good = save_checkpoint(pit_ti, tmp_path / f"good{suffix}")
    corrupt = tmp_path / f"corrupt{suffix}"
    corrupt.write_bytes(open(good, "rb").read()[:1000])  # truncated mid-tensor
    with pytest.raises(ValueError, match=f"corrupt{suffix}"):
        read_checkpoint(corrupt)


def test_pytorch_pth_without_torch_says_how_to_convert(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed: .pth files load directly")
    except ImportError:
        pass
    path = tmp_path / "weights.pth"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(ImportError, match="safetensors"):
        read_checkpoint(path)


def test_write_is_atomic_old_file_survives_a_failed_save(pit_ti, tmp_path, monkeypatch):
    path = save_checkpoint(pit_ti, tmp_path / "model.ckpt")
    original = open(path, "rb").read()

    def crash_midway(records, file_name, **kwargs):
        with open(file_name, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ms, "save_checkpoint", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(pit_ti, path)
    assert open(path, "rb").read() == original
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_extra_training_state_is_stored_and_ignored_when_loading_weights(pit_ti, tmp_path):
    path = save_checkpoint(pit_ti, tmp_path / "train.ckpt",
                           extra={"epoch_num": np.array(3, np.int32), "global_step": np.array(30, np.int32)})
    entries = read_checkpoint(path)
    assert int(entries["epoch_num"]) == 3 and int(entries["global_step"]) == 30
    load_checkpoint(pit_ti, path)


def test_convert_cli_writes_our_layout_once(tmp_path, capsys):
    state = reference_state("torch", "pit_ti_224")
    src = tmp_path / "pit_ti_224.safetensors"
    save_file(state, str(src))
    dst = tmp_path / "pit_ti.ckpt"
    convert_main([str(src), str(dst), "--model", "pit_ti"])
    assert "num_classes=1000" in capsys.readouterr().out
    converted = read_checkpoint(dst)
    assert "transformers.0.blocks.0.attn.q.weight" in converted and not any("qkv" in k for k in converted)
    assert_weights_equal(create_model("pit_ti", checkpoint_path=str(dst)),
                         weights_of(create_model("pit_ti", checkpoint_path=str(src))))


def test_convert_keeps_the_checkpoint_classes_and_drops_training_state(tmp_path):
    source = create_model("pit_ti", img_size=64, num_classes=10)
    src = save_checkpoint(source, tmp_path / "train.ckpt", extra={"global_step": np.array(7, np.int32)})
    dst = tmp_path / "weights.safetensors"
    convert_main([src, str(dst), "--model", "pit_ti", "--img_size", "64"])
    converted = read_checkpoint(dst)
    assert converted["head.weight"].shape == (10, 256) and "global_step" not in converted
    assert_weights_equal(create_model("pit_ti", img_size=64, num_classes=10, checkpoint_path=str(dst)),
                         weights_of(source))


def test_convert_cli_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="missing.ckpt"):
        convert_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out.ckpt"), "--model", "pit_ti"])
    src = save_checkpoint(create_model("pvt_tiny", img_size=64, num_classes=5), tmp_path / "pvt.ckpt")
    with pytest.raises(SystemExit, match="does not match model"):
        convert_main([src, str(tmp_path / "out.ckpt"), "--model", "pit_ti"])
    assert not (tmp_path / "out.ckpt").exists()
