"""Small dense linear systems (the shape fits' 3x3 and 4x4 normal equations) solved without
``np.linalg.solve``'s per-call wrapper.

``np.linalg.solve`` checks its arguments and enters an ``np.errstate`` block (to turn LAPACK's
singular-matrix flag into ``LinAlgError``) around its gufunc: about 8 us of a 10 us call on a
3x3 system, and the circle and sphere fits solve several per object. :func:`solve` calls the
same gufunc (the same LAPACK routine: the same bits) directly and leaves the rare cases to
``np.linalg.solve`` itself.
"""

from __future__ import annotations

import math

import numpy as np

try:                                   # numpy's own gufunc behind np.linalg.solve
    from numpy.linalg import _umath_linalg
    _SOLVE1 = _umath_linalg.solve1
except (ImportError, AttributeError):  # pragma: no cover - other numpy layouts
    _SOLVE1 = None


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(a, b)`` (the same numbers, the same ``LinAlgError`` when ``a`` is
    singular) for a float64 (k, k) ``a`` and (k,) ``b``. A singular (or non-finite) system
    goes to ``np.linalg.solve``, which raises as before; numpy may warn of an invalid value
    first. Other dtypes and shapes go there directly."""
    if (_SOLVE1 is None or a.dtype != np.float64 or b.dtype != np.float64
            or a.ndim != 2 or b.ndim != 1):
        return np.linalg.solve(a, b)
    try:
        x = _SOLVE1(a, b, signature="dd->d")
    except (FloatingPointError, RuntimeWarning):   # np.seterr / warnings set to raise
        x = None
    if x is None or not math.isfinite(x.sum()):
        return np.linalg.solve(a, b)
    return x
