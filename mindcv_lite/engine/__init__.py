"""Training engine: process setup, the compiled train/eval steps, checkpoints, progress, the train/validate runs."""
from .checkpointing import CheckpointManager, load_train_checkpoint, save_train_checkpoint
from .evaluate import evaluate, validate
from .runtime import Runtime, setup_runtime
from .train_step import EvalStep, TrainStep
from .trainer import NonFiniteLossError, train

__all__ = [
    "CheckpointManager",
    "EvalStep",
    "NonFiniteLossError",
    "Runtime",
    "TrainStep",
    "evaluate",
    "load_train_checkpoint",
    "save_train_checkpoint",
    "setup_runtime",
    "train",
    "validate",
]
