"""Training: the `Trainer` loop, checkpoints with exact resume, metrics, history, configs, plots,
and `evaluate` / `predict` / `evaluate_run` for trained models (no Trainer needed)."""
from cnnframe.train.callbacks import EarlyStopping
from cnnframe.train.checkpoint import (CheckpointError, CheckpointManager, latest_checkpoint,
                                       list_checkpoints, load_state, save_state)
from cnnframe.train.config import load_config, save_config, validate_config
from cnnframe.train.controls import build_controls
from cnnframe.train.evaluation import evaluate, evaluate_run, predict
from cnnframe.train.history import History
from cnnframe.train.metrics import accuracy, confusion_matrix, per_class_accuracy
from cnnframe.train.trainer import Callback, NonFiniteLossError, Trainer

__all__ = ["Trainer", "Callback", "EarlyStopping", "build_controls", "NonFiniteLossError",
           "History", "CheckpointManager",
           "CheckpointError", "save_state", "load_state", "latest_checkpoint", "list_checkpoints",
           "load_config", "save_config", "validate_config", "accuracy", "confusion_matrix",
           "per_class_accuracy", "evaluate", "predict", "evaluate_run"]
