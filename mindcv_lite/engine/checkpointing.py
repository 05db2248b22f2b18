"""Training checkpoints: mindcv-loadable weights plus everything needed to resume exactly.

A checkpoint holds every Parameter of the `TrainStep` (weights, optimizer moments and step, loss scale, EMA
weights, accumulated gradients) except the learning-rate schedule, which is rebuilt from the config; plus
`epoch_num` / `step_num` (mindcv's names), the model name and the training set's class names. Weights are stored
under mindcv's parameter names (`model.to_mindcv_key`), and training state under names that
`mindcv_lite.models.load_checkpoint` skips, so the same file fine-tunes, validates, resumes, and loads into mindcv.
Files are written atomically; `checkpoints.json` lists them (the latest, the best, their metrics).
"""
import json
import logging
import os

import numpy as np
import mindspore as ms

from ..models import CheckpointMismatchError, read_checkpoint, save_checkpoint
from ..models.checkpoint import CLASS_NAMES_KEY
from ..utils.io import atomic_path

__all__ = ["CheckpointManager", "load_train_checkpoint", "save_train_checkpoint"]

_logger = logging.getLogger(__name__)

EPOCH_KEY = "epoch_num"
STEP_KEY = "step_num"
MODEL_KEY = "train.model"
MANIFEST = "checkpoints.json"
_NOT_SAVED = ("learning_rate",)  # the per-step schedule: rebuilt from the config on resume


def _checkpoint_key_fn(model):
    """Our Parameter name -> checkpoint key: model weights, alone or after a prefix (`adam_m.`, `ema.`, ...),
    get mindcv's name; other state keeps its name."""
    to_mindcv = getattr(model, "to_mindcv_key", None) or (lambda key: key)
    weight_names = {p.name for p in model.get_parameters()}

    def key(name):
        if name in weight_names:
            return to_mindcv(name)
        dot = name.find(".")
        while dot != -1:
            if name[dot + 1:] in weight_names:
                return name[:dot + 1] + to_mindcv(name[dot + 1:])
            dot = name.find(".", dot + 1)
        return name

    return key


def _train_state(train_step):
    return [p for p in train_step.get_parameters() if p.name not in _NOT_SAVED]


def save_train_checkpoint(path, train_step, model, model_name, epoch, global_step, class_names):
    """Write the full training state of `train_step` after `epoch` epochs (`global_step` micro-steps)."""
    key = _checkpoint_key_fn(model)
    state = {key(p.name): p for p in _train_state(train_step)}
    extra = {EPOCH_KEY: int(epoch), STEP_KEY: int(global_step), MODEL_KEY: model_name,
             CLASS_NAMES_KEY: list(class_names)}
    return save_checkpoint(state, path, extra)


def load_train_checkpoint(path, train_step, model, model_name, class_names):
    """Restore the training state written by `save_train_checkpoint`; returns (epoch, global step).

    Strict: every Parameter of `train_step` must be in the file with its shape, so a checkpoint from another
    model, optimizer, or ema / loss-scale / accumulation setting is an error, never a partial resume.
    """
    entries = read_checkpoint(path)
    saved_model = entries.get(MODEL_KEY)
    if saved_model is not None and str(saved_model) != model_name:
        raise CheckpointMismatchError(f"cannot resume from {path!r}: it was written for model {saved_model!r}, "
                                      f"this run trains {model_name!r}")
    if EPOCH_KEY not in entries or STEP_KEY not in entries:
        raise CheckpointMismatchError(
            f"cannot resume from {path!r}: it holds no training state (epoch_num / step_num), e.g. a weights-only "
            "or pretrained checkpoint. To start a new training from its weights use --ckpt_path instead of --resume")
    key = _checkpoint_key_fn(model)
    missing, mismatched, loads = [], [], []
    for param in _train_state(train_step):
        name = key(param.name)
        if name not in entries:
            missing.append(name)
        elif tuple(np.shape(entries[name])) != tuple(param.shape):
            mismatched.append(f"{name} (checkpoint {tuple(np.shape(entries[name]))}, run {tuple(param.shape)})")
        else:
            loads.append((param, entries[name]))
    if missing or mismatched:
        problems = [f"missing {len(missing)}: {', '.join(missing[:6])}" if missing else "",
                    f"wrong shape {len(mismatched)}: {', '.join(mismatched[:6])}" if mismatched else ""]
        raise CheckpointMismatchError(
            f"cannot resume from {path!r}: {'; '.join(p for p in problems if p)}. Resume with the config the "
            "checkpoint was trained with (same model, opt, ema, loss_scale_type, gradient_accumulation_steps); "
            "to only start from its weights use --ckpt_path")
    saved_classes = entries.get(CLASS_NAMES_KEY)
    if saved_classes is not None and json.loads(saved_classes) != list(class_names):
        raise CheckpointMismatchError(f"cannot resume from {path!r}: it was trained on other classes than the "
                                      "folders of this training set")
    for param, value in loads:
        param.set_data(ms.Tensor(np.asarray(value), dtype=param.dtype))
    return int(entries[EPOCH_KEY]), int(entries[STEP_KEY])


