"""Build a registered model from its config, and fetch published weights."""
import hashlib
import inspect
import os
import urllib.error
import urllib.request

from tqdm import tqdm

from ..utils.io import atomic_path
from .checkpoint import load_checkpoint
from .registry import get_pretrained_cfg


def pretrained_cache_dir():
    return os.environ.get("MINDCV_LITE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "mindcv_lite"))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_pretrained(model_name, cfg, timeout=10.0):
    """Path of the published checkpoint in the cache, downloading and verifying it when absent.

    Fails at once with a message naming `checkpoint_path` when the weights cannot be fetched (no network).
    """
    url = cfg["url"]
    if not url:
        raise ValueError(f"{model_name} has no published weights: pass checkpoint_path=... to load your own")
    path = os.path.join(pretrained_cache_dir(), os.path.basename(url))
    if not os.path.isfile(path):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(path) as tmp:
                total = int(response.headers.get("Content-Length") or 0) or None
                with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                                 desc=f"downloading {model_name}") as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(
                f"could not download pretrained weights of {model_name} from {url} ({exc}). Without network access, "
                f"fetch the file elsewhere and pass checkpoint_path=/path/to/{os.path.basename(url)} "
                f"(or place it at {path})") from exc
    if cfg["sha256_prefix"] and not _sha256(path).startswith(cfg["sha256_prefix"]):
        os.remove(path)
        raise RuntimeError(f"{path} does not have the published sha256 (prefix {cfg['sha256_prefix']}): the download "
                           f"was damaged and has been removed; try again or pass checkpoint_path=...")
    return path


def build_model_with_cfg(model_cls, variant, pretrained, checkpoint_filter_fn, **kwargs):
    """Instantiate `model_cls` for `variant`, attach its pretrained config and checkpoint filter, and load the
    published weights when `pretrained`."""
    accepted = inspect.signature(model_cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = sorted(k for k in accepted if k != "self")
        raise TypeError(f"{variant} does not take argument(s) {', '.join(unknown)}; it takes: {', '.join(options)}")
    model = model_cls(**kwargs)
    cfg = get_pretrained_cfg(variant)
    cfg["architecture"] = variant
    if kwargs.get("img_size") or kwargs.get("in_chans"):  # the size the data config feeds this model (timm's)
        channels, height, width = cfg["input_size"]
        size = kwargs.get("img_size") or height
        cfg["input_size"] = (kwargs.get("in_chans") or channels, size, size)
    model.pretrained_cfg = cfg
    model.checkpoint_filter_fn = checkpoint_filter_fn
    if pretrained:
        load_checkpoint(model, download_pretrained(variant, cfg))
    return model
