"""Convert any supported checkpoint once into ours: `python -m mindcv_lite.convert SRC DST --model NAME`.

SRC may be a mindcv .ckpt (with or without optimizer/EMA state), the original authors' or timm's PyTorch
weights (.safetensors, or .pth when torch is installed) or one of ours. DST (.ckpt or .safetensors) holds only
the model's weights under our parameter names, checked by a strict load; the classifier keeps the checkpoint's
number of classes.
"""
import argparse
import sys

from .models import create_model, save_checkpoint
from .models.checkpoint import load_with_checkpoint_classes, read_checkpoint
from .utils.cli import ArgumentParser, run_command


def convert(src, dst, model_name, img_size=None, use_ema=False):
    """Write `src`'s weights for `model_name` to `dst` in our layout; returns the converted model."""
    model = create_model(model_name, img_size=img_size)
    load_with_checkpoint_classes(model, read_checkpoint(src), src, use_ema)
    save_checkpoint(model, dst)
    return model


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="checkpoint to read")
    parser.add_argument("dst", help="file to write: .ckpt or .safetensors")
    parser.add_argument("--model", required=True, help="model name, see mindcv_lite.list_models()")
    parser.add_argument("--image_resize", "--image_size", "--img_size", "--img-size", dest="img_size", type=int, default=None,
                        help="build the model for this resolution (position embeddings are resampled)")
    parser.add_argument("--use_ema", action="store_true", help="take the checkpoint's EMA weights")
    args = parser.parse_args(argv)
    try:
        model = convert(args.src, args.dst, args.model, args.img_size, args.use_ema)
    except (FileNotFoundError, ValueError, ImportError) as error:
        sys.exit(f"convert: {error}")
    print(f"wrote {args.dst}: {args.model}, {len(model.parameters_dict())} tensors, "
          f"num_classes={model.num_classes}")


if __name__ == "__main__":
    run_command(main, "python -m mindcv_lite.convert")
