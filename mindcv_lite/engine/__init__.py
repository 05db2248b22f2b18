"""Training engine: process setup, the compiled train/eval steps, checkpoints, progress, the train/validate runs."""
from .callbacks import Callback, RunContext
from .checkpointing import CheckpointManager, load_train_checkpoint, save_train_checkpoint
from .evaluate import evaluate, validate
from .progress import NonFiniteLossError
from .runtime import Runtime, setup_runtime
from .train_step import EvalStep, TrainStep
from .trainer import train

__all__ = [
    "Callback",
    "CheckpointManager",
    "EvalStep",
    "NonFiniteLossError",
    "RunContext",
    "Runtime",
    "TrainStep",
    "evaluate",
    "load_train_checkpoint",
    "save_train_checkpoint",
    "setup_runtime",
    "train",
    "validate",
]
