"""An unpickler that can read CIFAR's python batches and nothing that could run code.

CIFAR-10/100 "python version" batches are pickled dicts of numpy arrays, lists, str and bytes.
Unpickling calls whatever callable the file names, so a plain `pickle.load` of a user's file is
arbitrary code execution. This unpickler resolves only the handful of numpy/builtin globals such
a batch needs and refuses every other global before anything is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

try:  # numpy >= 2 moved the array internals to numpy._core; old pickles still say numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

# (module, name) as written in the pickle -> the object it may resolve to. Both spellings of the
# numpy core module are listed because CIFAR's files predate numpy 2 and fresh pickles postdate it.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    # Protocol-2 pickles written by Python 3 encode `bytes` as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` only knows the globals of `_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a data batch never needs it"
            ) from None


def restricted_loads(data: bytes) -> Any:
    """Unpickle `data` with the restricted unpickler.

    latin1 decoding is what Python-2 pickles of numpy arrays need (numpy's own advice); it leaves
    Python-3 pickles unchanged.
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
