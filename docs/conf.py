"""Sphinx configuration of the entropylib documentation: ``make docs`` builds docs/_build/html.

The pages in docs/*.md are MyST Markdown; the API reference is generated from the docstrings
(numpy style, read by napoleon), one page per package listing every module found in it, so a
new module is documented without editing anything here. Nothing is fetched from the network
(no intersphinx).
"""

import importlib
import os
import pkgutil
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

#: API page name -> (title, package, module prefixes left to other pages, introduction)
API_PAGES = {
    "entropylib": ("entropylib", "entropylib", ("entropylib.criteria",),
                   "Estimators of differential entropy: ``entropylib.estimate`` and the modules "
                   "behind it. See also :doc:`../estimators`."),
    "criteria": ("entropylib.criteria", "entropylib.criteria", (),
                 "Training criteria (torch): E2MC, the criteria it is compared with and the base "
                 "SSL losses. See also :doc:`../method`."),
    "adapters": ("adapters", "adapters", (),
                 "Continued training and pretraining of VICReg, SwAV and SimSiam models. See "
                 "also :doc:`../checkpoints`."),
    "evaluation": ("evaluation", "evaluation", (),
                   "Evaluation protocols and embedding diagnostics. See also "
                   ":doc:`../evaluation`."),
    "paper": ("paper", "paper", (),
              "The paper's experiments as resumable units. See also :doc:`../reproducibility`."),
}


def package_modules(package: str, skip: tuple[str, ...]) -> list[str]:
    """The package and every module below it, in walk order, minus the ``skip`` prefixes."""
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    return [n for n in names if not n.startswith(skip)]


def write_api_pages() -> None:
    """Write docs/api/<page>.rst (git-ignored), touching only files whose text changed."""
    folder = os.path.join(os.path.dirname(__file__), "api")
    os.makedirs(folder, exist_ok=True)
    for page, (title, package, skip, intro) in API_PAGES.items():
        lines = [title, "=" * len(title), "", intro, ""]
        for name in package_modules(package, skip):
            lines += [name, "-" * len(name), "", f".. automodule:: {name}", ""]
        path = os.path.join(folder, f"{page}.rst")
        text = "\n".join(lines)
        if not os.path.isfile(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)


write_api_pages()

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
