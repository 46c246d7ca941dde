"""Sphinx extension: writes docs/_generated/ before the pages are read.

- ``layers_table.md``: the registered built-in layers (reference_pages.layer_table_markdown),
  included by api/layers.md;
- ``config_keys.md``: every training-config key (reference_pages.config_keys_markdown),
  included by config.md; a key the config module's schema does not describe is a warning;
- ``onnx_api.md``: the reference of ``cnnframe.onnx`` when it imports, else a note saying
  it is not in this build (included by api/onnx.md);
- ``figures/STEM/*.png``: the pictures the tutorials' code draws
  (tutorial_runner.draw_figures); a page whose code fails is a warning, with its traceback.

With ``-W`` every warning fails the build.  ``CNNFRAME_DOCS_SKIP_FIGURES=1`` skips running the
tutorials (pages showing a figure then warn that it is missing).

Tutorial toctrees list the pages in reading order by glob patterns (``convolution*``), so a
page still on another branch is left out; :data:`OPTIONAL_PAGES` names those patterns, whose
"didn't match any documents" warning alone is dropped, as is that of the catch-all ``*``
after them (which lists any page not named, and matches nothing when every page is named).
"""
import importlib
import logging
import os
from pathlib import Path

from sphinx.util import logging as sphinx_logging

import reference_pages
import tutorial_runner

logger = sphinx_logging.getLogger(__name__)

OPTIONAL_PAGES = ("convolution*", "cifar10*", "distributed*", "onnx*", "quickstart*", "*")


def _write_if_changed(path, text):
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def generate(app):
    src = Path(app.srcdir)
    gen = src / "_generated"
    _write_if_changed(gen / "layers_table.md", reference_pages.layer_table_markdown())
    text, undocumented = reference_pages.config_keys_markdown()
    for key in undocumented:
        logger.warning(f"training-config key {key!r} has no description in the schema of "
                       "cnnframe/train/config.py's docstring (the config keys page reads it)")
    _write_if_changed(gen / "config_keys.md", text)
    _write_if_changed(gen / "onnx_api.md", onnx_api_markdown())
    if os.environ.get("CNNFRAME_DOCS_SKIP_FIGURES") != "1":
        for problem in tutorial_runner.draw_figures(src, gen / "figures", log=logger.info):
            logger.warning(problem)


def onnx_api_markdown():
    """The ONNX API page's body: the module's reference when it can be imported, else a note.

    ``cnnframe.onnx`` needs the optional ``onnx`` package (``pip install ".[onnx]"``).
    """
    try:
        importlib.import_module("cnnframe.onnx")
    except ImportError as exc:
        return ("```{note}\n`cnnframe.onnx` could not be imported when these pages were built "
                f"({type(exc).__name__}: {exc}), so its reference is not shown here.\n```\n")
    return "```{eval-rst}\n.. automodule:: cnnframe.onnx\n   :members:\n```\n"


class _OptionalPageFilter(logging.Filter):
    def filter(self, record):
        msg = record.getMessage()
        return not any(f"toctree glob pattern {p!r} didn't match any documents" in msg
                       for p in OPTIONAL_PAGES)


def setup(app):
    app.connect("builder-inited", generate)
    logging.getLogger("sphinx.sphinx.directives.other").addFilter(_OptionalPageFilter())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
