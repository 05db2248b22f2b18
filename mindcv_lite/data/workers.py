"""Worker-count clamping: MindSpore rejects num_parallel_workers above the CPU count instead of capping it."""
import os
import warnings

__all__ = ["clamp_workers"]

_warned = set()


def clamp_workers(num_parallel_workers):
    """Cap `num_parallel_workers` at this machine's CPU count (a recipe's 16 must not fail on a 2-core box)."""
    cpus = os.cpu_count() or 1
    if num_parallel_workers is None:
        return min(8, cpus)
    if num_parallel_workers < 1:
        raise ValueError(f"num_parallel_workers must be >= 1, got {num_parallel_workers}")
    if num_parallel_workers > cpus and num_parallel_workers not in _warned:
        _warned.add(num_parallel_workers)
        warnings.warn(f"num_parallel_workers={num_parallel_workers} exceeds the {cpus} CPUs here; using {cpus}.")
    return min(num_parallel_workers, cpus)
