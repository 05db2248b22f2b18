"""A data-parallel msrun job ends within seconds of losing a worker (kill -9, the OOM killer, a crash, a dead node)
instead of leaving the other ranks blocked in an all-reduce and msrun waiting for its scheduler.

MindSpore 2.10 alone takes ~30 s, more for a rank on another node: msrun stops the other workers of its own node
within a second, then waits for the scheduler, which declares a worker dead only after MS_NODE_TIMEOUT s without a
heartbeat (default 30 s; shortening it fails healthy jobs on a busy host: 5 s did here), and a worker on another node
learns it from its next heartbeat or, once the scheduler has gone, after retrying it for 20 s.

So every rank holds a TCP connection to rank 0, and every worker a local socket to a small guardian process that the
scheduler starts beside itself (the scheduler cannot run Python threads: MindSpore keeps the GIL while it waits).
The kernel closes a dead process's sockets, so the other end reads end-of-file at once (TCP keepalive covers a node
that vanishes); a process that finishes, or stops on request in step with the others, says goodbye first; one that
fails (an uncaught exception, or a user error on this rank only, such as its checkpoint write) leaves at once without
it. A rank that loses a peer stops its data workers and itself with
PEER_LOST_EXIT_CODE; a guardian that loses a worker stops the scheduler. Each launcher then sees a failed process and
ends the job on its node.
"""
import atexit
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np

__all__ = ["PEER_LOST_EXIT_CODE", "start_scheduler_guardian", "watch_peers"]

_logger = logging.getLogger(__name__)

# sysexits.h EX_UNAVAILABLE: another rank vanished; distinct from 75 (stopped on request) and 128+N (killed).
PEER_LOST_EXIT_CODE = 69
# a node that vanishes without closing its sockets is noticed after about 3 + 3 * 2 s
_KEEPALIVE = (("TCP_KEEPIDLE", 3), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))
_GOODBYE = b"bye"
_watchdog = None


def start_scheduler_guardian():
    """In msrun's scheduler process (before `init()`), start the guardian that stops it when a local worker dies."""
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        # -I: the script's folder (this package) stays off sys.path
        guardian = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), _guardian_socket_name(),
                                     str(os.getpid())], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        guardian.stdout.readline()  # listening before any worker can look for it
        guardian.stdout.close()


def watch_peers(rank, world_size, all_reduce_sum):
    """End this worker when another rank vanishes, and its node's scheduler when this worker does; once per process.

    `all_reduce_sum` (a numpy vector summed over ranks) tells every rank where rank 0 listens.
    """
    global _watchdog
    if _watchdog is None and world_size > 1:
        _watchdog = _PeerWatchdog(rank, world_size, all_reduce_sum)
    return _watchdog


