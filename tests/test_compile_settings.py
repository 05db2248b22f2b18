"""Graph compilation settings of train.py / validate.py / the benchmark: jit level and MindSpore's compile cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindcv_lite import kernels
from mindcv_lite.engine.runtime import compile_cache_dir, compile_settings, configure_compilation
from mindcv_lite.utils.config import parse_args


def test_cache_folder_is_per_configuration_and_stable(tmp_path):
    """One folder per resolved config: MindSpore itself would hand pit_s the graph cached for pit_ti."""
    pit_ti = compile_cache_dir({"model": "pit_ti", "batch_size": 16}, str(tmp_path))
    assert pit_ti == compile_cache_dir({"batch_size": 16, "model": "pit_ti"}, str(tmp_path))
    assert pit_ti != compile_cache_dir({"model": "pit_s", "batch_size": 16}, str(tmp_path))
    assert os.path.dirname(pit_ti) == str(tmp_path)


def test_cache_folder_depends_on_the_kernel_library(tmp_path, monkeypatch):
    """Without the CPU kernel library the layers build other operators: a graph cached with the kernels must not
    be loaded."""
    with_kernels = compile_cache_dir({"model": "pvt_v2_b0"}, str(tmp_path))
    monkeypatch.setattr(kernels, "library_path", lambda: None)
    assert compile_cache_dir({"model": "pvt_v2_b0"}, str(tmp_path)) != with_kernels


def test_cache_root_defaults_to_mindcv_lite_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDCV_LITE_HOME", str(tmp_path))
    assert os.path.dirname(compile_cache_dir({"model": "pit_ti"})) == str(tmp_path / "compile")


def test_config_keys_turn_the_cache_on_by_default_and_off_on_request(tmp_path):
    args = parse_args(["--model", "pit_ti", "--compile_cache_dir", str(tmp_path)])
    jit_level, cache = compile_settings(args)
    assert jit_level == "O0" and cache.startswith(str(tmp_path))
    args = parse_args(["--model", "pit_ti", "--compile_cache", "False", "--jit_level", "O2"])
    assert compile_settings(args) == ("O2", None)


def test_unknown_jit_level_is_refused():
    with pytest.raises(ValueError, match="jit_level must be one of O0, O1, O2"):
        configure_compilation("O3")


_SCRIPT = """
import json, sys, time
import numpy as np
import mindspore as ms
from mindspore import nn
from mindcv_lite import kernels
from mindcv_lite.engine.runtime import configure_compilation
ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
ms.set_seed(0)
configure_compilation("O0", sys.argv[1])
net = nn.SequentialCell(nn.Dense(8, 16), nn.GELU(approximate=False), nn.Dense(16, 4))
print(json.dumps(net(ms.Tensor(np.ones((2, 8), np.float32))).asnumpy().tolist()))
"""


def test_second_run_loads_the_cached_graph_with_the_same_result(tmp_path):
    script = tmp_path / "net.py"
    script.write_text(_SCRIPT)
    cache = tmp_path / "cache"
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's mindcv_lite, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    runs = [subprocess.run([sys.executable, str(script), str(cache)], capture_output=True, text=True, check=True,
                           env=env) for _ in range(2)]
    assert (cache / "rank_0" / "graph_cache" / "compile_cache_0.mindir").is_file()
    assert json.loads(runs[0].stdout.splitlines()[-1]) == json.loads(runs[1].stdout.splitlines()[-1])
