"""Batched torch versions of the lifting's per-object work (the models backend on a GPU).

Every object of a frame is one row of a padded tensor: points (K, N, D) with counts (K,); a
row's valid entries are its first ``n`` ones. One tensor op serves all objects, never a Python
loop over objects. The functions mirror numpy code of the geometric backend line by line (named
in each docstring) and give the same numbers up to floating-point rounding: nearest-rank
quantiles (:func:`~spatialpin_ros.core.geometry.quantile`), the same subsampling strides, the
same fits and iterations. ROS-free; runs on any torch device (the CPU tests compare it with
numpy).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spatialpin_ros.core.geometry import RECT_EDGE_Q

F64 = torch.float64


def valid_mask(n: torch.Tensor, cap: int) -> torch.Tensor:
    """(K, cap) bool: the first ``n[k]`` entries of each row."""
    return torch.arange(cap, device=n.device)[None, :] < n[:, None]


def mquantile(x: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """Nearest-rank ``q``-quantile of each row's valid entries (K,), as
    :func:`~spatialpin_ros.core.geometry.quantile` (NaN for an empty row)."""
    n = valid.sum(dim=1)
    s = torch.sort(torch.where(valid, x, torch.full_like(x, math.inf)), dim=1).values
    k = torch.round(q * (n - 1).clamp(min=0).to(F64)).long().clamp(min=0)
    k = torch.minimum(k, (n - 1).clamp(min=0))
    out = s.gather(1, k[:, None])[:, 0]
    return torch.where(n > 0, out, torch.full_like(out, math.nan))


def mquantiles(xs: list, valid: torch.Tensor, qs: tuple) -> list:
    """``[[mquantile(x, valid, q) for q in qs] for x in xs]`` (each (K,)), the same numbers from
    one sort: the rows of all ``xs`` (each (K, N), one ``valid``) sorted together."""
    m, K = len(xs), valid.shape[0]
    n = valid.sum(dim=1).repeat(m)
    inf = torch.full_like(xs[0], math.inf)
    s = torch.sort(torch.cat([torch.where(valid, x, inf) for x in xs], 0), dim=1).values
    top = (n - 1).clamp(min=0)
    topf = top.to(F64)
    k = torch.stack([torch.minimum(torch.round(q * topf).long().clamp(min=0), top)
                     for q in qs], 1)                                     # (m K, len(qs))
    out = s.gather(1, k)
    out = torch.where((n > 0)[:, None], out, torch.full_like(out, math.nan))
    return [[out[i * K:(i + 1) * K, j] for j in range(len(qs))] for i in range(m)]


def mmean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over each row's valid entries: x (K, N) -> (K,), or (K, N, D) -> (K, D)."""
    v = valid if x.dim() == 2 else valid[..., None]
    n = valid.sum(dim=1).clamp(min=1)
    s = torch.where(v, x, torch.zeros_like(x)).sum(dim=1)
    return s / (n if x.dim() == 2 else n[:, None])


