"""Run the code of a Markdown tutorial page, as the tests and the docs build do.

Conventions of a page (docs/tutorials/*.md, docs/ja/tutorials/*.md, docs/ja/quickstart.md):

- Every fenced ```` ```python ```` block runs, in page order, in one namespace per page, in a
  fresh interpreter whose working directory is a new temporary folder, after
  ``random.seed(0)`` and ``np.random.seed(0)``.
- A block whose fence is preceded by the line ``<!-- docs-test: skip -->`` (blank lines
  between are allowed) does not run (blocks in other languages never run): only for commands that need a real dataset or MPI, which
  must still work when run by hand.
- A block preceded by ``<!-- docs-test: write PATH -->`` is written to PATH (relative to the
  working directory) when the page reaches it, as a reader saving the file shown would (a TOML
  model config, a plugin's pyproject.toml, a Python module); a Python block written is not run.
  The working directory is first on ``sys.path``, as in an interactive session, so a module
  written there can be imported.
- Figures: a page shows a picture its own code draws as
  ``![alt](/_generated/figures/STEM/NAME.png)``, where STEM is the page's file name without
  ``.md`` (a page and its translation share the folder) and the code saves ``NAME.png`` in
  the working directory. At build time :func:`draw_figures` runs each such page and copies the
  figures there; the tests check that each page draws every figure it shows.

Command line (what :func:`run_page` runs in a subprocess)::

    python tutorial_runner.py PAGE.md WORKDIR
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SKIP = "skip"
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_FENCE_OPEN = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^`]*$")
_FIGURE = re.compile(r"/_generated/figures/([\w.-]+)/([\w.-]+\.png)")
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGE_TIMEOUT_S = 120


@dataclass
class Block:
    lang: str
    code: str
    line: int            # 1-based line of the opening fence
    marker: str = ""     # "" / "skip" / "write PATH"

    @property
    def runs(self):
        return self.lang == "python" and self.marker == ""

    @property
    def write_path(self):
        return self.marker[len("write "):].strip() if self.marker.startswith("write ") else None


class PageError(RuntimeError):
    """A tutorial page whose code failed (the message holds the page, block and traceback)."""


def code_blocks(path):
    """Every fenced code block of a Markdown file, with the docs-test marker before it.

    Raises
    ------
    ValueError
        For an unknown ``docs-test`` marker, a marker on a block it cannot apply to, or an
        unclosed fence (naming the file and line).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, marker, marker_line, i = [], "", 0, 0
    while i < len(lines):
        line = lines[i]
        m = _MARKER.match(line)
        if m:
            marker, marker_line = m.group(1), i + 1
            if marker != SKIP and not marker.startswith("write "):
                raise ValueError(f"{path}:{i + 1}: unknown docs-test marker {marker!r}; "
                                 "expected 'skip' or 'write PATH'")
            i += 1
            continue
        m = _FENCE_OPEN.match(line)
        if m:
            indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
            body, j = [], i + 1
            while j < len(lines) and not (lines[j].strip().startswith(fence) and
                                          lines[j].strip().strip(fence[0]) == ""):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            if j == len(lines):
                raise ValueError(f"{path}:{i + 1}: code block never closed")
            block = Block(lang, "\n".join(body) + "\n", i + 1, marker)
            blocks.append(block)
            marker, i = "", j + 1
            continue
        if line.strip():
            if marker:
                raise ValueError(f"{path}:{marker_line}: docs-test marker {marker!r} is not "
                                 "followed by a code block")
        i += 1
    return blocks


def figure_refs(path):
    """[(stem, file name)] of the generated figures a page shows."""
    return _FIGURE.findall(Path(path).read_text(encoding="utf-8"))


def page_stem(path):
    return Path(path).stem