class _PeerWatchdog:
    def __init__(self, rank, world_size, all_reduce_sum):
        self.rank = rank
        self.connections = []
        self.closing = False
        guardian = _connect_to_guardian()
        if guardian is not None:  # not watched: a scheduler that ends has seen every worker finish
            self.connections.append(guardian)
        server = None
        # rank 0's address: [family, port, 16 address bytes]; the other ranks add zeros
        address = np.zeros(18, np.float32)
        if rank == 0:
            family, host = _address_towards_scheduler()
            server = socket.create_server((host, 0), family=family, backlog=world_size)
            packed = socket.inet_pton(family, host)
            address[:2] = (int(family), server.getsockname()[1])
            address[2:2 + len(packed)] = np.frombuffer(packed, np.uint8)
        address = all_reduce_sum(address).astype(np.int64)
        if rank == 0:
            threading.Thread(target=self._accept, args=(server, world_size - 1), daemon=True).start()
        else:
            family = socket.AddressFamily(int(address[0]))
            host = socket.inet_ntop(family, bytes(address[2:6 if family == socket.AF_INET else 18].astype(np.uint8)))
            try:
                connection = socket.create_connection((host, int(address[1])), timeout=60)
            except OSError as error:
                raise RuntimeError(
                    f"rank {rank} cannot reach rank 0's peer watchdog at {host} port {int(address[1])} ({error}): "
                    "let the nodes connect to each other on any TCP port, as MindSpore's all-reduce does") from error
            connection.settimeout(None)
            connection.sendall(struct.pack("!I", rank))
            self._watch_in_background(connection, peer=0)
        previous_hook = sys.excepthook

        def leave_at_once(*exc_info):
            # without goodbye, so that the job stops; MindSpore's teardown in a broken job can hang for minutes
            previous_hook(*exc_info)
            _leave(1)

        sys.excepthook = leave_at_once
        from ..utils.cli import on_failure  # here: the guardian runs this file as a script, outside the package

        on_failure(_leave)
        atexit.register(self.close)

    def _accept(self, server, count):
        for _ in range(count):
            connection, _ = server.accept()
            (peer,) = struct.unpack("!I", connection.recv(4, socket.MSG_WAITALL))
            self._watch_in_background(connection, peer)
        server.close()

    def _watch_in_background(self, connection, peer):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            if hasattr(socket, name):  # Linux
                connection.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        self.connections.append(connection)
        threading.Thread(target=self._watch, args=(connection, peer), daemon=True).start()

    def _watch(self, connection, peer):
        if not _said_goodbye(connection) and not self.closing:
            self._end(peer)

    def _end(self, peer):
        _logger.error("rank %d: rank %d ended without finishing (killed, crashed or its node failed): stopping this "
                      "worker with exit code %d so that the whole job ends; restart it with --resume auto",
                      self.rank, peer, PEER_LOST_EXIT_CODE)
        _leave(PEER_LOST_EXIT_CODE)

    def close(self):
        """Say goodbye: this process finished, or stopped on request in step with the other ranks."""
        self.closing = True
        for connection in self.connections:
            try:
                connection.sendall(_GOODBYE)
            except OSError:
                pass


def _leave(exit_code):
    """End this process now, with its data-loader workers, closing its sockets without goodbye."""
    for stream in [handler for handler in logging.getLogger().handlers] + [sys.stdout, sys.stderr]:
        stream.flush()
    import psutil  # a MindSpore dependency (msrun uses it)

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    os._exit(exit_code)


def _said_goodbye(connection):
    try:
        return connection.recv(len(_GOODBYE), socket.MSG_WAITALL) == _GOODBYE  # blocks until goodbye or EOF
    except OSError:
        return False


def _address_towards_scheduler():
    """(family, address) of this host's interface that reaches msrun's scheduler, which every rank can reach."""
    host, port = os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"])
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)  # a UDP connect sends nothing: it only picks the route and the source address
        return family, probe.getsockname()[0]


def _guardian_socket_name():
    # one per launcher: msrun is the parent of its scheduler and workers
    return f"mindcv_lite-msrun-{os.getppid()}-{os.environ['MS_SCHED_PORT']}"


def _connect_to_guardian():
    """A socket to this launcher's scheduler guardian, or None when the scheduler runs on another node."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect("\0" + _guardian_socket_name())
    except OSError:
        connection.close()
        return None
    return connection


def _guard_scheduler(socket_name, scheduler_pid):
    """Guardian process: SIGKILL the scheduler when a worker's socket closes without goodbye; end with it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + socket_name)  # a Linux abstract socket: no file to clean up
    server.listen()
    print("listening", flush=True)

    def watch(connection):
        if not _said_goodbye(connection):
            os.kill(scheduler_pid, signal.SIGKILL)

    def accept():
        while True:
            connection, _ = server.accept()
            threading.Thread(target=watch, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    while os.getppid() == scheduler_pid:  # the scheduler ended (either way): so does its guardian
        time.sleep(0.5)


if __name__ == "__main__":
    _guard_scheduler(sys.argv[1], int(sys.argv[2]))
