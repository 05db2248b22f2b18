"""Process setup shared by train.py and validate.py: device, execution mode, msrun data parallel, seeds."""
import glob
import logging
import os
import random
import sys

import numpy as np
import mindspore as ms
import mindspore.dataset as ds

from .peer_watchdog import start_scheduler_guardian, watch_peers

__all__ = ["MSRUN_ENV", "Runtime", "launched_by_msrun", "setup_runtime", "warn_once"]

_logger = logging.getLogger(__name__)

# msrun sets these in every process it starts; without them `init()` waits for a scheduler that never comes.
MSRUN_ENV = ("MS_ROLE", "MS_WORKER_NUM", "RANK_ID")

_warned = set()


def warn_once(message):
    """Log a warning the first time `message` is seen in this process."""
    if message not in _warned:
        _warned.add(message)
        _logger.warning(message)


class Runtime:
    """Where this process runs: `rank` of `world_size` workers on `device_target`."""

    def __init__(self, device_target, rank=0, world_size=1):
        self.device_target = device_target
        self.rank = rank
        self.world_size = world_size

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        """Rank 0 alone writes checkpoints, metrics and the saved config."""
        return self.rank == 0


def launched_by_msrun():
    return all(name in os.environ for name in MSRUN_ENV)


def _default_device():
    # Ascend device nodes; asking MindSpore instead (ms.hal.is_available) prints a load error on CPU machines.
    return "Ascend" if glob.glob("/dev/davinci[0-9]*") else "CPU"


def _msrun_command():
    script = os.path.basename(sys.argv[0]) or "train.py"
    args = " ".join(sys.argv[1:])
    return f"msrun --worker_num 8 --local_worker_num 8 python {script} {args}"


def setup_runtime(mode=0, device_target=None, distribute=False, seed=42):
    """Set the MindSpore context and, with `distribute`, join the msrun job as a data-parallel worker.

    `mindspore.communication.init()` comes first: msrun also starts the script as the job's scheduler, and that
    process must not build models or read data before `init()` takes it over.
    """
    _warned.clear()  # once per run
    device_target = device_target or _default_device()
    ms.set_context(mode=mode)
    if ms.get_context("device_target") != device_target:  # set_device raises once kernels have run (tests, demo)
        ms.set_device(device_target)
    rank, world_size = 0, 1
    if distribute:
        missing = [name for name in MSRUN_ENV if name not in os.environ]
        if missing:
            raise ValueError(
                f"distribute=True needs the msrun launcher (environment variables {', '.join(missing)} are not "
                f"set). Start the workers with:\n  {_msrun_command()}\nor run on one device with --distribute "
                "False.")
        from mindspore.communication import get_group_size, get_rank, init

        start_scheduler_guardian()
        init()
        rank, world_size = get_rank(), get_group_size()
        ms.reset_auto_parallel_context()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=world_size)
        watch_peers(rank, world_size, all_reduce_sum)
    # Every rank seeds identically, so all start from the same initial weights.
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ds.config.set_seed(seed)
    return Runtime(device_target, rank, world_size)


def all_reduce_sum(values):
    """Sum a numpy vector over all ranks; returns float64. (MindSpore 2.10's CPU AllReduce only sums.)"""
    from mindspore import Tensor, ops

    # float32: exact for integer counts below 2**24, enough for any validation set.
    reduced = ops.AllReduce()(Tensor(np.asarray(values, np.float32)))
    return reduced.asnumpy().astype(np.float64)


def check_weights_in_sync(model, runtime):
    """Raise when the ranks of a data-parallel run hold different weights; returns this rank's fingerprint.

    Data parallelism is only correct if every rank applies the same averaged update to the same start.
    """
    fingerprint = np.float32(sum(float(np.sum(p.asnumpy(), dtype=np.float64)) * (index + 1)
                                 for index, p in enumerate(model.get_parameters())))
    slots = np.zeros(runtime.world_size, np.float32)
    slots[runtime.rank] = fingerprint  # summing one non-zero slot per rank gathers them exactly
    gathered = all_reduce_sum(slots)
    if np.any(gathered != gathered[0]):
        raise RuntimeError(f"the weights of the {runtime.world_size} ranks differ (fingerprints {gathered.tolist()}): "
                           "gradients were not all-reduced or the ranks started from other weights")
    _logger.info("Weights identical on all %d ranks (fingerprint %r)", runtime.world_size, float(fingerprint))
    return fingerprint
