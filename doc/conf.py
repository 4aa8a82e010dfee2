"""Sphinx configuration for the skinfluence documentation.

Nothing is downloaded at build time: no intersphinx inventories, no remote
images or fonts, no binder links.  The API reference (``api.rst``) is written
here from each public package's ``__all__``, so every public name has a page
and a name added to an ``__all__`` appears without editing the docs.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's skinfluence, not a copy

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import skinfluence  # noqa: E402

project = "skinfluence"
author = "skinfluence developers"
copyright = "the skinfluence developers, BSD-3-Clause"
version = release = skinfluence.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**/README.txt",
    # sphinx-gallery writes it; its page would load jQuery/DataTables from CDNs
    "sg_execution_times.rst",
]
root_doc = "index"
default_role = "literal"
nitpicky = False

# -- API reference ----------------------------------------------------------
# (package, one-line description); each package's __all__ is its public API.
API_PACKAGES = [
    ("skinfluence", "Estimators: the scikit-learn objects a user fits."),
    (
        "skinfluence.models",
        "Adapters (a fitted estimator as gradients and curvature products), "
        "the capability protocols of the model contract, and the torch "
        "estimators.",
    ),
    (
        "skinfluence.curvature",
        "Curvature backends: fitted once, they solve "
        "``(H + damping I)^-1 V`` for a block ``V``.",
    ),
    (
        "skinfluence.influence",
        "The influence math, blocked over queries and training rows.",
    ),
    (
        "skinfluence.evaluation",
        "Ground truths (leave-one-out, PBRF, proximal, LDS) and metrics.",
    ),
    ("skinfluence.display", "scikit-learn-style displays (matplotlib)."),
    ("skinfluence.datasets", "Label-noise injection for experiments."),
    ("skinfluence.exceptions", "Warnings and errors raised by skinfluence."),
]


def public_names(modname: str) -> list[str]:
    """The names a package exports: its ``__all__``, else its public
    functions and classes defined in the package itself."""
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and getattr(obj, "__module__", "").startswith(modname)
            and callable(obj)
        ]
    return sorted(names, key=lambda n: (n.startswith("_"), n.lower()))


def write_api_page(path: Path) -> None:
    lines = [
        ".. This file is written by conf.py from each package's __all__;",
        "   edit API_PACKAGES in conf.py, not this file.",
        "",
        ".. _api:",
        "",
        "=============",
        "API reference",
        "=============",
        "",
        "Every public name of every public package, one page each.",
        "",
    ]
    for modname, blurb in API_PACKAGES:
        title = f":mod:`{modname}`"
        lines += [title, "=" * len(title), "", f".. automodule:: {modname}"]
        lines += ["   :no-members:", "   :no-index:", "", blurb, ""]
        lines += [f".. currentmodule:: {modname}", "", ".. autosummary::"]
        lines += ["   :toctree: generated/", "   :template: entry.rst", ""]
        lines += [f"   {name}" for name in public_names(modname)]
        lines.append("")
    text = "\n".join(lines)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


write_api_page(HERE / "api.rst")

autosummary_generate = True
# A name exported both by ``skinfluence`` and by a subpackage is described
# once (the top-level page); the subpackage's page is a no-index copy.
autosummary_context = {"toplevel": list(skinfluence.__all__)}
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# -- Gallery: every script in examples/ runs during the build ------------------
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r".*\.py$",  # execute every example, not only plot_*
    "ignore_pattern": r"__init__\.py",
    "plot_gallery": "True",
    "only_warn_on_example_error": False,
    "abort_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    # its timing pages load jQuery/DataTables from CDNs: the build log has
    # each example's time instead
    "write_computation_times": False,
    "doc_module": ("skinfluence",),
    "backreferences_dir": "generated/backreferences",
    "matplotlib_animations": False,
    "first_notebook_cell": None,
    "line_numbers": False,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skinfluence {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
    "icon_links": [],
}
html_sidebars = {"index": []}
html_show_sourcelink = False
html_copy_source = False


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's generated ``set_{method}_request`` methods: their
    # docstrings cross-reference scikit-learn's own glossary.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


# ``n_train_`` written bare in a docstring is reStructuredText's reference
# syntax; the project's docstrings write fitted attributes that way in shapes
# ("(n_query, n_train_)").  Escape a trailing underscore outside inline
# literals and doctest lines so such text renders as written.
_LITERAL = re.compile(r"(``.*?``|`[^`]*`)", re.S)
_BARE_REF = re.compile(r"(?<![\w`\\])([A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)_(?![\w`])")


def _escape_bare_references(app, what, name, obj, options, lines):
    text = "\n".join(lines)
    parts = _LITERAL.split(text)  # inline literals may span lines
    for k in range(0, len(parts), 2):
        parts[k] = "\n".join(
            line
            if line.lstrip().startswith((">>>", "..."))
            else _BARE_REF.sub(r"\1\\_", line)
            for line in parts[k].split("\n")
        )
    lines[:] = "".join(parts).split("\n")


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _escape_bare_references)
