"""Every fenced code block of README.md runs here, on small stand-in data (issue 17).

A block runs unless the line before its fence is ``<!-- readme-test: syntax-only -->`` (a full
CIFAR-10 run, `make`, `pip install`).  Those blocks are still checked: bash with ``bash -n``,
then each command line by what it calls: a `cnnframe` command with the CLI's own parser, a
`make` target against the Makefile, a `pip install` extra against pyproject.toml, every
repository path and every CNNFRAME_* variable against the sources.

How each language runs:
- python: in a fresh interpreter (so registered layers and files go away with it) whose cwd is a
  temporary directory; functions named ``test_*`` that a block defines (the conformance suite)
  are then called with each of their parameters.
- toml: a model config is loaded with ``Model.from_file`` and run on a batch of zeros; the
  plugin's entry-point table must be the one examples/plugins/cnnframe_swish declares.
- bash: each line is a `cnnframe` command, run as ``python -m cnnframe`` in the temporary cwd
  (a ``--seeds`` sweep with at most 3 seeds).

Placeholders get small stand-ins: DIR is a tiny CIFAR-10 in the official python format
(cifar-10-batches-py: pickled dicts with bytes keys, protocol 2), my_model.toml a small net,
MyLayer (also as my_package.layers:MyLayer and my_layer:MyLayer) a learnable per-channel scale and shift.
"""
import json
import os
import pickle
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cnnframe
from cnnframe import Model
from cnnframe.cli import build_parser
from cnnframe.train.config import TOP_KEYS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SYNTAX_ONLY = "<!-- readme-test: syntax-only -->"
_MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    lang: str
    code: str
    line: int          # line number of the opening fence, 1-based
    syntax_only: bool

    @property
    def id(self):
        return f"{self.lang or 'text'}-line{self.line}"


def readme_blocks(text):
    """The fenced blocks of a Markdown text, each with its language and readme-test marker."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        start = _FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marker = _MARKER.fullmatch(before)
        if marker and marker.group(1) != "syntax-only":
            raise ValueError(f"README.md line {i}: unknown readme-test marker {before!r} "
                             "(the one marker is 'syntax-only')")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README.md line {i + 1}: code block is never closed")
        blocks.append(Block(start.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1,
                            marker is not None))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_readme_blocks_are_found():
    """The parser sees every kind of block the README has (else the tests below prove nothing)."""
    langs = [b.lang for b in BLOCKS]
    assert langs.count("python") >= 3 and langs.count("toml") >= 2 and langs.count("bash") >= 4
    assert any(b.syntax_only for b in BLOCKS) and any(not b.syntax_only for b in BLOCKS)


def test_marker_parsing():
    text = f"x\n\n{SYNTAX_ONLY}\n```bash\nmake test\n```\n\n```python\nprint(1)\n```\n"
    assert [(b.lang, b.line, b.syntax_only) for b in readme_blocks(text)] == [
        ("bash", 4, True), ("python", 8, False)]
    with pytest.raises(ValueError, match="unknown readme-test marker"):
        readme_blocks("<!-- readme-test: skip -->\n```bash\nls\n```\n")


# ----------------------------------------------------------------------------- stand-ins

STANDINS = '''
"""Stand-ins for the README's placeholders: MyLayer, a learnable per-channel scale and shift."""
import numpy as np

from cnnframe.layers import Layer
from cnnframe.registry import register_layer


@register_layer("my_layer")
class MyLayer(Layer):
    """y[n, c] = x[n, c] * weight[c] (+ bias[c]); x of shape (N, channels, ...)."""

    def __init__(self, channels=3, bias=True):
        super().__init__()
        self.channels, self.bias = channels, bias
        self.add_param("weight", np.linspace(0.5, 1.5, channels))
        if bias:
            self.add_param("bias", np.linspace(-0.2, 0.2, channels))
        self._x = None

    def _per_channel(self, v, ndim):
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x, training=True):
        self._check_input(x)
        self._x = x
        y = x * self._per_channel(self.params["weight"], x.ndim)
        if self.bias:
            y = y + self._per_channel(self.params["bias"], x.ndim)
        return y

    def backward(self, grad_y):
        axes = (0,) + tuple(range(2, grad_y.ndim))
        self.grads["weight"][...] = np.sum(grad_y * self._x, axis=axes)
        if self.bias:
            self.grads["bias"][...] = np.sum(grad_y, axis=axes)
        return grad_y * self._per_channel(self.params["weight"], grad_y.ndim)
