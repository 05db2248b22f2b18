"""Curves: the PNG is valid and shows exactly the metrics.jsonl points; several runs overlay in one picture."""
import json

import numpy as np
import pytest
from PIL import Image

from mindcv_lite.plot import main
from mindcv_lite.utils.curves import plot_runs, read_metrics


def _write_metrics(run_dir, epochs, val_every):
    run_dir.mkdir()
    lines = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "step": 10 * epoch, "loss": 2.0 / epoch, "lr": 1e-3 * epoch}
        if epoch % val_every == 0:
            record.update(val_top1=0.1 * epoch, val_top5=0.2 * epoch, val_loss=1.0)
        lines.append(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _lines(axis):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}


def test_one_run_curves_hold_every_epoch(tmp_path):
    _write_metrics(tmp_path / "a", epochs=3, val_every=1)
    figure = plot_runs([str(tmp_path / "a")], str(tmp_path / "a" / "curves.png"))
    loss, lr, val = (_lines(axis) for axis in figure.axes)
    assert loss == {"a": ([1, 2, 3], pytest.approx([2.0, 1.0, 2 / 3]))}
    assert lr == {"a": ([1, 2, 3], pytest.approx([1e-3, 2e-3, 3e-3]))}
    assert val == {"a top1": ([1, 2, 3], pytest.approx([10.0, 20.0, 30.0])),
                   "a top5": ([1, 2, 3], pytest.approx([20.0, 40.0, 60.0]))}
    with Image.open(tmp_path / "a" / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100
        assert np.asarray(image.convert("L")).std() > 0  # something is drawn


def test_plot_command_overlays_runs(tmp_path, capsys):
    _write_metrics(tmp_path / "a", epochs=3, val_every=1)
    _write_metrics(tmp_path / "b", epochs=4, val_every=2)  # validated at epochs 2 and 4 only
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "both.png")])
    assert "2 run(s)" in capsys.readouterr().out
    figure = plot_runs([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "again.png"))
    val = _lines(figure.axes[2])
    assert {label: len(x) for label, (x, _) in val.items()} == {"a top1": 3, "a top5": 3, "b top1": 2, "b top5": 2}
    assert val["b top1"][0] == [2, 4]
    with Image.open(tmp_path / "both.png") as image:
        image.verify()


def test_resumed_run_keeps_the_last_record_of_each_epoch(tmp_path):
    _write_metrics(tmp_path / "a", epochs=2, val_every=1)
    with open(tmp_path / "a" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "step": 20, "loss": 0.25, "lr": 1e-3}) + "\n")
    assert [r["loss"] for r in read_metrics(str(tmp_path / "a"))] == [2.0, 0.25]


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        main([str(tmp_path / "nope")])
