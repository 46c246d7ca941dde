"""Training controls in the Trainer: the after-backward hook, stop_training, EMA, Lookahead,
clipping, parameter groups, ReduceLROnPlateau, EarlyStopping, keep_best, freezing -- each
stopped mid-run and resumed, bit-identical to the run that was never stopped."""
import os

import numpy as np
import pytest

from cnnframe.graph import Model
from cnnframe.optim import SGD, ExponentialMovingAverage, Lookahead, ReduceLROnPlateau
from cnnframe.train import Callback, EarlyStopping, Trainer, list_checkpoints, load_state
from cnnframe.train.checkpoint import BEST_NAME

EPOCHS, N, BATCH = 4, 48, 16   # 3 steps per epoch


def small_model(trainable_conv=True):
    conv = {"type": "conv2d", "name": "conv", "in_channels": 1, "out_channels": 4,
            "kernel_size": 3, "padding": 1}
    if not trainable_conv:
        conv["trainable"] = False
    return Model.from_config({"input_shape": [1, 4, 4], "seed": 0, "layers": [
        conv, {"type": "batch_norm2d", "name": "bn", "num_features": 4}, {"type": "relu"},
        {"type": "dropout", "p": 0.2}, {"type": "flatten"},
        {"type": "linear", "name": "fc", "in_features": 64, "out_features": 3}]})


CONTROLS = {
    "ema": dict(ema=True),
    "ema_saved_every_2": dict(ema=True, ema_every=2, save_ema=True),
    "lookahead": dict(lookahead=True),
    "clipping": dict(opt_kw={"clip_grad_norm": 0.5, "clip_grad_value": 0.2}),
    "groups": dict(opt_kw={"groups": [{"params": ["*.bias", "bn"], "weight_decay": 0.0},
                                      {"params": "fc", "lr": 0.01}]}),
    "plateau": dict(plateau=True),
    "early_stopping": dict(early=True),
    "keep_best": dict(keep_best={"monitor": "val_accuracy", "mode": "max"}),
    "frozen": dict(trainable_conv=False),
}


def make_run(tiny, out_dir, ema=False, ema_every=1, save_ema=False, lookahead=False,
             opt_kw=None, plateau=False, early=False, keep_best=None, trainable_conv=True,
             callbacks=()):
    x, y = tiny.data(N, seed=0, dim=(1, 4, 4))
    xv, yv = tiny.data(32, seed=100, dim=(1, 4, 4))
    model = small_model(trainable_conv)
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3, **(opt_kw or {}))
    if lookahead:
        opt = Lookahead(opt, k=2, alpha=0.5)
    # min_delta 10: no epoch after the first "improves", so both act within the run
    sched = (ReduceLROnPlateau(opt, monitor="val_loss", factor=0.5, patience=2, min_delta=10)
             if plateau else None)
    cbs = list(callbacks)
    if early:
        cbs.append(EarlyStopping("val_loss", patience=2, min_delta=10, restore_best=True))
    kw = {}
    if ema:
        kw.update(ema=ExponentialMovingAverage(model, decay=0.8, every_steps=ema_every,
                                               warmup=True), save_ema=save_ema)
    trainer = Trainer(model, "cross_entropy", opt, sched, out_dir=out_dir, callbacks=cbs,
                      progress=False, log=lambda *a: None, curves=False, keep_best=keep_best,
                      **kw)
    return trainer, tiny.Loader(x, y, BATCH, seed=0), tiny.Loader(xv, yv, 16, shuffle=False,
                                                                  noise=0.0)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, logs):
        if step == self.step:
            trainer.stop_training = True


def _state(trainer):
    out = dict(trainer.model.state_dict())
    if trainer.ema is not None:
        out.update({f"ema:{k}": v for k, v in trainer.ema.average.items()})
    opt = trainer.optimizer.state_dict()
    out.update({f"opt:{k}": np.asarray(v) for k, v in opt.items()})
    return out


def assert_same_run(ref, ref_hist, got, hist):
    want, have = _state(ref), _state(got)
    assert want.keys() == have.keys()
    for k in want:
        assert np.array_equal(want[k], have[k]), k
    for col in ("loss", "val_loss", "lr", "step"):
        assert hist[col] == ref_hist[col], col
    assert got.optimizer.lr == ref.optimizer.lr


