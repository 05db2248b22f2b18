"""Python transforms whose randomness comes from a per-sample seed column instead of a shared RNG.

MindSpore runs a Python op on several worker threads; a shared `random`/`np.random` state would then hand out
numbers in thread-scheduling order and no two runs would match. `create_loader` stamps every sample with a
seed from one sequential stage and never changes it; the transform at position `salt` of the transform list
draws from `sample_rng(seed, salt)`, so its output depends only on the sample, its position and the global
seed, whatever the worker count, and whether it runs per image or in the batch stage.
"""
import random

__all__ = ["SeededTransform", "sample_rng"]


def sample_rng(seed, salt=0):
    """The random.Random of one sample for one transform: distinct for every (seed < 2**62, salt) pair."""
    return random.Random(int(seed) + (int(salt) << 64))


class SeededTransform:
    """Base class: subclasses implement `apply(image, rng)` with `rng` a `random.Random` private to the sample."""

    def apply(self, image, rng):
        raise NotImplementedError

    def __call__(self, image, seed, salt=0):
        return self.apply(image, sample_rng(seed, salt))
