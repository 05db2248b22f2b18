"""The data config comes from the model unless the recipe or command line set it (timm's resolve_data_config), and
a 3-channel checkpoint serves another number of input channels (timm's adapt_input_conv)."""
import numpy as np
import pytest

import importlib
from mindcv_lite import create_model, save_checkpoint
from mindcv_lite.data import resolve_data_config
from mindcv_lite.models import get_pretrained_cfg
from mindcv_lite.models.checkpoint import adapt_input_conv
from mindcv_lite.utils.config import add_validate_arguments, parse_args

evaluate = importlib.import_module("mindcv_lite.engine.evaluate")  # the package exports a function of that name


def test_unset_values_come_from_the_pretrained_cfg_set_ones_win():
    cfg = dict(get_pretrained_cfg("pvt_tiny"), input_size=(3, 256, 256), mean=(0.5, 0.5, 0.5))
    resolved = resolve_data_config({"crop_pct": None, "interpolation": "bilinear"}, cfg)
    assert resolved == {"image_resize": 256, "interpolation": "bilinear", "crop_pct": 0.9,
                        "mean": [127.5, 127.5, 127.5], "std": [0.229 * 255, 0.224 * 255, 0.225 * 255]}
    assert resolve_data_config({}, None)["crop_pct"] == 0.875  # no model config: the ImageNet defaults


@pytest.mark.parametrize("name", ["pit_ti", "pvt_v2_b0"])
def test_a_model_built_for_another_size_asks_its_data_config_for_it(name):
    model = create_model(name, img_size=320, in_channels=1, num_classes=2)
    assert model.pretrained_cfg["input_size"] == (1, 320, 320)
    assert resolve_data_config({}, model.pretrained_cfg)["image_resize"] == 320
    assert create_model(name, num_classes=2).pretrained_cfg["input_size"] == (3, 224, 224)


class _Stop(Exception):
    pass


def _validate_data_config(monkeypatch, tmp_path, argv):
    """The data options validate.py builds its eval loader with."""
    seen = {}

    def recording_loader(args, runtime, split):
        seen.update(vars(args))
        raise _Stop

    monkeypatch.setattr(evaluate, "create_eval_loader", recording_loader)
    ckpt = tmp_path / "weights.ckpt"
    ckpt.write_bytes(b"")
    args = parse_args([*argv, "--ckpt_path", str(ckpt), "--device_target", "CPU", "--mode", "1"],
                      add_arguments=add_validate_arguments)
    with pytest.raises(_Stop):
        evaluate.validate(args)
    return seen


def test_validate_uses_the_models_eval_transform(monkeypatch, tmp_path):
    seen = _validate_data_config(monkeypatch, tmp_path, ["--model", "pvt_tiny"])
    assert (seen["interpolation"], seen["crop_pct"], seen["image_resize"]) == ("bicubic", 0.9, 224)


def test_a_recipe_wins_over_the_model(monkeypatch, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: pvt_tiny\ninterpolation: bilinear\ncrop_pct: 0.875\n")
    seen = _validate_data_config(monkeypatch, tmp_path, ["-c", str(recipe), "--img_size", "64"])
    assert (seen["interpolation"], seen["crop_pct"], seen["image_resize"]) == ("bilinear", 0.875, 64)


INPUT_SIZE_FLAGS = ("--image_resize", "--image_size", "--img_size", "--img-size")


def test_input_size_spellings_are_aliases():
    for flag in INPUT_SIZE_FLAGS:
        assert parse_args([flag, "96"]).image_resize == 96


@pytest.mark.parametrize("command", ["infer", "export", "convert", "benchmark", "data.benchmark"])
def test_every_command_takes_the_same_input_size_flags(command, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(f"mindcv_lite.{command}").main(["--help"])
    usage = capsys.readouterr().out
    assert all(flag in usage for flag in INPUT_SIZE_FLAGS), usage


def test_adapt_input_conv_sums_or_repeats_and_scales():
    weight = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(adapt_input_conv(1, weight), weight.sum(axis=1, keepdims=True), rtol=1e-6)
    five = adapt_input_conv(5, weight)
    np.testing.assert_allclose(five, np.concatenate([weight, weight[:, :2]], axis=1) * 3 / 5, rtol=1e-6)
    with pytest.raises(ValueError, match="input channels"):
        adapt_input_conv(2, five)


def test_three_channel_checkpoint_loads_into_a_one_channel_model(tmp_path):
    rgb = create_model("pit_ti", num_classes=2, img_size=32)
    path = save_checkpoint(rgb, tmp_path / "rgb.ckpt")
    gray = create_model("pit_ti", num_classes=2, img_size=32, in_channels=1, checkpoint_path=str(path))
    np.testing.assert_allclose(gray.patch_embed.conv.weight.asnumpy(),
                               rgb.patch_embed.conv.weight.asnumpy().sum(axis=1, keepdims=True), rtol=1e-6)
