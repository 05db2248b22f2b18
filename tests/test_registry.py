"""Registry and factory: names, filters, pretrained configs, and fetching published weights (offline-safe)."""
import hashlib
import time
import urllib.error
import urllib.request

import pytest

import mindcv_lite
from mindcv_lite import create_model, list_models, save_checkpoint
from mindcv_lite.models import get_pretrained_cfg, is_model, model_entrypoint
from mindcv_lite.models.helpers import download_pretrained

PIT = ["pit_b", "pit_b_distilled", "pit_s", "pit_s_distilled", "pit_ti", "pit_ti_distilled", "pit_xs",
       "pit_xs_distilled"]


def test_top_level_exports():
    assert mindcv_lite.create_model is create_model and mindcv_lite.list_models is list_models


def test_list_models_wildcards_and_exclusion():
    assert list_models("pit_*") == PIT
    assert list_models(["pit_ti*", "pvt_tiny"]) == ["pit_ti", "pit_ti_distilled", "pvt_tiny"]
    assert list_models("pit_*", exclude_filters="*_distilled") == ["pit_b", "pit_s", "pit_ti", "pit_xs"]
    assert list_models() == sorted(list_models())
    assert list_models("no_such_*") == []


def test_pretrained_filter_lists_models_with_published_weights():
    with_weights = list_models(pretrained=True)
    assert {"pit_ti", "pit_xs", "pit_s", "pit_b", "pvt_tiny", "pvt_small", "pvt_medium", "pvt_large"} <= set(
        with_weights)
    assert not set(with_weights) & set(list_models("*_distilled"))
    assert all(get_pretrained_cfg(name)["url"] for name in with_weights)


@pytest.mark.parametrize("name", ["pit_ti", "pvt_tiny"])
def test_pretrained_config_has_everything_an_eval_pipeline_needs(name):
    cfg = get_pretrained_cfg(name)
    for key in ("input_size", "crop_pct", "interpolation", "mean", "std", "first_conv", "classifier",
                "num_classes", "url", "sha256_prefix"):
        assert key in cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 1000
    assert cfg["url"].endswith(".ckpt") and cfg["sha256_prefix"] in cfg["url"]
    model = create_model(name, img_size=64, num_classes=2)
    assert model.pretrained_cfg["architecture"] == name
    first_conv = model
    for attr in cfg["first_conv"].split("."):
        first_conv = getattr(first_conv, attr)
    assert first_conv.weight.shape[1] == 3


def test_unknown_name_lists_close_matches():
    assert is_model("pit_ti") and not is_model("pit_tiny")
    with pytest.raises(ValueError, match=r"'pit_tiny'.*Did you mean: .*pit_ti"):
        create_model("pit_tiny")
    with pytest.raises(ValueError, match="list_models"):
        model_entrypoint("resnet50")


def test_pretrained_without_network_fails_at_once_naming_checkpoint_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDCV_LITE_HOME", str(tmp_path))

    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="checkpoint_path=") as error:
        create_model("pit_ti", pretrained=True)
    assert time.monotonic() - start < 30
    assert "pit_ti" in str(error.value) and list(tmp_path.iterdir()) == []


def _publish(tmp_path, name="pit_ti"):
    """A 'published' checkpoint served from a file:// URL, named the mindcv way."""
    source = save_checkpoint(create_model(name, num_classes=1000), tmp_path / "server" / "weights.ckpt")
    data = open(source, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    published = tmp_path / "server" / f"{name}-{digest[:8]}.ckpt"
    published.write_bytes(data)
    return published.as_uri(), digest[:8]


def test_download_is_verified_cached_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDCV_LITE_HOME", str(tmp_path / "cache"))
    url, prefix = _publish(tmp_path)
    cfg = dict(get_pretrained_cfg("pit_ti"), url=url, sha256_prefix=prefix)
    path = download_pretrained("pit_ti", cfg)
    assert path.startswith(str(tmp_path / "cache")) and path.endswith(f"pit_ti-{prefix}.ckpt")
    monkeypatch.setattr(urllib.request, "urlopen", None)  # a second call must come from the cache
    assert download_pretrained("pit_ti", cfg) == path


def test_download_with_wrong_checksum_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDCV_LITE_HOME", str(tmp_path / "cache"))
    url, prefix = _publish(tmp_path)
    cfg = dict(get_pretrained_cfg("pit_ti"), url=url, sha256_prefix="00000000")
    with pytest.raises(RuntimeError, match="sha256"):
        download_pretrained("pit_ti", cfg)
    assert list((tmp_path / "cache").iterdir()) == []


def test_model_without_published_weights_says_so():
    with pytest.raises(ValueError, match="no published weights.*checkpoint_path"):
        create_model("pit_ti_distilled", pretrained=True)
