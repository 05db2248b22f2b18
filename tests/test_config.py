"""Config: YAML defaults + command-line overrides, mindcv names and meanings, and the shipped recipe files."""
import json
import os
from pathlib import Path

import pytest
import yaml

from mindcv_lite.utils.config import parse_args, save_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# mindcv's recipes for the 13 models, copied from ../shared/reference/recipes (see tests/fixtures/README.md).
RECIPES_JSON = Path(__file__).parent / "fixtures" / "reference" / "recipes" / "mindcv_recipes.json"


def _write_yaml(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _config_dir(model):
    return "pvtv2" if model.startswith("pvt_v2") else model.split("_")[0]


def _parse_error(capsys, argv, **kwargs):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv, **kwargs)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_recipe_files_hold_exactly_mindcv_recipes():
    recipes = json.loads(RECIPES_JSON.read_text())
    shipped = {path.stem for path in CONFIGS.glob("*/*_ascend.yaml")}
    assert shipped == set(recipes)
    for name, recipe in recipes.items():
        path = CONFIGS / _config_dir(recipe["model"]) / f"{name}.yaml"
        assert yaml.safe_load(path.read_text()) == recipe, path
        args = parse_args(["-c", str(path)])
        for key, value in recipe.items():
            expected = value.upper() if key == "loss" else value  # loss names are case-insensitive: 'ce' == 'CE'
            assert getattr(args, key) == expected, (path, key)


def test_cpu_demo_config_is_small_and_on_cpu():
    args = parse_args(["-c", str(CONFIGS / "pit" / "pit_ti_cpu_demo.yaml")])
    assert (args.model, args.mode, args.distribute, args.device_target) == ("pit_ti", 0, False, "CPU")
    assert args.batch_size == 16 and args.image_resize == 64 and args.epoch_size <= 12
    assert (args.opt, args.scheduler, args.warmup_epochs) == ("adamw", "cosine_decay", 1)
    assert args.val_while_train is True and args.ckpt_save_dir == "./runs/demo"
    assert args.auto_augment is None and args.mixup == 0.0 and args.cutmix == 0.0


def test_command_line_overrides_yaml_wherever_config_appears(tmp_path):
    path = _write_yaml(tmp_path, "lr: 0.1\nbatch_size: 8\nmodel: pit_xs\n")
    for argv in (["-c", path, "--lr", "0.5"], ["--lr", "0.5", "--config", path], [f"--config={path}", "--lr=0.5"]):
        args = parse_args(argv)
        assert (args.lr, args.batch_size, args.model, args.config) == (0.5, 8, "pit_xs", path)


def test_without_config_mindcv_defaults_apply():
    args = parse_args(["--model=pvt_tiny", "--data_dir", "/data"])
    assert (args.model, args.data_dir, args.config) == ("pvt_tiny", "/data", "")
    assert (args.lr, args.warmup_epochs, args.scale, args.epoch_size) == (0.001, 3, [0.08, 1.0], 90)


@pytest.mark.parametrize("text, expected", [
    ("True", True), ("false", False), ("TRUE", True), ("1", True), ("0", False), ("yes", True), ("No", False),
])
def test_bools_from_strings_on_command_line_and_in_yaml(tmp_path, text, expected):
    assert parse_args(["--distribute", text]).distribute is expected
    path = _write_yaml(tmp_path, f"distribute: '{text}'\n")  # quoted: a string, as a hand-written YAML may have
    assert parse_args(["-c", path]).distribute is expected


def test_bare_bool_flag_means_true_and_bad_bool_is_rejected(capsys):
    assert parse_args(["--distribute"]).distribute is True
    assert "expected a boolean" in _parse_error(capsys, ["--val_while_train", "maybe"])


def test_lists_from_command_line_and_yaml(tmp_path):
    args = parse_args(["--scale", "0.2", "0.9", "--mean", "1", "2", "3", "--multi_step_decay_milestones", "10", "20",
                       "--color_jitter", "0.1", "0.2", "0.3"])
    assert (args.scale, args.mean, args.multi_step_decay_milestones) == ([0.2, 0.9], [1.0, 2.0, 3.0], [10, 20])
    assert args.color_jitter == [0.1, 0.2, 0.3]
    assert parse_args(["--color_jitter", "0.3"]).color_jitter == 0.3

    path = _write_yaml(tmp_path, "ratio: [0.5, 2]\nstd: [1, 2, 3]\ncolor_jitter: 0.25\n")
    args = parse_args(["-c", path])
    assert (args.ratio, args.std, args.color_jitter) == ([0.5, 2.0], [1.0, 2.0, 3.0], 0.25)


def test_wrong_list_length_is_rejected(tmp_path, capsys):
    assert "--scale" in _parse_error(capsys, ["--scale", "0.1"])
    path = _write_yaml(tmp_path, "scale: [0.1]\n")
    assert "expected 2 values" in _parse_error(capsys, ["-c", path])


