"""numba where it imports, and its ``njit`` with the compiled code cached on disk where it can be.

Shared by the compiled parts of the package (the analog simulator's integrators and the E-I
circuit's CPU kernels), none of which may fail to import without numba: each asks
``numba is None`` first and falls back to its plain numpy or torch path.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

try:  # numba is a declared dependency; every user of it has a path without it
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["numba", "njit", "set_threads", "torch_threads_kept"]


def njit(**options):
    """``numba.njit(**options)`` with the compiled code cached on disk where numba finds a
    writable place for it (the package's ``__pycache__`` or the user's cache directory); where it
    finds none (a read-only install and home), compiled once per process instead of failing."""
    def decorate(fn):
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **options)(fn)
    return decorate


def set_threads(threads: int | None) -> None:
    """Threads for numba's parallel loops, at most the ones it started with."""
    if numba is not None and threads is not None:
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Around a parallel numba call: torch's intra-op thread count as it was before.

    numba's ``omp`` threading layer and torch share the one ``libgomp`` of a Linux install, and
    launching numba's pool sets that runtime's thread count to numba's: without this, torch
    would run on every core after the first compiled call (measured: a one-thread training
    step's convolutions on two threads, its CPU time up by the spinning of the second)."""
    torch = sys.modules.get("torch")  # never imported here: only kept where already in use
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)
