"""Trainer: learning, history/CSV, exact resume after interrupts, non-finite loss, inference."""
import csv
import os
import signal

import numpy as np
import pytest
from killed_writes import killed_write

from cnnframe.losses import SoftmaxCrossEntropy
from cnnframe.optim import SGD, CosineWarmup
from cnnframe.train import Callback, History, NonFiniteLossError, Trainer, list_checkpoints
from cnnframe.train.evaluation import evaluate, predict
from cnnframe.train.metrics import confusion_matrix


def make_run(tiny, out_dir, seed=0, n=96, batch=16, lr=0.05, callbacks=(), epochs=3,
             curves=False, **kw):
    x, y = tiny.data(n, seed=seed)
    model = tiny.Model(16, 3, seed=seed)
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = CosineWarmup(opt, total_steps=epochs * -(-n // batch), warmup_steps=3)
    loader = tiny.Loader(x, y, batch, seed=seed)
    xv, yv = tiny.data(40, seed=seed + 100)
    val = tiny.Loader(xv, yv, 16, shuffle=False, noise=0.0)
    trainer = Trainer(model, SoftmaxCrossEntropy(), opt, sched, out_dir=out_dir,
                      callbacks=callbacks, progress=False, log=lambda *a: None, curves=curves,
                      **kw)
    return trainer, loader, val


class InterruptAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, logs):
        if step == self.step:
            raise KeyboardInterrupt


def _weights(trainer):
    return trainer.model.state_dict()


def test_fit_learns_and_writes_history(tiny, tmp_path):
    logs = []
    trainer, loader, val = make_run(tiny, tmp_path, epochs=4)
    trainer.log = logs.append
    hist = trainer.fit(loader, val, epochs=4)
    assert isinstance(hist, History) and len(hist) == 4
    assert hist["epoch"] == [1, 2, 3, 4]
    assert hist["step"] == [6, 12, 18, 24]
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.9
    # The summary line of each epoch is logged.
    summaries = [line for line in logs if line.startswith("epoch ")]
    assert len(summaries) == 4 and "val_accuracy" in summaries[-1] and "img/s" in summaries[-1]
    # metrics.csv holds the same numbers, exactly.
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_loss"]) for r in rows] == hist["val_loss"]
    assert History.from_csv(tmp_path / "metrics.csv")["loss"] == hist["loss"]
    # Checkpoints: one per epoch, last 3 kept.
    names = [os.path.basename(p) for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["ckpt-e0002-s000000012.npz", "ckpt-e0003-s000000018.npz",
                     "ckpt-e0004-s000000024.npz"]


def test_train_metrics_match_an_independent_recount(tiny, tmp_path):
    """The epoch loss/accuracy are exact means over all training samples of that epoch."""
    seen = []

    class Record(Callback):
        def on_step_end(self, trainer, step, logs):
            seen.append(logs["loss"])

    trainer, loader, _ = make_run(tiny, None, n=80, batch=16, callbacks=[Record()])
    hist = trainer.fit(loader, epochs=1)
    # 5 equal batches of 16: the epoch loss is the plain mean of the batch losses.
    assert hist["loss"][0] == pytest.approx(np.mean(seen), rel=1e-12)


@pytest.mark.parametrize("stop_step", [4, 6, 9, 17])
def test_interrupted_and_resumed_run_is_bit_identical(tiny, tmp_path, stop_step):
    """Ctrl-C (here: a callback raising KeyboardInterrupt) then --resume == never interrupted."""
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    ref_hist = ref.fit(loader, val, epochs=3)

    run, loader, val = make_run(tiny, tmp_path / "run", callbacks=[InterruptAt(stop_step)])
    with pytest.raises(KeyboardInterrupt):
        run.fit(loader, val, epochs=3)
    assert run.last_checkpoint and os.path.exists(run.last_checkpoint)
    # A fresh process: new objects built from the same config, then resume.
    again, loader, val = make_run(tiny, tmp_path / "run", seed=0)
    # Different in-memory starting state must not matter: the checkpoint restores everything.
    again.model.params["fc.weight"][...] = 0
    hist = again.fit(loader, val, epochs=3, resume=True)

    want, got = _weights(ref), _weights(again)
    assert want.keys() == got.keys()
    for k in want:
        assert np.array_equal(want[k], got[k]), k
    np.testing.assert_array_equal(ref.optimizer.state_dict()["momentum_buffer/fc.weight"]
                                  if "momentum_buffer/fc.weight" in ref.optimizer.state_dict()
                                  else 0, again.optimizer.state_dict().get(
                                      "momentum_buffer/fc.weight", 0))
    assert again.optimizer.lr == ref.optimizer.lr
    for col in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "step"):
        assert hist[col] == ref_hist[col], col


def test_two_interrupts_then_resume_is_bit_identical(tiny, tmp_path):
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    ref.fit(loader, val, epochs=3)
    for stop in (5, 13):
        run, loader, val = make_run(tiny, tmp_path / "run", callbacks=[InterruptAt(stop)])
        with pytest.raises(KeyboardInterrupt):
            run.fit(loader, val, epochs=3, resume=True)
        assert run.step == stop
    run, loader, val = make_run(tiny, tmp_path / "run")
    run.fit(loader, val, epochs=3, resume=True)
    for k, v in _weights(ref).items():
        assert np.array_equal(v, _weights(run)[k])


def test_sigint_is_deferred_to_the_end_of_the_step(tiny, tmp_path):
    """A real SIGINT mid-run stops after the current step, with a checkpoint at that step."""
    class SendSigint(Callback):
        def on_step_end(self, trainer, step, logs):
            if step == 7:
                os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    run, loader, val = make_run(tiny, tmp_path / "run", callbacks=[SendSigint()])
    with pytest.raises(KeyboardInterrupt):
        run.fit(loader, val, epochs=3)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert run.step == 7 and "-s000000007-interrupt" in run.last_checkpoint
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    ref.fit(loader, val, epochs=3)
    again, loader, val = make_run(tiny, tmp_path / "run")
    again.fit(loader, val, epochs=3, resume=True)
    for k, v in _weights(ref).items():
        assert np.array_equal(v, _weights(again)[k])


def test_resume_extends_a_finished_run(tiny, tmp_path):
    """Train 2 epochs, then resume asking for 3: same as 3 straight (constant lr)."""
    def run(out, epochs, resume=False):
        x, y = tiny.data(64, seed=3)
        model = tiny.Model(16, 3, seed=3)
        opt = SGD(model, lr=0.05, momentum=0.9)
        tr = Trainer(model, "cross_entropy", opt, out_dir=out, progress=False,
                     log=lambda *a: None, curves=False)
        tr.fit(tiny.Loader(x, y, 16, seed=3), epochs=epochs, resume=resume)
        return tr
    ref = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    b = run(tmp_path / "b", 3, resume=True)
    assert len(b.history) == 3
    for k, v in _weights(ref).items():
        assert np.array_equal(v, _weights(b)[k])


def test_resume_without_checkpoint_starts_fresh(tiny, tmp_path):
    logs = []
    trainer, loader, _ = make_run(tiny, tmp_path, epochs=1)
    trainer.log = logs.append
    trainer.fit(loader, epochs=1, resume=True)
    assert any("no checkpoint found" in line for line in logs)
    assert trainer.epoch == 1


def test_non_finite_loss_stops_naming_step_and_checkpoint(tiny, tmp_path):
    trainer, loader, _ = make_run(tiny, tmp_path, n=64, batch=16)
    # Poison one sample: the batch containing it gets a NaN loss (at some step of epoch 2).
    trainer.fit(loader, epochs=1)
    good = trainer.last_checkpoint
    loader.images[5] = np.nan
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(loader, epochs=3)
    err = info.value
    assert 5 <= err.step <= 8
    assert f"step {err.step}" in str(err)
    assert good in str(err) and err.checkpoint == good
    # Nothing after the last good step was checkpointed.
    assert list_checkpoints(tmp_path / "checkpoints")[-1] == good


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_loss_without_checkpoint_says_so(tiny):
    trainer, loader, _ = make_run(tiny, None)
    loader.images[:] = np.inf
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*none"):
        trainer.fit(loader, epochs=1)


def test_evaluate_and_predict(tiny):
    trainer, loader, val = make_run(tiny, None)
    trainer.fit(loader, epochs=2)
    xv, yv = val.images, val.labels
    logits = trainer.model.forward(xv, training=False)
    res = trainer.evaluate(val, confusion=True)
    assert res["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == yv))
    want_cm = np.zeros((3, 3), np.int64)
    for t, p in zip(yv, logits.argmax(1)):
        want_cm[t, p] += 1
    np.testing.assert_array_equal(res["confusion_matrix"], want_cm)
    np.testing.assert_allclose(trainer.predict(xv, batch_size=7), logits, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        trainer.predict(xv[:0])


def test_checkpoint_every_steps_and_keep(tiny, tmp_path):
    trainer, loader, _ = make_run(tiny, tmp_path, keep_checkpoints=2, checkpoint_every=4)
    trainer.fit(loader, epochs=2)
    names = [os.path.basename(p) for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["ckpt-e0001-s000000008.npz", "ckpt-e0002-s000000012.npz"]


def test_bad_arguments(tiny):
    trainer, loader, _ = make_run(tiny, None)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(loader, epochs=0)
    with pytest.raises(ValueError, match="metric"):
        Trainer(trainer.model, "cross_entropy", trainer.optimizer, metrics=("precision",))
    with pytest.raises(TypeError, match="loss"):
        Trainer(trainer.model, object(), trainer.optimizer)
    with pytest.raises(ValueError, match="out_dir"):
        trainer.save_checkpoint()


def test_loader_with_wrong_len_is_an_error(tiny):
    trainer, loader, _ = make_run(tiny, None)

    class Liar:
        def __len__(self):
            return 2

        def __iter__(self):
            return iter(loader)
    with pytest.raises(RuntimeError, match="len"):
        trainer.fit(Liar(), epochs=1)


def test_confusion_matrix_helper_consistent_with_evaluate():
    pred = np.array([0, 1, 1, 2])
    lab = np.array([0, 1, 2, 2])
    cm = confusion_matrix(pred, lab, 3)
    assert cm.sum() == 4 and np.trace(cm) == 3 and cm[2, 1] == 1


def test_interrupt_during_validation_resumes_exactly(tiny, tmp_path):
    """Ctrl-C while evaluating after an epoch: the epoch's steps are kept, validation reruns."""
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    ref_hist = ref.fit(loader, val, epochs=3)

    class StopOnSecondEval:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __iter__(self):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return iter(self.inner)

    run, loader, val = make_run(tiny, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run.fit(loader, StopOnSecondEval(val), epochs=3)
    assert run.step == 12 and run.epoch == 1 and run.step_in_epoch == 6
    again, loader, val = make_run(tiny, tmp_path / "run")
    hist = again.fit(loader, val, epochs=3, resume=True)
    for k, v in _weights(ref).items():
        assert np.array_equal(v, _weights(again)[k])
    assert hist["val_loss"] == ref_hist["val_loss"] and hist["step"] == ref_hist["step"]


def test_progress_bar_shows_loss_accuracy_speed(tiny, capsys):
    trainer, loader, _ = make_run(tiny, None)
    trainer.progress = True
    trainer.progress_interval = 0
    trainer.fit(loader, epochs=1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "acc=" in err and "img/s=" in err


def test_evaluate_with_flip_tta_averages_the_mirrored_logits(rng):
    """tta=True: each image's logits are the mean of its own and its mirror image's."""
    from cnnframe import Model
    model = Model.from_config({"input_shape": [2, 5, 6], "seed": 4, "layers": [
        {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in_features": 36, "out_features": 4}]})
    x = rng.standard_normal((10, 2, 5, 6)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    plain = np.array(model.forward(x, training=False))
    mirrored = np.array(model.forward(np.ascontiguousarray(x[..., ::-1]), training=False))
    assert not np.allclose(plain, mirrored)  # the model is not mirror-symmetric
    want = (plain + mirrored) / 2
    # The free function: no Trainer, no optimizer.
    res = evaluate(model, batches, SoftmaxCrossEntropy(), confusion=True, tta=True)
    assert res["accuracy"] == pytest.approx(np.mean(want.argmax(1) == y))
    np.testing.assert_array_equal(res["confusion_matrix"],
                                  confusion_matrix(want.argmax(1), y, 4))
    assert res["loss"] == pytest.approx(SoftmaxCrossEntropy().forward(want, y), rel=1e-5)
    assert evaluate(model, batches)["accuracy"] == pytest.approx(np.mean(plain.argmax(1) == y))
    with pytest.raises(ValueError, match=r"tta flips images left-right and needs batches of "
                                         r"shape \(N, C, H, W\), got \(3, 4\)"):
        evaluate(model, [(np.zeros((3, 4), np.float32), y[:3])], tta=True)
    # Trainer.evaluate is the same function with the Trainer's loss and metrics.
    trainer = Trainer(model, SoftmaxCrossEntropy(), optimizer=None, progress=False)
    assert trainer.evaluate(batches, tta=True) == {k: v for k, v in res.items()
                                                   if k != "confusion_matrix"}


# ----------------------------------------------------------------------------- predict


def test_predict_free_function_batches_and_gives_probabilities(rng):
    from cnnframe import Model
    model = Model.from_config({"input_shape": [1, 4, 4], "seed": 2, "layers": [
        {"type": "flatten"}, {"type": "linear", "in_features": 16, "out_features": 5}]})
    x = rng.standard_normal((11, 1, 4, 4)).astype(np.float32)
    logits = np.array(model.forward(x, training=False), np.float64)
    np.testing.assert_allclose(predict(model, x, batch_size=3), logits, rtol=1e-6, atol=1e-6)
    probs = predict(model, x, batch_size=4, probabilities=True)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            predict(model, x, batch_size=bad)


# ----------------------------------------------------------------------------- max_steps


@pytest.mark.parametrize("max_steps", [4, 6, 9])
def test_max_steps_stops_with_a_checkpoint_and_resume_is_bit_identical(tiny, tmp_path,
                                                                       max_steps):
    """6 steps per epoch: stops within epoch 1, at its end, and within epoch 2."""
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    ref_hist = ref.fit(loader, val, epochs=3)
    logs = []
    run, loader, val = make_run(tiny, tmp_path / "run")
    run.log = logs.append
    hist = run.fit(loader, val, epochs=3, max_steps=max_steps)
    assert run.step == max_steps and len(hist) == max_steps // 6
    assert any(line.startswith(f"stopped after {max_steps} steps (max_steps = {max_steps})")
               for line in logs)
    last = os.path.basename(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    want_tag = "" if max_steps % 6 == 0 else "-stop"
    assert last == f"ckpt-e{max_steps // 6:04d}-s{max_steps:09d}{want_tag}.npz"
    # Resuming finishes exactly the run that was never stopped.
    again, loader, val = make_run(tiny, tmp_path / "run")
    hist = again.fit(loader, val, epochs=3, resume=True)
    for k, v in _weights(ref).items():
        assert np.array_equal(v, _weights(again)[k]), k
    for col in ("loss", "accuracy", "val_loss", "lr", "step"):
        assert hist[col] == ref_hist[col], col


def test_max_steps_beyond_the_run_and_bad_values(tiny):
    trainer, loader, _ = make_run(tiny, None)
    assert len(trainer.fit(loader, epochs=2, max_steps=1000)) == 2
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="max_steps"):
            trainer.fit(loader, epochs=3, max_steps=bad)


# ----------------------------------------------------------------------------- per-step curve


def test_step_points_average_the_batches_and_survive_resume(tiny, tmp_path):
    ref, loader, val = make_run(tiny, tmp_path / "ref")
    hist = ref.fit(loader, val, epochs=2)
    # 6 steps per epoch: one point per step, at fractional epochs 1/6, 2/6, ...
    assert [p["step"] for p in hist.steps] == list(range(1, 13))
    assert [p["epoch"] for p in hist.steps] == pytest.approx([s / 6 for s in range(1, 13)])
    # Weighted by batch size (96 = 6 batches of 16), the points give the epoch's numbers.
    for e, row in enumerate(hist.rows):
        pts = hist.steps[6 * e:6 * e + 6]
        assert np.mean([p["loss"] for p in pts]) == pytest.approx(row["loss"], rel=1e-12)
        assert np.mean([p["accuracy"] for p in pts]) == pytest.approx(row["accuracy"])
    run, loader, val = make_run(tiny, tmp_path / "run", callbacks=[InterruptAt(9)])
    with pytest.raises(KeyboardInterrupt):
        run.fit(loader, val, epochs=2)
    again, loader, val = make_run(tiny, tmp_path / "run")
    assert again.fit(loader, val, epochs=2, resume=True).steps == hist.steps


def test_long_epochs_get_about_50_points_each(tiny):
    trainer, loader, _ = make_run(tiny, None, n=1000, batch=4)   # 250 steps per epoch
    hist = trainer.fit(loader, epochs=1)
    assert len(hist.steps) == 50 and hist.steps[-1]["step"] == 250
    assert hist.steps[-1]["epoch"] == 1.0


# ----------------------------------------------------------------------------- real Model


def _shapes_run(out_dir, out_features=8, curves=True):
    from cnnframe import Model
    from cnnframe.data import DataLoader, Shapes
    from cnnframe.optim import SGD
    model = Model.from_config({"input_shape": [3, 12, 12], "seed": 1, "layers": [
        {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in_features": 400, "out_features": out_features}]})
    train = DataLoader(Shapes(n=64, size=12, seed=1), 16, seed=1)
    val = DataLoader(Shapes(n=32, size=12, train=False), 32, shuffle=False)
    trainer = Trainer(model, "cross_entropy", SGD(model, lr=0.05), out_dir=out_dir,
                      progress=False, log=lambda *a: None, curves=curves)
    return trainer, train, val


def test_out_dir_gets_the_model_and_the_curves(tmp_path):
    from cnnframe import Model
    trainer, train, val = _shapes_run(tmp_path)
    trainer.fit(train, val, epochs=1)
    saved = Model.load(tmp_path / "model.cnnf")
    x = val.images[:8].astype(np.float32) / 255
    np.testing.assert_array_equal(saved.forward(x, training=False),
                                  trainer.model.forward(x, training=False))
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_out_dir_after_max_steps_gets_the_stopped_model(tmp_path):
    from cnnframe import Model
    trainer, train, val = _shapes_run(tmp_path, curves=False)
    trainer.fit(train, val, epochs=2, max_steps=3)
    assert trainer.step == 3 and not (tmp_path / "curves.png").exists()
    for k, v in Model.load(tmp_path / "model.cnnf").state_dict().items():
        assert np.array_equal(v, trainer.model.state_dict()[k]), k


@pytest.mark.parametrize("name", ["model.cnnf", "metrics.csv", "curves.png", "config.toml",
                                  "preprocess.json"])
def test_out_dir_loses_the_temp_files_of_a_killed_run_at_start(tmp_path, name):
    from cnnframe._files import atomic_write
    killed_write(tmp_path / name)
    killed_write(tmp_path / "notes.txt")  # not a file of the run: left alone
    [stale] = [n for n in os.listdir(tmp_path) if n.startswith(f".{name}.")]
    [other] = [n for n in os.listdir(tmp_path) if n.startswith(".notes.txt.")]

    def write(f):  # while this process writes `name`, a run starts in the folder
        [live] = set(os.listdir(tmp_path)) - {stale, other}
        _shapes_run(tmp_path)
        assert sorted(os.listdir(tmp_path)) == sorted([live, other])
    atomic_write(tmp_path / name, write)
    assert sorted(os.listdir(tmp_path)) == sorted([name, other])


def test_a_model_with_the_wrong_number_of_outputs_fails_at_start(tmp_path):
    trainer, train, val = _shapes_run(tmp_path, out_features=20)
    with pytest.raises(ValueError, match=r"the model has 20 outputs but the training data has "
                                         r"8 classes \(horizontal_bar, .*\); its last layer "
                                         r"must have 8 outputs"):
        trainer.fit(train, val, epochs=1)
    assert trainer.step == 0 and not (tmp_path / "checkpoints").exists()


def test_labels_beyond_the_outputs_fail_at_start(tiny):
    """Data without class names: the labels tell the class count."""
    from cnnframe import Model
    from cnnframe.data import DataLoader
    from cnnframe.optim import SGD
    model = Model.from_config({"input_shape": [1, 4, 4], "layers": [
        {"type": "flatten"}, {"type": "linear", "in_features": 16, "out_features": 3}]})
    x, y = tiny.data(20, n_classes=5)
    trainer = Trainer(model, "cross_entropy", SGD(model, lr=0.1), progress=False)
    with pytest.raises(ValueError, match="the model has 3 outputs but the training data has "
                                         "labels up to 4"):
        trainer.fit(DataLoader((x, y), 4), epochs=1)
