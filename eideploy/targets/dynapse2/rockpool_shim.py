"""rockpool, imported lazily and safely: quiet, and never through PyPI's samna stub.

rockpool's DYNAP-SE2 modules run ``import samna`` when imported. The samna on PyPI is a stub whose
``__init__`` installs packages from the vendor's index (spec/dynapse2.md §4), so eideploy must never
let that import run it. ``samna_is_pypi_stub`` recognises the stub without importing it, and
``rockpool_import`` blocks it for the length of the import (rockpool then falls back to its
simulator-only mode, as it does without samna), and silences rockpool's 'samna installation not
found' warnings. A real samna, installed by a board user, is left alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterator

__all__ = ["samna_is_pypi_stub", "rockpool_import"]


def samna_is_pypi_stub() -> bool:
    """Whether ``import samna`` would run PyPI's stub (no compiled extension, marker
    ``PYPI_SAMNA`` in its ``__init__``), found without importing it."""
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    try:
        with open(spec.origin, encoding="utf-8", errors="replace") as fh:
            return "PYPI_SAMNA" in fh.read()
    except OSError:
        return False


@contextlib.contextmanager
def rockpool_import() -> Iterator[None]:
    """Context for ``from rockpool.devices.dynapse... import ...`` statements."""
    root = logging.getLogger()
    level, handler = root.level, logging.NullHandler()
    root.setLevel(logging.ERROR)
    root.addHandler(handler)  # so that logging.warning() does not call basicConfig()
    blocked = "samna" not in sys.modules and samna_is_pypi_stub()
    if blocked:
        sys.modules["samna"] = None  # type: ignore[assignment]  # import samna -> ImportError
    try:
        yield
    finally:
        if blocked and sys.modules.get("samna", 0) is None:
            del sys.modules["samna"]
        root.removeHandler(handler)
        root.setLevel(level)