'''

MY_MODEL_TOML = """\
input_shape = [3, 32, 32]
layers = [
    {type = "conv2d", in_channels = 3, out_channels = 4, kernel_size = 3, padding = 1},
    {type = "relu"},
    {type = "global_avg_pool2d"},
    {type = "linear", in_features = 4, out_features = 10},
]
"""

# Runs a python block, then calls the test functions it defines with each parameter.
RUNNER = textwrap.dedent("""\
    import runpy
    ns = runpy.run_path("readme_block.py", run_name="readme_block")
    for name, fn in ns.items():
        if not (name.startswith("test_") and callable(fn)):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        values = [v for m in marks for v in m.args[1]] if marks else [None]
        assert values, f"{name}: parametrized with no values"
        for value in values:
            fn() if value is None else fn(value)
        print(f"readme-test: {name} ran {len(values)} time(s)")
""")


def write_tiny_cifar10(root, per_batch=10, seed=0):
    """A CIFAR-10 copy in the official python format: root/cifar-10-batches-py/."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    classes = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": classes, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{k}.png".encode() for k in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return Path(root)


@pytest.fixture
def workdir(tmp_path):
    """A temporary cwd holding the stand-ins: data/ (tiny CIFAR-10), my_model.toml, MyLayer."""
    write_tiny_cifar10(tmp_path / "data")
    (tmp_path / "my_model.toml").write_text(MY_MODEL_TOML)
    (tmp_path / "readme_standins.py").write_text(STANDINS)
    (tmp_path / "my_package").mkdir()
    (tmp_path / "my_package" / "__init__.py").write_text("")
    (tmp_path / "my_package" / "layers.py").write_text("from readme_standins import MyLayer\n")
    (tmp_path / "my_layer.py").write_text("from readme_standins import MyLayer\n")
    return tmp_path


def subprocess_env(workdir):
    """This process's environment, with this checkout's cnnframe (and example plugin, whose
    entry point the installed copy declares) and the stand-ins importable."""
    env = dict(os.environ)
    checkout = Path(cnnframe.__file__).resolve().parents[1]
    paths = [str(checkout), str(checkout / "examples" / "plugins" / "cnnframe_swish" / "src"),
             str(workdir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run(cmd, workdir, timeout=300):
    proc = subprocess.run(cmd, cwd=workdir, env=subprocess_env(workdir), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited with {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc.stdout


# ----------------------------------------------------------------------------- python

def python_with_standins(code, workdir):
    """The block with its placeholders replaced by the stand-ins (each must be replaced)."""
    code = code.replace('"DIR"', repr(str(workdir / "data")))
    code = code.replace("MyLayer(...)", "MyLayer(channels=3)")
    if re.search(r"\bMyLayer\b", code) and not re.search(r"(class|import) .*\bMyLayer\b", code):
        code = "from readme_standins import MyLayer\n" + code
    for placeholder in ('"DIR"', "(...)"):
        assert placeholder not in code, f"no stand-in for the placeholder {placeholder}"
    return code


def check_python(block, workdir):
    code = python_with_standins(block.code, workdir)
    compile(code, f"README.md:{block.line}", "exec")
    if block.syntax_only:
        return
    (workdir / "readme_block.py").write_text(code)
    run([sys.executable, "-c", RUNNER], workdir)


# ----------------------------------------------------------------------------- toml

def check_toml(block, workdir):
    cfg = tomllib.loads(block.code)
    if "nodes" in cfg or "layers" in cfg:
        path = workdir / "net.toml"
        path.write_text(block.code)
        model = Model.from_file(path)
        shape = next(iter(model.inputs.values()))
        y = model.forward(np.zeros((2, *shape), np.float32), training=False)
        assert y.shape == (2, *model.shapes[model.outputs[0]]) and np.isfinite(y).all()
        assert model.summary()
    elif "project" in cfg:
        plugin = REPO / "examples" / "plugins" / "cnnframe_swish"
        declared = tomllib.loads((plugin / "pyproject.toml").read_text())
        group = cfg["project"]["entry-points"]["cnnframe.layers"]
        assert group == declared["project"]["entry-points"]["cnnframe.layers"]
        for module in group.values():
            assert (plugin / "src" / Path(*module.split("."))).with_suffix(".py").is_file()
    elif set(cfg) & set(TOP_KEYS):
        check_training_config(cfg, workdir)
    else:
        pytest.fail(f"README.md:{block.line}: no check for this TOML block; add one")


# A training config block may leave out model, epochs and batch_size: this stand-in net
# (whose node names the README's freeze and parameter-group patterns select) fills them in.
STANDIN_TRAINING = {
    "model": {
        "inputs": {"image": [3, 32, 32]},
        "outputs": ["fc"],
        "nodes": [
            {"name": "stem", "type": "conv2d", "inputs": ["image"],
             "config": {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1}},
            {"name": "bn1", "type": "batch_norm2d", "config": {"num_features": 8}},
            {"name": "relu1", "type": "relu"},
            {"name": "conv2", "type": "conv2d",
             "config": {"in_channels": 8, "out_channels": 8, "kernel_size": 3, "padding": 1}},
            {"name": "pool", "type": "global_avg_pool2d"},
            {"name": "fc", "type": "linear", "config": {"in_features": 8, "out_features": 10}},
        ],
    },
    "epochs": 2,
    "batch_size": 16,
    "optimizer": {"type": "sgd", "lr": 0.01},
    "data": {"dataset": "cifar10"},
}


def check_training_config(cfg, workdir):
    """A training config block: filled in with the stand-in net, pointed at the tiny CIFAR-10
    and trained with `cnnframe train` for a few steps, then resumed to its end."""
    full = {**STANDIN_TRAINING, **cfg}
    full["data"] = {**full["data"], "root": str(workdir / "data")}
    (workdir / "train.json").write_text(json.dumps(full))
    run([sys.executable, "-m", "cnnframe", "train", "train.json", "--out", "runs/readme",
         "--max-steps", "3"], workdir)
    out = run([sys.executable, "-m", "cnnframe", "train", "train.json", "--out", "runs/readme",
               "--resume"], workdir)
    assert (workdir / "runs" / "readme" / "model.cnnf").is_file(), out


# ----------------------------------------------------------------------------- bash

def shell_commands(code):
    """Each command of a bash block as (env assignments, argv), comments and continuations gone."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        assignments = []
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            assignments.append(argv.pop(0).split("=", 1)[0])
        if argv:
            commands.append((assignments, argv))
    return commands


def makefile():
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))
    venv = re.search(r"^VENV\s*\?=\s*(\S+)", text, re.M).group(1)
    return targets, venv


def check_env_variable(name):
    """A CNNFRAME_* variable the README names must be read somewhere."""
    sources = [REPO / "Makefile", REPO / "setup.py", *(REPO / "cnnframe").rglob("*.py")]
    assert any(name in p.read_text(encoding="utf-8") for p in sources), (
        f"README names {name}, which neither the Makefile, setup.py nor cnnframe reads")


def check_repo_paths(argv):
    for arg in argv:
        if "/" in arg and not arg.startswith("-") and re.search(r"\.(toml|json|py)$", arg):
            assert (REPO / arg).is_file(), f"{arg} does not exist in the repository"


def check_pip(argv):
    assert argv[:1] == ["install"], f"pip {argv}: only `pip install` is checked"
    for arg in argv[1:]:
        if arg.startswith("-"):
            continue
        path, extras = re.fullmatch(r"(.*?)(?:\[(.*)\])?", arg).groups()
        project = REPO / path / "pyproject.toml"
        assert project.is_file(), f"pip install {arg}: {path} is not a project in the repository"
        declared = tomllib.loads(project.read_text())["project"].get("optional-dependencies", {})
        for extra in (extras or "").split(","):
            assert not extra or extra in declared, (
                f"pip install {arg}: no extra {extra!r} in {path}/pyproject.toml "
                f"(extras: {sorted(declared)})")


def check_cnnframe_syntax(argv):
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`cnnframe {shlex.join(argv)}` is refused by the CLI parser (exit {exc})")


def check_bash(block, workdir):
    proc = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    assert proc.returncode == 0, f"bash -n: {proc.stderr}"
    targets, venv = makefile()
    commands = shell_commands(block.code)
    assert commands, "a bash block without commands"
    for assignments, argv in commands:
        for name in assignments:
            check_env_variable(name)
        program, args = argv[0], argv[1:]
        check_repo_paths(args)
        if program == "cnnframe" and not block.syntax_only:
            args = [str(workdir / "data") if a == "DIR" else a for a in args]
            if "--seeds" in args:  # a seed sweep: a few seeds show that it runs
                i = args.index("--seeds") + 1
                args[i] = str(min(int(args[i]), 3))
            run([sys.executable, "-m", "cnnframe", *args], workdir)
        elif not block.syntax_only:
            pytest.fail(f"README.md:{block.line}: `{program}` cannot run in a test; "
                        f"mark the block {SYNTAX_ONLY}")
        elif program == "cnnframe":
            check_cnnframe_syntax(args)
        elif program == "make":
            for target in (a for a in args if not a.startswith("-") and "=" not in a):
                assert target in targets, f"make {target}: no such target in the Makefile"
        elif program in ("source", "."):
            assert args == [f"{venv}/bin/activate"], f"{program} {args}: not the Makefile's venv"
        elif program == "pip":
            check_pip(args)
        elif program in ("mpiexec", "mpirun"):  # mpiexec -n N cnnframe ... --distributed
            assert len(args) >= 3 and args[0] == "-n" and args[1].isdigit(), \
                f"{program} {args}: expected -n N COMMAND"
            assert args[2] == "cnnframe" and "--distributed" in args, \
                f"{program} {args}: expected a cnnframe command with --distributed"
            check_cnnframe_syntax(args[3:])
        else:
            pytest.fail(f"README.md:{block.line}: no check for the command {program!r}; add one")


CHECKS = {"python": check_python, "toml": check_toml, "bash": check_bash}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block, workdir):
    if block.lang not in CHECKS:
        pytest.fail(f"README.md:{block.line}: no test for {block.lang or 'unlabelled'} blocks; "
                    f"label the fence with one of {sorted(CHECKS)}")
    CHECKS[block.lang](block, workdir)
