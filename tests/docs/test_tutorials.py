"""Every tutorial page's code runs (docs/tutorials, docs/ja/tutorials, docs/ja/quickstart.md).

Each page runs as docs/_ext/tutorial_runner.py describes: its ```python blocks in order, in one
fresh interpreter per page, in a temporary working directory, seeded; ``<!-- docs-test: skip
-->`` skips a block and ``<!-- docs-test: write PATH -->`` saves a block as the file PATH (a
Python one is imported, not run).
A page must also draw every figure it shows (``/_generated/figures/STEM/NAME.png``), and a
Japanese page must have the same code as its English original (comments aside).
The harness itself is tested below on small pages written here.
"""
import io
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import tutorial_runner as tr  # noqa: E402

PAGES = tr.tutorial_pages(DOCS)


def _id(page):
    return str(page.relative_to(DOCS))


@pytest.mark.parametrize("page", PAGES, ids=[_id(p) for p in PAGES])
def test_page_runs_and_draws_its_figures(page, tmp_path):
    tr.run_page(page, tmp_path)
    for stem, name in tr.figure_refs(page):
        assert stem == tr.page_stem(page), f"{name}: figures of {page.name} go under {page.stem}/"
        assert (tmp_path / name).is_file(), f"{_id(page)} shows {name} but did not draw it"


def _code_without_comments(page):
    out = []
    for block in tr.code_blocks(page):
        if block.lang != "python":
            out.append((block.lang, block.marker, block.code.strip()))
            continue
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(block.code).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL)]
        out.append((block.lang, block.marker, tokenize.untokenize(
            (t.type, t.string) for t in tokens)))
    return out


TRANSLATED = [p for p in PAGES if p.parent == DOCS / "ja" / "tutorials"
              and (DOCS / "tutorials" / p.name).exists()]


@pytest.mark.parametrize("ja_page", TRANSLATED, ids=[_id(p) for p in TRANSLATED])
def test_japanese_page_has_the_code_of_the_english_one(ja_page):
    assert _code_without_comments(ja_page) == _code_without_comments(
        DOCS / "tutorials" / ja_page.name)


# ---------------------------------------------------------------------------- the harness

