"""`python -m mindcv_lite.infer`: top-5 classes with probabilities, class names from the right source."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from _image_folders import write_image
from mindcv_lite import create_model, save_checkpoint
from mindcv_lite.data import create_transforms
from mindcv_lite.data.image_bytes import CorruptImageError
from mindcv_lite.data.imagenet_classes import IMAGENET_CLASSES
from mindcv_lite.infer import load_images, main

SIZE = 64


@pytest.fixture(autouse=True)
def restore_mode():
    previous = ms.get_context("mode")
    yield
    ms.set_context(mode=previous)


@pytest.fixture
def images(tmp_path):
    """A landscape JPEG and a portrait greyscale PNG."""
    return [write_image(str(tmp_path / "wide.jpg"), size=(120, 80), class_index=0),
            write_image(str(tmp_path / "tall.png"), size=(50, 90), mode="L", seed=1, class_index=2)]


def _printed(capsys, stderr_has=""):
    """{image path: [(name, percent), ...]} from the command's output (stdout); stderr must hold `stderr_has`."""
    results, current = {}, None
    captured = capsys.readouterr()
    assert stderr_has in captured.err
    for line in captured.out.splitlines():
        if not line.startswith("  "):
            current = results.setdefault(line, [])
            continue
        name, percent = line.split(". ", 1)[1].rsplit(None, 1)
        current.append((name.strip(), float(percent.rstrip("%"))))
    return results


def _expected(model, paths, names, k):
    """Top-k computed here: the pretrained eval transform of the data package, the model, softmax."""
    transforms = create_transforms(image_resize=SIZE, is_training=False, crop_pct=model.pretrained_cfg["crop_pct"],
                                   interpolation=model.pretrained_cfg["interpolation"])
    batch = []
    for path in paths:
        with open(path, "rb") as f:
            image = np.frombuffer(f.read(), np.uint8)
        for transform in transforms:
            image = transform(image)
        batch.append(image)
    model.set_train(False)
    probs = ops.softmax(model(ms.Tensor(np.stack(batch))), axis=-1).asnumpy()
    return {path: [(names[i], 100 * p[i]) for i in np.argsort(-p)[:k]] for path, p in zip(paths, probs)}


def _assert_same(printed, expected):
    assert printed.keys() == expected.keys()
    for path in expected:
        assert [name for name, _ in printed[path]] == [name for name, _ in expected[path]]
        np.testing.assert_allclose([p for _, p in printed[path]], [p for _, p in expected[path]], atol=0.006)


def test_imagenet_checkpoint_prints_top5_imagenet_names(images, tmp_path, capsys):
    model = create_model("pvt_v2_b0")
    ckpt = save_checkpoint(model, tmp_path / "b0.ckpt")
    main(["--model", "pvt_v2_b0", "--ckpt_path", str(ckpt), "--image_size", str(SIZE), *images])
    printed = _printed(capsys)
    _assert_same(printed, _expected(model, images, IMAGENET_CLASSES, 5))
    assert all(len(top) == 5 for top in printed.values())


def test_stored_class_folder_names_are_used(images, tmp_path, capsys):
    model = create_model("pit_ti", num_classes=3, img_size=SIZE)
    ckpt = save_checkpoint(model, tmp_path / "pit.ckpt", extra={"train.class_names": ["cat", "dog", "emu"]})
    main(["--model", "pit_ti", "--ckpt_path", str(ckpt), "--image_size", str(SIZE), *images])
    printed = _printed(capsys, f"data config: image_resize {SIZE}, interpolation bicubic, crop_pct 0.9")  # pit_ti's
    _assert_same(printed, _expected(model, images, ["cat", "dog", "emu"], 3))


def test_indices_without_stored_names(images, tmp_path, capsys):
    model = create_model("pvt_tiny", num_classes=7, img_size=SIZE)
    ckpt = save_checkpoint(model, tmp_path / "pvt.ckpt")
    main(["--model", "pvt_tiny", "--ckpt_path", str(ckpt), "--image_size", str(SIZE), images[0]])
    printed = _printed(capsys)
    _assert_same(printed, _expected(model, images[:1], [str(i) for i in range(7)], 5))


def test_images_get_the_models_pretrained_eval_transform(images, tmp_path, monkeypatch):
    """PVTv2 was evaluated with crop_pct 0.9 and bicubic resizing, not the data defaults (0.875, bilinear)."""
    import mindcv_lite.infer as infer
    calls = []

    def recording_load_images(paths, image_size, crop_pct, interpolation):
        calls.append((image_size, crop_pct, interpolation))
        return load_images(paths, image_size, crop_pct, interpolation)

    monkeypatch.setattr(infer, "load_images", recording_load_images)
    ckpt = save_checkpoint(create_model("pvt_v2_b0", num_classes=2), tmp_path / "b0.ckpt")
    infer.classify("pvt_v2_b0", str(ckpt), images[:1], image_size=SIZE)
    assert calls == [(SIZE, 0.9, "bicubic")]
    assert not np.allclose(load_images(images[:1], SIZE, 0.9, "bicubic"), load_images(images[:1], SIZE, 0.875,
                                                                                        "bicubic"))


@pytest.mark.parametrize("content, error", [(None, FileNotFoundError), (b"not an image", CorruptImageError)])
def test_bad_image_is_reported_with_its_path(content, error, tmp_path):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match="bad.jpg"):
        load_images([str(path)], SIZE, 0.9, "bicubic")
