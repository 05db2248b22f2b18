"""`python -m mindcv_lite.benchmark`: the JSON result's keys, and the profile tables."""
import json

from mindcv_lite import benchmark


def test_result_splits_the_compiled_state_from_the_peak(capsys):
    benchmark.main(["--model", "pit_ti", "--image_resize", "32", "--batch-size", "2", "--steps", "1",
                    "--num-classes", "3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["first_step_s"] >= result["compile_s"] > 0
    assert 0 < result["rss_after_compile_mb"] <= result["peak_rss_mb"]
    assert result["images_per_s"] > 0


def test_profile_prints_the_top_op_types_and_layers(capsys):
    benchmark.main(["--model", "pit_ti", "--image_resize", "32", "--batch-size", "2", "--steps", "1",
                    "--num-classes", "3", "--profile"])
    out = capsys.readouterr().out
    tables = out[out.index("### pit_ti infer"):]
    assert "| op type | ms/step | share | calls/step |" in tables
    assert "| Custom Linear |" in tables  # the package's kernels, told apart by the layer class calling them
    assert "stages/PitStage/blocks/Block/mlp-Mlp/fc2-Linear Custom" in tables  # blocks merged
