"""Evaluate a checkpoint (ours or mindcv's): top-1, top-5, loss, number of images, images/s.

    python validate.py -c configs/pit/pit_xs_ascend.yaml --data_dir /path/to/imagenet --ckpt_path /path/to/ckpt
    python validate.py --model=pvt_tiny --data_dir /path/to/imagenet --ckpt_path /path/to/ckpt --output_json m.json
"""
from mindcv_lite.engine import validate
from mindcv_lite.engine.progress import setup_logging
from mindcv_lite.utils.cli import run_command
from mindcv_lite.utils.config import add_validate_arguments, parse_args


def main(argv=None):
    args = parse_args(argv, add_arguments=add_validate_arguments)
    setup_logging()
    validate(args)


if __name__ == "__main__":
    run_command(main, "validate.py")
