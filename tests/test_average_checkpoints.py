"""average_checkpoints: the mean of known checkpoints, picked by validation top-1 from a run's index, loadable."""
import json

import numpy as np
import pytest

from mindcv_lite import create_model
from mindcv_lite.average_checkpoints import main
from mindcv_lite.models import read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def weights():
    model = create_model("pit_ti", num_classes=4)
    return {p.name: p.asnumpy() for p in model.get_parameters()}


def _write_run(run_dir, weights, top1s):
    """One checkpoint per epoch: weights + epoch (EMA copies: weights - epoch), and the run's index."""
    entries = []
    for epoch, top1 in enumerate(top1s, start=1):
        state = {name: value + epoch for name, value in weights.items()}
        state.update({f"ema.{name}": value - epoch for name, value in weights.items()})
        state["global_step"] = np.array([7 * epoch], np.int32)  # training state: not averaged
        name = f"pit_ti-{epoch}_7.ckpt"
        save_checkpoint(state, str(run_dir / name), extra={"train.model": "pit_ti"})
        entries.append({"epoch": epoch, "top1": top1, "file": name})
    (run_dir / "checkpoints.json").write_text(json.dumps({"latest": entries[-1], "best": None,
                                                          "checkpoints": entries}))


def test_top_k_of_a_run_averages_to_the_mean_and_loads(tmp_path, weights, capsys):
    _write_run(tmp_path, weights, top1s=[0.5, 0.9, 0.7, 0.8])
    main([str(tmp_path), "-n", "3"])  # epochs 2, 4, 3: mean offset +3
    assert "mean of 3 checkpoints" in capsys.readouterr().out
    averaged = read_checkpoint(str(tmp_path / "averaged_top3.ckpt"))
    assert "global_step" not in averaged and not any(k.startswith("ema.") for k in averaged)
    model = create_model("pit_ti", num_classes=4, checkpoint_path=str(tmp_path / "averaged_top3.ckpt"))
    for param in model.get_parameters():
        np.testing.assert_allclose(param.asnumpy(), weights[param.name] + 3.0, rtol=1e-6, atol=1e-6)


def test_listed_files_and_ema_weights(tmp_path, weights):
    _write_run(tmp_path, weights, top1s=[None, None, None])
    files = [str(tmp_path / f"pit_ti-{epoch}_7.ckpt") for epoch in (1, 3)]
    main(files + ["--use_ema", "--output", str(tmp_path / "avg.ckpt")])
    averaged = read_checkpoint(str(tmp_path / "avg.ckpt"))
    for name, value in weights.items():
        np.testing.assert_allclose(averaged[name], value - 2.0, rtol=1e-6, atol=1e-6)


def test_bad_input_says_what_to_do(tmp_path, weights):
    _write_run(tmp_path, weights, top1s=[None, None])
    with pytest.raises(SystemExit, match="val_while_train"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit, match="--output is required"):
        main([str(tmp_path / "pit_ti-1_7.ckpt")])
    other = {name: value[..., :1] for name, value in weights.items() if value.ndim}
    save_checkpoint(other, str(tmp_path / "other.ckpt"))
    with pytest.raises(SystemExit, match="other weights"):
        main([str(tmp_path / "pit_ti-1_7.ckpt"), str(tmp_path / "other.ckpt"), "--output", str(tmp_path / "x.ckpt")])