class CheckpointManager:
    """Names, keeps and prunes the checkpoints of one run in `directory`, with `checkpoints.json` as index.

    Every `save_interval` epochs (and after the last) `<model>-<epoch>_<steps per epoch>.ckpt` is written;
    `policy` 'latest_k' keeps the `keep_max` newest, 'top_k' the `keep_max` with the best validation top-1
    (the newest is always kept too, for --resume auto). `<model>_best.ckpt` is the best top-1 so far.
    """

    def __init__(self, directory, model_name, keep_max=10, policy="latest_k", save_interval=1, resume=False):
        if policy not in ("latest_k", "top_k"):
            raise ValueError(f"ckpt_save_policy must be latest_k or top_k, got {policy!r}")
        if keep_max < 1 or save_interval < 1:
            raise ValueError(f"keep_checkpoint_max and ckpt_save_interval must be >= 1, got {keep_max}, "
                             f"{save_interval}")
        self.directory = directory
        self.model_name = model_name
        self.keep_max = keep_max
        self.policy = policy
        self.save_interval = save_interval
        self.manifest_path = os.path.join(directory, MANIFEST)
        self.manifest = {"latest": None, "best": None, "checkpoints": []}
        if os.path.isfile(self.manifest_path):
            if resume:
                with open(self.manifest_path) as f:
                    self.manifest = json.load(f)
            else:
                _logger.warning("%s already holds checkpoints of an earlier run; this run starts a new index and "
                                "may overwrite them (use --resume auto to continue that run instead)",
                                directory)

    def latest(self):
        """Path of the newest checkpoint listed in the index, or None."""
        latest = self.manifest.get("latest")
        return os.path.join(self.directory, latest["file"]) if latest else None

    def save(self, write, epoch, steps_per_epoch, num_epochs, top1=None):
        """After `epoch` (1-based): call `write(path)` for each checkpoint due, update the index, prune."""
        record = {"epoch": epoch, "top1": top1}
        if epoch % self.save_interval == 0 or epoch == num_epochs:
            name = f"{self.model_name}-{epoch}_{steps_per_epoch}.ckpt"
            write(os.path.join(self.directory, name))
            entries = [e for e in self.manifest["checkpoints"] if e["file"] != name]
            self.manifest["checkpoints"] = entries + [dict(record, file=name)]
            self.manifest["latest"] = dict(record, file=name)
        best = self.manifest.get("best")
        if top1 is not None and (best is None or top1 > best["top1"]):
            name = f"{self.model_name}_best.ckpt"
            write(os.path.join(self.directory, name))
            self.manifest["best"] = dict(record, file=name)
            _logger.info("New best top-1 %.4f at epoch %d: %s", top1, epoch, name)
        removed = self._prune()
        with atomic_path(self.manifest_path) as tmp:
            with open(tmp, "w") as f:
                json.dump(self.manifest, f, indent=1)
        for name in removed:  # after the index stops listing them: a kill in between leaves an orphan, not a hole
            path = os.path.join(self.directory, name)
            if os.path.exists(path):
                os.remove(path)

    def _prune(self):
        entries = self.manifest["checkpoints"]
        if self.policy == "top_k":
            ranked = sorted(entries, key=lambda e: (e["top1"] if e["top1"] is not None else -1.0, e["epoch"]),
                            reverse=True)
        else:
            ranked = sorted(entries, key=lambda e: e["epoch"], reverse=True)
        keep = ranked[:self.keep_max]
        latest = self.manifest.get("latest")
        if latest and all(e["file"] != latest["file"] for e in keep):
            keep.append(next(e for e in entries if e["file"] == latest["file"]))
        self.manifest["checkpoints"] = sorted(keep, key=lambda e: e["epoch"])
        return [e["file"] for e in entries if e not in keep]
