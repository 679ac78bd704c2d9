"""The compiler of the codec's per-element loops: numba when it is installed, plain Python otherwise.

The loops in sections.py, digest.py, id_index.py, state.py, profile.py and encoder.py are written
once, like SPEC.md's pseudo-code, and decorated with ``@kernel``. A kernel runs as machine code once
the JIT is on: numba compiles it on first use and caches the result on disk next to the module, so
later processes load it instead of compiling. The JIT is switched on by the first call that hands a
kernel more than ``LAZY_ELEMENTS`` array elements: importing numba and loading compiled code costs
a few hundred milliseconds, more than a small file takes to decode as Python, so `gsd info
small.gsd` or a conformance testee on a tiny vector never pays it, while a server or any large
scene switches it on at its first real frame and keeps it.

Without numba, or with ``GSD_JIT=0`` (or numba's own ``NUMBA_DISABLE_JIT=1``), every kernel runs as
Python: slowly, with the same results. ``GSD_JIT=1`` switches the JIT on at the first call whatever
its size. Every kernel keeps its Python original as ``.py_func`` (tests compare the two).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import threading
import warnings

import numpy as np

LAZY_ELEMENTS = 4096

_MODE = os.environ.get("GSD_JIT", "lazy")
AVAILABLE = (_MODE != "0" and os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")
             and importlib.util.find_spec("numba") is not None)
_KERNELS: list["Kernel"] = []
_LOCK = threading.Lock()
_on = False


class Kernel:
    """A loop that runs compiled once the JIT is on, and as Python before that (or without numba)."""

    def __init__(self, fn, inline: bool = False):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.inline = inline
        self._compiled = None

    def __call__(self, *args):
        if self._compiled is not None:
            return self._compiled(*args)
        if _on:  # a module imported after the JIT went on: its kernels compile now
            with _LOCK:
                _compile_pending()
            return self._compiled(*args)
        if AVAILABLE and (_MODE == "1" or _large(args)) and switch_on():
            return self._compiled(*args)
        with np.errstate(over="ignore", invalid="ignore"):  # modular arithmetic, as compiled; NaN inputs are reported
            return self.py_func(*args)


def kernel(fn=None, *, inline: bool = False):
    """``@kernel`` or ``@kernel(inline=True)``: the latter for a small helper of other kernels, which
    numba then inlines into its callers' code (a call per element would stop them vectorizing)."""
    if fn is None:
        return lambda f: kernel(f, inline=inline)
    k = Kernel(fn, inline)
    _KERNELS.append(k)
    return k


def _large(args) -> bool:
    return sum(a.size for a in args if isinstance(a, np.ndarray)) > LAZY_ELEMENTS


def is_on() -> bool:
    return _on


def switch_on() -> bool:
    """Compile every kernel with numba (lazily, per signature, cached on disk); False if unavailable.

    Kernels call each other: inside compiled code a callee must be numba's dispatcher, so every
    module-level name bound to a Kernel is rebound to its dispatcher."""
    global _on, AVAILABLE
    if _on or not AVAILABLE:
        return _on
    with _LOCK:
        if _on:
            return True
        try:
            import numba
        except ImportError as e:  # e.g. numba built for another numpy: run as Python, and say so once
            warnings.warn(f"numba could not be imported ({e}); the codec's loops run as Python", RuntimeWarning)
            AVAILABLE = False
            return False
        _compile_pending()
        _on = True
    return True


def _compile_pending() -> None:
    """Give every kernel without one its numba dispatcher, and rebind every module-level name of a
    kernel to its dispatcher (called with ``_LOCK`` held)."""
    import numba
    fresh = [k for k in _KERNELS if k._compiled is None]
    for k in fresh:
        k._compiled = numba.njit(cache=True, nogil=True, inline="always" if k.inline else "never")(k.py_func)
    by_kernel = {id(k): k._compiled for k in _KERNELS}
    for g in {id(k.py_func.__globals__): k.py_func.__globals__ for k in _KERNELS}.values():
        for name, value in list(g.items()):
            if isinstance(value, Kernel) and id(value) in by_kernel:
                g[name] = by_kernel[id(value)]

