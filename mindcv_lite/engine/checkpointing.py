"""Training checkpoints: mindcv-loadable weights plus everything needed to resume exactly, and their folder.

A checkpoint holds every Parameter of the `TrainStep` (weights, optimizer moments and step, loss scale, EMA
weights, accumulated gradients) except the learning-rate schedule, which is rebuilt from the config; plus
`epoch_num` / `step_num` (mindcv's names), the model name and the training set's class names. Weights are stored
under mindcv's parameter names (`model.to_mindcv_key`); the rest is handed to `save_checkpoint` as `extra`, whose
names the file records so that `mindcv_lite.models.load_checkpoint` skips them: the same file fine-tunes,
validates, resumes, and loads into mindcv.
`epoch_num` counts finished epochs and `step_num` batches since the start, so `step_num - epoch_num * steps per
epoch` is the data position of a mid-epoch checkpoint. Files are written atomically; `checkpoints.json` lists
them (the latest, the best, their metrics) and can be rebuilt from the files.
"""
import errno
import json
import logging
import os
import re
import shutil
import tempfile

import numpy as np
import mindspore as ms

from ..models import CheckpointMismatchError, read_checkpoint, save_checkpoint
from ..models.checkpoint import CLASS_NAMES_KEY
from ..utils.io import atomic_path
from .distillation import TEACHER_PREFIX

