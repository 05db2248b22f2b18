"""Train a model from a mindcv-style YAML recipe.

    python train.py -c configs/pit/pit_ti_ascend.yaml --data_dir /path/to/imagenet --distribute False
    msrun --bind_core=True --worker_num 8 python train.py -c configs/pit/pit_xs_ascend.yaml --data_dir /path/to/imagenet
"""
import sys

from mindcv_lite.engine import NonFiniteLossError, train
from mindcv_lite.utils.config import parse_args


def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        sys.exit(f"train.py: error: {error}")


if __name__ == "__main__":
    main()
