"""Train a model from a mindcv-style YAML recipe.

    python train.py -c configs/pit/pit_ti_ascend.yaml --data_dir /path/to/imagenet --distribute False
    msrun --bind_core=True --worker_num 8 python train.py -c configs/pit/pit_xs_ascend.yaml --data_dir /path/to/imagenet

Exit codes: 0 done, 1 error (one line on stderr), 2 bad command line, 74 a checkpoint write failed (earlier
checkpoints intact), 75 stopped by SIGTERM/SIGINT with a checkpoint of that step (continue with --resume auto).
"""
from mindcv_lite.engine import train
from mindcv_lite.utils.cli import run_command
from mindcv_lite.utils.config import parse_args


def main(argv=None):
    train(parse_args(argv))


if __name__ == "__main__":
    run_command(main, "train.py")
