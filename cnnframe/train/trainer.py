"""The training loop: `Trainer.fit`, `evaluate` and `predict`, with exact-resume checkpoints.

One training step is::

    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)          # checked for NaN/inf before anything changes
    model.backward(loss_fn.backward())
    optimizer.step(); schedule.step()

Checkpoints are taken only between steps, where model, optimizer, schedule,
data loader and RNGs are mutually consistent; a Ctrl-C is deferred to the end
of the current step (a second Ctrl-C stops at once), so that a run interrupted
and resumed ends with bit-identical weights to an uninterrupted one.  A run
stopped by ``fit(max_steps=N)`` resumes the same way.
"""
import inspect
import math
import os
import random
import signal
import sys
import threading
import time

import numpy as np

from cnnframe.train.checkpoint import CheckpointManager, load_state
from cnnframe.train.evaluation import _resolve_loss, check_num_classes, evaluate, predict
from cnnframe.train.history import History
from cnnframe.train.metrics import MetricTracker

__all__ = ["Trainer", "Callback", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and checkpoint."""

    def __init__(self, message, step=None, checkpoint=None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


class Callback:
    """Hooks called by `Trainer.fit`; override the ones you need.

    ``step`` counts finished optimizer steps over the whole run (1 after the
    first step); ``epoch`` is 0-based.  Raising KeyboardInterrupt from
    `on_step_end` stops training exactly like Ctrl-C: a checkpoint is saved.
    """

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_step_end(self, trainer, step, logs):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer, history):
        pass


class _DeferredInterrupt:
    """Turn the first SIGINT into a flag checked between steps; a second one stops at once."""

    def __init__(self, log):
        self.log = log
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("\ninterrupt: stopping after this step and saving a checkpoint "
                 "(Ctrl-C again to stop at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # pragma: no cover - e.g. embedded interpreters
                self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _points_per_epoch_group(steps_per_epoch):
    """Steps averaged into one point of the per-step curve: about 50 points per epoch."""
    return max(1, steps_per_epoch // 50)


def _stochastic_rngs(model):
    """name -> numpy Generator of every layer that draws random numbers (e.g. dropout)."""
    nodes = getattr(model, "nodes", None)
    out = {}
    if isinstance(nodes, dict):
        for name, layer in nodes.items():
            rng = getattr(layer, "rng", None)
            if isinstance(rng, np.random.Generator):
                out[name] = rng
    return out


def _fmt_duration(seconds):
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Trainer:
    """Trains a classifier: mini-batch steps, metrics, progress, checkpoints, history.

    Parameters
    ----------
    model : cnnframe.Model (or anything with forward/backward/params/grads/
        state_dict/load_state_dict)
    loss : loss object with ``forward(logits, labels) -> float`` and ``backward()``,
        or a loss name for `cnnframe.losses.get_loss` (e.g. "cross_entropy").
    optimizer : an optimizer from `cnnframe.optim` (``step()``, ``lr``, state_dict).
    schedule : an LR schedule from `cnnframe.optim.schedules`, stepped after
        every optimizer step; optional.
    metrics : sequence of str
        "accuracy" and/or "top{k}_accuracy".
    out_dir : str or os.PathLike, optional
        Where `fit` writes ``checkpoints/`` and ``metrics.csv`` as it goes, and at the
        end ``model.cnnf`` (the trained model, for models with ``save``) and
        ``curves.png`` (loss and metric per epoch and per step; needs matplotlib).
        Without it no files are written (and `fit(resume=True)` has nothing to resume).
        Temporary files that a run killed mid-write left there are removed at once.
    curves : bool
        Draw ``curves.png`` in out_dir at the end of `fit` (False skips the drawing,
        which takes matplotlib about a second).
    keep_checkpoints : int
        How many checkpoint files to keep.
    checkpoint_every : int, optional
        Also checkpoint every this many steps within an epoch.
    callbacks : sequence of `Callback`
    progress : bool
        Show a progress bar per epoch (tqdm, on stderr).
    log : callable
        Receives the per-epoch summary lines and notices (default: print).
    extra_state : dict, optional
        Plain values stored in every checkpoint under "extra" (e.g. the config).
    """

    def __init__(self, model, loss, optimizer, schedule=None, metrics=("accuracy",), *,
                 out_dir=None, keep_checkpoints=3, checkpoint_every=None, callbacks=(),
                 progress=True, log=print, extra_state=None, curves=True):
        self.model = model
        self.loss = _resolve_loss(loss)
        self.optimizer = optimizer
        self.schedule = schedule
        self.metric_names = list(metrics)
        self.tracker = MetricTracker(self.metric_names)  # validates the names
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.curves = bool(curves)
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool)
                                             or not isinstance(checkpoint_every, int)
                                             or checkpoint_every < 1):
            raise ValueError(f"Trainer: checkpoint_every must be an int >= 1 or None, "
                             f"got {checkpoint_every!r}")
        self.checkpoint_every = checkpoint_every
        self.checkpoints = (None if self.out_dir is None else
                            CheckpointManager(os.path.join(self.out_dir, "checkpoints"),
                                              keep=keep_checkpoints))
        if self.out_dir is not None:  # partial model.cnnf etc. of a run killed mid-write
            from cnnframe.train.runs import remove_stale_run_temp_files
            remove_stale_run_temp_files(self.out_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        # Seconds between progress-bar redraws; None: 0.5 on a terminal, 15 in a log file.
        self.progress_interval = None
        self.log = log
        self.extra_state = dict(extra_state or {})
        # Progress of the run.
        self.epoch = 0            # finished epochs
        self.step = 0             # finished optimizer steps, whole run
        self.step_in_epoch = 0    # finished steps of the current epoch
        self.epoch_train_time = 0.0
        self.history = History()
        self.last_checkpoint = None
        self._consistent = True   # False while a step is half done
        self._saved_step = None   # self.step at the last checkpoint written
        # The tracker's sums when the current point of the per-step curve began.
        self._point_start = self.tracker.state_dict()

    # ------------------------------------------------------------------ state

    def state_dict(self, train_loader=None, val_loader=None):
        """Everything needed to continue training exactly (plain values and arrays)."""
        rngs = {name: rng.bit_generator.state for name, rng in _stochastic_rngs(self.model).items()}
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "train_loader": (train_loader.state_dict()
                             if hasattr(train_loader, "state_dict") else None),
            "val_loader": (val_loader.state_dict()
                           if hasattr(val_loader, "state_dict") else None),
            "rng": {"numpy": np.random.get_state(), "python": random.getstate(),
                    "layers": rngs},
            "trainer": {"epoch": self.epoch, "step": self.step,
                        "step_in_epoch": self.step_in_epoch,
                        "epoch_train_time": self.epoch_train_time,
                        "tracker": self.tracker.state_dict(),
                        "metrics": list(self.metric_names),
                        "history": [dict(r) for r in self.history.rows],
                        "step_points": [dict(p) for p in self.history.steps],
                        "point_start": dict(self._point_start)},
            "extra": self.extra_state,
        }
        return state

    def load_state_dict(self, state, train_loader=None, val_loader=None):
        """Restore a `state_dict` (e.g. a loaded checkpoint) into this trainer and loaders."""
        t = state["trainer"]
        if list(t["metrics"]) != self.metric_names:
            raise ValueError(f"checkpoint was trained with metrics {t['metrics']}, this Trainer "
                             f"has {self.metric_names}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if (state["schedule"] is None) != (self.schedule is None):
            raise ValueError("checkpoint and Trainer disagree on whether there is an LR schedule")
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        if train_loader is not None and state["train_loader"] is not None:
            train_loader.load_state_dict(state["train_loader"])
        if val_loader is not None and state["val_loader"] is not None:
            val_loader.load_state_dict(state["val_loader"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        rngs = _stochastic_rngs(self.model)
        saved = state["rng"]["layers"]
        if set(saved) != set(rngs):
            raise ValueError(f"checkpoint has random states for layers {sorted(saved)}, the "
                             f"model's random layers are {sorted(rngs)}")
        for name, rng in rngs.items():
            rng.bit_generator.state = saved[name]
        self.epoch = int(t["epoch"])
        self.step = int(t["step"])
        self.step_in_epoch = int(t["step_in_epoch"])
        self.epoch_train_time = float(t["epoch_train_time"])
        self.tracker.load_state_dict(t["tracker"])
        # Checkpoints written before the per-step curve existed have no points.
        self.history = History(t["history"], t.get("step_points", ()))
        self._point_start = dict(t.get("point_start") or self.tracker.state_dict())
        self._consistent = True

    def save_checkpoint(self, train_loader=None, val_loader=None, tag=None):
        """Write a checkpoint of the current state into ``out_dir/checkpoints``; return its path."""
        if self.checkpoints is None:
            raise ValueError("Trainer.save_checkpoint: this Trainer has no out_dir")
        if not self._consistent:
            raise RuntimeError("Trainer.save_checkpoint: a training step is half done")
        path = self.checkpoints.save(self.state_dict(train_loader, val_loader),
                                     self.epoch, self.step, tag)
        self.last_checkpoint = path
        self._saved_step = self.step
        return path

    def resume(self, checkpoint=True, train_loader=None, val_loader=None):
        """Load a checkpoint: a path, or True for the newest complete one in ``out_dir``.

        Returns
        -------
        str or None
            The checkpoint loaded; None when `checkpoint` is True and there is none.
        """
        if checkpoint is True:
            found = None if self.checkpoints is None else self.checkpoints.latest()
            if found is None:
                return None
            path, state = found
        else:
            path = os.fspath(checkpoint)
            state = load_state(path)
        self.load_state_dict(state, train_loader, val_loader)
        self.last_checkpoint = path
        self._saved_step = self.step
        return path

    # ------------------------------------------------------------------ training

    def fit(self, train_loader, val_loader=None, epochs=1, resume=False, max_steps=None):
        """Train until `epochs` epochs are done (counting epochs of a resumed run).

        Parameters
        ----------
        train_loader : iterable of (x float (N, C, H, W), y int (N,)) with ``len``;
            a `cnnframe.data.DataLoader` (its state_dict makes resume exact).
        val_loader : optional, evaluated after every epoch.
        epochs : int
            Total epochs of the run.
        resume : bool or path
            True: continue from the newest complete checkpoint in ``out_dir``
            (a fresh start when there is none); a path: from that checkpoint.
        max_steps : int, optional
            Stop once this many optimizer steps of the whole run are done (counting
            the steps of a resumed run), for a quick try of a config.  The run is the
            one `epochs` describes (the LR schedule is not shortened), stopped early:
            a checkpoint is saved, and resuming continues it exactly.

        Returns
        -------
        History
            One row per finished epoch: epoch, step, lr, loss, the metrics, val_loss
            and val metrics (with a val_loader), images_per_s, time_s; and the
            points of the per-step curve in ``history.steps``.

        Raises
        ------
        ValueError
            Bad `epochs` or `max_steps`; or the model's output count differs from the
            number of classes of the loader's dataset (names both).
        KeyboardInterrupt
            After Ctrl-C (or a callback raising it): a checkpoint of the last
            finished step has been saved (when out_dir is set).
        NonFiniteLossError
            When the loss becomes NaN or infinite; names the step and the last
            good checkpoint.

        Notes
        -----
        With ``out_dir``, the end of `fit` (also after `max_steps`) writes
        ``model.cnnf`` and ``curves.png`` there, next to metrics.csv and checkpoints/.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"Trainer.fit: epochs must be an int >= 1, got {epochs!r}")
        if max_steps is not None and (isinstance(max_steps, bool)
                                      or not isinstance(max_steps, (int, np.integer))
                                      or max_steps < 1):
            raise ValueError(f"Trainer.fit: max_steps must be an int >= 1 or None, "
                             f"got {max_steps!r}")
        steps_per_epoch = len(train_loader)
        if steps_per_epoch < 1:
            raise ValueError("Trainer.fit: train_loader yields no batches (dataset smaller than "
                             "one batch with drop_last?)")
        check_num_classes(self.model, train_loader, "the training data")
        check_num_classes(self.model, val_loader, "the validation data")
        if resume:
            path = self.resume(resume, train_loader, val_loader)
            if path is None:
                self.log("resume: no checkpoint found; starting from scratch")
            else:
                self.log(f"resumed from {path} (epoch {self.epoch}, step {self.step})")
        for cb in self.callbacks:
            cb.on_train_begin(self)
        with _DeferredInterrupt(self.log) as interrupt:
            try:
                while self.epoch < epochs:
                    if max_steps is not None and self.step >= max_steps:
                        self._stop_at_max_steps(train_loader, val_loader, max_steps,
                                                steps_per_epoch)
                        break
                    self._train_epoch(train_loader, val_loader, epochs, steps_per_epoch,
                                      interrupt, max_steps)
            except KeyboardInterrupt:
                self._on_interrupt(train_loader, val_loader)
                raise
        if self.out_dir is not None:
            self.history.to_csv(os.path.join(self.out_dir, "metrics.csv"))
            self._write_model_and_curves()
        for cb in self.callbacks:
            cb.on_train_end(self, self.history)
        return self.history

    def _stop_at_max_steps(self, train_loader, val_loader, max_steps, steps_per_epoch):
        """Say where a run stopped by max_steps is, with a checkpoint to continue from."""
        if self.step_in_epoch == 0:
            where = f"after epoch {self.epoch}"
        else:
            self._record_step_point(steps_per_epoch)  # the curve up to the last step
            res = self.tracker.result()
            where = (f"in epoch {self.epoch + 1} after batch {self.step_in_epoch} of "
                     f"{steps_per_epoch} (loss {res['loss']:.4f} over its batches so far)")
        line = f"stopped after {self.step} steps (max_steps = {max_steps}) {where}"
        if self.checkpoints is not None:
            if self._saved_step != self.step:
                self.save_checkpoint(train_loader, val_loader, tag="stop")
            line += (f"; checkpoint {self.last_checkpoint}; continue with resume "
                     "(cnnframe train ... --resume)")
        self.log(line)

    def _write_model_and_curves(self):
        """model.cnnf (models with ``save``) and curves.png in out_dir, as `cnnframe train`."""
        from cnnframe.train.plots import plot_curves
        from cnnframe.train.runs import MODEL_FILE
        if hasattr(self.model, "save"):
            self.model.save(os.path.join(self.out_dir, MODEL_FILE))
        if self.curves:
            metric = self.metric_names[0] if self.metric_names else None
            plot_curves(self.history, os.path.join(self.out_dir, "curves.png"), metric=metric)

    def _on_interrupt(self, train_loader, val_loader):
        if self.checkpoints is None:
            self.log(f"\ninterrupted at epoch {self.epoch + 1}, step {self.step} "
                     "(no out_dir: nothing saved)")
            return
        if self._consistent and self._saved_step == self.step and self.last_checkpoint:
            self.log(f"\ninterrupted after epoch {self.epoch}; checkpoint {self.last_checkpoint}; "
                     "continue with resume (cnnframe train ... --resume)")
        elif self._consistent:
            path = self.save_checkpoint(train_loader, val_loader, tag="interrupt")
            self.history.to_csv(os.path.join(self.out_dir, "metrics.csv"))
            self.log(f"\ninterrupted at epoch {self.epoch + 1}, step {self.step}; checkpoint "
                     f"saved to {path}; continue with resume (cnnframe train ... --resume)")
        else:
            self.log(f"\ninterrupted in the middle of step {self.step + 1}; the last complete "
                     f"checkpoint is {self.last_checkpoint or '(none yet)'}")

    def _train_epoch(self, train_loader, val_loader, epochs, steps_per_epoch, interrupt,
                     max_steps=None):
        epoch = self.epoch
        if self.step_in_epoch == 0:
            self.tracker.reset()
            self._point_start = self.tracker.state_dict()
            self.epoch_train_time = 0.0
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
        bar = self._progress_bar(epoch, epochs, steps_per_epoch)
        tracker = self.tracker
        optimizer = self.optimizer
        point_every = _points_per_epoch_group(steps_per_epoch)
        t_last = time.perf_counter()
        # Resuming right after an epoch's last step (interrupted during validation): the
        # loader has already moved on to the next epoch, so there is nothing left to draw.
        batches = train_loader if self.step_in_epoch < steps_per_epoch else ()
        try:
            for x, y in batches:
                if self.step_in_epoch >= steps_per_epoch:
                    raise RuntimeError(f"train_loader yielded more than len(train_loader) = "
                                       f"{steps_per_epoch} batches in one epoch")
                self._consistent = False
                loss, logits = self.train_step(x, y, tracker)
                if loss is None:
                    self._consistent = True  # no parameter was updated
                    self._non_finite(logits, epoch)
                self.step += 1
                self.step_in_epoch += 1
                now = time.perf_counter()
                self.epoch_train_time += now - t_last
                if self.step_in_epoch % point_every == 0 or self.step_in_epoch == steps_per_epoch:
                    self._record_step_point(steps_per_epoch)
                self._consistent = True
                if bar is not None:
                    res = tracker.result()
                    post = {"loss": f"{res['loss']:.4f}"}
                    if "accuracy" in res:
                        post["acc"] = f"{100 * res['accuracy']:.1f}%"
                    post["img/s"] = f"{tracker.seen / max(self.epoch_train_time, 1e-9):.0f}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
                if self.callbacks:
                    logs = {"loss": loss, "epoch": epoch, "step_in_epoch": self.step_in_epoch}
                    for cb in self.callbacks:
                        cb.on_step_end(self, self.step, logs)
                if interrupt.requested:
                    raise KeyboardInterrupt
                if max_steps is not None and self.step >= max_steps \
                        and self.step_in_epoch < steps_per_epoch:
                    return  # fit stops the run (with a checkpoint) between steps
                if (self.checkpoint_every and self.checkpoints is not None
                        and self.step % self.checkpoint_every == 0
                        and self.step_in_epoch < steps_per_epoch):
                    self.save_checkpoint(train_loader, val_loader)
                t_last = time.perf_counter()
        finally:
            if bar is not None:
                bar.close()
        if self.step_in_epoch != steps_per_epoch:
            raise RuntimeError(f"train_loader yielded {self.step_in_epoch} batches in epoch "
                               f"{epoch + 1}, but len(train_loader) is {steps_per_epoch}")
        row = {"epoch": epoch + 1, "step": self.step, "lr": float(optimizer.lr)}
        row.update(tracker.result())
        if val_loader is not None:
            for k, v in self.evaluate(val_loader).items():
                row[f"val_{k}"] = v
        row["images_per_s"] = tracker.seen / max(self.epoch_train_time, 1e-9)
        row["time_s"] = self.epoch_train_time
        self.history.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        self.log(self._summary(row, epochs))
        if self.checkpoints is not None:
            self.save_checkpoint(train_loader, val_loader)
        if self.out_dir is not None:
            self.history.to_csv(os.path.join(self.out_dir, "metrics.csv"))
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, row)
        if interrupt.requested:
            raise KeyboardInterrupt

    def _record_step_point(self, steps_per_epoch):
        """Add the mean loss and metrics since the last point to ``history.steps``."""
        start, now = self._point_start, self.tracker.state_dict()
        seen = now["seen"] - start["seen"]
        if seen <= 0:
            return
        point = {"step": self.step, "epoch": self.epoch + self.step_in_epoch / steps_per_epoch,
                 "loss": (now["loss_sum"] - start["loss_sum"]) / seen}
        for name, c1, c0 in zip(self.metric_names, now["correct"], start["correct"]):
            point[name] = (c1 - c0) / seen
        self.history.append_step(point)
        self._point_start = now

    def train_step(self, x, y, tracker=None):
        """One optimizer step on the batch (x, y); returns (loss, logits).

        When the loss is not finite nothing is updated and (None, loss) is returned.
        """
        logits = self.model.forward(x, training=True)
        loss = self.loss.forward(logits, y)
        if not math.isfinite(loss):
            return None, loss
        if tracker is not None:  # probability targets (mixup, cutmix): their top class
            tracker.update(loss, logits, y if np.ndim(y) == 1 else np.argmax(y, axis=1))
        self.model.backward(self.loss.backward(), **self._backward_kw())
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss, logits

    def _backward_kw(self):
        # The gradient with respect to the images is never needed: skip computing it.
        kw = self.__dict__.get("_backward_kw_cache")
        if kw is None or kw[0] is not self.model:
            try:
                params = inspect.signature(self.model.backward).parameters
            except (TypeError, ValueError):  # pragma: no cover - no signature
                params = {}
            kw = (self.model, {"need_input_grad": False} if "need_input_grad" in params else {})
            self._backward_kw_cache = kw
        return kw[1]

    def _non_finite(self, loss, epoch):
        where = self.last_checkpoint or "none (no checkpoint was saved yet)"
        msg = (f"non-finite loss ({loss}) at step {self.step + 1} (epoch {epoch + 1}, batch "
               f"{self.step_in_epoch + 1}); training stopped. Last good checkpoint: {where}. "
               "Try a lower learning rate, gradient-friendly init, or check the input data.")
        if self.out_dir is not None:
            self.history.to_csv(os.path.join(self.out_dir, "metrics.csv"))
        raise NonFiniteLossError(msg, step=self.step + 1, checkpoint=self.last_checkpoint)

    def _progress_bar(self, epoch, epochs, steps_per_epoch):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        interval = self.progress_interval
        if interval is None:
            interval = 0.5 if getattr(sys.stderr, "isatty", lambda: False)() else 15.0
        return tqdm(total=steps_per_epoch, initial=self.step_in_epoch,
                    desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                    dynamic_ncols=True, file=sys.stderr,
                    mininterval=interval)

    def _summary(self, row, epochs):
        parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}"]
        for name in self.metric_names:
            parts.append(f"{name} {100 * row[name]:.2f}%")
        if "val_loss" in row:
            parts.append(f"val_loss {row['val_loss']:.4f}")
            for name in self.metric_names:
                parts.append(f"val_{name} {100 * row['val_' + name]:.2f}%")
        parts.append(f"lr {row['lr']:.3g}")
        parts.append(f"{row['images_per_s']:.0f} img/s")
        parts.append(_fmt_duration(row["time_s"]))
        return "  ".join(parts)

    # ------------------------------------------------------------------ inference

    def evaluate(self, loader, confusion=False, tta=False):
        """Mean loss and metrics over a loader with this Trainer's loss and metrics.

        See `cnnframe.train.evaluation.evaluate` (which needs no Trainer) for the parameters.

        Returns
        -------
        dict
            "loss", each metric name, and optionally "confusion_matrix" (K, K).
        """
        return evaluate(self.model, loader, self.loss, self.metric_names, confusion=confusion,
                        tta=tta)

    def predict(self, x, batch_size=256, probabilities=False):
        """The model's outputs for `x` in batches (`cnnframe.train.evaluation.predict`).

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W), already preprocessed like the training data
        batch_size : int
        probabilities : bool
            Softmax probabilities (float64) instead of logits.

        Returns
        -------
        ndarray, shape (N, K)
        """
        return predict(self.model, x, batch_size, probabilities=probabilities)
