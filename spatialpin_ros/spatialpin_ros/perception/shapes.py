"""Stage 3 of geometric perception: a shape for each object, with its hidden back completed.

Works in the support-plane frame (u, v along the plane, h above it; metres). From the object's
visible points:

* **cylinder** (cans, bottles, mugs): the side wall's points lie on a circle seen from above;
  the circle (centre and radius from the visible wall, by a robust geometric fit) completes
  the hidden back by symmetry;
* **box**: the outline hugs a rectangle (L-shape fit of the yaw, extents from the points);
* **sphere**: only when the points fit a sphere better than anything else, and it is round;
* **other** (fruit, tools, a laptop): neither fits; a tight gravity-aligned box.

A **container** (bowl, cup, mug, tray) is open at the top: inside its rim the surface seen from
above lies well below the rim. Its ``inner_depth`` is the rim's height above that inner
surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.geometry import (column_means, extent, fit_rectangle_yaw, quantile,
                                          quantiles, rect_from_points, rms, robust_circle,
                                          share, sphere_fit)


@dataclass
class ShapeParams:
    """Shape fitting (metres)."""

    #: Height band below the top whose points count as the top.
    top_band: float = 0.01
    #: A fit is good when its RMS error is below max(fit_abs, fit_rel * the object's size).
    fit_abs: float = 0.004
    fit_rel: float = 0.12
    #: Sides within this of an L-shape (RMS, metres, or 1.5 sigma of depth noise) are flat
    #: faces: a box, however well a circle also fits.
    flat_face: float = 0.0012
    #: A circle must beat the rectangle by this factor to make a cylinder.
    circle_margin: float = 0.75
    #: A round outline makes a sphere when the sphere fits this much better than an upright
    #: cylinder with a flat top (RMS residuals).
    sphere_margin: float = 0.6
    #: ... and the object's footprint spans at least this many times the sphere's radius (a
    #: ball seen from above spans its diameter across the line of sight; a bottle's upright
    #: wall fits a sphere far wider than the bottle).
    ball_width: float = 1.0
    #: Container: seen through the plane of the rim, inside it (the footprint shrunk by
    #: ``rim_shrink``), at least ``inner_share`` of the points lie ``min_inner_depth`` (or
    #: ``inner_depth_rel`` of the height) below the rim.
    rim_shrink: float = 0.15
    inner_share: float = 0.03
    min_inner_depth: float = 0.006
    inner_depth_rel: float = 0.3
    #: A dish's footprint: short side at least this share of the long side (``_dish``).
    dish_compact: float = 0.6
    #: No cylinder whose diameter exceeds this many times the diagonal of its top face's
    #: extents (one flat face of a box fits a circle of any size; a can's top is as wide).
    top_circle_ratio: float = 1.25
    #: A top face (at least ``corner_min_points`` points) with more than ``corner_share`` of
    #: its points in the corners of its rectangle (beyond ``corner`` of the half-extents along
    #: both axes) is a box's, not a can's or a ball's disc; corner_share 0 turns it off.
    corner: float = 0.7
    corner_share: float = 0.06
    corner_min_points: int = 40


@dataclass
class ShapeFit:
    """An object's fit in the plane frame: footprint centre ``center_uv`` (2,), extents
    ``size_uv`` (2,) along its yaw-rotated axes, ``yaw`` (radians about the plane normal),
    ``top`` and ``bottom`` heights above the plane (metres), ``low`` its lowest visible point.
    ``residual``: RMS distance of the outline to the chosen shape (metres)."""

    shape: str = "box"
    center_uv: np.ndarray = field(default_factory=lambda: np.zeros(2))
    size_uv: np.ndarray = field(default_factory=lambda: np.zeros(2))
    yaw: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    low: float = 0.0
    container: bool = False
    inner_depth: float = 0.0
    #: Too low for a container, but its top is a rim around a lower middle (a plate): a dish,
    #: not a flat thing lying on the support (``_container``).
    dish: bool = False
    sphere_center: Optional[np.ndarray] = None
    residual: float = 0.0
    support: Optional[int] = None
    #: :meth:`rect`'s last corners and the footprint they were made for
    _rect: Optional[tuple] = field(default=None, repr=False, compare=False)

    def rect(self) -> np.ndarray:
        """The footprint's 4 corners (4, 2; read-only: made once per footprint)."""
        key = (self.center_uv.tobytes(), self.size_uv.tobytes(), self.yaw)
        if self._rect is None or self._rect[0] != key:
            c, s = math.cos(self.yaw), math.sin(self.yaw)
            hx, hy = self.size_uv / 2
            local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
            corners = local @ np.array([[c, s], [-s, c]]) + self.center_uv
            corners.flags.writeable = False
            self._rect = (key, corners)
        return self._rect[1]


