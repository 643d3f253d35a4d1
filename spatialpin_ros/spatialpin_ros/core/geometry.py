"""Shared geometry (ROS-free, numpy/OpenCV): robust quantiles, plane, circle, sphere and
rectangle fits. Perception (geometric and model backends) and reasoning import it from here.

Units: metres; angles in radians. Point arrays are (N, 3) or (N, 2) float.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import cv2
import numpy as np

from spatialpin_ros.core.errors import PerceptionError
from spatialpin_ros.core.small_solve import solve



def quantile(a: np.ndarray, q: float) -> float:
    """The ``q``-quantile (0..1, nearest rank) of a 1-D array, via partial sort (much cheaper
    than np.percentile on small arrays)."""
    n = len(a)
    k = min(max(int(round(q * (n - 1))), 0), n - 1)
    b = np.array(a)                     # np.partition's copy, without its wrapper
    b.partition(k)
    return float(b[k])


def quantiles(a: np.ndarray, qs: Sequence[float]) -> list[float]:
    """:func:`quantile` at each of ``qs`` (the same numbers), from one partial sort."""
    n = len(a)
    ks = [min(max(int(round(q * (n - 1))), 0), n - 1) for q in qs]
    b = np.array(a)
    b.partition(ks)
    return [float(b[k]) for k in ks]


def share(mask: np.ndarray) -> float:
    """The share of True in a 1-D bool array: ``np.mean(mask)``, the same number at a tenth of
    the cost; NaN when empty."""
    n = len(mask)
    return np.count_nonzero(mask) / n if n else math.nan


def rms(d: np.ndarray) -> float:
    """``sqrt(mean(d * d))`` of a 1-D array, the same number as ``np.sqrt(np.mean(d * d))``
    (the same sum, in ``d``'s dtype) without ``np.mean``'s overhead; NaN when empty."""
    n = len(d)
    return float(np.sqrt((d * d).sum() / n)) if n else math.nan


def column_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's minimum and maximum of an (N, k) array with a few columns:
    ``a.min(axis=0)``, ``a.max(axis=0)``, the same numbers, column by column (numpy reduces a
    few columns across many rows an order of magnitude slower)."""
    cols = [a[:, k] for k in range(a.shape[1])]     # the ufuncs' reduce: the methods' own
    return (np.array([np.minimum.reduce(c) for c in cols]),
            np.array([np.maximum.reduce(c) for c in cols]))


def column_means(a: np.ndarray) -> np.ndarray:
    """``a.mean(axis=0)`` of a float64 (N, k) array, the same numbers (its sum over the rows,
    divided by N) without ``mean``'s wrapper; other dtypes go to ``mean`` itself."""
    return np.add.reduce(a, axis=0) / len(a) if a.dtype == np.float64 else a.mean(axis=0)


def extent(a: np.ndarray) -> float:
    """The largest column extent of an (N, k) array, ``np.ptp(a, axis=0).max()``."""
    lo, hi = column_bounds(a)
    return float((hi - lo).max())


def last_axis_sum(v: np.ndarray) -> np.ndarray:
    """``v.sum(axis=-1)`` over a short last axis (a few components), the same bits (numpy adds
    fewer than 8 in order), without numpy's slow reduction along short rows."""
    out = v[..., 0] + v[..., 1]
    for k in range(2, v.shape[-1]):
        out += v[..., k]
    return out


def squared_norms(v: np.ndarray) -> np.ndarray:
    """Squared Euclidean norms over the last axis, the squares added in order."""
    return last_axis_sum(v * v)


def row_norms(v: np.ndarray) -> np.ndarray:
    """Euclidean norms over the last axis (a few components): ``np.linalg.norm(v, axis=-1)``,
    the same bits (its sum of squares adds them in order), at a fraction of the cost on large
    arrays."""
    return np.sqrt(squared_norms(v))


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross(a, b)`` of (..., 3) arrays, the same products and differences in the same
    order (the same bits), without ``np.cross``' axis juggling."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.subtract(a[..., i] * b[..., j], a[..., j] * b[..., i], out=out[..., k])
    return out


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v


def dot3(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """P (N, 3) . n (3,) without BLAS (avoids thread start-up for small products)."""
    return P[:, 0] * n[0] + P[:, 1] * n[1] + P[:, 2] * n[2]


def plane_from_points(Q: np.ndarray, up: np.ndarray) -> np.ndarray:
    cen = column_means(Q)
    D = Q - cen
    cov = np.einsum("ni,nj->ij", D, D)
    w, v = np.linalg.eigh(cov)
    nv = v[:, 0] if v[:, 0] @ up > 0 else -v[:, 0]
    return np.append(nv, -nv @ cen)


def plane_hypotheses(P: np.ndarray, rng: np.random.Generator, iterations: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``iterations`` RANSAC plane hypotheses from random point triples of ``P`` (N, 3): unit
    normals (k, 3) of either orientation, a point on each plane (k, 3), and which are valid
    (non-degenerate triples)."""
    idx = rng.integers(0, len(P), size=(iterations, 3))
    a, b, c = P[idx[:, 0]], P[idx[:, 1]], P[idx[:, 2]]
    nrm = cross3(b - a, c - a)
    norm = row_norms(nrm)
    ok = norm > 1e-12
    nrm[ok] /= norm[ok, None]
    return nrm, a, ok


def fit_plane_ransac(points: np.ndarray, rng: np.random.Generator, iterations: int = 64,
                     inlier: float = 0.006, up: Sequence[float] = (0, 0, 1),
                     max_tilt_deg: float = 25.0, score_points: int = 1500
                     ) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC plane (a, b, c, d) with unit normal within ``max_tilt_deg`` of ``up`` (pointing
    up), refined by least squares; returns the plane and the inlier mask of ``points``.
    Hypotheses are scored together on a subsample of ``score_points`` points. Raises
    PerceptionError when no plane is found."""
    P = np.asarray(points, dtype=np.float64)
    n = len(P)
    if n < 3:
        raise PerceptionError(f"too few valid depth points ({n}) to find the support plane")
    up = unit(np.asarray(up, dtype=float))
    nrm, a, ok = plane_hypotheses(P, rng, iterations)
    nrm *= np.where(nrm @ up < 0, -1.0, 1.0)[:, None]
    ok &= nrm @ up > math.cos(math.radians(max_tilt_deg))
    if not ok.any():
        raise PerceptionError("no support plane: no RANSAC hypothesis is near horizontal")
    nrm, a = nrm[ok], a[ok]
    d = -np.einsum("ij,ij->i", nrm, a)
    S = P if n <= score_points else P[rng.choice(n, score_points, replace=False)]
    dist = np.abs(S[:, 0, None] * nrm[:, 0] + S[:, 1, None] * nrm[:, 1]
                  + S[:, 2, None] * nrm[:, 2] + d)
    best = int(np.argmax((dist < inlier).sum(axis=0)))
    plane = np.append(nrm[best], d[best])
    for _ in range(2):  # least-squares refinement on the inliers
        inl = np.abs(dot3(P, plane[:3]) + plane[3]) < inlier
        if inl.sum() < 3:
            break
        plane = plane_from_points(P[inl], up)
    inl = np.abs(dot3(P, plane[:3]) + plane[3]) < inlier
    if inl.sum() < max(30, 0.05 * n):
        raise PerceptionError(f"no support plane: the best plane has only {int(inl.sum())} of "
                              f"{n} sampled points")
    return plane, inl


def _circle_fit(xy: np.ndarray) -> tuple[np.ndarray, float]:
    """Algebraic (Kasa) least-squares circle: centre (2,) and radius (the start of the
    geometric fits, which measure their own residuals)."""
    x, y = xy[:, 0], xy[:, 1]
    A = np.empty((len(xy), 3), dtype=np.result_type(xy, 2))  # np.stack([2x, 2y, 1], axis=1)
    np.multiply(x, 2, out=A[:, 0])
    np.multiply(y, 2, out=A[:, 1])
    A[:, 2] = 1
    b = x * x + y * y
    try:
        sol = solve(A.T @ A, A.T @ b)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
    c = sol[:2]
    return c, math.sqrt(max(sol[2] + c @ c, 1e-12))


def circle_fit_geometric(xy: np.ndarray, iterations: int = 5) -> tuple[np.ndarray, float, float]:
    """Geometric least-squares circle (Gauss-Newton from the algebraic fit): centre, radius,
    RMS residual."""
    mu = column_means(xy)
    q = xy - mu
    c, r = _circle_fit(q)
    J = np.empty((len(q), 3), np.result_type(q, c))   # Jacobian rows: -dx/rho, -dy/rho, -1
    J[:, 2] = -1
    for _ in range(iterations):
        d = c - q                     # -(q - c), the same bits: J's -dx, -dy over rho
        rho = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        res = rho - r
        np.divide(d[:, 0], rho, out=J[:, 0])
        np.divide(d[:, 1], rho, out=J[:, 1])
        try:
            step = solve(J.T @ J, -(J.T @ res))
        except np.linalg.LinAlgError:
            break
        c = c + step[:2]
        r = r + step[2]
        if abs(step[0]) < 2e-5 and abs(step[1]) < 2e-5 and abs(step[2]) < 2e-5:   # max, NaN-safe
            break
    res = np.hypot(q[:, 0] - c[0], q[:, 1] - c[1]) - r
    return c + mu, abs(float(r)), rms(res)


def sphere_fit(P: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere: centre (3,), radius, RMS residual."""
    mu = column_means(P)
    Q = P - mu
    A = np.concatenate([2 * Q, np.ones((len(Q), 1))], axis=1)
    b = last_axis_sum(Q * Q)
    try:
        sol = solve(A.T @ A, A.T @ b)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
    c = sol[:3]
    r = math.sqrt(max(sol[3] + c @ c, 1e-12))
    res = row_norms(Q - c) - r
    return c + mu, r, rms(res)


_YAW_GRID = np.radians(np.arange(0.0, 90.0, 1.5))
_YAW_COS, _YAW_SIN = np.cos(_YAW_GRID), np.sin(_YAW_GRID)
#: The coarse yaws' rotations, both axes at once (see :func:`_edge_distances`).
_YAW_AXES = (np.concatenate([_YAW_COS, -_YAW_SIN]), np.concatenate([_YAW_SIN, _YAW_COS]))
_YAW_FINE = np.radians(np.arange(-1.5, 1.51, 0.25))


#: Share of the outline's points allowed beyond each of a rectangle's edges (outliers).
RECT_EDGE_Q = 0.05


def fit_rectangle_yaw(xy: np.ndarray, d0: float = 0.004, max_points: int = 160,
                      robust: bool = False) -> tuple[float, ...]:
    """Yaw of the rectangle whose edges the points hug (L-shape fitting with the closeness
    criterion of Zhang et al., "Efficient L-shape fitting for vehicle detection using laser
    scanners", 2017), searched over 0..90 degrees and refined; returns (yaw, RMS distance of the
    points to the nearest edge); with ``robust``, also the outlier-robust
    :func:`rectangle_residual` at that yaw."""
    if len(xy) > max_points:
        xy = xy[_spread_indices(len(xy), max_points)]
    xy = xy - column_means(xy)
    x, y = xy[:, 0:1], xy[:, 1:2]
    sc, _ = _edge_distances(x, y, *_YAW_AXES, d0)
    fine, cc, ss = _fine_axes(int(np.argmax(sc)))
    sc, d = _edge_distances(x, y, cc, ss, d0)
    k = int(np.argmax(sc))
    out = float(fine[k]), rms(d[:, k])
    return out + (rectangle_residual(xy, out[0]),) if robust else out


@functools.lru_cache(maxsize=None)
def _fine_axes(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fine yaws around coarse yaw ``i`` and their rotations (as ``_YAW_AXES``; read-only)."""
    fine = _YAW_GRID[i] + _YAW_FINE
    cs, sn = np.cos(fine), np.sin(fine)
    out = fine, np.concatenate([cs, -sn]), np.concatenate([sn, cs])
    for a in out:
        a.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _spread_indices(n: int, m: int) -> np.ndarray:
    """``m`` indices spread evenly over ``range(n)`` (read-only)."""
    idx = np.linspace(0, n - 1, m).astype(int)
    idx.flags.writeable = False
    return idx


def _edge_distances(x: np.ndarray, y: np.ndarray, cc: np.ndarray, ss: np.ndarray,
                    d0: float) -> tuple[np.ndarray, np.ndarray]:
    """For K yaws: the closeness scores (K,) of the points (``x``, ``y``: (N, 1)) to the
    rectangle at each yaw, and their distances (N, K) to its nearest edge. ``cc``, ``ss``:
    (cos, -sin) and (sin, cos) of the yaws, concatenated (2K,): the points along the first
    axis are ``x cos + y sin``, along the second ``x (-sin) + y cos`` (= ``y cos - x sin``, the
    same bits), both in one pass."""
    c = x * cc
    e = y * ss
    c += e
    hi, lo = np.maximum.reduce(c, axis=0), np.minimum.reduce(c, axis=0)
    np.minimum(np.subtract(hi, c, out=e), np.subtract(c, lo, out=c), out=e)
    k = len(cc) // 2
    d = np.minimum(e[:, :k], e[:, k:])
    w = np.maximum(d, d0)
    return np.add.reduce(np.divide(1.0, w, out=w), axis=0), d


def rectangle_residual(xy: np.ndarray, yaw: float, edge_q: float = RECT_EDGE_Q) -> float:
    """RMS distance (metres) of points ``xy`` (N, 2) to the nearest edge of the rectangle at
    ``yaw`` whose edges lie at the ``edge_q`` and ``1 - edge_q`` nearest-rank quantiles of the
    points along its axes. With the extreme points as edges, a few pixels of a neighbour left
    at an object's border (segmentation leaks, sensor noise) moved an edge off the box's face
    and its flat sides no longer read as flat (square boxes between two cylinders were fitted
    as cylinders). ``lift_torch.rectangle_residual`` computes the same."""
    cs, sn = math.cos(yaw), math.sin(yaw)
    c1 = xy[:, 0] * cs + xy[:, 1] * sn
    c2 = xy[:, 1] * cs - xy[:, 0] * sn
    lo1, hi1 = quantiles(c1, (edge_q, 1 - edge_q))
    lo2, hi2 = quantiles(c2, (edge_q, 1 - edge_q))
    d = np.minimum(np.minimum(np.abs(c1 - lo1), np.abs(hi1 - c1)),
                   np.minimum(np.abs(c2 - lo2), np.abs(hi2 - c2)))
    return rms(d)


def densify(poly: Optional[np.ndarray], step: float) -> np.ndarray:
    """Points every ``step`` metres along a closed polygon's edges (K, 2)."""
    if poly is None or len(poly) == 0:
        return np.zeros((0, 2))
    a = poly
    b = _next_vertices(poly)
    n = np.maximum(np.ceil(np.hypot(*(b - a).T) / step).astype(int), 1)
    k = np.repeat(np.arange(len(a)), n)
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return a[k] + (b[k] - a[k]) * frac[:, None]


def robust_circle(xy: np.ndarray, inside_tol: float, span: float | None = None):
    """Circle through the outer points: a geometric fit, then a refit without the points lying
    more than ``inside_tol`` inside (occlusion chords, top-face interiors). Returns (centre,
    radius, RMS residual of the kept points) or None, also when the radius exceeds 0.75 times
    the object's ``span`` (metres; default the points' own) plus 2 mm: a flat face fits a
    circle of any size. A can's side seen from above is an arc much shorter than its diameter,
    while its whole extent (the top face with it) spans the diameter."""
    if len(xy) < 8:
        return None
    xy = xy[:: len(xy) // 150 + 1]
    c, r = _circle_fit(xy)
    d = np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1]) - r
    keep = d > -inside_tol
    if np.count_nonzero(keep) >= 8:
        c, r, res = circle_fit_geometric(xy[keep], iterations=3)
    else:
        res = rms(d)
    if span is None:
        span = extent(xy)
    if not (0.005 < r < min(0.25, 0.75 * span + 0.002)):
        return None
    return c, r, res


def rect_from_points(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Minimum-area rectangle: centre (2,), extents (2,) along its axes, yaw of the first axis
    in (-pi/2, pi/2]."""
    (cx, cy), _, _ = rect = cv2.minAreaRect(np.ascontiguousarray(xy, dtype=np.float32))
    pts = cv2.boxPoints(rect).astype(float)
    e0, e1 = pts[1] - pts[0], pts[2] - pts[1]
    yaw = math.atan2(e0[1], e0[0])
    size = np.array([math.hypot(*e0), math.hypot(*e1)])
    if yaw > math.pi / 2:
        yaw -= math.pi
    elif yaw <= -math.pi / 2:
        yaw += math.pi
    return np.array([cx, cy], dtype=float), size, yaw


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def _next_vertices(poly: np.ndarray) -> np.ndarray:
    """Each polygon vertex's successor (K, ...): ``np.roll(poly, -1, axis=0)``, cheaper."""
    return np.concatenate([poly[1:], poly[:1]])


def inside_convex(hull: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N,) bool: points (N, 2) inside a convex polygon (K, 2) of either orientation."""
    if len(uv) == 0 or len(hull) < 3:
        return np.zeros(len(uv), dtype=bool)
    a = hull
    e = _next_vertices(hull) - a                  # (K, N) below: reduced across the points
    cross = (e[:, 0][:, None] * (uv[:, 1][None] - a[:, 1][:, None])
             - e[:, 1][:, None] * (uv[:, 0][None] - a[:, 0][:, None]))
    # all >= 0 or all <= 0 (a NaN fails both either way), by the columns' extremes
    return (np.minimum.reduce(cross, axis=0) >= 0) | (np.maximum.reduce(cross, axis=0) <= 0)


def grow_convex(hull: np.ndarray, margin: float) -> np.ndarray:
    """A convex polygon (K, 2) grown outward by ``margin`` (counter-clockwise result)."""
    c = hull.mean(axis=0)
    d = hull - c
    r = np.maximum(row_norms(d)[:, None], 1e-9)
    out = c + d * (1.0 + margin / r)
    nxt = _next_vertices(out)
    area = 0.5 * np.sum(out[:, 0] * nxt[:, 1] - nxt[:, 0] * out[:, 1])
    return out if area >= 0 else out[::-1]
