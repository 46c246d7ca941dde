"""Sphinx configuration of the cnnframe documentation site.

Build (warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

At build time the local extension docs/_ext/cnnframe_docs.py writes docs/_generated/ (not in
git): the table of registered layers, the page of training-config keys, and the figures the
tutorials' own code draws (docs/_ext/tutorial_runner.py runs each tutorial page that shows one).
"""
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))       # this checkout's cnnframe, before an installed one
sys.path.insert(0, str(DOCS / "_ext"))

import cnnframe  # noqa: E402

project = "cnnframe"
author = "the cnnframe developers"
copyright = "the cnnframe developers"
version = release = cnnframe.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "cnnframe_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "_ext", "Thumbs.db", ".DS_Store"]
language = "en"

# Docstrings: numpydoc sections on functions (Parameters / Returns / Raises) and Keras-style
# "Args:" blocks on layers (docs/DEVELOPING.md asks for both); napoleon reads both styles.
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = [("Yields", "returns_style")]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"cnnframe {version}"
html_theme_options = {"description": "A CPU framework for convolutional networks",
                      "fixed_sidebar": True}