def _page(tmp_path, text, name="page.md"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_blocks_run_in_order_in_one_namespace_skipping_marked_ones(tmp_path):
    page = _page(tmp_path, "# t\n\n```python\nx = 2\n```\n\ntext\n\n<!-- docs-test: skip -->\n\n"
                           "```python\nraise SystemExit('skipped block ran')\n```\n\n"
                           "```bash\nexit 1\n```\n\n```python\nprint('x is', x * 3)\n```\n")
    assert tr.run_page(page, tmp_path / "work").strip() == "x is 6"


def test_write_marker_saves_the_block_in_the_working_directory(tmp_path):
    page = _page(tmp_path, "<!-- docs-test: write cfg/net.toml -->\n```toml\na = 1\n```\n"
                           "```python\nimport os, tomllib\nprint(os.getcwd())\n"
                           "print(tomllib.load(open('cfg/net.toml', 'rb'))['a'])\n```\n")
    work = tmp_path / "work"
    work.mkdir()
    cwd, value = tr.run_page(page, work).split()
    assert Path(cwd).resolve() == work.resolve() and value == "1"
    assert (work / "cfg" / "net.toml").read_text() == "a = 1\n"


def test_a_python_block_written_to_a_file_is_importable_and_not_run(tmp_path):
    page = _page(tmp_path, "<!-- docs-test: write mymod.py -->\n```python\nVALUE = 7\n"
                           "print('module body ran')\n```\n"
                           "```python\nimport mymod\nprint(mymod.VALUE)\n```\n")
    assert tr.run_page(page).split() == ["module", "body", "ran", "7"]


def test_pages_start_seeded_and_in_a_temporary_folder(tmp_path):
    page = _page(tmp_path, "```python\nimport os, random, numpy as np\n"
                           "print(np.random.rand(), random.random(), os.getcwd())\n```\n")
    a, b, cwd = tr.run_page(page).split()
    np.random.seed(0)
    import random
    random.seed(0)
    assert (float(a), float(b)) == (np.random.rand(), random.random())
    assert not Path(cwd).exists()   # the temporary folder is gone afterwards


def test_each_page_gets_a_fresh_interpreter(tmp_path):
    register = ("```python\nfrom cnnframe import Layer, register_layer\n"
                "@register_layer('tutorial_double')\nclass Double(Layer):\n"
                "    def forward(self, x, training=True):\n        return 2 * x\n"
                "value = 1\n```\n")
    first = _page(tmp_path, register, "first.md")
    second = _page(tmp_path, register + "```python\nprint('value' in dir())\n```\n", "second.md")
    tr.run_page(first)
    assert tr.run_page(second).strip() == "True"
    third = _page(tmp_path, "```python\nprint('value' in dir())\n```\n", "third.md")
    assert tr.run_page(third).strip() == "False"


def test_a_failing_block_names_the_page_and_its_line(tmp_path):
    page = _page(tmp_path, "# t\n\n```python\nx = 1\n```\n\n```python\n\ny = x +\n```\n")
    with pytest.raises(tr.PageError) as err:
        tr.run_page(page)
    assert str(page) in str(err.value) and f'{page}:7", line 9' in str(err.value)
    page = _page(tmp_path, "```python\nimport numpy as np\nnp.zeros(2) @ np.zeros(3)\n```\n")
    with pytest.raises(tr.PageError, match=r"line 3[\s\S]*np.zeros\(2\) @ np.zeros\(3\)"):
        tr.run_page(page)


@pytest.mark.parametrize("text, message", [
    ("<!-- docs-test: run-twice -->\n```python\n```\n", "unknown docs-test marker"),
    ("<!-- docs-test: skip -->\n\nsome text\n\n```python\n```\n", "not followed by a code block"),
    ("```python\nx = 1\n", "code block never closed"),
])
def test_bad_markup_is_an_error_naming_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        tr.code_blocks(_page(tmp_path, text))


def test_indented_and_tilde_fences_are_read(tmp_path):
    page = _page(tmp_path, "1. step\n\n   ```python\n   a = 1\n     b = 2\n   ```\n"
                           "~~~python\nc = 3\n~~~\n")
    assert [b.code for b in tr.code_blocks(page)] == ["a = 1\n  b = 2\n", "c = 3\n"]


FIGURE_PAGE = ("![dots](/_generated/figures/{stem}/dots.png)\n\n```python\n"
               "import matplotlib.pyplot as plt\nopen('{log}', 'a').write('ran\\n')\n"
               "plt.plot([0, 1]); plt.savefig('dots.png')\n```\n")


def test_draw_figures_copies_the_figures_and_skips_unchanged_pages(tmp_path):
    docs, log = tmp_path / "docs", tmp_path / "runs.log"
    (docs / "tutorials").mkdir(parents=True)
    (docs / "tutorials" / "dots.md").write_text(FIGURE_PAGE.format(stem="dots", log=log))
    (docs / "ja" / "tutorials").mkdir(parents=True)
    (docs / "ja" / "tutorials" / "dots.md").write_text(FIGURE_PAGE.format(stem="dots", log=log))
    out = tmp_path / "figures"
    assert tr.draw_figures(docs, out, log=lambda msg: None) == []
    assert (out / "dots" / "dots.png").read_bytes()[:4] == b"\x89PNG"
    assert log.read_text() == "ran\n"          # the translation, same code, did not run again
    assert tr.draw_figures(docs, out, log=lambda msg: None) == []
    assert log.read_text() == "ran\n"          # nor did anything on the second build


def test_draw_figures_reports_missing_and_misplaced_figures(tmp_path):
    docs = tmp_path / "docs"
    (docs / "tutorials").mkdir(parents=True)
    (docs / "tutorials" / "a.md").write_text(
        "![x](/_generated/figures/a/missing.png)\n```python\nx = 1\n```\n")
    (docs / "tutorials" / "b.md").write_text("![x](/_generated/figures/other/b.png)\n")
    (docs / "tutorials" / "c.md").write_text(
        "![x](/_generated/figures/c/c.png)\n```python\n1 / 0\n```\n")
    problems = tr.draw_figures(docs, tmp_path / "out", log=lambda msg: None)
    assert len(problems) == 3
    assert "shows missing.png but its code did not save it" in problems[0]
    assert "figures of this page go to /_generated/figures/b/" in problems[1]
    assert "ZeroDivisionError" in problems[2]
