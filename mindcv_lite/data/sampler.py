"""Epoch-wise shuffling sampler that shards like torch's DistributedSampler, with optional repeated augmentation.

It yields tickets rather than bare indices: ticket = draw * dataset_size + index, where draw = epoch *
slots_per_epoch + slot numbers the sample's slot in the epoch's padded global order. The reader turns a ticket
back into the index and the sample's augmentation seed (seeded.sample_seed), so augmentation follows
(seed, epoch, slot) and a run can resume anywhere, even mid-epoch.
"""
import math

import numpy as np
import mindspore.dataset as ds

__all__ = ["ShardedSampler"]

_MAX_TICKET = 2**63 - 1


class ShardedSampler(ds.Sampler):
    """Yield this shard's tickets for one epoch per `iter()` call (then move to the next epoch).

    Every rank draws the same permutation (from `seed` and the epoch number), pads it by wrap-around to a
    multiple of `num_shards` and takes every `num_shards`-th index from `shard_id`: shards are disjoint, cover
    the dataset, and have equal length, so no rank waits for another at the end of an epoch.
    With `num_repeats` > 1 each index appears `num_repeats` times in a row before sharding (timm's RASampler:
    the copies land on different ranks, each augmented differently) and the shard keeps its usual length.
    `skip` > 0 drops the first `skip` samples of the next epoch only (a mid-epoch resume; see data.set_epoch).
    """

    def __init__(self, size, num_shards=1, shard_id=0, shuffle=True, seed=0, num_samples=None, num_repeats=0):
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id}")
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f"num_samples must be positive or None, got {num_samples}")
        if seed < 0:
            raise ValueError(f"the data seed must be >= 0, got {seed}")
        per_shard = math.ceil(size / num_shards)
        self.epoch_length = per_shard if num_samples is None else min(per_shard, num_samples)
        self.size = size
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.shuffle = shuffle
        self.seed = seed
        self.num_repeats = max(1, num_repeats)
        self.slots_per_epoch = math.ceil(size * self.num_repeats / num_shards) * num_shards
        self.epoch = 0
        self.skip = 0
        super().__init__()
        # MindSpore sizes an iterator's epochs from get_num_samples() (below) when num_samples is None; a fixed
        # num_samples would make it reject the shorter first epoch of a mid-epoch resume
        self.num_samples = None

    def __len__(self):
        return self.epoch_length

    def get_num_samples(self):
        """Samples in the next epoch: MindSpore reads it to size the dataset and an iterator's first epoch."""
        return self.epoch_length - self.skip

    def epoch_indices(self, epoch):
        """The indices this shard reads in `epoch`, without advancing the epoch counter."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        order = np.repeat(order, self.num_repeats)
        padded = np.resize(order, self.slots_per_epoch)
        return padded[self.shard_id :: self.num_shards][: self.epoch_length]

    def epoch_tickets(self, epoch):
        """`epoch_indices(epoch)` with each sample's draw folded in (see the module docstring)."""
        if ((epoch + 1) * self.slots_per_epoch) * self.size > _MAX_TICKET:
            raise ValueError(f"epoch {epoch} is beyond what a ticket of this {self.size}-image dataset can encode")
        slots = np.arange(self.epoch_length, dtype=np.int64) * self.num_shards + self.shard_id
        draws = epoch * self.slots_per_epoch + slots
        return draws * self.size + self.epoch_indices(epoch)

    def __iter__(self):
        tickets = self.epoch_tickets(self.epoch)[self.skip :]
        self.epoch += 1
        self.skip = 0
        return iter(tickets.tolist())
