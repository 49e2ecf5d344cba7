"""Training: structured config, the trainer loop, checkpoints, loggers and the Hub push.

``mouse-train`` (:mod:`mouse.cli.train`) composes ``conf/train.yaml`` and calls :func:`run_training`.
"""

from mouse.hub import model_card, push_checkpoint
from mouse.train.checkpoint import find_last_checkpoint, list_checkpoints, load_state, save_checkpoint
from mouse.train.config import TrainConfig, register_configs, validate_config
from mouse.train.dist import is_main_process, print0
from mouse.train.logger import Logger, make_logger
from mouse.train.trainer import NonFiniteLossError, Trainer, TrainResult, build_model, run_training

__all__ = [
    "Logger",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_model",
    "find_last_checkpoint",
    "is_main_process",
    "list_checkpoints",
    "load_state",
    "make_logger",
    "model_card",
    "print0",
    "push_checkpoint",
    "register_configs",
    "run_training",
    "save_checkpoint",
    "validate_config",
]
