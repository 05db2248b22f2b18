"""dataset_sink_mode: the device-queue feed gives the train step the same batches, epoch by epoch and after a
mid-epoch resume, as host feeding. MindSpore 2.10 has no device queue on CPU, so `data_sink` is replaced by its
contract (each call runs the step on the next batch of the endlessly iterated dataset)."""
import numpy as np
import pytest

from _image_folders import make_image_folder
from mindcv_lite.data import create_dataset, create_loader, create_transforms, set_epoch
from mindcv_lite.engine import feeding
from mindcv_lite.engine.feeding import DeviceQueueFeed, HostFeed, create_feed

STEPS_PER_EPOCH = 3  # 7 images, batch 2, drop_remainder


@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("data"), splits=("train",), num_classes=2, per_class=4,
                               size=(20, 16))
    dataset = create_dataset("imagenet", folder, "train", shuffle=True, seed=3, num_parallel_workers=1,
                             num_samples=7)
    transforms = create_transforms("imagenet", image_resize=16, is_training=True, auto_augment="randaug-m9-mstd0.5")
    return create_loader(dataset, 2, drop_remainder=True, is_training=True, transform=transforms, num_classes=2,
                         num_parallel_workers=1, mixup=0.8)


@pytest.fixture
def device_queue(monkeypatch):
    def data_sink(fn, dataset, sink_size=1, jit_config=None, input_signature=None):
        assert sink_size == 1 and jit_config is None
        batches = dataset.create_tuple_iterator(num_epochs=-1)

        def next_batch():
            try:
                return next(batches)
            except StopIteration:  # the queue runs on into the next epoch
                return next(batches)

        return lambda: fn(*next_batch())

    monkeypatch.setattr(feeding.ms, "data_sink", data_sink)


def _record(images, labels, update):
    """A stand-in train step: what it was given."""
    return images.asnumpy().copy(), labels.asnumpy().copy(), update


def _run(feed, num_epochs):
    """Per epoch, what the step received; `update` alternates as with gradient_accumulation_steps 2."""
    steps, count = [], 0
    for _ in range(num_epochs):
        steps.append([])
        for run in feed.epoch():
            count += 1
            steps[-1].append(run(count % 2 == 0))
    return steps


def _assert_same(steps, expected):
    assert [len(epoch) for epoch in steps] == [len(epoch) for epoch in expected]
    for got, want in zip(sum(steps, []), sum(expected, [])):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == want[2]


def test_device_queue_feeds_the_host_fed_batches_through_epochs_and_after_a_resume(loader, device_queue):
    set_epoch(loader, 0)
    host = _run(HostFeed(loader, _record, num_epochs=2), 2)
    assert [len(epoch) for epoch in host] == [STEPS_PER_EPOCH, STEPS_PER_EPOCH]
    set_epoch(loader, 0)
    sink = create_feed(loader, _record, 2, STEPS_PER_EPOCH, 0, sink=True, device_target="Ascend")
    assert isinstance(sink, DeviceQueueFeed)
    _assert_same(_run(sink, 2), host)

    set_epoch(loader, 0, skip_batches=2)  # resumed after 2 steps of epoch 1
    resumed = _run(DeviceQueueFeed(loader, _record, STEPS_PER_EPOCH, skip_batches=2), 2)
    assert [len(epoch) for epoch in resumed] == [1, STEPS_PER_EPOCH]
    expected = [[host[0][2]], host[1]]
    for got, want in zip(sum(resumed, []), sum(expected, [])):
        np.testing.assert_array_equal(got[0], want[0])


def test_sink_mode_falls_back_to_the_host_where_there_is_no_device_queue(loader):
    assert isinstance(create_feed(loader, _record, 1, STEPS_PER_EPOCH, 0, sink=True, device_target="CPU"), HostFeed)
    assert isinstance(create_feed(loader, _record, 1, STEPS_PER_EPOCH, 0, sink=False, device_target="Ascend"),
                      HostFeed)
