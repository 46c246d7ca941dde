"""`cnnframe train / evaluate / predict` end to end on tiny Shapes runs (real Model, DataLoader)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from dataset_writers import write_cifar_folder
from killed_writes import killed_write

from cnnframe.cli import main
from cnnframe.graph import Model
from cnnframe.train import History, list_checkpoints, load_config

TINY = """
seed = 3
epochs = 2
batch_size = 16

[model]
input_shape = [3, 12, 12]
layers = [
    {{type = "conv2d", in_channels = 3, out_channels = 6, kernel_size = 3, padding = 1}},
    {{type = "batch_norm2d", num_features = 6}},
    {{type = "relu"}},
    {{type = "max_pool2d", kernel_size = 2}},
    {{type = "dropout", p = 0.1}},
    {{type = "flatten"}},
    {{type = "linear", in_features = 216, out_features = 8}},
]

[data]
dataset = "shapes"
augmentation = [{{type = "random_crop", padding = 1}}, {{type = "hflip"}}]
normalize = {{mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25]}}
options = {{size = 12, train = {{n = {n_train}}}, test = {{n = 48}}}}

[optimizer]
type = "sgd"
lr = {lr}
momentum = 0.9

[schedule]
type = "cosine"
warmup_steps = 2

[checkpoint]
keep = {keep}
every_steps = {every}
"""


def write_config(path, n_train=96, lr=0.05, keep=3, every=0):
    path.write_text(TINY.format(n_train=n_train, lr=lr, keep=keep, every=every))
    return str(path)


def preprocess(images):
    """What the config's eval transforms do: scale to [0, 1], then normalise."""
    from cnnframe.data import Compose, Normalize, ToFloat
    return Compose([ToFloat(), Normalize([0.5] * 3, [0.25] * 3)])(images, None)


def weights(run):
    return Model.load(run / "model.cnnf").state_dict()


