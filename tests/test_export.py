"""Deployment export: `python -m mindcv_lite.export` writes ONNX that onnxruntime runs with MindSpore's logits, and
MINDIR that `mindspore.load` runs with the same logits."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_lite import create_model, save_checkpoint
from mindcv_lite.export import export_model, main
from mindcv_lite.models.layers.formulation import portable_formulations
from mindcv_lite.models.layers.gelu import ErfFreeGELU, replace_exact_gelu
from mindcv_lite.models.layers import Block, LinearSRAttention, MlpWithDepthwiseConv

ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime (the project's test extra)")

SIZE = 64
NUM_CLASSES = 6


@pytest.fixture(autouse=True)
def graph_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


def _trained_like_checkpoint(name, directory):
    """A checkpoint with non-trivial weights, and the logits MindSpore computes from it."""
    model = create_model(name, num_classes=NUM_CLASSES, img_size=SIZE)
    model.set_train(False)
    images = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    return save_checkpoint(model, directory / f"{name}.ckpt"), images, model(ms.Tensor(images)).asnumpy()


def _relative_error(ours, reference):
    return np.abs(ours - reference).max() / np.abs(reference).max()


def _run_onnx(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {session.get_inputs()[0].name: inputs})
    return outputs


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pit_ti_distilled", "pvt_tiny"])
def test_onnx_runs_in_onnxruntime_with_mindspore_logits(name, tmp_path):
    ckpt, images, logits = _trained_like_checkpoint(name, tmp_path)
    output = tmp_path / "model.onnx"
    main(["--model", name, "--ckpt_path", str(ckpt), "--num_classes", str(NUM_CLASSES), "--image_size", str(SIZE),
          "--batch_size", "2", "--file_format", "ONNX", "--output", str(output)])
    assert _relative_error(_run_onnx(output, images), logits) <= 1e-4
    if name == "pvt_v2_b0":
        path = export_model(name, tmp_path / "b0", "mindir", ckpt_path=str(ckpt), num_classes=NUM_CLASSES,
                            image_size=SIZE, batch_size=2)
        assert path.endswith("b0.mindir")
        graph = nn.GraphCell(ms.load(path))
        # The MINDIR holds the portable formulations (export_model), which agree with this machine's CPU kernels to
        # float32 rounding only (~1e-6 over the network; each layer: tests/test_conv_formulations.py): compare it
        # with the same formulations in MindSpore.
        with portable_formulations():
            portable = create_model(name, num_classes=NUM_CLASSES, checkpoint_path=str(ckpt), img_size=SIZE)
        portable.set_train(False)
        assert _relative_error(graph(ms.Tensor(images)).asnumpy(), portable(ms.Tensor(images)).asnumpy()) <= 1e-6


class _LinearSRBlock(nn.Cell):
    """A PVTv2-li block on a 9x12 token map: its 7x7 pooling takes the uneven-window path."""

    def __init__(self):
        super().__init__()
        self.block = Block(16, LinearSRAttention(16, num_heads=2), MlpWithDepthwiseConv(16, 32, extra_relu=True))

    def construct(self, x):
        return self.block(x, 9, 12)


def test_pvt_v2_li_pooling_exports_to_onnx_at_any_size(tmp_path):
    with portable_formulations():  # standard operators only, as export_model builds its models
        cell = _LinearSRBlock()
    cell.set_train(False)
    replace_exact_gelu(cell)
    tokens = np.random.default_rng(0).standard_normal((2, 9 * 12, 16)).astype(np.float32)
    ms.export(cell, ms.Tensor(tokens), file_name=str(tmp_path / "block"), file_format="ONNX")
    reference = cell(ms.Tensor(tokens)).asnumpy()
    assert _relative_error(_run_onnx(tmp_path / "block.onnx", tokens), reference) <= 1e-4


def test_erf_free_gelu_is_exact_gelu():
    x = ms.Tensor(np.linspace(-12, 12, 20001, dtype=np.float32))
    exact = nn.GELU(approximate=False)(x).asnumpy()
    np.testing.assert_allclose(ErfFreeGELU()(x).asnumpy(), exact, rtol=0, atol=2e-6)


def test_unknown_format_is_rejected(tmp_path, capsys):
    with pytest.raises(ValueError, match="MINDIR, ONNX"):
        export_model("pvt_v2_b0", tmp_path / "x", "TFLITE")
    with pytest.raises(SystemExit):
        main(["--model", "pvt_v2_b0", "--file_format", "AIR", "--output", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err
