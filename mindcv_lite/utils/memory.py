"""Give the memory MindSpore's graph compiler freed back to the operating system before the graph runs.

MindSpore 2.10 (glibc builds) compiles a graph in many small heap allocations and frees most of them when the
compilation ends, but glibc keeps the freed pages, and the graph's first run then takes its buffers from fresh
pages: the process's peak memory is the compiler's high-water mark plus the run's (pit_ti inference, batch 16, CPU:
1.29 GB; 1.15 GB with the pages returned between the two). `malloc_trim` returns them.
"""
import ctypes
import ctypes.util

from mindspore import nn

__all__ = ["ReleasesCompilerMemory", "release_free_heap"]

_LIBC = ctypes.util.find_library("c")
_malloc_trim = getattr(ctypes.CDLL(_LIBC), "malloc_trim", None) if _LIBC else None


def release_free_heap():
    """Return the heap's free pages to the operating system (glibc's malloc_trim); False where there is none."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class ReleasesCompilerMemory(nn.Cell):
    """A cell that calls `release_free_heap()` after each graph compilation (not after the cached lookups that
    precede every later call)."""

    def compile(self, *args, **kwargs):
        compiled_before = len(self.compile_cache)
        super().compile(*args, **kwargs)
        if len(self.compile_cache) > compiled_before:
            release_free_heap()
