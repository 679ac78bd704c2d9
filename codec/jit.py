"""The compiler of the codec's per-element loops: numba when it is installed, plain Python otherwise.

The loops in sections.py, digest.py, id_index.py, state.py and encoder.py are written once, like
SPEC.md's pseudo-code. With numba they run as machine code (compiled on first use and cached on
disk next to the module, so a later process starts fast); without it, or with NUMBA_DISABLE_JIT=1,
the same functions run as Python: slowly, with the same results. Every compiled function keeps
its Python original as ``.py_func`` (tests compare the two).
"""
from __future__ import annotations

import os

try:
    if os.environ.get("GSD_NO_JIT") == "1":
        raise ImportError("GSD_NO_JIT=1")
    import numba
except ImportError:  # pragma: no cover - exercised by the no-JIT test run
    numba = None

JIT = numba is not None and os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


def kernel(fn):
    """Compile ``fn`` (nopython, cached, GIL released) when numba is present; else return it as is."""
    if numba is None:
        fn.py_func = fn
        return fn
    return numba.njit(cache=True, nogil=True)(fn)
