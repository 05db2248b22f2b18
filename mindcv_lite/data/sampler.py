"""Epoch-wise shuffling sampler that shards like torch's DistributedSampler, with optional repeated augmentation."""
import math

import numpy as np
import mindspore.dataset as ds

__all__ = ["ShardedSampler"]


class ShardedSampler(ds.Sampler):
    """Yield this shard's indices for one epoch per `iter()` call.

    Every rank draws the same permutation (from `seed` and the epoch number), pads it by wrap-around to a
    multiple of `num_shards` and takes every `num_shards`-th index from `shard_id`: shards are disjoint, cover
    the dataset, and have equal length, so no rank waits for another at the end of an epoch.
    With `num_repeats` > 1 each index appears `num_repeats` times in a row before sharding (timm's RASampler:
    the copies land on different ranks, each augmented differently) and the shard keeps its usual length.
    """

    def __init__(self, size, num_shards=1, shard_id=0, shuffle=True, seed=0, num_samples=None, num_repeats=0):
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id}")
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f"num_samples must be positive or None, got {num_samples}")
        per_shard = math.ceil(size / num_shards)
        super().__init__(num_samples=per_shard if num_samples is None else min(per_shard, num_samples))
        self.size = size
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.shuffle = shuffle
        self.seed = seed
        self.num_repeats = max(1, num_repeats)
        self.epoch = 0

    def __len__(self):
        return self.num_samples

    def epoch_indices(self, epoch):
        """The indices this shard reads in `epoch`, without advancing the epoch counter."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        order = np.repeat(order, self.num_repeats)
        padded = np.resize(order, math.ceil(len(order) / self.num_shards) * self.num_shards)
        return padded[self.shard_id :: self.num_shards][: self.num_samples]

    def __iter__(self):
        indices = self.epoch_indices(self.epoch)
        self.epoch += 1
        return iter(indices.tolist())
