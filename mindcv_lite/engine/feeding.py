"""How the training batches reach the train step: read on the host, or through the device queue
(`dataset_sink_mode`, Ascend/GPU).

Both give the loop one callable per step, `run(update) -> (loss, overflow)`, epoch by epoch, so logging, stop
signals and step checkpoints work the same. In sink mode each call takes the next batch from the device queue
(MindSpore's `data_sink`, one step per call): the host no longer copies batches into the step, the loop still
returns to the host after every step. MindSpore 2.10 has no device queue on CPU, where sink mode falls back to
host feeding (train.py warns once).
"""
import functools

import mindspore as ms

__all__ = ["SINK_DEVICES", "DeviceQueueFeed", "HostFeed", "create_feed"]

SINK_DEVICES = ("Ascend", "GPU")


class HostFeed:
    """Batches iterated on the host and passed to `train_step(images, labels, update)`."""

    def __init__(self, loader, train_step, num_epochs):
        self.batches = loader.create_tuple_iterator(num_epochs=num_epochs)
        self.train_step = train_step

    def epoch(self):
        for images, labels in self.batches:  # one epoch: the iterator stops at its end
            yield functools.partial(self.train_step, images, labels)


class DeviceQueueFeed:
    """Batches sent through the device queue; `steps_per_epoch - skip_batches` steps in the first epoch (resume
    from the middle of an epoch: `set_epoch` already skips those batches), `steps_per_epoch` in the next ones."""

    def __init__(self, loader, train_step, steps_per_epoch, skip_batches=0):
        self.train_step = train_step
        self.update = True
        self.steps_per_epoch = steps_per_epoch
        self.next_epoch_steps = steps_per_epoch - skip_batches
        self.sink_step = ms.data_sink(self._train, loader, sink_size=1)

    def _train(self, images, labels):
        return self.train_step(images, labels, self.update)

    def _run(self, update):
        self.update = update
        return self.sink_step()

    def epoch(self):
        steps, self.next_epoch_steps = self.next_epoch_steps, self.steps_per_epoch
        for _ in range(steps):
            yield self._run


def create_feed(loader, train_step, num_epochs, steps_per_epoch, skip_batches, sink, device_target):
    """The feed of `num_epochs` epochs (the first one `skip_batches` short): the device queue when `sink` is asked
    for on a device that has one, else the host."""
    if sink and device_target in SINK_DEVICES:
        return DeviceQueueFeed(loader, train_step, steps_per_epoch, skip_batches)
    return HostFeed(loader, train_step, num_epochs)
