"""Export a model for deployment as MINDIR (MindSpore Lite / `mindspore.load`) or ONNX (onnxruntime, TensorRT...).

    python -m mindcv_lite.export --model pvt_v2_b0 --ckpt_path pvt_v2_b0.ckpt --file_format ONNX \\
        --output pvt_v2_b0.onnx

The graph takes a float32 batch (batch_size, 3, image_size, image_size) of normalised images (the model's
pretrained eval transform: resize, centre crop, ImageNet mean/std) and returns logits (batch_size, num_classes).
"""
import argparse
import os
import shutil
import tempfile

import numpy as np
import mindspore as ms

from .models import create_model, get_pretrained_cfg
from .models.layers.formulation import portable_formulations
from .models.layers.gelu import replace_exact_gelu
from .utils.cli import ArgumentParser, run_command
from .utils.io import atomic_path

FILE_FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx"}


def _output_path(output, file_format):
    """`output` with the format's extension (MindSpore appends it to whatever name it is given)."""
    extension = FILE_FORMATS[file_format]
    return output if output.lower().endswith(extension) else output + extension


def export_model(model_name, output, file_format="MINDIR", ckpt_path="", num_classes=1000, image_size=None,
                 batch_size=1):
    """Write `model_name` (with the weights of `ckpt_path`, if given) to `output`; returns the file's path."""
    file_format = file_format.upper()
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format {file_format!r} is not supported: use one of {', '.join(FILE_FORMATS)}")
    image_size = image_size or get_pretrained_cfg(model_name)["input_size"][-1]
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)  # export traces the graph
    try:
        return _export(model_name, output, file_format, ckpt_path, num_classes, image_size, batch_size)
    finally:
        ms.set_context(mode=previous_mode)


def _export(model_name, output, file_format, ckpt_path, num_classes, image_size, batch_size):
    with portable_formulations():  # no Custom operator (this machine's kernel library) in a deployment graph
        model = create_model(model_name, num_classes=num_classes, checkpoint_path=ckpt_path, img_size=image_size)
    model.set_train(False)
    if file_format == "ONNX":
        replace_exact_gelu(model)
    example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    path = _output_path(os.fspath(output), file_format)
    # ms.export picks the file name itself (appending the extension): export into a scratch directory, then
    # move the file into place atomically.
    scratch = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)) or ".")
    try:
        stem = os.path.join(scratch, "model")
        ms.export(model, example, file_name=stem, file_format=file_format)
        with atomic_path(path) as tmp:
            shutil.move(stem + FILE_FORMATS[file_format], tmp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registered model name (see mindcv_lite.list_models())")
    parser.add_argument("--ckpt_path", default="", help="weights to export (any layout the checkpoint door reads)")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="image_size", type=int, default=None,
                        help="input height and width (default: the model's pretrained input size)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--file_format", type=str.upper, choices=tuple(FILE_FORMATS), default="MINDIR")
    parser.add_argument("--output", required=True, help="file to write; the format's extension is added if absent")
    args = parser.parse_args(argv)
    args.image_size = args.image_size or get_pretrained_cfg(args.model)["input_size"][-1]
    path = export_model(args.model, args.output, args.file_format, args.ckpt_path, args.num_classes, args.image_size,
                        args.batch_size)
    print(f"exported {args.model} ({args.file_format}, input {args.batch_size}x3x{args.image_size}x{args.image_size}) "
          f"to {path}")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.export")