@pytest.mark.parametrize("name", list(CONTROLS))
@pytest.mark.parametrize("how,stop", [("max_steps", 4), ("callback", 5), ("callback", 6)])
def test_stopped_and_resumed_run_is_bit_identical(tiny, tmp_path, name, how, stop):
    controls = CONTROLS[name]
    ref, loader, val = make_run(tiny, tmp_path / "ref", **controls)
    ref_hist = ref.fit(loader, val, epochs=EPOCHS)
    if "plateau" in controls:  # the controls act within the run
        assert ref_hist["lr"][-1] == ref_hist["lr"][0] / 2
    if "early" in controls:
        assert len(ref_hist) == 3
    if how == "max_steps":
        run, loader, val = make_run(tiny, tmp_path / "run", **controls)
        run.fit(loader, val, epochs=EPOCHS, max_steps=stop)
    else:
        run, loader, val = make_run(tiny, tmp_path / "run", callbacks=[StopAt(stop)],
                                    **controls)
        run.fit(loader, val, epochs=EPOCHS)
    assert run.step == stop
    again, loader, val = make_run(tiny, tmp_path / "run", **controls)
    hist = again.fit(loader, val, epochs=EPOCHS, resume=True)
    assert_same_run(ref, ref_hist, again, hist)
    if "keep_best" in controls:
        assert (again.best_epoch, again.keep_best.best) == (ref.best_epoch, ref.keep_best.best)
    for folder in ("ref", "run"):  # the final model files agree too
        saved = Model.load(tmp_path / folder / "model.cnnf").state_dict()
        for k, v in saved.items():
            assert np.array_equal(v, Model.load(tmp_path / "ref" / "model.cnnf")
                                  .state_dict()[k]), k


# ----------------------------------------------------------------------------- hooks, stop

def test_on_after_backward_sees_the_gradients_before_the_step(tiny):
    seen = []

    class ZeroFc(Callback):
        def on_after_backward(self, trainer, step):
            seen.append((step, trainer.step, float(np.abs(trainer.model.grads["fc.weight"]).sum())))
            trainer.model.grads["fc.weight"][...] = 0  # reaches the optimizer
            trainer.model.grads["fc.bias"][...] = 0

    trainer, loader, _ = make_run(tiny, None, callbacks=[ZeroFc()])
    fc = trainer.model.params["fc.weight"].copy()
    trainer.optimizer.weight_decay = 0.0
    trainer.fit(loader, epochs=1)
    assert [s[:2] for s in seen] == [(1, 0), (2, 1), (3, 2)]
    assert all(s[2] > 0 for s in seen)
    np.testing.assert_array_equal(trainer.model.params["fc.weight"], fc)


def test_stop_training_stops_cleanly_with_a_checkpoint(tiny, tmp_path):
    logs = []
    trainer, loader, val = make_run(tiny, tmp_path, callbacks=[StopAt(2)])
    trainer.log = logs.append
    hist = trainer.fit(loader, val, epochs=EPOCHS)
    assert trainer.step == 2 and len(hist) == 0
    assert list_checkpoints(tmp_path / "checkpoints")[-1].endswith("-s000000002-stop.npz")
    assert any(line.startswith("stopped after 2 steps (a callback) in epoch 1") for line in logs)
    assert (tmp_path / "model.cnnf").is_file()


# ----------------------------------------------------------------------------- EMA

def test_ema_validates_and_saves_the_averaged_weights(tiny, tmp_path):
    trainer, loader, val = make_run(tiny, tmp_path, ema=True, save_ema=True)
    hist = trainer.fit(loader, val, epochs=2)
    with trainer.ema.applied():
        want = trainer.evaluate(val)
    raw = trainer.evaluate(val)
    assert hist["val_loss"][-1] == want["loss"] != raw["loss"]
    saved = Model.load(tmp_path / "model.cnnf").state_dict()
    for k, avg in trainer.ema.average.items():
        np.testing.assert_array_equal(saved[k], avg)
    assert not np.array_equal(trainer.model.params["fc.weight"],
                              trainer.ema.average["fc.weight"])


def test_checkpoint_and_trainer_must_agree_on_the_ema(tiny, tmp_path):
    trainer, loader, val = make_run(tiny, tmp_path, ema=True)
    trainer.fit(loader, val, epochs=1)
    plain, loader, val = make_run(tiny, tmp_path)
    with pytest.raises(ValueError, match="weight EMA"):
        plain.fit(loader, val, epochs=2, resume=True)


# ----------------------------------------------------------------------------- early stopping

