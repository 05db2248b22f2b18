"""Other input sizes: PiT built with `img_size=N` loads a 224 checkpoint by resampling its position embedding."""
import numpy as np
import pytest

import mindspore as ms

from mindcv_lite import create_model, save_checkpoint
from mindcv_lite.models.layers import resample_pos_embed_grid


def test_pit_loads_224_checkpoint_at_another_size_by_bicubic_resampling(tmp_path):
    """The 27x27 grid of a 224 checkpoint becomes 31x31 for img_size=256: resampled as timm does (bicubic,
    half-pixel centres), so the centre cell is kept and a ramp stays a ramp up to the cubic kernel's overshoot."""
    source = create_model("pit_ti", num_classes=4)
    channels, grid = source.pos_embed.shape[1], source.pos_embed.shape[2]
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    ramp = (0.01 * rows + 0.02 * cols)[None, None] * np.linspace(1, 2, channels)[None, :, None, None]
    source.pos_embed.set_data(ms.Tensor(ramp.astype(np.float32)))
    path = save_checkpoint(source, tmp_path / "pit_ti_224.ckpt")

    model = create_model("pit_ti", num_classes=4, img_size=256, checkpoint_path=str(path))
    got = model.pos_embed.asnumpy()
    assert got.shape == (1, channels, 31, 31)
    expected = resample_pos_embed_grid(ramp[0].transpose(1, 2, 0), (31, 31), "bicubic").transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[..., 15, 15], ramp[..., 13, 13], rtol=1e-5)
    src = (np.arange(31) + 0.5) * grid / 31 - 0.5
    interior = slice(2, 29)
    linear = (0.01 * src[:, None] + 0.02 * src[None, :])[None, None] * np.linspace(1, 2, channels)[None, :, None, None]
    assert np.abs(got - linear)[..., interior, interior].max() < 0.1 * 0.06

    weights = {p.name: p.asnumpy() for p in source.get_parameters() if p.name != "pos_embed"}
    assert all(np.array_equal(p.asnumpy(), weights[p.name]) for p in model.get_parameters() if p.name in weights)
    model.set_train(False)
    logits = model(ms.Tensor(np.zeros((1, 3, 256, 256), np.float32)))
    assert logits.shape == (1, 4) and np.isfinite(logits.asnumpy()).all()


@pytest.mark.parametrize("size", [160, 288])
def test_pvt_runs_at_sizes_divisible_by_32(size, mode):
    model = create_model("pvt_tiny", num_classes=3, img_size=size)
    model.set_train(False)
    assert model(ms.Tensor(np.zeros((1, 3, size, size), np.float32))).shape == (1, 3)


def test_pvt_input_not_divisible_by_32_is_rejected_with_reason():
    model = create_model("pvt_tiny", num_classes=3, img_size=64)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(ms.Tensor(np.zeros((1, 3, 80, 80), np.float32)))
