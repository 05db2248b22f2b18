"""Process setup shared by train.py and validate.py: device, execution mode, graph compilation (jit level, compile
cache), msrun data parallel, seeds."""
import glob
import hashlib
import json
import logging
import os
import random
import sys

import numpy as np
import mindspore as ms
import mindspore.dataset as ds

from .. import kernels
from .peer_watchdog import start_scheduler_guardian, watch_peers

__all__ = ["JIT_LEVELS", "MSRUN_ENV", "Runtime", "compile_cache_dir", "compile_settings", "configure_compilation",
           "launched_by_msrun", "setup_runtime", "warn_once"]

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


# MindSpore 2.10: O0 and O1 run kernel by kernel (O1 adds fusion passes), O2 hands whole graphs to Ascend's graph
# engine (mindcv forces it in graph mode); on CPU O2 is accepted and still runs.
JIT_LEVELS = ("O0", "O1", "O2")


def _cache_root():
    home = os.environ.get("MINDCV_LITE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "mindcv_lite")
    return os.path.join(home, "compile")


def compile_cache_dir(settings, root=""):
    """A folder for MindSpore's compile cache, one per distinct `settings` (the resolved config of a run), version
    of this package's source (kernels included) and kernel library.

    MindSpore 2.10 checks a cached graph only against the hash of the entry script and of its imports outside
    sys.path (so not an installed mindcv_lite), never against the arguments the network was built with: pit_ti and
    pit_s would load each other's graph from one folder, and an edited model would load its old graph. Hence the
    folder name hashes both. `root` defaults to $MINDCV_LITE_HOME/compile, else ~/.cache/mindcv_lite/compile.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = [path for pattern in ("*.py", "*.cc", "*.h")
               for path in glob.glob(os.path.join(package, "**", pattern), recursive=True)]
    for path in sorted(sources):
        with open(path, "rb") as f:
            digest.update(f.read())
    # A cached graph names the CPU kernel library by path, or (library not built) holds the fallback operators.
    digest.update(str(kernels.library_path()).encode())
    return os.path.join(root or _cache_root(), f"ms{ms.__version__}-{digest.hexdigest()[:16]}")


def _fix_cache_entry_script(cache_dir):
    """MindSpore 2.10 records the entry script when it is imported and hashes it and its imports for the compile
    cache; under `python -m` that is the literal "-m" (and a module's relative imports cannot be resolved from a
    path), so the cache fails. The cache folder already hashes this package's source: give MindSpore a placeholder."""
    from mindspore.graph import api

    if not os.path.isfile(str(api.entry_script_path)):
        placeholder = os.path.join(cache_dir, "entry_script.py")
        with open(placeholder, "w") as f:
            f.write('"""Stands in for a `python -m` entry module (see mindcv_lite.engine.runtime)."""\n')
        api.entry_script_path = placeholder


def configure_compilation(jit_level="O0", cache_dir=None):
    """Set the graph-compilation level and turn MindSpore's compile cache on in `cache_dir` (None: off).

    The second run of the same command then loads its graphs instead of compiling them. MindSpore 2.10 reads the
    cache switches from the environment (`set_context(enable_compile_cache=...)` is deprecated).
    """
    if jit_level not in JIT_LEVELS:
        raise ValueError(f"jit_level must be one of {', '.join(JIT_LEVELS)}, got {jit_level!r}")
    ms.set_context(jit_config={"jit_level": jit_level})
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        _fix_cache_entry_script(cache_dir)
        os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
        os.environ["MS_COMPILER_CACHE_PATH"] = cache_dir
    else:
        os.environ.pop("MS_COMPILER_CACHE_ENABLE", None)
        os.environ.pop("MS_COMPILER_CACHE_PATH", None)


def compile_settings(args):
    """(jit_level, compile cache folder or None) of a train.py / validate.py run from its resolved arguments."""
    cache = compile_cache_dir(vars(args), args.compile_cache_dir) if args.compile_cache else None
    return args.jit_level, cache


def setup_runtime(mode=0, device_target=None, distribute=False, seed=42, jit_level="O0", compile_cache=None):
    """Set the MindSpore context and, with `distribute`, join the msrun job as a data-parallel worker.

    `jit_level` and `compile_cache` (a folder, or None for no cache) go to `configure_compilation`.

    `mindspore.communication.init()` comes first: msrun also starts the script as the job's scheduler, and that
    process must not build models or read data before `init()` takes it over. The peer watchdog then ends the whole
    job within seconds if any worker dies (see peer_watchdog.py).
    """
    _warned.clear()  # once per run
    device_target = device_target or _default_device()
    ms.set_context(mode=mode)
    configure_compilation(jit_level, compile_cache)
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