def mptp_max(xy: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """max over axes of np.ptp(xy, axis=0) per row (K,)."""
    big = torch.full_like(xy, math.inf)
    hi = torch.where(valid[..., None], xy, -big).amax(dim=1)
    lo = torch.where(valid[..., None], xy, big).amin(dim=1)
    return (hi - lo).amax(dim=1)


def take_strided(P: torch.Tensor, n: torch.Tensor, step: torch.Tensor, cap: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``P[k, ::step[k]]`` of each row's first ``n[k]`` entries, padded to ``cap``: (K, cap, D)
    and the new counts."""
    m = torch.div(n + step - 1, step, rounding_mode="floor")
    idx = torch.arange(cap, device=P.device)[None, :] * step[:, None]
    idx = idx.clamp(max=max(P.shape[1] - 1, 0))
    out = P.gather(1, idx[..., None].expand(-1, -1, P.shape[2]))
    return out, torch.minimum(m, torch.full_like(m, cap))


def compact(P: torch.Tensor, sel: torch.Tensor, step: torch.Tensor, cap: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's selected entries (``sel``, in order), then every ``step[k]``-th of them,
    padded to ``cap``: numpy's ``P[sel][::step]``. Returns (K, cap, D) and the counts."""
    K, N, D = P.shape
    rank = torch.cumsum(sel.long(), dim=1) - 1
    keep = sel & (torch.remainder(rank, step[:, None]) == 0)
    pos = torch.where(keep, torch.div(rank, step[:, None], rounding_mode="floor"),
                      torch.full_like(rank, cap))
    out = torch.zeros((K, cap + 1, D), dtype=P.dtype, device=P.device)
    out.scatter_(1, pos[..., None].expand(-1, -1, D), P)
    cnt = keep.sum(dim=1)
    return out[:, :cap], torch.minimum(cnt, torch.full_like(cnt, cap))


def _solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``solve(A, b)`` for small symmetric positive definite systems (normal equations;
    A (K, m, m), b (K, m)) by Gaussian elimination written out in tensor ops: no host
    synchronisation and no solver library (CUDA-graph safe). Singular rows (padding) give
    non-finite values; numpy would take lstsq's answer there, never needed with 8 or more
    points."""
    m = A.shape[1]
    M = torch.cat([A, b[..., None]], dim=2).clone()
    for i in range(m):
        M[:, i] = M[:, i] / M[:, i, i:i + 1]
        for j in range(m):
            if j != i:
                M[:, j] = M[:, j] - M[:, j, i:i + 1] * M[:, i]
    return M[:, :, m]


def kasa_circle(xy: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algebraic circle of each row (``geometry._circle_fit``): centres (K, 2), radii, RMS."""
    w = valid.to(xy.dtype)
    x, y = xy[..., 0] * w, xy[..., 1] * w
    A = torch.stack([2 * x, 2 * y, w], dim=2)
    b = x * x + y * y
    sol = _solve(A.transpose(1, 2) @ A, (A.transpose(1, 2) @ b[..., None])[..., 0])
    c = sol[:, :2]
    r = torch.sqrt(torch.clamp(sol[:, 2] + (c * c).sum(1), min=1e-12))
    res = torch.hypot(xy[..., 0] - c[:, None, 0], xy[..., 1] - c[:, None, 1]) - r[:, None]
    rms = torch.sqrt(mmean(res * res, valid))
    return c, r, rms


def geometric_circle(xy: torch.Tensor, valid: torch.Tensor, iterations: int = 3
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gauss-Newton circle from the algebraic one (``geometry.circle_fit_geometric``), each row
    stopping where numpy's loop breaks."""
    mu = mmean(xy, valid)
    q = xy - mu[:, None, :]
    c, r, _ = kasa_circle(q, valid)
    active = torch.ones_like(r, dtype=torch.bool)
    w = valid.to(xy.dtype)
    for _ in range(iterations):
        d = q - c[:, None, :]
        rho = torch.clamp(torch.hypot(d[..., 0], d[..., 1]), min=1e-9)
        res = (rho - r[:, None]) * w
        J = torch.stack([-d[..., 0] / rho, -d[..., 1] / rho, -torch.ones_like(rho)], 2)
        J = J * w[..., None]
        step = _solve(J.transpose(1, 2) @ J, -(J.transpose(1, 2) @ res[..., None])[..., 0])
        step = torch.where(active[:, None], step, torch.zeros_like(step))
        c = c + step[:, :2]
        r = r + step[:, 2]
        active = active & ~(step.abs().amax(dim=1) < 2e-5)
    res = torch.hypot(q[..., 0] - c[:, None, 0], q[..., 1] - c[:, None, 1]) - r[:, None]
    return c + mu, r.abs(), torch.sqrt(mmean(res * res, valid))


def robust_circle(xy: torch.Tensor, n: torch.Tensor, inside_tol: torch.Tensor, span=None):
    """``geometry.robust_circle`` of each row: (centres, radii, RMS, ok) where ``ok`` is False
    where numpy returns None; ``span`` (K,) as numpy's, or None for the points' own."""
    step = torch.div(n, 150, rounding_mode="floor") + 1
    s, m = take_strided(xy, n, step, 150)
    v = valid_mask(m, 150)
    c, r, _ = kasa_circle(s, v)
    d = torch.hypot(s[..., 0] - c[:, None, 0], s[..., 1] - c[:, None, 1]) - r[:, None]
    keep = v & (d > -inside_tol[:, None])
    nk = keep.sum(1)
    kq, km = compact(s, keep, torch.ones_like(nk), 150)
    cg, rg, eg = geometric_circle(kq, valid_mask(km, 150), 3)
    rms_all = torch.sqrt(mmean(d * d, v))
    use = nk >= 8
    c = torch.where(use[:, None], cg, c)
    r = torch.where(use, rg, r)
    res = torch.where(use, eg, rms_all)
    if span is None:
        span = mptp_max(s, v)
    ok = (n >= 8) & (r > 0.005) & (r < torch.clamp(0.75 * span + 0.002, max=0.25))
    return c, r, res, ok


def sphere_fit(P: torch.Tensor, valid: torch.Tensor):
    """Least-squares sphere of each row (``geometry.sphere_fit``): centres (K, 3), radii, RMS."""
    mu = mmean(P, valid)
    w = valid.to(P.dtype)
    Q = (P - mu[:, None, :]) * w[..., None]
    A = torch.cat([2 * Q, w[..., None]], dim=2)
    b = (Q * Q).sum(2)
    sol = _solve(A.transpose(1, 2) @ A, (A.transpose(1, 2) @ b[..., None])[..., 0])
    c = sol[:, :3]
    r = torch.sqrt(torch.clamp(sol[:, 3] + (c * c).sum(1), min=1e-12))
    res = torch.linalg.norm(P - mu[:, None, :] - c[:, None, :], dim=2) - r[:, None]
    return c + mu, r, torch.sqrt(mmean(res * res, valid))


_YAW = np.radians(np.arange(0.0, 90.0, 1.5))
_FINE = np.radians(np.arange(-1.5, 1.51, 0.25))
_CONST: dict = {}


def _const(name: str, a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A constant on ``device``, uploaded once (no copies inside a CUDA-graph capture)."""
    key = (name, str(device))
    if key not in _CONST:
        _CONST[key] = torch.as_tensor(a, dtype=F64, device=device)
    return _CONST[key]


def _l_scores(x, y, valid, cs, sn, d0):
    """L-shape closeness scores (K, A) and distances (K, N, A) for yaws (K, A)."""
    c1 = x[..., None] * cs[:, None, :] + y[..., None] * sn[:, None, :]
    c2 = y[..., None] * cs[:, None, :] - x[..., None] * sn[:, None, :]
    v = valid[..., None]
    inf = torch.full_like(c1, math.inf)

    def dist(c):
        hi = torch.where(v, c, -inf).amax(1, keepdim=True)
        lo = torch.where(v, c, inf).amin(1, keepdim=True)
        return torch.minimum(hi - c, c - lo)

    d = torch.minimum(dist(c1), dist(c2))
    sc = torch.where(v, 1.0 / torch.maximum(d, d0[:, None, None]), torch.zeros_like(d)).sum(1)
    return sc, d


def rectangle_yaw(xy: torch.Tensor, n: torch.Tensor, d0: torch.Tensor, max_points: int = 160,
                  robust: bool = False):
    """``geometry.fit_rectangle_yaw`` of each row: (yaw, RMS distance to the nearest edge) and,
    with ``robust``, the outlier-robust residual."""
    K = xy.shape[0]
    j = torch.arange(max_points, device=xy.device, dtype=F64)
    stepf = (n - 1).to(F64) / (max_points - 1)
    idx = torch.floor(j[None, :] * stepf[:, None]).long()
    idx[:, -1] = n - 1
    many = n > max_points
    idx = torch.where(many[:, None], idx, torch.arange(max_points, device=xy.device)[None, :])
    idx = idx.clamp(0, max(xy.shape[1] - 1, 0))
    pts = xy.gather(1, idx[..., None].expand(-1, -1, 2))
    m = torch.where(many, torch.full_like(n, max_points), n)
    v = valid_mask(m, max_points)
    pts = pts - mmean(pts, v)[:, None, :]
    x, y = pts[..., 0], pts[..., 1]
    g = _const("yaw", _YAW, xy.device)[None].expand(K, -1)
    sc, _ = _l_scores(x, y, v, torch.cos(g), torch.sin(g), d0)
    best = g.gather(1, sc.argmax(1, keepdim=True))
    fine = best + _const("fine", _FINE, xy.device)[None]
    sc, d = _l_scores(x, y, v, torch.cos(fine), torch.sin(fine), d0)
    k = sc.argmax(1, keepdim=True)
    dk = d.gather(2, k[:, None, :].expand(-1, d.shape[1], -1))[..., 0]
    out = fine.gather(1, k)[:, 0], torch.sqrt(mmean(dk * dk, v))
    return out + (rectangle_residual(x, y, v, out[0]),) if robust else out


def rectangle_residual(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, yaw: torch.Tensor,
                       edge_q: float = RECT_EDGE_Q) -> torch.Tensor:
    """``geometry.rectangle_residual`` of each row (K,): RMS distance to the nearest edge of the
    rectangle at ``yaw`` whose edges are the points' ``edge_q`` quantiles along its axes."""
    cs, sn = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    c1, c2 = x * cs + y * sn, y * cs - x * sn

    (lo1, hi1), (lo2, hi2) = mquantiles([c1, c2], v, (edge_q, 1 - edge_q))

    def dist(c, lo, hi):
        return torch.minimum((c - lo[:, None]).abs(), (hi[:, None] - c).abs())

    d = torch.minimum(dist(c1, lo1, hi1), dist(c2, lo2, hi2))
    return torch.sqrt(mmean(d * d, v))


def rotate_local(xy: torch.Tensor, centre: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """``(xy - centre) @ [[c, s], [-s, c]].T`` per row (K, N, 2)."""
    c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    d = xy - centre[:, None, :]
    return torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], 2)


def box_extent(xy: torch.Tensor, valid: torch.Tensor, yaw: torch.Tensor):
    """``shapes._box_extent`` of each row: footprint centres (K, 2) and sizes (K, 2)."""
    loc = rotate_local(xy, torch.zeros_like(xy[:, 0]), yaw)
    (lo0, hi0), (lo1, hi1) = mquantiles([loc[..., 0], loc[..., 1]], valid, (0.01, 0.99))
    lo, hi = torch.stack([lo0, lo1], 1), torch.stack([hi0, hi1], 1)
    mid = (lo + hi) / 2
    c, s = torch.cos(yaw), torch.sin(yaw)
    centre = torch.stack([mid[:, 0] * c - mid[:, 1] * s, mid[:, 0] * s + mid[:, 1] * c], 1)
    return centre, torch.clamp(hi - lo, min=0.004)


def inside_polygon(hull: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """``geometry.inside_convex`` for points (..., 2) and one convex polygon (M, 2)."""
    if hull.shape[0] < 3:
        return torch.zeros(uv.shape[:-1], dtype=torch.bool, device=uv.device)
    a = hull
    e = torch.roll(hull, -1, dims=0) - a
    cross = (e[:, 0] * (uv[..., 1:2] - a[:, 1]) - e[:, 1] * (uv[..., 0:1] - a[:, 0]))
    return (cross >= 0).all(-1) | (cross <= 0).all(-1)