__all__ = ["CheckpointManager", "CheckpointWriteError", "check_checkpoint_dir", "load_train_checkpoint",
           "save_train_checkpoint", "train_state_bytes"]

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
    # the distillation teacher is reloaded from teacher_ckpt, never saved with the student
    return [p for p in train_step.get_parameters()
            if p.name not in _NOT_SAVED and not p.name.startswith(TEACHER_PREFIX)]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, folder gone): the earlier ones are intact."""

    exit_code = 74  # sysexits.h EX_IOERR


def train_state_bytes(train_step):
    """Bytes of one training checkpoint: every saved Parameter (weights, optimizer state, EMA, ...)."""
    return sum(int(np.prod(p.shape)) * np.dtype(ms.dtype_to_nptype(p.dtype)).itemsize for p in _train_state(train_step))


def check_checkpoint_dir(directory, checkpoint_bytes=0):
    """Refuse to start a run whose checkpoints could not be written: `directory` must exist or be creatable,
    be writable, and (with `checkpoint_bytes`) have room for two checkpoints, so a run never trains for hours
    to fail at its first save."""
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        raise OSError(error.errno, f"the checkpoint folder ckpt_save_dir={directory!r} cannot be created or written "
                                   f"({error.strerror or error}): choose another ckpt_save_dir") from None
    free = shutil.disk_usage(directory).free
    if free < 2 * checkpoint_bytes:
        raise OSError(errno.ENOSPC, f"the checkpoint folder {directory!r} has {free / 2**20:.0f} MiB free but two "
                                    f"checkpoints need {2 * checkpoint_bytes / 2**20:.0f} MiB: free space or choose "
                                    "another ckpt_save_dir")


def save_train_checkpoint(path, train_step, model, model_name, epoch, global_step, class_names):
    """Write the full training state of `train_step` after `epoch` finished epochs and `global_step` batches."""
    key = _checkpoint_key_fn(model)
    weight_names = {p.name for p in model.get_parameters()}
    weights, state = {}, {EPOCH_KEY: int(epoch), STEP_KEY: int(global_step), MODEL_KEY: model_name,
                          CLASS_NAMES_KEY: list(class_names)}
    for param in _train_state(train_step):
        (weights if param.name in weight_names else state)[key(param.name)] = param
    # handed over as training state: the checkpoint door records these names and skips them when loading weights
    return save_checkpoint(weights, path, extra=state)


def load_train_checkpoint(path, train_step, model, model_name, class_names, entries=None):
    """Restore the training state written by `save_train_checkpoint`; returns (finished epochs, global step).

    Strict: every Parameter of `train_step` must be in the file with its shape, so a checkpoint from another
    model, optimizer, or ema / loss-scale / accumulation setting is an error, never a partial resume.
    `entries`: the file's entries when already read (`read_checkpoint`).
    """
    entries = read_checkpoint(path) if entries is None else entries
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
    Mid-epoch checkpoints (`save_step`: ckpt_save_steps, a stop signal) are `<model>-<epoch>_<step in epoch>.ckpt`,
    listed apart: only the newest is kept, and none older than the newest epoch checkpoint.
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
        self.manifest = {"latest": None, "best": None, "checkpoints": [], "step_checkpoints": []}
        if resume:
            self.manifest = self._read_manifest()
        elif os.path.isfile(self.manifest_path):
            _logger.warning("%s already holds checkpoints of an earlier run; this run starts a new index and "
                            "may overwrite them (use --resume auto to continue that run instead)", directory)

    def _read_manifest(self):
        if not os.path.exists(self.manifest_path):
            return self._manifest_from_files() if self._checkpoint_files() else dict(self.manifest)
        try:
            with open(self.manifest_path) as f:
                manifest = json.load(f)
            manifest.setdefault("step_checkpoints", [])
            if not isinstance(manifest.get("checkpoints"), list):
                raise ValueError("no checkpoint list")
            return manifest
        except (OSError, ValueError, AttributeError) as error:
            _logger.warning("the checkpoint index %s is damaged (%s): rebuilt from the checkpoint files in %s",
                            self.manifest_path, error, self.directory)
            return self._manifest_from_files()

    def _checkpoint_files(self):
        """{file name: (epoch, step in epoch)} of this model's epoch and mid-epoch checkpoints in the folder."""
        pattern = re.compile(re.escape(self.model_name) + r"-(\d+)_(\d+)\.ckpt")
        names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
        return {name: (int(m.group(1)), int(m.group(2))) for name in names if (m := pattern.fullmatch(name))}

    def _manifest_from_files(self):
        """An index listing every checkpoint file, newest (by epoch, then step in it) as latest."""
        entries = sorted(({"epoch": epoch, "top1": None, "file": name, "epoch_step": step}
                          for name, (epoch, step) in self._checkpoint_files().items()),
                         key=lambda e: (e["epoch"], e["epoch_step"]))
        return {"latest": entries[-1] if entries else None, "best": None, "checkpoints": entries,
                "step_checkpoints": []}

    def latest(self):
        """Path of the newest checkpoint listed in the index, or None."""
        latest = self.manifest.get("latest")
        return os.path.join(self.directory, latest["file"]) if latest else None

    def resume_candidates(self):
        """Paths of the indexed checkpoints, newest first (the latest, then older ones to fall back to)."""
        entries = self.manifest["checkpoints"] + self.manifest["step_checkpoints"]
        ordered = sorted(entries, key=lambda e: (e["epoch"], e.get("epoch_step", float("inf"))), reverse=True)
        names = [self.manifest["latest"]["file"]] if self.manifest.get("latest") else []
        names += [e["file"] for e in ordered if e["file"] not in names]
        return [os.path.join(self.directory, name) for name in names]

    def forget(self, path):
        """Stop listing `path` (a damaged file: left in place for inspection, overwritten when its step is redone)."""
        name = os.path.basename(path)
        for key in ("checkpoints", "step_checkpoints"):
            self.manifest[key] = [e for e in self.manifest[key] if e["file"] != name]
        for key in ("latest", "best"):
            if (self.manifest.get(key) or {}).get("file") == name:
                self.manifest[key] = None

    def save(self, write, epoch, steps_per_epoch, num_epochs, top1=None):
        """After `epoch` (1-based): call `write(path)` for each checkpoint due, update the index, prune.

        Returns the path of the epoch checkpoint when one was due, else None.
        """
        record = {"epoch": epoch, "top1": top1}
        written = None
        if epoch % self.save_interval == 0 or epoch == num_epochs:
            name = f"{self.model_name}-{epoch}_{steps_per_epoch}.ckpt"
            written = self._write(write, name)
            entries = [e for e in self.manifest["checkpoints"] if e["file"] != name]
            self.manifest["checkpoints"] = entries + [dict(record, file=name)]
            self.manifest["latest"] = dict(record, file=name)
        best = self.manifest.get("best")
        if top1 is not None and (best is None or top1 > best["top1"]):
            name = f"{self.model_name}_best.ckpt"
            self._write(write, name)
            self.manifest["best"] = dict(record, file=name)
            _logger.info("New best top-1 %.4f at epoch %d: %s", top1, epoch, name)
        removed = self._prune()
        if written:
            removed += [e["file"] for e in self.manifest["step_checkpoints"]]  # superseded
            self.manifest["step_checkpoints"] = []
        self._write_index(removed)
        return written

    def save_step(self, write, epoch, epoch_step):
        """Mid-epoch: `write(path)` the checkpoint after `epoch_step` batches of `epoch` (1-based), index it as the
        latest, and drop the previous mid-epoch one. Returns its path."""
        name = f"{self.model_name}-{epoch}_{epoch_step}.ckpt"
        path = self._write(write, name)
        removed = [e["file"] for e in self.manifest["step_checkpoints"] if e["file"] != name]
        entry = {"epoch": epoch, "top1": None, "file": name, "epoch_step": epoch_step}
        self.manifest["step_checkpoints"] = [entry]
        self.manifest["latest"] = entry
        self._write_index(removed)
        return path

    def _write(self, write, name):
        path = os.path.join(self.directory, name)
        try:
            write(path)
        except (OSError, RuntimeError) as error:  # MindSpore reports a failed file write as RuntimeError
            latest = self.latest()
            raise CheckpointWriteError(
                errno.EIO, f"writing the checkpoint {path!r} failed ({error}). Training stopped; every earlier "
                f"checkpoint is intact (latest: {latest or 'none yet'}). Free space in {self.directory} and continue "
                "with --resume auto") from error
        return path

    def _write_index(self, removed):
        try:
            with atomic_path(self.manifest_path) as tmp:
                with open(tmp, "w") as f:
                    json.dump(self.manifest, f, indent=1)
        except OSError as error:
            raise CheckpointWriteError(
                errno.EIO, f"writing the checkpoint index {self.manifest_path!r} failed ({error}). Training stopped; "
                f"the checkpoint files in {self.directory} are intact (--resume auto rebuilds the index from them)") \
                from error
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
        if latest and latest in entries and latest not in keep:
            keep.append(latest)
        self.manifest["checkpoints"] = sorted(keep, key=lambda e: e["epoch"])
        return [e["file"] for e in entries if e not in keep]