def _box_extent(xy: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(yaw), math.sin(yaw)
    axes = np.array([[c, s], [-s, c]])
    loc = xy @ axes.T
    (lo0, hi0), (lo1, hi1) = quantiles(loc[:, 0], (0.01, 0.99)), quantiles(loc[:, 1], (0.01, 0.99))
    lo, hi = np.array([lo0, lo1]), np.array([hi0, hi1])
    return ((lo + hi) / 2) @ axes, np.maximum(hi - lo, 0.004)


def fit_shape(Q: np.ndarray, noise: float, params: ShapeParams,
              camera: Optional[np.ndarray] = None) -> ShapeFit:
    """Fit one object's plane-frame points ``Q`` (N, 3; N >= 10). ``noise``: the depth noise
    (metres) at the object's distance; ``camera``: the camera centre in the plane frame (a
    sphere is only fitted to a surface that bulges toward it, not to a bowl's inside)."""
    p = params
    f = ShapeFit()
    h = Q[:, 2]
    f.top, f.low = quantiles(h, (0.98, 0.02))
    Qs = Q[:: len(Q) // 600 + 1]
    xy, hs = Qs[:, :2], Qs[:, 2]
    side = xy[hs < f.top - max(p.top_band, 2 * noise)]
    outline = side if len(side) >= 20 else xy
    outline = outline[:: len(outline) // 250 + 1]
    top = xy[hs >= f.top - max(p.top_band, 2 * noise)]
    size0 = extent(xy)
    tol = max(p.fit_abs, p.fit_rel * min(size0, max(f.top, 0.01)))

    # rectangle: yaw by L-shape fit of the outline, extents from all points
    yaw, res_r, res_flat = fit_rectangle_yaw(outline, d0=max(0.0015, 1.5 * noise), robust=True)
    # the sides seen are flat faces (judged without the few outline points beyond the edges)
    flat_sides = res_flat < max(p.flat_face, 1.5 * noise)
    # flat faces rule out a cylinder and a ball: no circle to fit
    circ = None if flat_sides else robust_circle(outline, 0.002 + 2 * noise, span=size0)
    res_c = circ[2] if circ is not None else np.inf
    if circ is not None:
        # a cylinder's points lie inside its circle, and the circle is not much bigger
        rr = np.hypot(xy[:, 0] - circ[0][0], xy[:, 1] - circ[0][1])
        if share(rr < circ[1] + 0.004 + 2 * noise) < 0.9 or 2 * circ[1] > 1.6 * size0 + 0.01:
            res_c = np.inf
        elif _top_narrower(top, circ[1], noise, ratio=p.top_circle_ratio):
            res_c = np.inf
    shape = "box"
    # a top face with corners (along the sides' yaw) is a box's, whatever fits the sides
    square_top = _square_top(top, yaw, p)
    if res_c < tol and res_c < p.circle_margin * res_r and not (flat_sides or square_top):
        shape = "cylinder"
    elif res_r > tol and res_c > tol and not flat_sides:   # flat faces make a box
        shape = "other"
    if not (flat_sides or square_top) and len(Q) >= 30:   # a ball's outline is a circle too
        if _ball(Q, f, noise, size0, camera, circ if shape == "cylinder" else None, p):
            shape = "sphere"
    if shape == "cylinder":
        f.center_uv, f.size_uv, f.yaw = np.asarray(circ[0], float), np.array([2 * circ[1]] * 2), 0.0
        f.residual = float(res_c)
    elif shape in ("box", "other"):
        if shape == "other":                      # a tight gravity-aligned box
            yaw = rect_from_points(xy)[2]
        f.center_uv, f.size_uv = _box_extent(xy, yaw)
        f.yaw, f.residual = yaw, float(min(res_r, res_c))
    f.shape = shape
    if shape != "sphere":
        _container(Q, f, noise, p, camera)
    return f


def _ball(Q: np.ndarray, f: ShapeFit, noise: float, size0: float,
          camera: Optional[np.ndarray], circ, p: ShapeParams) -> bool:
    """Whether the points ``Q`` are a ball's (a convex cap toward the camera, resting on the
    plane, as tall as wide, its footprint ``size0`` as wide as the ball); if so ``f`` gets its
    centre, size, top and residual. ``circ``: the cylinder it must fit better than
    (``sphere_margin``), or None."""
    Qs = Q[:: max(1, len(Q) // 600)]
    cs, rs, es = sphere_fit(Qs)
    # the scalar tests first: the convex test and the cylinder's residual take all points
    if not (0.02 < rs < 0.15 and es < max(0.003, 0.08 * rs) + noise
            and abs(cs[2] - rs) < 0.02 and f.top < 2.4 * rs and size0 < 2.3 * rs
            and size0 > p.ball_width * rs
            and (camera is None or share(np.einsum("ij,ij->i", Q - cs, camera - Q) > 0) > 0.8)
            and (circ is None or _fits_better(es, _cylinder_residual(
                Qs, circ[0], circ[1], f.top), noise, p.sphere_margin))):
        return False
    f.sphere_center = cs
    f.center_uv, f.size_uv, f.yaw = cs[:2].copy(), np.array([2 * rs] * 2), 0.0
    f.top, f.residual = float(cs[2] + rs), es
    return True


def _fits_better(res: float, other: float, noise: float, margin: float) -> bool:
    """Whether a fit of RMS residual ``res`` beats one of ``other`` by ``margin``, comparing
    what the models leave beyond the depth noise ``noise`` (all metres): with noise each
    residual is about sqrt(noise^2 + misfit^2), and the misfits are what tell the shapes
    apart."""
    n2 = noise * noise
    return max(res * res - n2, 0.0) < margin * margin * max(other * other - n2, 0.0)


def _square_top(top: np.ndarray, yaw: float, p: ShapeParams) -> bool:
    """The top face ``top`` (N, 2 plane-frame points) fills the corners of its rectangle along
    ``yaw``: a box's top. Scaled to that rectangle (robust extents: 2-98 % quantiles) as
    [-1, 1]^2, a filled rectangle has about 11 % of its points where both |u| and |v| exceed
    ``corner`` = 0.7, a disc (a can's or a ball's top) about 3 %. The share must exceed
    ``corner_share`` by two binomial standard deviations: a ball's small top cap or a can's
    partly hidden top of a few dozen points fills corners by chance. The torch lifting
    computes the same (``lift_fits_torch._square_top_t``)."""
    if p.corner_share <= 0 or len(top) < p.corner_min_points:
        return False
    c, s = math.cos(yaw), math.sin(yaw)
    u, v = top[:, 0] * c + top[:, 1] * s, top[:, 1] * c - top[:, 0] * s
    (lu, hu), (lv, hv) = quantiles(u, (0.02, 0.98)), quantiles(v, (0.02, 0.98))
    if hu - lu <= 1e-6 or hv - lv <= 1e-6:
        return False
    un = np.abs(2 * u - lu - hu) > p.corner * (hu - lu)
    vn = np.abs(2 * v - lv - hv) > p.corner * (hv - lv)
    corners, q = share(un & vn), p.corner_share
    return corners > q + 2 * math.sqrt(q * (1 - q) / len(top))


def _top_narrower(top: np.ndarray, radius: float, noise: float, ratio: float = 1.25,
                  min_points: int = 20) -> bool:
    """The object's top face, seen from above, is much smaller than the circle fitted to its
    sides: a cylinder's top is a disc as wide as the circle (the diagonal of what is seen of
    it at least as long as the diameter, even when part is hidden), while one flat face of a
    box fits a circle of any size. ``top``: the top band's points (N, 2); their robust extents
    (3-97 % nearest-rank quantiles) along their principal axes. The torch lifting computes the
    same (``lift_fits_torch._top_narrower_t``)."""
    if len(top) < min_points:
        return False
    d = top - column_means(top)
    cxx, cyy, cxy = (d[:, 0] ** 2).mean(), (d[:, 1] ** 2).mean(), (d[:, 0] * d[:, 1]).mean()
    a = 0.5 * math.atan2(2 * cxy, cxx - cyy)
    c, s = math.cos(a), math.sin(a)
    u, v = d[:, 0] * c + d[:, 1] * s, d[:, 1] * c - d[:, 0] * s
    (lu, hu), (lv, hv) = quantiles(u, (0.03, 0.97)), quantiles(v, (0.03, 0.97))
    ext = (hu - lu, hv - lv)
    return 2 * radius > ratio * math.hypot(*ext) + 0.005 + 2 * noise


def _cylinder_residual(Q: np.ndarray, centre, radius: float, top: float) -> float:
    """RMS distance (metres) of points ``Q`` (N, 3) to an upright cylinder's side or flat top:
    small for a can, about a tenth of the radius for a ball (whose top is curved)."""
    rho = np.hypot(Q[:, 0] - centre[0], Q[:, 1] - centre[1])
    d = np.minimum(np.abs(rho - radius), np.abs(Q[:, 2] - top))
    return rms(d)


def _container(Q: np.ndarray, f: ShapeFit, noise: float, p: ShapeParams,
               camera: Optional[np.ndarray]) -> None:
    """Set ``container`` and ``inner_depth`` when the object is open at the top: its top is a
    rim (:func:`_rim_only`), and the camera sees through the plane of the rim, inside it (the
    footprint shrunk by ``rim_shrink``), surface well below it (the far inner wall or the
    bottom). A solid top would hide it.
    ``inner_depth``: rim height minus the deepest such point (a lower bound when the inner
    bottom is hidden). An object under 2 cm high is no container; its top is a rim (a plate's)
    sets ``dish``."""
    height = f.top
    if camera is None or camera[2] <= f.top + 0.01:
        return
    if height < 0.02:                     # too low to hold much: a plate is a dish
        f.dish = _dish(Q, f, noise, p)
        return
    drop = max(p.min_inner_depth, p.inner_depth_rel * height, 4 * noise)
    below = Q[Q[:, 2] < f.top - drop]
    if len(below) < 10:
        return
    t = (f.top - camera[2]) / (below[:, 2] - camera[2])    # where the ray crosses the rim plane
    x = camera[:2] + t[:, None] * (below[:, :2] - camera[:2])
    c, s = math.cos(f.yaw), math.sin(f.yaw)
    loc = (x - f.center_uv) @ np.array([[c, s], [-s, c]]).T
    half = f.size_uv / 2 * (1 - p.rim_shrink)
    if f.shape == "cylinder":
        inside = np.hypot(loc[:, 0], loc[:, 1]) < half[0]
    else:
        inside = (np.abs(loc[:, 0]) < half[0]) & (np.abs(loc[:, 1]) < half[1])
    through = below[inside & (t > 0) & (t < 1)]
    if len(through) < max(10, p.inner_share * len(Q)) or not _rim_only(Q, f, noise):
        return
    f.container = True
    f.inner_depth = float(f.top - quantile(through[:, 2], 0.05))


def _dish(Q: np.ndarray, f: ShapeFit, noise: float, p: ShapeParams) -> bool:
    """A low object is a dish (a plate): its footprint is compact (its short side at least
    ``dish_compact`` of its long side), its top a rim (:func:`_rim_only`), and its middle (within
    0.6 of its half-size) is seen, ``min_inner_depth`` or more below its top: a flat thing
    (paper, a phone, a board) has a solid top, a pen or a strip is long and narrow."""
    if min(f.size_uv) < p.dish_compact * max(f.size_uv) or not _rim_only(Q, f, noise):
        return False
    c, s = math.cos(f.yaw), math.sin(f.yaw)
    loc = (Q[:, :2] - f.center_uv) @ np.array([[c, s], [-s, c]]).T
    mid = np.max(np.abs(loc) / np.maximum(f.size_uv / 2, 1e-3), axis=1) < 0.6
    return bool(mid.sum() >= 10 and quantile(Q[mid, 2], 0.5) < f.top - p.min_inner_depth)


def _rim_only(Q: np.ndarray, f: ShapeFit, noise: float, centre: float = 0.6,
              max_share: float = 0.1) -> bool:
    """True when the points at the top height form a rim: almost none of them (``max_share``)
    lie in the middle of the footprint (within ``centre`` of its half-size). A solid top, or the
    cap of a ball, fills the middle."""
    band = Q[Q[:, 2] > f.top - max(0.01, 3 * noise)]
    if len(band) < 8:
        return False
    c, s = math.cos(f.yaw), math.sin(f.yaw)
    loc = (band[:, :2] - f.center_uv) @ np.array([[c, s], [-s, c]]).T
    half = np.maximum(f.size_uv / 2, 1e-3)
    if f.shape == "cylinder":
        r = np.hypot(loc[:, 0], loc[:, 1]) / half[0]
    else:
        r = np.max(np.abs(loc) / half, axis=1)
    return bool(share(r < centre) <= max_share)


def resolve_support(fits: list[ShapeFit], tol: float = 0.02,
                    only: Optional[set[int]] = None, sink: float = 0.01) -> None:
    """Each object rests on the table or on the object under it: set ``bottom`` and
    ``support``. A base's top is within ``tol`` of the object's lowest visible point, and not
    more than ``sink`` above it (an object whose visible side reaches well below a neighbour's
    top stands beside it, not on it). ``only``: resolve just these (floating) objects, and
    accept a base whose top is above their lowest visible point (part of the base was taken for
    theirs), and a box base's footprint completed on its hidden side (:func:`_completed_rect`:
    a base seen from one face is fitted as thin as that face, and what stands on it stands
    mostly over its hidden part)."""
    order = sorted(range(len(fits)), key=lambda i: fits[i].top)
    completed = None if only is None else [_completed_rect(b) for b in fits]
    for i in order:
        f = fits[i]
        if only is not None and i not in only:
            continue
        f.bottom = 0.0
        if f.shape == "sphere" or (only is None and f.low < 0.015):
            continue
        best, best_gap = None, None
        for j in order:
            b = fits[j]
            if j == i or b.top > f.top - (0.005 if only is None else 0.02):
                continue
            gap = abs(f.low - b.top) if only is None else max(f.low - b.top, 0.0)
            if gap > tol or (only is None and f.low < b.top - sink):
                continue
            base = b.rect() if completed is None else completed[j]
            inter = cv2.intersectConvexConvex(
                (base * 1000).astype(np.float32).reshape(-1, 1, 2),
                (f.rect() * 1000).astype(np.float32).reshape(-1, 1, 2))[0]
            area = min(f.size_uv[0] * f.size_uv[1], b.size_uv[0] * b.size_uv[1]) * 1e6
            if inter > 0.3 * area and (best_gap is None or gap < best_gap):
                best, best_gap = j, gap
        if best is not None:
            f.support = best
            f.bottom = fits[best].top


def _base_axes(b: ShapeFit) -> np.ndarray:
    """(2, 2): the rows are the footprint's x and y axes (plane frame)."""
    c, s = math.cos(b.yaw), math.sin(b.yaw)
    return np.array([[c, s], [-s, c]])


def _completed_rect(b: ShapeFit) -> np.ndarray:
    """The footprint (4, 2) of a box (or ``other``) base completed on its hidden side: a box
    seen from one face is fitted as thin as that face; its unseen depth, away from the camera
    (whose foot is the plane frame's origin), is taken as deep as its longest seen side. Other
    shapes keep their footprint (a cylinder's circle is whole)."""
    if b.shape not in ("box", "other"):
        return b.rect()
    axes = _base_axes(b)
    lo, hi = -b.size_uv / 2, b.size_uv / 2
    full = float(max(b.size_uv))
    far = axes @ b.center_uv >= 0               # per axis: its + side faces away from the camera
    lo, hi = np.where(far, lo, hi - full), np.where(far, lo + full, hi)
    local = np.array([[hi[0], hi[1]], [lo[0], hi[1]], [lo[0], lo[1]], [hi[0], lo[1]]])
    return local @ axes + b.center_uv


def carry_stacked(fits: list[ShapeFit], margin: float = 0.0) -> None:
    """A base holds up what stands on it. A box (or ``other``) base seen from one face only is
    fitted as thin as that face, and the object stacked on it then stands mostly beyond it,
    over the base's hidden part. Where the stacked object's footprint centre lies outside its
    base's footprint, the base's footprint grows on its far side (away from the camera, whose
    foot is the plane frame's origin) to take the whole stacked footprint (``margin`` metres
    more). Seen sides never move; a base that holds its load is unchanged."""
    for f in fits:
        if f.support is None:
            continue
        b = fits[f.support]
        if b.shape not in ("box", "other"):
            continue
        axes = _base_axes(b)
        half = b.size_uv / 2
        centre = axes @ (f.center_uv - b.center_uv)
        if np.all(np.abs(centre) <= half):
            continue
        load = f.rect() @ axes.T - axes @ b.center_uv  # stacked corners in the base's axes
        lo, hi = -half.copy(), half.copy()
        away = axes @ b.center_uv                       # from the camera's foot, outward
        for k in range(2):
            if away[k] >= 0:
                hi[k] = max(hi[k], float(load[:, k].max()) + margin)
            else:
                lo[k] = min(lo[k], float(load[:, k].min()) - margin)
        b.center_uv = b.center_uv + axes.T @ ((lo + hi) / 2)
        b.size_uv = hi - lo