def test_yaml_values_get_command_line_types(tmp_path, capsys):
    # PyYAML reads 1e-3 (no dot) as a string; it must still become the float mindcv's YAMLs mean.
    args = parse_args(["-c", _write_yaml(tmp_path, "lr: 1e-3\nloss: ce\nopt: AdamW\nnum_classes: null\n")])
    assert (args.lr, args.loss, args.opt, args.num_classes) == (0.001, "CE", "adamw", None)
    err = _parse_error(capsys, ["-c", _write_yaml(tmp_path, "batch_size: 2.5\n", "b.yaml")])
    assert "batch_size" in err and "integer" in err
    err = _parse_error(capsys, ["-c", _write_yaml(tmp_path, "opt: rmsprob\n", "o.yaml")])
    assert "'opt' must be one of" in err and "rmsprop" in err


def test_unknown_yaml_key_stops_with_suggestion(tmp_path, capsys):
    path = _write_yaml(tmp_path, "lr: 0.1\nwarmup_epoch: 3\n")
    err = _parse_error(capsys, ["-c", path])
    assert "unknown key 'warmup_epoch'" in err and "Did you mean 'warmup_epochs'?" in err


def test_mindcv_key_that_applies_to_no_model_here_says_why(tmp_path, capsys):
    err = _parse_error(capsys, ["-c", _write_yaml(tmp_path, "aux_factor: 0.1\n")])
    assert "unknown key 'aux_factor'" in err and "no model here has an auxiliary head" in err
    assert "no model here has an auxiliary head" in _parse_error(capsys, ["--aux_factor", "0.1"])


@pytest.mark.parametrize("argv, unknown, suggestion", [
    (["--batchsize", "32"], "--batchsize", "--batch_size"),
    (["--lrr=0.1"], "--lrr", "--lr"),
    (["--warmup_epoch", "5"], "--warmup_epoch", "--warmup_epochs"),
])
def test_unknown_command_line_flag_stops_with_suggestion(capsys, argv, unknown, suggestion):
    err = _parse_error(capsys, argv)
    assert f"unknown argument '{unknown}'" in err and f"Did you mean '{suggestion}'?" in err


def test_abbreviated_flags_are_not_guessed(capsys):
    assert "unknown argument '--warmup'" in _parse_error(capsys, ["--warmup", "5"])


def test_script_can_add_its_own_arguments(tmp_path, capsys):
    def add_validate_arguments(parser):
        parser.add_argument("--output_json", type=str, default="", help="Write metrics here")

    args = parse_args(["--model=pvt_tiny", "--output_json", "m.json"], add_arguments=add_validate_arguments)
    assert (args.model, args.output_json) == ("pvt_tiny", "m.json")
    path = _write_yaml(tmp_path, "output_json: from_yaml.json\n")
    assert parse_args(["-c", path], add_arguments=add_validate_arguments).output_json == "from_yaml.json"
    assert "unknown key 'output_json'" in _parse_error(capsys, ["-c", path])


def test_mindcv_filter_bias_and_bn_sets_weight_decay_filter(tmp_path, capsys):
    assert parse_args([]).weight_decay_filter == "disable"
    args = parse_args(["--filter_bias_and_bn", "True"])
    assert args.weight_decay_filter == "norm_and_bias" and not hasattr(args, "filter_bias_and_bn")
    path = _write_yaml(tmp_path, "filter_bias_and_bn: true\n")
    assert parse_args(["-c", path]).weight_decay_filter == "norm_and_bias"
    assert parse_args(["-c", path, "--weight_decay_filter", "auto"]).weight_decay_filter == "auto"
    conflict = _write_yaml(tmp_path, "filter_bias_and_bn: false\nweight_decay_filter: norm_and_bias\n",
                           "conflict.yaml")
    assert "disagree" in _parse_error(capsys, ["-c", conflict])


def test_saved_config_reproduces_the_args(tmp_path):
    recipe = str(CONFIGS / "pit" / "pit_xs_ascend.yaml")
    args = parse_args(["-c", recipe, "--lr", "0.003", "--distribute", "False", "--scale", "0.2", "1.0",
                       "--data_dir", "/data/imagenet", "--num_classes", "100"])
    saved = tmp_path / "ckpt" / "pit_xs_config.yaml"
    save_config(args, str(saved))

    assert os.listdir(saved.parent) == [saved.name]  # written atomically: no temporary file left behind
    assert "config" not in yaml.safe_load(saved.read_text())
    reloaded = parse_args(["-c", str(saved)])
    expected = {key: value for key, value in vars(args).items() if key != "config"}
    assert {key: value for key, value in vars(reloaded).items() if key != "config"} == expected
    assert (reloaded.lr, reloaded.distribute, reloaded.color_jitter) == (0.003, False, [0.3, 0.3, 0.3])
