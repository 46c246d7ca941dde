"""Time and peak memory of loading hostile model files and damaged checkpoints.

    .venv/bin/python tests/reliability/hostile_files.py            # the 2 GiB member of issue 15
    .venv/bin/python tests/reliability/hostile_files.py --bomb-mib 256

Builds, in a temporary folder:

- ``bomb.cnnf``: a model with 2 MiB of weights plus one extra deflated member of
  ``--bomb-mib`` MiB of zeros (the file is about 2 MiB bigger than the model);
- for each way of damaging a checkpoint in ``test_safe_loading.CHECKPOINT_DAMAGE``
  (encrypted flag, unknown compression, corrupt deflate stream, crafted ``__meta__``,
  4 TiB header, a stream inflating beyond its size, an unreferenced 32 MiB deflated
  member), a folder with an intact older checkpoint and the damaged newest one;

then loads each in a fresh process (``Model.load``, ``load_state``, ``latest_checkpoint``)
and prints the time, the peak RSS and what happened.
"""
import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

CHILD = r"""
import resource, sys, time, warnings
warnings.simplefilter("ignore")
kind, path = sys.argv[1], sys.argv[2]
import cnnframe.graph, cnnframe.train
t0 = time.perf_counter()
try:
    if kind == "import":
        res = "imported cnnframe only"
    elif kind == "Model.load":
        cnnframe.graph.Model.load(path)
        res = "loaded"
    elif kind == "load_state":
        cnnframe.train.load_state(path)
        res = "loaded"
    else:
        res = "returned " + cnnframe.train.latest_checkpoint(path)[0].rsplit("/", 1)[-1]
except BaseException as exc:
    message = str(exc).replace(path + ": ", "").replace(path, "FILE")
    res = f"{type(exc).__name__}: {message[:150]}"
print(f"{time.perf_counter() - t0:.3f}\t"
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}\t{res}")
"""


def build(out, bomb_mib):
    sys.path.insert(0, str(TESTS))
    from reliability import test_safe_loading as t

    import numpy as np

    from cnnframe.graph import Model
    from cnnframe.train import save_state
    model = Model.from_config({"input_shape": [512], "seed": 0, "layers": [
        {"type": "linear", "in_features": 512, "out_features": 1024}]})
    bomb = out / "bomb.cnnf"
    model.save(bomb)
    members = t._zip_members(bomb)
    with zipfile.ZipFile(bomb, "w", compresslevel=1) as z:
        for name, data in members.items():
            z.writestr(name, data)
        info = zipfile.ZipInfo("extra.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(t._npy(shape=(bomb_mib << 17,)))
            chunk = bytes(1 << 20)
            for _ in range(bomb_mib):
                f.write(chunk)
    folders = []
    for how in t.CHECKPOINT_DAMAGE:
        folder = out / how
        folder.mkdir()
        weights = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
        save_state(folder / "ckpt-e0001-s000000010.npz", {"model": {"w": weights}, "step": 10})
        newest = folder / "ckpt-e0002-s000000020.npz"
        save_state(newest, {"model": {"w": weights}, "step": 20})
        t._damage_checkpoint(newest, how)
        folders.append(folder)
    return bomb, folders


def measure(kind, path):
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True,
                          text=True, timeout=1200)
    if done.returncode:
        return f"-\t-\tthe process died (return code {done.returncode}): {done.stderr[-200:]}"
    return done.stdout.strip().splitlines()[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bomb-mib", type=int, default=2048,
                    help="size of the extra deflated member of bomb.cnnf (default 2048)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bomb, folders = build(Path(tmp), args.bomb_mib)
        print(f"bomb.cnnf: {bomb.stat().st_size / 2**20:.1f} MiB on disk, a "
              f"{args.bomb_mib} MiB extra member")
        print("file\tcall\ttime_s\tpeak_RSS_MiB\tresult")
        print(f"bomb.cnnf\tModel.load\t{measure('Model.load', bomb)}")
        for folder in folders:
            newest = folder / "ckpt-e0002-s000000020.npz"
            print(f"{folder.name}\tload_state\t{measure('load_state', newest)}")
            print(f"{folder.name}\tlatest_checkpoint\t{measure('latest_checkpoint', folder)}")
        print(f"(peak RSS of the same process after importing cnnframe only: "
              f"{measure('import', bomb).split(chr(9))[1]} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
