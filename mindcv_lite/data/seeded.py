"""Python transforms whose randomness comes from a per-sample seed column instead of a shared RNG.

A shared `random`/`np.random` state (or a MindSpore C++ random op) hands out numbers in thread-scheduling order
and continues from wherever the process happens to be, so neither the worker count nor a resume could
reproduce it. Instead, every sample carries a seed fixed by (global seed, epoch, its slot in that epoch's
shuffled, sharded order) (see `sample_seed` and sampler.py); the transform at position `salt` of the transform
list draws from `sample_rng(seed, salt)`. An augmented sample then depends only on what it is and where it sits
in which epoch: not on the worker count, on how many epochs this process ran, or on whether the op runs per
image or in the batch stage.
"""
import random

import numpy as np

__all__ = ["SeededTransform", "sample_rng", "sample_seed"]


def sample_seed(seed, draw):
    """The seed (< 2**62) of the sample at `draw` = epoch * slots_per_epoch + slot, for the global `seed`."""
    return int(np.random.SeedSequence([int(seed), int(draw)]).generate_state(1, np.uint64)[0] >> np.uint64(2))


def sample_rng(seed, salt=0):
    """The random.Random of one sample for one transform: distinct for every (seed < 2**62, salt) pair."""
    return random.Random(int(seed) + (int(salt) << 64))


class SeededTransform:
    """Base class: subclasses implement `apply(image, rng)` with `rng` a `random.Random` private to the sample."""

    def apply(self, image, rng):
        raise NotImplementedError

    def __call__(self, image, seed, salt=0):
        return self.apply(image, sample_rng(seed, salt))
