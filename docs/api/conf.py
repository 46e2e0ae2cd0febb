"""Sphinx configuration of the API reference: generated from the docstrings, built offline.

Build with ``scripts/build_docs.sh`` (needs the ``docs`` extra: ``pip install -e '.[docs]'``).
No extension here fetches anything: no intersphinx, no remote images, the bundled theme.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version as _version

sys.path.insert(0, os.path.abspath(os.path.join(__file__, "..", "..", "..")))

project = "eideploy"
author = "eideploy authors"
release = _version("eideploy")
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.viewcode"]
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# The board path imports samna only inside its functions; nothing else is optional at import.
autodoc_mock_imports = ["samna", "onnx", "onnxruntime", "nir", "tonic", "jax"]
exclude_patterns = ["_build", "_generated_unused"]
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings = ["autosummary.import_cycle"]
