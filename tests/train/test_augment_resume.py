"""End to end: a config with mixup + cutmix + class-weighted, label-smoothed cross-entropy on
soft targets trains from `cnnframe train` and, stopped mid-epoch and resumed, ends with
bit-identical weights."""
import numpy as np

from cnnframe.cli import main
from cnnframe.graph import Model
from cnnframe.train import History

CONFIG = """
seed = 5
epochs = 6
batch_size = 32

[model]
input_shape = [3, 12, 12]
layers = [
    {type = "conv2d", in_channels = 3, out_channels = 6, kernel_size = 3, padding = 1},
    {type = "batch_norm2d", num_features = 6},
    {type = "relu"},
    {type = "max_pool2d", kernel_size = 2},
    {type = "flatten"},
    {type = "linear", in_features = 216, out_features = 8},
]

[data]
dataset = "shapes"
augmentation = [
    {type = "random_translate", max_shift = 1, padding_mode = "reflect"},
    {type = "alternating_flip"},
    {type = "mixup", alpha = 0.4},
    {type = "cutmix", alpha = 1.0, p = 0.8},
]
normalize = {mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25]}
options = {size = 12, train = {n = 256}, test = {n = 64}}

[loss]
type = "cross_entropy"
label_smoothing = 0.1
weight = [1.0, 2.0, 1.0, 0.5, 1.0, 1.5, 1.0, 1.0]

[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
"""


def _interrupt_at(monkeypatch, step):
    from cnnframe.train import trainer as trainer_mod

    class Stop(trainer_mod.Callback):
        def on_step_end(self, trainer, s, logs):
            if s == step:
                raise KeyboardInterrupt
    orig = trainer_mod.Trainer.__init__

    def init(self, *a, **kw):
        orig(self, *a, **kw)
        self.callbacks.append(Stop())
    monkeypatch.setattr(trainer_mod.Trainer, "__init__", init)


def test_mixup_cutmix_weighted_soft_ce_trains_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = tmp_path / "mix.toml"
    cfg.write_text(CONFIG)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(ref), "--no-progress"]) == 0
    hist = History.from_csv(ref / "metrics.csv")
    assert hist["epoch"] == [1, 2, 3, 4, 5, 6]
    assert hist["loss"][-1] < hist["loss"][0]                 # it learns
    assert hist["val_loss"][-1] < 0.8 * hist["val_loss"][0]
    assert hist["val_accuracy"][-1] > 0.2                     # above chance (1/8)
    with monkeypatch.context() as m:
        _interrupt_at(m, 20)  # mid epoch 3
        assert main(["train", str(cfg), "--out", str(run), "--no-progress"]) == 130
    assert main(["train", str(cfg), "--out", str(run), "--resume", "--no-progress"]) == 0
    want = Model.load(ref / "model.cnnf").state_dict()
    got = Model.load(run / "model.cnnf").state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert np.array_equal(want[k], got[k]), k
    again = History.from_csv(run / "metrics.csv")
    assert again["loss"] == hist["loss"] and again["accuracy"] == hist["accuracy"]


def test_accuracy_with_probability_targets_counts_their_top_class(tiny):
    from cnnframe.optim import SGD
    from cnnframe.train import Trainer
    from cnnframe.train.metrics import MetricTracker
    x, labels = tiny.data(12, n_classes=3)
    rng = np.random.default_rng(0)
    targets = 0.3 * rng.dirichlet(np.ones(3), 12)       # mass 0.7 on the label, 0.3 spread
    targets[np.arange(12), labels] += 0.7
    model = tiny.Model(16, 3, p=0.0)
    trainer = Trainer(model, "cross_entropy", SGD(model, lr=0.0),
                      progress=False, log=lambda *a: None)
    tracker = MetricTracker(["accuracy", "top2_accuracy"])
    _, logits = trainer.train_step(x, targets.astype(np.float32), tracker)
    top1 = np.count_nonzero(logits.argmax(axis=1) == labels)
    top2 = np.count_nonzero((logits > logits[np.arange(12), labels][:, None]).sum(axis=1) < 2)
    assert tracker.correct == [top1, top2] and tracker.seen == 12
