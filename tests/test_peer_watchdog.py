"""The msrun peer watchdog without msrun: two ranks as two processes that exchange rank 0's address through a file.
A rank that fails on its own (a user error, e.g. its checkpoint write) must end the others at once; one that
finishes must not (test_msrun.py covers a worker killed under msrun)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RANK = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from mindcv_lite.engine.peer_watchdog import watch_peers
    from mindcv_lite.utils.cli import run_command

    rank, exchange, outcome = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def all_reduce_sum(vector):  # only rank 0's address is exchanged: rank 0 publishes it, rank 1 reads it
        if rank == 0:
            np.save(str(exchange) + ".tmp.npy", vector)
            os.replace(str(exchange) + ".tmp.npy", exchange)
            return vector
        while not exchange.exists():
            time.sleep(0.05)
        return np.load(exchange) + vector

    watch_peers(rank, 2, all_reduce_sum)

    def main(argv):
        if rank == 0:
            time.sleep(3 if outcome == "finished" else 120)  # as if waiting in an all-reduce
        elif outcome == "failed":
            raise OSError("checkpoint write failed: No space left on device")

    run_command(main, f"rank {rank}")
""")


@pytest.mark.parametrize("outcome, codes", [("failed", [69, 1]), ("finished", [0, 0])])
def test_a_rank_that_fails_alone_ends_the_others_one_that_finishes_does_not(tmp_path, outcome, codes):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = dict(os.environ, MS_SCHED_HOST="127.0.0.1", MS_SCHED_PORT="1", PYTHONPATH=str(REPO))
    ranks = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "address.npy"), outcome],
                              env=env, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        errors = [rank.communicate(timeout=90)[1] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    assert [rank.returncode for rank in ranks] == codes, errors
    if outcome == "failed":
        assert "rank 1: error: checkpoint write failed: No space left on device" in errors[1]
        assert "rank 0: rank 1 ended without finishing" in errors[0]
