"""Sphinx configuration of the entropylib documentation: ``make docs`` builds docs/_build/html.

The pages in docs/*.md are MyST Markdown; the API reference is generated from the docstrings
(numpy style, read by napoleon). Nothing is fetched from the network (no intersphinx).
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

project = "entropylib"
author = "the entropylib authors"
copyright = "the entropylib authors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# numpy-style docstrings; the Examples sections stay doctest blocks
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# members defined in each module itself (not re-exports through __all__), so that every
# object is described once, on its own module's page
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autoclass_content = "class"

# Markdown pages: heading anchors for links like estimators.md#bad-input-nan-and-ties, and
# $...$ / $$...$$ math
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# MathJax is loaded by the reader's browser; nothing is downloaded at build time
html_theme = "alabaster"
html_title = "entropylib"
html_show_sourcelink = False