def test_early_stopping_stops_restores_the_best_and_stays_stopped(tiny, tmp_path):
    logs = []
    best = {}

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            best.setdefault(epoch, trainer.model.state_dict())

    trainer, loader, val = make_run(tiny, tmp_path, early=True, callbacks=[Record()])
    trainer.log = logs.append
    hist = trainer.fit(loader, val, epochs=10)
    # epoch 1 is the best (min_delta 10), then 2 epochs without improvement: stop after 3
    assert len(hist) == 3 and trainer.epoch == 3
    assert any("early stopping after epoch 3" in line and "restored the weights of epoch 1"
               in line for line in logs)
    for k, v in best[0].items():
        np.testing.assert_array_equal(trainer.model.state_dict()[k], v)
    again, loader, val = make_run(tiny, tmp_path, early=True)
    assert len(again.fit(loader, val, epochs=10, resume=True)) == 3 and again.step == 9


@pytest.mark.parametrize("kwargs,match", [
    (dict(patience=0), "patience"), (dict(mode="best"), "mode must be one of auto, min, max"),
    (dict(min_delta=-1), "min_delta"), (dict(restore_best=1), "restore_best"),
])
def test_early_stopping_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EarlyStopping(**kwargs)


def test_a_monitor_the_results_will_lack_fails_before_training(tiny, tmp_path):
    trainer, loader, _ = make_run(tiny, tmp_path, early=True)
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss'.*need a validation"):
        trainer.fit(loader, None, epochs=2)
    trainer, loader, val = make_run(tiny, tmp_path, keep_best="val_acc")
    with pytest.raises(ValueError, match="keep_best monitors 'val_acc'.*they have: .*val_accuracy"):
        trainer.fit(loader, val, epochs=2)
    assert trainer.step == 0


# ----------------------------------------------------------------------------- keep_best

def test_keep_best_writes_the_best_epoch_and_never_prunes_it(tiny, tmp_path):
    trainer, loader, val = make_run(tiny, tmp_path, keep_best="val_loss")
    trainer.checkpoints.keep = 1
    weights = {}

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            weights[epoch + 1] = trainer.model.state_dict()

    trainer.callbacks.append(Record())
    hist = trainer.fit(loader, val, epochs=EPOCHS)
    best_epoch = int(np.argmin(hist["val_loss"])) + 1
    assert trainer.best_epoch == best_epoch and trainer.keep_best.best == min(hist["val_loss"])
    state = load_state(tmp_path / "checkpoints" / BEST_NAME)
    assert state["trainer"]["epoch"] == best_epoch
    for k, v in weights[best_epoch].items():
        np.testing.assert_array_equal(state["model"][k], v)
    assert len(list_checkpoints(tmp_path / "checkpoints")) == 1  # best.npz is not counted


# ----------------------------------------------------------------------------- freezing

def test_frozen_node_gets_no_update_no_decay_and_no_backward(tiny, tmp_path):
    trainer, loader, val = make_run(tiny, None, trainable_conv=False)
    model = trainer.model
    assert model.frozen_params == {"conv.weight", "conv.bias"}
    before = model.state_dict()
    trainer.fit(loader, val, epochs=1)
    after = model.state_dict()
    for k in ("conv.weight", "conv.bias"):
        np.testing.assert_array_equal(after[k], before[k])
        assert not model.grads[k].any()  # its backward was skipped
    assert not np.array_equal(after["fc.weight"], before["fc.weight"])
    assert model.to_config()["nodes"][0]["trainable"] is False


def test_freeze_by_pattern_matches_node_names_and_unfreeze(tiny):
    model = small_model()
    assert model.freeze("bn", "*.bias") == ["conv.bias", "bn.weight", "bn.bias", "fc.bias"]
    assert model.nodes["bn"].trainable is False and model.nodes["conv"].trainable is True
    assert "trainable" not in model.to_config()["nodes"][0]
    model.unfreeze("bn")
    assert model.frozen_params == {"conv.bias", "fc.bias"}
    with pytest.raises(ValueError, match="'cnv' selects no parameter; the parameters are conv"):
        model.freeze("cnv")
    model.unfreeze()
    assert model.frozen_params == set()


def test_frozen_middle_layer_still_passes_gradients_upstream(tiny):
    """conv trains, bn is frozen: conv's gradient flows through bn unchanged by freezing."""
    x, y = tiny.data(8, seed=0, dim=(1, 4, 4))
    a, b = small_model(), small_model()
    b.freeze("bn")
    for m in (a, b):
        for layer in m.nodes.values():
            if getattr(layer, "stochastic", False):
                layer.p = 0.0
        m.backward(m.forward(x) * 0 + 1.0)
    np.testing.assert_array_equal(a.grads["conv.weight"], b.grads["conv.weight"])
    np.testing.assert_array_equal(a.grads["fc.weight"], b.grads["fc.weight"])
