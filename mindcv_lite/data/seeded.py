"""Python transforms whose randomness comes from a per-sample seed column instead of a shared RNG.

MindSpore runs a Python op on several worker threads; a shared `random`/`np.random` state would then hand out
numbers in thread-scheduling order and no two runs would match. `create_loader` stamps every sample with a
seed from one sequential stage; a SeededTransform takes (image, seed) and returns (image, next seed), so its
output depends only on the sample and the global seed, whatever the worker count.
"""
import random

import numpy as np

__all__ = ["SeededTransform"]


class SeededTransform:
    """Base class: subclasses implement `apply(image, rng)` with `rng` a `random.Random` private to the sample."""

    def apply(self, image, rng):
        raise NotImplementedError

    def __call__(self, image, seed):
        rng = random.Random(int(seed))
        image = self.apply(image, rng)
        return image, np.int64(rng.getrandbits(62))