def test_train_writes_the_run_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.toml")
    run = tmp_path / "runs" / "tiny"
    assert main(["train", cfg, "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "final test accuracy" in out
    for name in ("config.toml", "metrics.csv", "model.cnnf", "preprocess.json"):
        assert (run / name).is_file(), name
    pytest.importorskip("matplotlib")
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    hist = History.from_csv(run / "metrics.csv")
    assert hist["epoch"] == [1, 2] and hist["step"] == [6, 12]
    assert len(list_checkpoints(run / "checkpoints")) == 2
    # The saved config is the resolved one and loads as a training config.
    assert load_config(run / "config.toml")["epochs"] == 2
    # The final model is the trained one: its test accuracy is the last val_accuracy.
    from cnnframe.data import Shapes
    test = Shapes(n=48, size=12, train=False)
    x = preprocess(test.images)
    logits = Model.load(run / "model.cnnf").forward(x, training=False)
    assert np.mean(logits.argmax(1) == test.labels) == pytest.approx(hist["val_accuracy"][-1])


def test_epochs_override_and_default_out(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "tiny.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["train", cfg, "--epochs", "1", "--no-progress"]) == 0
    assert History.from_csv(tmp_path / "runs" / "tiny" / "metrics.csv")["epoch"] == [1]


def _interrupt_at(monkeypatch, step):
    """Make the CLI's Trainer raise KeyboardInterrupt after `step` steps (like Ctrl-C)."""
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


def test_interrupt_and_resume_gives_identical_weights(tmp_path, monkeypatch, capsys):
    """Dropout, batch norm, random crops and flips, a cosine schedule: still bit-identical."""
    cfg = write_config(tmp_path / "tiny.toml")
    ref = tmp_path / "ref"
    assert main(["train", cfg, "--out", str(ref), "--no-progress"]) == 0
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at(m, 8)  # mid epoch 2
        assert main(["train", cfg, "--out", str(run), "--no-progress"]) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (run / "model.cnnf").exists()
    # Without --resume the run folder is protected.
    assert main(["train", cfg, "--out", str(run), "--no-progress"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", cfg, "--out", str(run), "--resume", "--no-progress"]) == 0
    want, got = weights(ref), weights(run)
    assert want.keys() == got.keys()
    for k in want:
        assert np.array_equal(want[k], got[k]), k
    a, b = History.from_csv(ref / "metrics.csv"), History.from_csv(run / "metrics.csv")
    assert a["loss"] == b["loss"] and a["val_accuracy"] == b["val_accuracy"]


def test_resume_refuses_a_different_config(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path / "tiny.toml")
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        assert main(["train", cfg, "--out", str(run), "--no-progress"]) == 130
    other = write_config(tmp_path / "other.toml", lr=0.2)
    assert main(["train", other, "--out", str(run), "--resume", "--no-progress"]) == 1
    assert "differs" in capsys.readouterr().err
    # More epochs is fine: the run continues.
    assert main(["train", cfg, "--out", str(run), "--resume", "--epochs", "3",
                 "--no-progress"]) == 0
    assert History.from_csv(run / "metrics.csv")["epoch"] == [1, 2, 3]


def test_real_ctrl_c_in_a_subprocess_then_resume(tmp_path):
    """SIGINT to a running `cnnframe train`: exit 130 with a checkpoint; --resume finishes the
    run with exactly the weights of an uninterrupted run."""
    cfg = write_config(tmp_path / "tiny.toml", n_train=1600, every=5, keep=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cnnframe", "train", cfg, "--no-progress", "--epochs", "1"]
    run = tmp_path / "run"
    proc = subprocess.Popen(cmd + ["--out", str(run)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list_checkpoints(run / "checkpoints") and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted at epoch 1" in out and "--resume" in err
    stopped = list_checkpoints(run / "checkpoints")[-1]
    assert stopped.endswith("-interrupt.npz")
    done = subprocess.run(cmd + ["--out", str(run), "--resume"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    ref = tmp_path / "ref"
    main(["train", cfg, "--no-progress", "--epochs", "1", "--out", str(ref)])
    want, got = weights(ref), weights(run)
    for k in want:
        assert np.array_equal(want[k], got[k]), k


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_exits_with_step_and_checkpoint(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.toml", lr=1e30)
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at step " in err and "Last good checkpoint" in err


def test_config_errors_are_reported(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(TINY.format(n_train=10, lr=0.1, keep=1, every=0) + "\nlearning_rate = 3\n")
    assert main(["train", str(p), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "learning_rate" in err and "valid keys" in err
    assert main(["train", str(tmp_path / "missing.toml")]) == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    cfg = write_config(base / "tiny.toml", n_train=160)
    assert main(["train", cfg, "--out", str(base / "run"), "--no-progress", "--epochs", "3"]) == 0
    return base / "run"


def test_evaluate_prints_accuracy_per_class_and_confusion(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    last = History.from_csv(trained / "metrics.csv")["val_accuracy"][-1]
    assert f"accuracy {100 * last:.2f}%" in out
    assert "per-class accuracy" in out and "circle" in out and "confusion matrix" in out
    # The confusion matrix rows add up to the 48 test images.
    rows = [line for line in out.splitlines() if line.rstrip().endswith("]")]
    assert len(rows) == 8
    assert sum(sum(int(v) for v in r.split("[")[0].split()[1:]) for r in rows) == 48
    pytest.importorskip("matplotlib")
    assert (tmp_path / "confusion_matrix_test.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_on_the_train_split_and_a_model_file(trained, capsys):
    assert main(["evaluate", str(trained / "model.cnnf"), "--split", "train",
                 "--out", str(trained)]) == 0
    assert "train (160 images)" in capsys.readouterr().out


def test_train_removes_the_temp_files_a_killed_run_left_in_its_folder(tmp_path):
    cfg = write_config(tmp_path / "tiny.toml", n_train=48)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "model.cnnf", "metrics.csv"):
        killed_write(run / name)
    assert len(os.listdir(run)) == 3
    assert main(["train", cfg, "--out", str(run), "--epochs", "1", "--no-progress"]) == 0
    assert not [name for name in os.listdir(run) if name.startswith(".")]


def test_evaluate_without_config_needs_data(tmp_path, trained, capsys):
    lone = tmp_path / "m.cnnf"
    lone.write_bytes((trained / "model.cnnf").read_bytes())
    assert main(["evaluate", str(lone)]) == 1
    assert "--data" in capsys.readouterr().err


def test_predict_classifies_image_files(trained, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    from cnnframe.data import Shapes
    test = Shapes(n=6, size=12, train=False)
    paths = []
    for i, img in enumerate(test.images):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(p)
        paths.append(str(p))
    big = tmp_path / "big.png"
    Image.fromarray(np.repeat(np.repeat(test.images[0].transpose(1, 2, 0), 2, 0), 2, 1)).save(big)
    assert main(["predict", str(trained), *paths, str(big), "--top", "2"]) == 0
    out = capsys.readouterr().out
    model = Model.load(trained / "model.cnnf")
    x = preprocess(test.images)
    want = model.forward(x, training=False).argmax(1)
    lines = out.splitlines()
    for i, p in enumerate(paths):
        line = next(ln for ln in lines if ln.startswith(p + ":"))
        assert line.split(":")[1].split()[0] == test.classes[want[i]]
        assert line.count("%") == 2
    assert "resized to 12x12" in out


def test_predict_errors(trained, tmp_path, capsys):
    assert main(["predict", str(trained), str(tmp_path / "nope.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main(["predict", str(trained), str(tmp_path / "junk.png")]) == 1
    assert f"{tmp_path / 'junk.png'}: cannot decode image" in capsys.readouterr().err


def make_cifar_folder(root):
    pytest.importorskip("PIL.Image")
    return write_cifar_folder(root)


def write_cifar_config(path):
    """TINY for 32x32 CIFAR-10 images and 10 classes."""
    path.write_text(TINY.format(n_train=0, lr=0.01, keep=1, every=0)
                    .replace('dataset = "shapes"', 'dataset = "cifar10"')
                    .replace("input_shape = [3, 12, 12]", "input_shape = [3, 32, 32]")
                    .replace("in_features = 216, out_features = 8", "in_features = 1536, "
                             "out_features = 10")
                    .replace("options = {size = 12, train = {n = 0}, test = {n = 48}}", ""))
    return str(path)


def test_cifar10_name_uses_a_class_folder_copy_from_data_dir_or_env(tmp_path, monkeypatch,
                                                                    capsys):
    """dataset = "cifar10" with --data-dir / $CNNFRAME_DATA at a train/<class>/*.png tree."""
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    root = make_cifar_folder(tmp_path / "data" / "cifar10-jpeg")
    cfg = write_cifar_config(tmp_path / "c.toml")
    assert main(["train", str(cfg), "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                 "--batch-size", "8", "--out", str(tmp_path / "r1"), "--no-progress"]) == 0
    assert "20 training images, 10 for evaluation" in capsys.readouterr().out
    monkeypatch.setenv("CNNFRAME_DATA", str(root))
    assert main(["train", str(cfg), "--epochs", "1", "--batch-size", "8",
                 "--out", str(tmp_path / "r2"), "--no-progress"]) == 0


def test_evaluate_with_flip_tta(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--tta", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test (48 images, flip TTA): accuracy" in out and "confusion matrix" in out
    # a bare --tta before the model: the model is not read as a mode
    assert main(["evaluate", "--tta", str(trained), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == out


# ----------------------------------------------------------------------------- data root (18)

def test_the_run_records_its_data_root_so_evaluate_and_resume_need_no_data_dir(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNFRAME_DATA", raising=False)
    make_cifar_folder(tmp_path / "data" / "cifar10-jpeg")
    write_cifar_config(tmp_path / "c.toml")
    monkeypatch.chdir(tmp_path)
    # A relative --data-dir is recorded as the absolute path it meant.
    assert main(["train", "c.toml", "--data-dir", "data", "--epochs", "2", "--batch-size", "8",
                 "--max-steps", "2", "--out", "run", "--no-progress"]) == 0
    assert load_config(tmp_path / "run" / "config.toml")["data"]["root"] == \
        str((tmp_path / "data").resolve())
    # Resume, and evaluate from another folder, without --data-dir.
    assert main(["train", "c.toml", "--batch-size", "8", "--out", "run", "--resume",
                 "--no-progress"]) == 0
    assert History.from_csv(tmp_path / "run" / "metrics.csv")["epoch"] == [1, 2]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "cifar10 test (10 images): accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_missing_cifar10_root_says_how_to_give_one(tmp_path, trained, command, capsys):
    nowhere = tmp_path / "nowhere"
    cfg = write_cifar_config(tmp_path / "c.toml")
    argv = (["train", cfg, "--out", str(tmp_path / "run")] if command == "train"
            else ["evaluate", str(trained), "--data", "cifar10", "--config", cfg])
    assert main(argv + ["--data-dir", str(nowhere)]) == 1
    err = capsys.readouterr().err
    assert f"CIFAR-10 root {nowhere} does not exist" in err
    for hint in ("--data-dir", "train/airplane", "--download"):
        assert hint in err
    assert "download=True" not in err
    assert not (tmp_path / "run").exists()


def _tiny_cifar_archive():
    """The official binary archive's layout with 2 random images per batch file."""
    import io
    import tarfile
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            labels = rng.integers(0, 10, (2, 1), dtype=np.uint8)
            data = np.concatenate([labels, rng.integers(0, 256, (2, 3072), dtype=np.uint8)],
                                  axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def cifar_server(monkeypatch):
    """A local HTTP server that plays the official CIFAR-10 site with a tiny archive."""
    import hashlib
    import http.server
    import threading

    from cnnframe.data import cifar
    archive = _tiny_cifar_archive()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/official/cifar-10-binary.tar.gz"
            body = archive if ok else b"not found"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    monkeypatch.setattr(cifar, "OFFICIAL_URL", f"http://127.0.0.1:{httpd.server_address[1]}"
                                               "/official/")
    monkeypatch.setitem(cifar.MD5, "cifar-10-binary.tar.gz", hashlib.md5(archive).hexdigest())
    monkeypatch.delenv(cifar.MIRRORS_ENV, raising=False)
    yield archive
    httpd.shutdown()
    httpd.server_close()


def test_download_flag_fetches_cifar10_into_the_root(tmp_path, cifar_server, capsys):
    cfg = write_cifar_config(tmp_path / "c.toml")
    root = tmp_path / "downloads"
    assert main(["train", cfg, "--data-dir", str(root), "--download", "--epochs", "1",
                 "--batch-size", "4", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "10 training images, 2 for evaluation" in capsys.readouterr().out
    assert (root / "cifar-10-binary.tar.gz").read_bytes() == cifar_server
    # evaluate --download finds the copy there and fetches nothing more.
    assert main(["evaluate", str(tmp_path / "run"), "--download",
                 "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-binary.tar.gz"]


def test_download_flag_is_refused_for_other_datasets(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.toml")
    assert main(["train", cfg, "--download", "--out", str(tmp_path / "run")]) == 1
    assert "--download fetches CIFAR-10 only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints (21)

def test_evaluate_on_a_checkpoint_says_what_it_is_and_how_to_get_a_model(trained, capsys):
    from cnnframe.train.runs import model_from_checkpoint
    last = list_checkpoints(trained / "checkpoints")[-1]
    assert main(["evaluate", last]) == 1
    err = capsys.readouterr().err
    assert "is a training checkpoint, not a model file" in err
    assert "--resume" in err and "model_from_checkpoint" in err
    assert str(trained / "model.cnnf") in err
    for command in ("summary", "predict"):
        argv = [command, last] + (["x.png"] if command == "predict" else [])
        assert main(argv) == 1
        assert "is a training checkpoint, not a model file" in capsys.readouterr().err
    # The recipe the message gives works: the last checkpoint holds the final weights.
    got = model_from_checkpoint(last).state_dict()
    want = weights(trained)
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k


# ----------------------------------------------------------------------------- --max-steps (24)

def test_max_steps_stops_with_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.toml")
    ref = tmp_path / "ref"
    assert main(["train", cfg, "--out", str(ref), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", cfg, "--out", str(run), "--max-steps", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stopped after 8 steps" in out and "stopped by --max-steps 8: 8 of 12 steps" in out
    assert f"--out {run} --resume" in out
    assert list_checkpoints(run / "checkpoints")[-1].endswith("-s000000008-stop.npz")
    assert History.from_csv(run / "metrics.csv")["epoch"] == [1]
    assert (run / "model.cnnf").is_file()
    assert main(["train", cfg, "--out", str(run), "--resume", "--no-progress"]) == 0
    want, got = weights(ref), weights(run)
    for k in want:
        assert np.array_equal(want[k], got[k]), k


def test_a_model_with_the_wrong_number_of_outputs_fails_before_training(tmp_path, capsys):
    cfg = tmp_path / "wide.toml"
    cfg.write_text(TINY.format(n_train=96, lr=0.05, keep=1, every=0)
                   .replace("out_features = 8", "out_features = 20"))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "the model has 20 outputs but shapes has 8 classes" in err
    assert not run.exists()


# ----------------------------------------------------------------------------- predict (23)

def _png_declaring(width, height):
    """A tiny PNG whose header declares width x height pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_predict_reports_bad_files_and_classifies_the_others(trained, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    from cnnframe.data import Shapes
    test = Shapes(n=3, size=12, train=False)
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    good = [folder / "b.png", folder / "sub" / "a.png", folder / "c.jpg"]
    for img, p in zip(test.images, good):
        Image.fromarray(img.transpose(1, 2, 0)).save(p, quality=100)
    (folder / "junk.png").write_bytes(b"not an image")
    (folder / "bomb.png").write_bytes(_png_declaring(65535, 65535))
    (folder / "notes.txt").write_text("not an image and not named like one")
    (folder / ".hidden.png").write_bytes(b"skipped: hidden")
    missing = tmp_path / "nope.png"
    assert main(["predict", str(trained), str(missing), str(folder)]) == 1
    captured = capsys.readouterr()
    # Every readable image is classified, in sorted order of the folder's files.
    classified = [line.split(":")[0] for line in captured.out.splitlines() if "%" in line]
    assert classified == sorted(str(p) for p in good)
    # One line per bad input, naming it and saying why; then the count.
    err = captured.err.splitlines()
    assert err[0] == f"cnnframe predict: {missing}: does not exist"
    bad = {line.split(": ")[1]: line for line in err[1:-1]}
    assert sorted(bad) == [str(folder / "bomb.png"), str(folder / "junk.png")]
    assert "cannot decode image" in bad[str(folder / "junk.png")]
    assert "too large to decode safely" in bad[str(folder / "bomb.png")]  # Pillow's limit
    assert err[-1].startswith("cnnframe predict: error: 3 of 6 inputs could not be read")
    # With only good files the exit status is 0.
    assert main(["predict", str(trained), *map(str, good)]) == 0


def test_predict_on_a_folder_without_images(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(trained), str(tmp_path / "empty")]) == 1
    assert "a folder without image files" in capsys.readouterr().err


@pytest.mark.parametrize("max_pixels, refused", [
    (None, ["wide.png"]),                    # the default (made 200 here)
    ("143", ["small.png", "wide.png"]),      # the 12x12 image has 144 pixels
    ("144", ["wide.png"]),
    ("0", []),                               # no limit
])
def test_predict_max_pixels_refuses_larger_images_before_decoding(trained, tmp_path, capsys,
                                                                  monkeypatch, max_pixels,
                                                                  refused):
    from cnnframe.cli import predict
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.setattr(predict, "MAX_PIXELS", 200)  # the flag's default
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((12, 400, 3), np.uint8)).save(tmp_path / "wide.png")
    paths = [tmp_path / "small.png", tmp_path / "wide.png"]
    flag = [] if max_pixels is None else ["--max-pixels", max_pixels]
    status = main(["predict", str(trained), *map(str, paths), *flag])
    captured = capsys.readouterr()
    assert status == (1 if refused else 0)
    classified = [line.split(":")[0] for line in captured.out.splitlines() if "%" in line]
    assert classified == [str(p) for p in paths if p.name not in refused]
    limit = 200 if max_pixels is None else int(max_pixels)
    for name in refused:
        [line] = [ln for ln in captured.err.splitlines() if f"{tmp_path / name}: " in ln]
        assert f"more than max_pixels={limit:,}" in line


def test_predict_scales_16_bit_images_like_8_bit_ones(trained, tmp_path, capsys):
    """16-bit grayscale PNGs were clipped at 255 (nearly white) instead of scaled."""
    Image = pytest.importorskip("PIL.Image")
    gray = np.random.default_rng(5).integers(0, 256, (12, 12), dtype=np.uint16)
    Image.fromarray(gray.astype(np.uint8), "L").save(tmp_path / "8bit.png")
    Image.fromarray(gray * 257).save(tmp_path / "16bit.png")  # uint16: a 16-bit PNG
    assert main(["predict", str(trained), str(tmp_path / "8bit.png"),
                 str(tmp_path / "16bit.png"), "--top", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]


def test_evaluate_with_multicrop_tta(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--tta", "multicrop", "--out", str(tmp_path)]) == 0
    assert "test (48 images, multicrop TTA): accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(trained), "--tta", "flip", "--out", str(tmp_path)]) == 0
    assert "test (48 images, flip TTA): accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", str(trained), "--tta", "crops"])
    assert "invalid choice: 'crops'" in capsys.readouterr().err
