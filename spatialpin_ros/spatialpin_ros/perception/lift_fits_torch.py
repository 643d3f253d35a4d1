"""Every object's shape fit in one batch of torch ops: :func:`~spatialpin_ros.perception.shapes.
fit_shape` (cylinder, box, sphere or other; containers), row by row the same numbers.

Input: the objects' plane-frame points as one padded tensor (K, N, 3) float64 with counts (K,)
and each object's depth noise (K,). Output: :class:`~spatialpin_ros.perception.shapes.ShapeFit`
per object. Only "other" objects' yaws (a minimum-area rectangle, OpenCV's rotating calipers)
are taken on the host, from their points (copied back for those objects alone).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spatialpin_ros.core.geometry import rect_from_points
from spatialpin_ros.perception.lift_torch import (box_extent, compact, mmean, mptp_max,
                                                  mquantile, mquantiles, rectangle_yaw,
                                                  robust_circle, rotate_local, sphere_fit,
                                                  take_strided, valid_mask)
from spatialpin_ros.perception.shapes import ShapeFit, ShapeParams, _box_extent
from spatialpin_ros.perception.shapes import _container as _container_np

CYL, BOX, OTHER, SPHERE = 0, 1, 2, 3
_NAMES = {CYL: "cylinder", BOX: "box", OTHER: "other", SPHERE: "sphere"}


def _outline(Q, v, n, top, noise, p: ShapeParams):
    """The subsample ``Qs`` (600 at most) and the outline of ``fit_shape``."""
    step = torch.div(n, 600, rounding_mode="floor") + 1
    Qs, ms = take_strided(Q, n, step, 600)
    vs = valid_mask(ms, 600)
    xy, hs = Qs[..., :2], Qs[..., 2]
    side = vs & (hs < (top - torch.clamp(2 * noise, min=p.top_band))[:, None])
    nside = side.sum(1)
    use = nside >= 20
    sel = torch.where(use[:, None], side, vs)
    nsel = torch.where(use, nside, ms)
    outline, mo = compact(xy, sel, torch.div(nsel, 250, rounding_mode="floor") + 1, 250)
    return xy, vs, outline, mo, vs & ~side


def _top_narrower_t(xy, band, radius, noise, p: ShapeParams, min_points: int = 20):
    """``shapes._top_narrower`` of each row: its top band ``band`` (K, N) of ``xy`` (K, N, 2)
    much smaller than the circle of ``radius`` (K,)."""
    nb = band.sum(1)
    d = torch.where(band[..., None], xy - mmean(xy, band)[:, None, :], torch.zeros_like(xy))
    den = nb.clamp(min=1).to(xy.dtype)
    cxx, cyy = (d[..., 0] ** 2).sum(1) / den, (d[..., 1] ** 2).sum(1) / den
    cxy = (d[..., 0] * d[..., 1]).sum(1) / den
    a = 0.5 * torch.atan2(2 * cxy, cxx - cyy)
    c, s = torch.cos(a)[:, None], torch.sin(a)[:, None]
    u, w = d[..., 0] * c + d[..., 1] * s, d[..., 1] * c - d[..., 0] * s
    (u97, u03), (w97, w03) = mquantiles([u, w], band, (0.97, 0.03))
    eu, ew = u97 - u03, w97 - w03
    return (nb >= min_points) & (2 * radius > p.top_circle_ratio * torch.hypot(eu, ew)
                                 + 0.005 + 2 * noise)


def _square_top_t(xy, band, yaw, p: ShapeParams):
    """``shapes._square_top`` of each row: whether its top band ``band`` (K, N) of ``xy``
    (K, N, 2) fills the corners of its rectangle along ``yaw`` (K,)."""
    if p.corner_share <= 0:
        return torch.zeros(band.shape[0], dtype=torch.bool, device=band.device)
    loc = rotate_local(xy, torch.zeros_like(xy[:, 0]), yaw)
    u, w = loc[..., 0], loc[..., 1]
    (lu, hu), (lw, hw) = mquantiles([u, w], band, (0.02, 0.98))
    un = (2 * u - (lu + hu)[:, None]).abs() > p.corner * (hu - lu)[:, None]
    wn = (2 * w - (lw + hw)[:, None]).abs() > p.corner * (hw - lw)[:, None]
    share = mmean((un & wn).to(xy.dtype), band)
    nb = band.sum(1)
    q = p.corner_share
    need = q + 2 * torch.sqrt(q * (1 - q) / nb.clamp(min=1).to(xy.dtype))
    return (nb >= p.corner_min_points) & (hu - lu > 1e-6) & (hw - lw > 1e-6) & (share > need)


def _sphere(Q, v, n, top, noise, size0, camera, cc, cr, p: ShapeParams):
    """Sphere candidates: (centre, radius, RMS, accepted-unless-cylinder, beats-the-cylinder)."""
    step = torch.clamp(torch.div(n, 600, rounding_mode="floor"), min=1)
    P3, m3 = take_strided(Q, n, step, 1200)
    v3 = valid_mask(m3, 1200)
    cs, rs, es = sphere_fit(P3, v3)
    dots = ((Q - cs[:, None, :]) * (camera[None, None, :] - Q)).sum(2)
    convex = mmean((dots > 0).to(Q.dtype), v) > 0.8
    ok = (convex & (rs > 0.02) & (rs < 0.15) & (es < torch.clamp(0.08 * rs, min=0.003) + noise)
          & ((cs[:, 2] - rs).abs() < 0.02) & (top < 2.4 * rs) & (size0 < 2.3 * rs)
          & (size0 > p.ball_width * rs) & (n >= 30))
    rho = torch.hypot(P3[..., 0] - cc[:, None, 0], P3[..., 1] - cc[:, None, 1])
    d = torch.minimum((rho - cr[:, None]).abs(), (P3[..., 2] - top[:, None]).abs())
    cyl_res = torch.sqrt(mmean(d * d, v3))
    n2 = noise * noise                              # shapes._fits_better, row by row
    beats = (es * es - n2).clamp(min=0) < p.sphere_margin ** 2 * (cyl_res * cyl_res
                                                                   - n2).clamp(min=0)
    return cs, rs, es, ok, beats


def _container(Q, v, n, top, noise, centre, size, yaw, kind, camera, p: ShapeParams):
    """``shapes._container`` and ``shapes._rim_only`` of each row: (container, inner_depth)."""
    h = Q[..., 2]
    cz = camera[2]
    drop = torch.clamp(torch.clamp(p.inner_depth_rel * top, min=p.min_inner_depth), min=0)
    drop = torch.maximum(drop, 4 * noise)
    below = v & (h < (top - drop)[:, None])
    t = (top[:, None] - cz) / (h - cz)
    x = camera[None, None, :2] + t[..., None] * (Q[..., :2] - camera[None, None, :2])
    cyl = (kind == CYL)[:, None]
    loc = rotate_local(x, centre, yaw)
    half = size / 2 * (1 - p.rim_shrink)
    inside = torch.where(cyl, torch.hypot(loc[..., 0], loc[..., 1]) < half[:, None, 0],
                         (loc[..., 0].abs() < half[:, None, 0]) & (loc[..., 1].abs()
                                                                   < half[:, None, 1]))
    through = below & inside & (t > 0) & (t < 1)
    nt = through.sum(1)
    band = v & (h > (top - torch.clamp(3 * noise, min=0.01))[:, None])
    lb = rotate_local(Q[..., :2], centre, yaw)
    hb = torch.clamp(size / 2, min=1e-3)
    r = torch.where(cyl, torch.hypot(lb[..., 0], lb[..., 1]) / hb[:, None, 0],
                    (lb.abs() / hb[:, None, :]).amax(2))
    rim = (band.sum(1) >= 8) & (mmean((r < 0.6).to(Q.dtype), band) <= 0.1)
    ok = ((top >= 0.02) & (cz > top + 0.01) & (below.sum(1) >= 10) & rim
          & (nt >= torch.clamp(p.inner_share * n.to(Q.dtype), min=10)) & (kind != SPHERE))
    inner = top - mquantile(h, through, 0.05)
    return ok, torch.where(ok, inner, torch.zeros_like(inner))


def fit_table(Q: torch.Tensor, n: torch.Tensor, noise: torch.Tensor, params: ShapeParams,
              camera: torch.Tensor) -> torch.Tensor:
    """:func:`~spatialpin_ros.perception.shapes.fit_shape` of every row of ``Q`` (K, N, 3)
    (plane frame, float64; ``n`` (K,) points each, at least 10; ``camera`` (3,): the camera
    centre in the plane frame), with no host synchronisation (CUDA-graph safe): a (K, 14) table
    (kind, centre 2, size 2, yaw, top, low, container, inner depth, sphere centre 3, residual)
    for :func:`fits_from_table`. "other" rows still hold the rectangle yaw's extent; the host
    redoes them."""
    p = params
    v = valid_mask(n, Q.shape[1])
    h = Q[..., 2]
    (top, low), = mquantiles([h], v, (0.98, 0.02))
    xy, vs, outline, mo, band = _outline(Q, v, n, top, noise, p)
    size0 = mptp_max(xy, vs)
    tol = torch.clamp(p.fit_rel * torch.minimum(size0, torch.clamp(top, min=0.01)), min=p.fit_abs)
    yaw, res_r, res_flat = rectangle_yaw(outline, mo, torch.clamp(1.5 * noise, min=0.0015),
                                         robust=True)
    flat = res_flat < torch.clamp(1.5 * noise, min=p.flat_face)
    cc, cr, cres, cok = robust_circle(outline, mo, 0.002 + 2 * noise, span=size0)
    cok = cok & ~flat
    rr = torch.hypot(xy[..., 0] - cc[:, None, 0], xy[..., 1] - cc[:, None, 1])
    frac = mmean((rr < (cr + 0.004 + 2 * noise)[:, None]).to(Q.dtype), vs)
    cok_fit = cok & ~((frac < 0.9) | (2 * cr > 1.6 * size0 + 0.01))
    cok_fit = cok_fit & ~_top_narrower_t(xy, band, cr, noise, p)
    res_c = torch.where(cok_fit, cres, torch.full_like(cres, math.inf))
    kind = torch.full_like(n, BOX)
    square = _square_top_t(xy, band, yaw, p)
    is_cyl = (res_c < tol) & (res_c < p.circle_margin * res_r) & ~flat & ~square
    kind = torch.where(is_cyl, torch.full_like(n, CYL), kind)
    kind = torch.where(~is_cyl & (res_r > tol) & (res_c > tol) & ~flat,
                       torch.full_like(n, OTHER), kind)
    cs, rs, es, sok, beats = _sphere(Q, v, n, top, noise, size0, camera, cc, cr, p)
    sph = ~flat & ~square & sok & ((kind != CYL) | beats)
    kind = torch.where(sph, torch.full_like(n, SPHERE), kind)
    bc, bs = box_extent(xy, vs, yaw)
    cylc = (kind == CYL)[:, None]
    centre = torch.where(cylc, cc, bc)
    size = torch.where(cylc, (2 * cr)[:, None].expand(-1, 2), bs)
    yaw = torch.where(kind == CYL, torch.zeros_like(yaw), yaw)
    resid = torch.where(kind == CYL, res_c, torch.minimum(res_r, res_c))
    sc = (kind == SPHERE)
    centre = torch.where(sc[:, None], cs[:, :2], centre)
    size = torch.where(sc[:, None], (2 * rs)[:, None].expand(-1, 2), size)
    yaw = torch.where(sc, torch.zeros_like(yaw), yaw)
    top = torch.where(sc, cs[:, 2] + rs, top)
    resid = torch.where(sc, es, resid)
    cont, inner = _container(Q, v, n, top, noise, centre, size, yaw, kind, camera, p)
    return torch.cat([kind[:, None].to(Q.dtype), centre, size, yaw[:, None], top[:, None],
                      low[:, None], cont[:, None].to(Q.dtype), inner[:, None], cs,
                      resid[:, None]], 1)


def fits_from_table(table: np.ndarray, other_points, params: ShapeParams,
                    camera: np.ndarray) -> list[ShapeFit]:
    """The :class:`ShapeFit` of each row of :func:`fit_table`'s host copy. ``other_points(k)``
    gives row k's (subsampled xy (M, 2), points Q (N, 3), noise) for an "other" row: its yaw is
    the minimum-area rectangle's (OpenCV, host), its extent and container follow from it."""
    fits = []
    for k, row in enumerate(table):
        f = _to_fit(row)
        if f.shape == "other":
            xy, Q, noise = other_points(k)
            f.yaw = rect_from_points(xy)[2]
            f.center_uv, f.size_uv = _box_extent(xy, f.yaw)
            f.container, f.inner_depth = False, 0.0
            _container_np(Q, f, noise, params, camera)
        fits.append(f)
    return fits


def outline_points(Q: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The subsample ``Q[::n // 600 + 1]`` of :func:`fit_shape` (K, 600, 3) and its counts."""
    return take_strided(Q, n, torch.div(n, 600, rounding_mode="floor") + 1, 600)


def _to_fit(row: np.ndarray) -> ShapeFit:
    kind = int(row[0])
    f = ShapeFit(shape=_NAMES[kind], center_uv=row[1:3].copy(), size_uv=row[3:5].copy(),
                 yaw=float(row[5]), top=float(row[6]), low=float(row[7]),
                 container=bool(row[8] > 0.5), inner_depth=float(row[9]),
                 residual=float(row[13]))
    if kind == SPHERE:
        f.sphere_center = row[10:13].copy()
    return f
