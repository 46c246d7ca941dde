"""Ready-made Trainer callbacks: EarlyStopping.

(ReduceLROnPlateau is an LR schedule, `cnnframe.optim.ReduceLROnPlateau`; the best
checkpoint is the Trainer's ``keep_best``.)
"""
import numpy as np

from cnnframe.optim.monitor import Monitor
from cnnframe.train.trainer import Callback

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stop training when a metric has stopped improving, as Keras's callback.

    After each epoch the monitored value is compared with the best so far: an
    improvement (by more than `min_delta`) resets the count, anything else adds one;
    after `patience` epochs in a row without improvement the run stops
    (``trainer.stop_training``), after that epoch's checkpoint.

    Args:
        monitor: the metric, e.g. "val_loss" (default), "val_accuracy", "loss".
        mode: "min", "max" or "auto" ("max" for names containing "acc").
        patience: epochs without improvement before stopping (int >= 1), default 5.
        min_delta: the least change that counts as an improvement (absolute), default 0.
        restore_best: on stopping, put back the weights (and, with a Trainer EMA, the
            averaged weights) of the best epoch, default False.

    Its state (best value, count, best weights) is checkpointed, so a resumed run stops
    at the same epoch; a run that has stopped stays stopped when resumed.
    """

    def __init__(self, monitor="val_loss", mode="auto", patience=5, min_delta=0.0,
                 restore_best=False):
        self.tracker = Monitor(monitor, mode, min_delta, owner="EarlyStopping")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) \
                or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an int >= 1, got {patience!r}")
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"EarlyStopping: restore_best must be True or False, "
                            f"got {restore_best!r}")
        self.patience = int(patience)
        self.restore_best = bool(restore_best)
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_weights = None      # model.state_dict() of the best epoch (restore_best)
        self.best_ema = None          # and the EMA's state_dict, when the Trainer has one

    @property
    def monitor(self):
        return self.tracker.monitor

    def on_train_begin(self, trainer):
        if self.stopped_epoch is not None:  # a resumed run that had stopped
            trainer.log(f"early stopping: the run stopped after epoch {self.stopped_epoch}")
            trainer.stop_training = True

    def on_epoch_end(self, trainer, epoch, logs):
        value = self.tracker.value(logs)
        if self.tracker.improves(value):
            self.tracker.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self.best_weights = trainer.model.state_dict()
                self.best_ema = None if trainer.ema is None else trainer.ema.state_dict()
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.stopped_epoch = epoch + 1
        trainer.stop_training = True
        line = (f"early stopping after epoch {epoch + 1}: {self.monitor} has not improved on "
                f"{self.tracker.best:.6g} (epoch {self.best_epoch}) for {self.wait} epochs")
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)
            if trainer.ema is not None and self.best_ema is not None:
                trainer.ema.load_state_dict(self.best_ema)
            line += f"; restored the weights of epoch {self.best_epoch}"
        trainer.log(line)

    def state_dict(self):
        return {"tracker": self.tracker.state_dict(), "wait": self.wait,
                "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
                "best_weights": self.best_weights, "best_ema": self.best_ema}

    def load_state_dict(self, state):
        self.tracker.load_state_dict(state["tracker"])
        self.wait = int(state["wait"])
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]
        self.best_ema = state["best_ema"]
