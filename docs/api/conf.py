"""Sphinx configuration of fastrelu's API reference, built from the docstrings of the
installed package.

Build it with ``python -m sphinx -W -b html docs/api build/api`` (from an
environment with the test extras: ``pip install ".[test]"``); the test suite builds it
with warnings as errors (``tests/test_docs.py``).
"""

project = "fastrelu"
author = "the fastrelu developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax", "numpydoc"]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
default_role = "obj"
html_theme = "alabaster"
exclude_patterns = ["_build", "generated/*.rst.bak"]
