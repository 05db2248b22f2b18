"""Stop requests: SIGTERM (a scheduler preempting the job) or SIGINT (Ctrl-C) end training at the next step
with a checkpoint of that step, instead of killing the process mid-epoch."""
import logging
import signal

import numpy as np
from mindspore import Tensor, ops

from ..utils.cli import CommandStopped

__all__ = ["StopSignals", "TrainingStopped", "keep_sigterm_handler"]

_logger = logging.getLogger(__name__)

class TrainingStopped(CommandStopped):
    """Training stopped on a signal after (on rank 0) writing a checkpoint to resume from: train.py exits with
    code 75 (utils/cli.py)."""


class StopSignals:
    """While entered, SIGTERM and SIGINT only record a stop request; a second signal acts as usual (stops at once).

    `requested()` is asked after every step. In a data-parallel run every rank must stop after the same step
    (or the others would wait forever in the next all-reduce), so the flags are summed over ranks; the sum is
    read one step later, keeping one step queued on the device instead of a host sync per step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, distributed=False):
        self.distributed = distributed
        self.signal_name = None
        self.announced = False
        self.previous = {}
        self.pending = None

    def __enter__(self):
        for signum in self.SIGNALS:
            self.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()

    def _restore(self):
        for signum, handler in self.previous.items():
            # None: a handler installed outside Python (e.g. by MindSpore's C++ runtime) cannot be put back
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def _handle(self, signum, frame):
        # Nothing is logged here: the signal may interrupt a log line being written, and writing another from
        # inside it fails ("reentrant call inside <_io.BufferedWriter name='<stdout>'>"). `_announce` logs later.
        self.signal_name = signal.Signals(signum).name
        self.announced = False
        self._restore()

    def _announce(self):
        if self.signal_name is not None and not self.announced:
            self.announced = True
            _logger.warning("%s received: stopping after the current step with a checkpoint (a second %s stops at "
                            "once)", self.signal_name, self.signal_name)

    def received(self):
        """True once this process received a stop signal (no agreement between ranks: see `requested`)."""
        self._announce()
        return self.signal_name is not None

    def requested(self):
        """True once a stop was requested, on every rank at the same step."""
        self._announce()
        if not self.distributed:
            return self.signal_name is not None
        flag = ops.AllReduce()(Tensor(np.array([float(self.signal_name is not None)], np.float32)))
        previous, self.pending = self.pending, flag
        return previous is not None and float(previous.asnumpy()[0]) > 0


def keep_sigterm_handler(batches):
    """Yield from a dataset iterator, putting Python's SIGTERM handler back after each batch.

    MindSpore 2.10's dataset iterator installs its own C++ SIGTERM handler when it starts (and for every new
    iterator), replacing Python's; that handler ends the process at once with exit code 0 and no message, so a
    preempted run looked finished. Re-installing costs one system call per batch.
    """
    for batch in batches:
        handler = signal.getsignal(signal.SIGTERM)
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
        yield batch