def execute_page(path, workdir):
    """Run a page's blocks here, in this process (the subprocess side of :func:`run_page`)."""
    import linecache
    import random

    import numpy as np

    path = Path(path).resolve()
    os.chdir(workdir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    random.seed(0)
    np.random.seed(0)
    sys.path[0] = str(Path(workdir).resolve())   # in place of this script's folder
    namespace = {"__name__": "__main__"}
    for block in code_blocks(path):
        if block.write_path is not None:
            target = Path(block.write_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        if not block.runs:
            continue
        name = f"{path}:{block.line}"
        # tracebacks show the page's own lines: the block starts one line after its fence
        source = "\n" * block.line + block.code
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        exec(compile(source, name, "exec"), namespace)


def run_page(path, workdir=None, timeout=PAGE_TIMEOUT_S):
    """Run a page in a fresh interpreter; returns its stdout.

    Raises
    ------
    PageError
        The page's code raised (or timed out): the message names the page and holds the
        traceback, which points at the page's own line numbers.
    """
    path = Path(path).resolve()
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]]
                                                        if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory(prefix="cnnframe-tutorial-") as tmp:
        workdir = Path(workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(path),
                                   str(workdir)], cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PageError(f"{path}: did not finish within {timeout} s") from exc
        if proc.returncode != 0:
            raise PageError(f"{path}: its code failed (exit status {proc.returncode})\n"
                            f"--- stdout ---\n{proc.stdout[-4000:]}\n"
                            f"--- stderr ---\n{proc.stderr[-8000:]}")
        return proc.stdout


def tutorial_pages(docs=DOCS):
    """The Markdown pages whose code is tested: tutorials (English and Japanese) and the
    Japanese quick start."""
    docs = Path(docs)
    pages = sorted((docs / "tutorials").glob("*.md")) + sorted(
        (docs / "ja" / "tutorials").glob("*.md"))
    pages += [p for p in [docs / "ja" / "quickstart.md"] if p.exists()]
    return [p for p in pages if p.name != "index.md"]


def _code_hash(path):
    digest = hashlib.sha256()
    for block in code_blocks(path):
        digest.update(f"{block.lang}\0{block.marker}\0{block.code}\0".encode())
    return digest.hexdigest()


def draw_figures(docs=DOCS, out=None, log=print):
    """Run every page that shows a generated figure and copy its figures to
    ``out/STEM/`` (default docs/_generated/figures).

    A folder whose ``.code-hash`` matches the page's code is left as it is. A page and its
    translation share a folder: the second page with the same code is not run again.

    Returns
    -------
    list of str
        One message per problem: a page that failed, or a figure it shows but did not draw.
    """
    out = Path(out or Path(docs) / "_generated" / "figures")
    problems = []
    for page in tutorial_pages(docs):
        refs = figure_refs(page)
        if not refs:
            continue
        stem = page_stem(page)
        bad = [f"{page}: shows /_generated/figures/{s}/{n}, but figures of this page go to "
               f"/_generated/figures/{stem}/" for s, n in refs if s != stem]
        if bad:
            problems += bad
            continue
        folder, code_hash = out / stem, _code_hash(page)
        stamp = folder / ".code-hash"
        if stamp.exists() and stamp.read_text() == code_hash and all(
                (folder / n).exists() for _, n in refs):
            continue
        with tempfile.TemporaryDirectory(prefix="cnnframe-figures-") as tmp:
            log(f"tutorial figures: running {page.relative_to(docs)}")
            try:
                run_page(page, tmp)
            except PageError as exc:
                problems.append(str(exc))
                continue
            missing = [n for _, n in refs if not (Path(tmp) / n).exists()]
            problems += [f"{page}: shows {n} but its code did not save it" for n in missing]
            folder.mkdir(parents=True, exist_ok=True)
            for png in Path(tmp).glob("*.png"):
                staged = folder / (png.name + ".tmp")
                shutil.copyfile(png, staged)
                os.replace(staged, folder / png.name)
            if not missing:
                stamp.write_text(code_hash)
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tutorial_runner.py PAGE.md WORKDIR")
    try:
        execute_page(sys.argv[1], sys.argv[2])
    except BaseException:
        # the traceback module reads the pages' lines from linecache (the interpreter's own
        # printer would look for a file named "page.md:LINE")
        import traceback
        traceback.print_exc()
        sys.exit(1)
