"""Atomic file writes: a crash or kill at any moment leaves either the old file or the new one, never half."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the same directory; on success it is fsynced and renamed over `path`.

    MindSpore 2.10's `save_checkpoint` deletes the old file before renaming, so it is not atomic by itself:
    write through this instead.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # The extension stays last: MindSpore's save_checkpoint appends ".ckpt" to a name that lacks it.
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + os.path.splitext(path)[1],
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
