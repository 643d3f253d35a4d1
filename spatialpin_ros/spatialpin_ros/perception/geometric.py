"""The geometric perception backend: RGB-D frame -> 3D object priors, no learned models, CPU only.

Pipeline (one frame; image-sized work is vectorised numpy / OpenCV, per-object work is a
handful of small array operations):

1. **Support plane.** Depth is back-projected on a sparse pixel grid and transformed to the world
   frame with the frame's camera pose; RANSAC (hypotheses scored together, normals within
   ``max_plane_tilt_deg`` of gravity) finds the table, refined by least squares. The table's
   residuals give the depth-noise level sigma(z) = k z^2 and its pixels give the table's colour.
   Grid points above the plane give the image region that holds objects.
2. **Surface patches.** In that region, pixels above the plane (above max(``min_height``,
   3.5 sigma(z)) when table-coloured, above -1 cm otherwise) inside the workspace, plus pixels
   with missing depth next to them that are not table-coloured, become nodes of a 4-neighbour
   graph. Neighbours are joined when their chromaticity and brightness agree and their depths do
   not jump: each connected component is one flatly shaded face or one smoothly shaded curved
   surface of one object.
3. **Objects.** Adjacent patches of the same chromaticity are merged when their geometry says
   they belong to one convex object: a side face hanging below a horizontal top face and
   reaching up to it (a patch rising above a top is a stacked object), two planar faces meeting
   in a convex edge, or a smooth continuation of similar brightness. Fragments of one colour
   that border a common object (an occluder in front, or an object standing on them) are
   joined when their union is object-sized. Stacked and touching objects stay apart through
   colour, depth jumps and these height layers.
4. **Primitive fits that complete the unseen back and bottom.** The top face's pixels (all of
   them, also where depth is missing) are intersected with the fitted top plane along their
   pixel-corner rays, which removes depth noise and gives the top's exact outline. The shape is
   chosen by model fit: a rectangular top, or flat side faces, make a box; an outline that a
   circle fits better than a rectangle (and that contains the top) a cylinder; points that a
   sphere fits better than both a sphere. Boxes: yaw from the top outline or from the side
   faces (L-shape fit), edges from the top outline and robust positions of the visible side
   faces. Cylinders: geometric circle fit to the side wall and the top's rim. Spheres:
   least-squares sphere. Every object extends down to what it rests on: the table, or
   the top of the object under it (found from heights and overlapping footprints); a base's
   footprint grows to contain what stands on it.
5. **Attributes and ids.** Colour name from the lit part's colour (shading-tolerant), coarse
   shape, SpatialPIN's named local axes as the viewer sees them, a label ("tall blue cylinder"),
   roi, point count, confidence; a small tracker keeps ids ("obj_0", ...) stable across frames.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial.transform import Rotation

from spatialpin_ros.core import colors as _colors
from spatialpin_ros.core.colors import nearest_color_name
from spatialpin_ros.core.errors import ImageError, PerceptionError
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, RGBDFrame, Scene
from spatialpin_ros.perception.base import (DepthEstimator, ObjectNamer, PerceptionBackend,
                                            Segmentation, Segmenter)

#: SpatialPIN's direction names, in the order used for ties.
DIRECTION_NAMES = ("up", "down", "left", "right", "front", "back", "front-left", "front-right",
                   "back-left", "back-right")


@dataclass
class GeometricParams:
    """Tuning of :class:`GeometricBackend` (metres, pixels, degrees)."""

    #: Object points must rise this far above the support plane (more where depth is noisy).
    min_height: float = 0.0045
    #: Ignore points higher than this above the plane (arms, people).
    max_height: float = 0.40
    #: Workspace in the world frame (x, y bounds, metres); points outside are ignored (the
    #: simulator's robot stands at x < 0.1). None disables a bound, e.g. when perceiving in a
    #: frame built from the support plane rather than the robot's world frame.
    workspace_x: Optional[tuple[float, float]] = (0.15, 1.20)
    workspace_y: Optional[tuple[float, float]] = (-0.60, 0.60)
    #: Support plane: RANSAC hypotheses, inlier distance, pixel stride of the sample grid,
    #: largest tilt of its normal from world z.
    ransac_iterations: int = 64
    plane_inlier: float = 0.006
    plane_stride: int = 8
    max_plane_tilt_deg: float = 25.0
    #: Neighbouring pixels join one patch when chromaticity differs by less than ``chroma_tol``,
    #: brightness by a factor below ``brightness_ratio`` and depth by less than
    #: ``depth_jump + depth_jump_rel * z``.
    chroma_tol: float = 0.03
    brightness_ratio: float = 1.15
    depth_jump: float = 0.02
    depth_jump_rel: float = 0.02
    #: Adjacent patches of one chromaticity with no geometric evidence either way join when
    #: their brightness differs by less than this factor (faces of one object under one light).
    merge_brightness_ratio: float = 1.8
    #: Smallest object kept: pixels, valid depth points, height above its support.
    min_object_pixels: int = 60
    min_object_points: int = 25
    min_object_height: float = 0.008
    #: Fragments of one colour on both sides of an occluder join when the union is smaller.
    max_object_size: float = 0.16
    #: Tracker: largest centre distance (m) to keep an id, frames an unseen id is remembered.
    track_gate: float = 0.06
    track_memory: int = 30
    #: Depth pixels that must be valid in a frame.
    min_valid_pixels: int = 500


# ---------------------------------------------------------------------------------------------
# Geometry helpers (small, vectorised)


def _q(a: np.ndarray, q: float) -> float:
    """The ``q``-quantile (0..1, nearest rank) of a 1-D array, via partial sort (much cheaper
    than np.percentile on small arrays)."""
    n = len(a)
    k = min(max(int(round(q * (n - 1))), 0), n - 1)
    return float(np.partition(a, k)[k])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v


def _dot3(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """P (N, 3) . n (3,) without BLAS (avoids thread start-up for small products)."""
    return P[:, 0] * n[0] + P[:, 1] * n[1] + P[:, 2] * n[2]


def _plane_from_points(Q: np.ndarray, up: np.ndarray) -> np.ndarray:
    cen = Q.mean(axis=0)
    D = Q - cen
    cov = np.einsum("ni,nj->ij", D, D)
    w, v = np.linalg.eigh(cov)
    nv = v[:, 0] if v[:, 0] @ up > 0 else -v[:, 0]
    return np.append(nv, -nv @ cen)


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
    up = _unit(np.asarray(up, dtype=float))
    idx = rng.integers(0, n, size=(iterations, 3))
    a, b, c = P[idx[:, 0]], P[idx[:, 1]], P[idx[:, 2]]
    nrm = np.cross(b - a, c - a)
    norm = np.linalg.norm(nrm, axis=1)
    ok = norm > 1e-12
    nrm[ok] /= norm[ok, None]
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
        inl = np.abs(_dot3(P, plane[:3]) + plane[3]) < inlier
        if inl.sum() < 3:
            break
        plane = _plane_from_points(P[inl], up)
    inl = np.abs(_dot3(P, plane[:3]) + plane[3]) < inlier
    if inl.sum() < max(30, 0.05 * n):
        raise PerceptionError(f"no support plane: the best plane has only {int(inl.sum())} of "
                              f"{n} sampled points")
    return plane, inl


def _circle_fit(xy: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Algebraic (Kasa) least-squares circle: centre (2,), radius, RMS radial residual."""
    x, y = xy[:, 0], xy[:, 1]
    A = np.stack([2 * x, 2 * y, np.ones_like(x)], axis=1)
    b = x * x + y * y
    try:
        sol = np.linalg.solve(A.T @ A, A.T @ b)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
    c = sol[:2]
    r = math.sqrt(max(sol[2] + c @ c, 1e-12))
    res = np.hypot(x - c[0], y - c[1]) - r
    return c, r, float(np.sqrt(np.mean(res * res)))


def _circle_fit_geometric(xy: np.ndarray, iterations: int = 5) -> tuple[np.ndarray, float, float]:
    """Geometric least-squares circle (Gauss-Newton from the algebraic fit): centre, radius,
    RMS residual."""
    mu = xy.mean(axis=0)
    q = xy - mu
    c, r, _ = _circle_fit(q)
    for _ in range(iterations):
        d = q - c
        rho = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        res = rho - r
        J = np.stack([-d[:, 0] / rho, -d[:, 1] / rho, -np.ones_like(rho)], axis=1)
        try:
            step = np.linalg.solve(J.T @ J, -(J.T @ res))
        except np.linalg.LinAlgError:
            break
        c = c + step[:2]
        r = r + step[2]
        if np.abs(step).max() < 2e-5:
            break
    res = np.hypot(q[:, 0] - c[0], q[:, 1] - c[1]) - r
    return c + mu, abs(float(r)), float(np.sqrt(np.mean(res * res)))


def _sphere_fit(P: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere: centre (3,), radius, RMS residual."""
    mu = P.mean(axis=0)
    Q = P - mu
    A = np.concatenate([2 * Q, np.ones((len(Q), 1))], axis=1)
    b = (Q * Q).sum(axis=1)
    try:
        sol = np.linalg.solve(A.T @ A, A.T @ b)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
    c = sol[:3]
    r = math.sqrt(max(sol[3] + c @ c, 1e-12))
    res = np.linalg.norm(Q - c, axis=1) - r
    return c + mu, r, float(np.sqrt(np.mean(res * res)))


_YAW_GRID = np.radians(np.arange(0.0, 90.0, 1.5))
_YAW_COS, _YAW_SIN = np.cos(_YAW_GRID), np.sin(_YAW_GRID)


def fit_rectangle_yaw(xy: np.ndarray, d0: float = 0.004, max_points: int = 160
                      ) -> tuple[float, float]:
    """Yaw of the rectangle whose edges the points hug (L-shape fitting with the closeness
    criterion of Zhang et al., "Efficient L-shape fitting for vehicle detection using laser
    scanners", 2017), searched over 0..90 degrees and refined; returns (yaw, RMS distance of the
    points to the nearest edge)."""
    if len(xy) > max_points:
        xy = xy[np.linspace(0, len(xy) - 1, max_points).astype(int)]
    xy = xy - xy.mean(axis=0)
    x, y = xy[:, 0:1], xy[:, 1:2]

    def scores(cs, sn):
        c1 = x * cs + y * sn
        c2 = y * cs - x * sn
        d1 = np.minimum(c1.max(axis=0) - c1, c1 - c1.min(axis=0))
        d2 = np.minimum(c2.max(axis=0) - c2, c2 - c2.min(axis=0))
        d = np.minimum(d1, d2)
        return (1.0 / np.maximum(d, d0)).sum(axis=0), d

    sc, _ = scores(_YAW_COS, _YAW_SIN)
    best = _YAW_GRID[int(np.argmax(sc))]
    fine = best + np.radians(np.arange(-1.5, 1.51, 0.25))
    sc, d = scores(np.cos(fine), np.sin(fine))
    k = int(np.argmax(sc))
    return float(fine[k]), float(np.sqrt(np.mean(d[:, k] ** 2)))


def _densify(poly: Optional[np.ndarray], step: float) -> np.ndarray:
    """Points every ``step`` metres along a closed polygon's edges (K, 2)."""
    if poly is None or len(poly) == 0:
        return np.zeros((0, 2))
    a = poly
    b = np.roll(poly, -1, axis=0)
    n = np.maximum(np.ceil(np.hypot(*(b - a).T) / step).astype(int), 1)
    k = np.repeat(np.arange(len(a)), n)
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return a[k] + (b[k] - a[k]) * frac[:, None]


def _robust_circle(xy: np.ndarray, inside_tol: float):
    """Circle through the outer points: a geometric fit, then a refit without the points lying
    more than ``inside_tol`` inside (occlusion chords, top-face interiors). Returns (centre,
    radius, RMS residual of the kept points) or None."""
    if len(xy) < 8:
        return None
    c, r, _ = _circle_fit_geometric(xy)
    d = np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1]) - r
    keep = d > -inside_tol
    if keep.sum() >= 8 and not keep.all():
        c, r, res = _circle_fit_geometric(xy[keep])
    else:
        res = float(np.sqrt(np.mean(d * d)))
    span = float(np.ptp(xy, axis=0).max())
    if not (0.005 < r < min(0.25, 0.75 * span + 0.002)):
        return None
    return c, r, res


def _rect_from_points(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
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


def shading_invariant_color_name(rgb: Sequence[float], max_gain: float = 1.8,
                                 gain_cost: float = 30.0) -> str:
    """Palette name of an observed colour that shading may have darkened: the colour is
    brightened by gains 1..``max_gain``; the gain whose result is nearest a palette colour
    (L*a*b* distance plus ``gain_cost`` per unit of gain above 1, so that no shading is
    preferred) is named with :func:`~spatialpin_ros.core.colors.nearest_color_name`."""
    key = tuple(int(round(float(v))) for v in np.asarray(rgb, dtype=float).reshape(3))
    return _shading_invariant_color_name(key, float(max_gain), float(gain_cost))


@functools.lru_cache(maxsize=4096)
def _shading_invariant_color_name(rgb: tuple, max_gain: float, gain_cost: float) -> str:
    rgb = np.asarray(rgb, dtype=float).reshape(3)
    gains = np.linspace(1.0, max_gain, 17)
    cand = np.clip(rgb[None, :] * gains[:, None], 0, 255)
    lab = _colors._to_lab(cand / 255.0)
    dist = np.linalg.norm(lab[:, None, :] - _colors._LAB[None, :, :], axis=2).min(axis=1)
    best = int(np.argmin(dist + gain_cost * (gains - 1.0)))
    return nearest_color_name(cand[best])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


# ---------------------------------------------------------------------------------------------
# Tracker


class ObjectTracker:
    """Keeps object ids stable across frames of one scene: each new object takes the id of the
    nearest remembered object (3D centre distance, plus ``color_penalty`` metres when colour
    names differ) within ``gate`` metres (Hungarian assignment); others get fresh ids
    ``obj_<n>``. Ids unseen for more than ``memory`` frames are forgotten."""

    def __init__(self, gate: float = 0.06, memory: int = 30, color_penalty: float = 0.03,
                 prefix: str = "obj_"):
        self.gate, self.memory = gate, memory
        self.color_penalty, self.prefix = color_penalty, prefix
        self.reset()

    def reset(self) -> None:
        self._tracks: dict[str, dict] = {}
        self._next = 0

    def assign(self, objects: list[ObjectPrior]) -> list[ObjectPrior]:
        """Set each object's ``id`` in place (and return the list)."""
        ids = list(self._tracks)
        taken: dict[int, str] = {}
        if ids and objects:
            cen = np.array([o.center for o in objects])
            tc = np.array([self._tracks[k]["center"] for k in ids])
            cost = np.linalg.norm(cen[:, None, :] - tc[None, :, :], axis=2)
            col = np.array([[o.color_name != self._tracks[k]["color"] for k in ids]
                            for o in objects])
            cost = cost + self.color_penalty * col
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= self.gate:
                    taken[int(r)] = ids[int(c)]
        seen = set()
        for i, o in enumerate(objects):
            if i in taken:
                o.id = taken[i]
            else:
                o.id = f"{self.prefix}{self._next}"
                self._next += 1
            self._tracks[o.id] = {"center": o.center.copy(), "color": o.color_name, "missed": 0}
            seen.add(o.id)
        for k in list(self._tracks):
            if k not in seen:
                self._tracks[k]["missed"] += 1
                if self._tracks[k]["missed"] > self.memory:
                    del self._tracks[k]
        return objects


# ---------------------------------------------------------------------------------------------
# Per-frame working data


class _Ticker:
    """Milliseconds spent per named stage (for ``GeometricBackend.last['timing_ms']``)."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(1000 * (now - self.t), 2)
        self.t = now


@dataclass
class _Fit:
    """An object's fit in the plane frame (u, v along the plane, h above it)."""

    nodes: np.ndarray                      # node indices
    shape: str = "box"
    center_uv: np.ndarray = field(default_factory=lambda: np.zeros(2))
    size_uv: np.ndarray = field(default_factory=lambda: np.zeros(2))
    yaw: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    low: float = 0.0                        # lowest visible point
    sphere_center: Optional[np.ndarray] = None
    quality: float = 1.0
    num_points: int = 0
    rgb: tuple[int, int, int] = (0, 0, 0)
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    support: Optional[int] = None

    def rect(self) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hx, hy = self.size_uv / 2
        local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
        return local @ np.array([[c, s], [-s, c]]) + self.center_uv


@dataclass
class _Frame:
    """Per-frame arrays shared by the fitting steps (node = candidate pixel in the crop)."""

    rows: np.ndarray        # image row of each node
    cols: np.ndarray        # image column of each node
    P: np.ndarray           # (N, 3) plane-frame points (garbage where ~valid)
    valid: np.ndarray       # node has depth
    z: np.ndarray           # depth of each node (0 = missing)
    rgb: np.ndarray         # (N, 3) float colour
    lum: np.ndarray         # log brightness
    plab: np.ndarray        # patch label of each node
    pst: dict               # patch statistics
    C: np.ndarray           # camera centre, plane frame
    M: np.ndarray           # optical-frame ray -> plane-frame ray
    cam: CameraModel
    k_noise: float


class GeometricBackend(PerceptionBackend):
    """The default backend: support plane + colour/geometry segmentation + primitive fits.

    Optional pluggable parts: ``depth_estimator`` (used when the frame has no valid depth, or
    always with ``always_estimate_depth``), ``segmenter`` (its masks replace the built-in
    grouping of patches into objects), ``namer`` (its names replace the colour-and-shape
    labels). Other keyword arguments set :class:`GeometricParams` fields (ValueError for
    unknown ones).
    """

    name = "geometric"

    def __init__(self, params: Optional[GeometricParams] = None,
                 depth_estimator: Optional[DepthEstimator] = None,
                 segmenter: Optional[Segmenter] = None, namer: Optional[ObjectNamer] = None,
                 always_estimate_depth: bool = False, seed: int = 0, **overrides):
        self.params = params or GeometricParams()
        for k, v in overrides.items():
            if not hasattr(self.params, k):
                raise ValueError(f"unknown geometric backend parameter {k!r}; known: "
                                 f"{', '.join(sorted(vars(GeometricParams())))}")
            setattr(self.params, k, v)
        self.depth_estimator, self.segmenter, self.namer = depth_estimator, segmenter, namer
        self.always_estimate_depth = always_estimate_depth
        self.seed = seed
        self.tracker = ObjectTracker(gate=self.params.track_gate, memory=self.params.track_memory)
        self._ray_cache: dict = {}
        #: Internals of the last frame (plane, noise level, timings) for tests and debugging.
        self.last: dict = {}

    def reset(self) -> None:
        self.tracker.reset()

    def _in_workspace(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ok = np.ones(np.shape(x), dtype=bool)
        for v, b in ((x, self.params.workspace_x), (y, self.params.workspace_y)):
            if b is not None:
                ok &= (v > b[0]) & (v < b[1])
        return ok

    def _rays(self, cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        key = (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy)
        if key not in self._ray_cache:
            ru, rv = cam.pixel_rays()
            self._ray_cache = {key: (np.ascontiguousarray(ru), np.ascontiguousarray(rv))}
        return self._ray_cache[key]

    # -- main entry ----------------------------------------------------------------------------
    def perceive(self, frame: RGBDFrame, scene_id: str = "") -> Scene:
        p = self.params
        tick = _Ticker()
        cam, pose = frame.camera, frame.camera_pose
        if pose is None:
            raise PerceptionError("the frame has no camera pose: perception needs the camera's "
                                  "pose in the world frame (camera_pose)")
        rgb = frame.rgb
        depth = np.asarray(frame.depth)
        if depth.shape != (cam.height, cam.width):
            raise ImageError(f"depth {depth.shape} does not match the camera "
                             f"{cam.height}x{cam.width}")
        if self.depth_estimator is not None and (self.always_estimate_depth or not np.any(
                np.isfinite(depth) & (depth > 0))):
            depth = np.asarray(self.depth_estimator.estimate(rgb, cam), dtype=np.float32)
        if depth.dtype != np.float32:
            depth = depth.astype(np.float32)
        ru, rv = self._rays(cam)
        R = pose.rotation.as_matrix()
        t = pose.position

        # 1. support plane on a sparse grid ---------------------------------------------------
        s = p.plane_stride
        o = s // 2
        gd = depth[o::s, o::s]
        gsel = np.isfinite(gd) & (gd > 0)
        if np.count_nonzero(gsel) * s * s < p.min_valid_pixels:
            nvalid = int(np.count_nonzero(np.isfinite(depth) & (depth > 0)))
            if nvalid < p.min_valid_pixels:
                raise PerceptionError(
                    f"only {nvalid} of {depth.size} depth pixels are valid (finite and > 0); "
                    f"need at least {p.min_valid_pixels}: is the depth image empty, all NaN, or "
                    "not in metres?")
        grow, gcol = np.nonzero(gsel)
        grow, gcol = grow * s + o, gcol * s + o
        gz = gd[gsel].astype(np.float64)
        if len(gz) and _q(gz, 0.5) > 50.0:
            raise PerceptionError(f"depth must be in metres, but its median is {_q(gz, 0.5):.0f}: "
                                  "millimetres? (divide 16-bit depth by 1000)")
        gx = ru[grow, gcol] * gz
        gy = rv[grow, gcol] * gz
        Pg = np.stack([t[i] + R[i, 0] * gx + R[i, 1] * gy + R[i, 2] * gz for i in range(3)], 1)
        rng = np.random.default_rng(self.seed)
        plane, inl = fit_plane_ransac(Pg, rng, p.ransac_iterations, p.plane_inlier,
                                      max_tilt_deg=p.max_plane_tilt_deg)
        nrm, d = plane[:3], plane[3]
        hg = _dot3(Pg, nrm) + d
        k_noise = 1.4826 * _q(np.abs(hg[inl]) / gz[inl] ** 2, 0.5)
        # plane frame: e1 = world x projected on the plane, e3 = the normal
        e1 = _unit(np.array([1.0, 0, 0]) - nrm[0] * nrm)
        e2 = np.cross(nrm, e1)
        Rpl = np.stack([e1, e2, nrm], axis=1)
        origin = -d * nrm
        M = Rpl.T @ R                       # optical-frame ray -> plane-frame ray
        C = Rpl.T @ (t - origin)            # camera centre in the plane frame
        ti = np.flatnonzero(inl)[:: max(1, int(inl.sum()) // 600)]
        tchr, tchr_tol, tlum = self._colour_model(rgb[grow[ti], gcol[ti]].astype(np.float32))
        scene_kw = dict(camera=cam, camera_pose=pose, stamp=frame.stamp,
                        frame_id=frame.world_frame, support_plane=plane.astype(float))
        self.last = {"plane": plane.copy(), "noise_k": k_noise,
                     "num_plane_inliers": int(inl.sum())}

        # image region with objects, from the grid
        hmin_g = np.maximum(p.min_height, 3.5 * k_noise * gz * gz)
        geo_g = (hg > hmin_g) & (hg < p.max_height) & self._in_workspace(Pg[:, 0], Pg[:, 1])
        tick("plane")
        if not geo_g.any():
            self.last["timing_ms"] = tick.times
            return Scene(scene_id=scene_id, objects=self.tracker.assign([]), **scene_kw)
        m = s + 8
        r0, r1 = max(int(grow[geo_g].min()) - m, 0), min(int(grow[geo_g].max()) + m + 1, cam.height)
        c0, c1 = max(int(gcol[geo_g].min()) - m, 0), min(int(gcol[geo_g].max()) + m + 1, cam.width)
        crop = (slice(r0, r1), slice(c0, c1))

        # 2. candidate pixels in the crop --------------------------------------------------------
        dc = depth[crop]
        vc = np.isfinite(dc) & (dc > 0)
        zc = np.where(vc, dc, np.float32(0.0))
        ruc, rvc = ru[crop], rv[crop]
        Mf = M.astype(np.float32)
        hc = np.float32(C[2]) + zc * (Mf[2, 0] * ruc + Mf[2, 1] * rvc + Mf[2, 2])
        hmin = np.maximum(np.float32(p.min_height), np.float32(3.5 * k_noise) * zc * zc)
        geo = vc & (hc > hmin) & (hc < p.max_height)
        if p.workspace_x is not None or p.workspace_y is not None:
            Rf = R.astype(np.float32)
            xw = np.float32(t[0]) + zc * (Rf[0, 0] * ruc + Rf[0, 1] * rvc + Rf[0, 2])
            yw = np.float32(t[1]) + zc * (Rf[1, 0] * ruc + Rf[1, 1] * rvc + Rf[1, 2])
            ws = self._in_workspace(xw, yw)
            geo &= ws
        else:
            ws = np.ones_like(geo)
        rgbc = rgb[crop].astype(np.float32)
        ssum = rgbc[..., 0] + rgbc[..., 1] + rgbc[..., 2] + np.float32(24.0)
        cr = (rgbc[..., 0] + np.float32(8.0)) / ssum
        cg = (rgbc[..., 1] + np.float32(8.0)) / ssum
        lum = np.log(ssum)
        table_like = ((np.abs(cr - tchr[0]) < tchr_tol[0]) & (np.abs(cg - tchr[1]) < tchr_tol[1])
                      & (lum > tlum[0]) & (lum < tlum[1]))
        near = cv2.dilate(geo.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
        nodes = geo | (near & ~table_like & ((vc & ws & (hc > -0.01) & (hc < p.max_height)) | ~vc))
        tick("candidates")

        # 3. patches: connected components of similar neighbours ---------------------------------
        Hc, Wc = nodes.shape
        idx = np.full((Hc, Wc), -1, dtype=np.int32)
        nn = int(np.count_nonzero(nodes))
        idx[nodes] = np.arange(nn, dtype=np.int32)
        jump_c = np.float32(p.depth_jump) + np.float32(p.depth_jump_rel) * zc
        lr = np.float32(math.log(p.brightness_ratio))
        ctol = np.float32(p.chroma_tol)
        same_a, same_b, bnd = [], [], []
        for sa, sb in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
            both = nodes[sa] & nodes[sb]
            col = ((np.abs(cr[sa] - cr[sb]) < ctol) & (np.abs(cg[sa] - cg[sb]) < ctol)
                   & (np.abs(lum[sa] - lum[sb]) < lr))
            za, zb = zc[sa], zc[sb]
            brk = (za > 0) & (zb > 0) & (np.abs(za - zb) > jump_c[sa])
            same = both & col & ~brk
            same_a.append(idx[sa][same])
            same_b.append(idx[sb][same])
            diff = both & ~(col & ~brk)
            bnd.append((idx[sa][diff], idx[sb][diff], za[diff], zb[diff]))
        ea, eb = np.concatenate(same_a), np.concatenate(same_b)
        g = sp.csr_matrix((np.ones(len(ea), np.int8), (ea, eb)), shape=(nn, nn))
        npatch, plab = connected_components(g, directed=False)
        plab = plab.astype(np.int64)
        tick("components")

        nr, ncl = np.nonzero(nodes)
        nz = zc[nr, ncl]
        nvalid = nz > 0
        nru, nrv = ruc[nr, ncl], rvc[nr, ncl]
        P = np.stack([C[i] + nz * (M[i, 0] * nru + M[i, 1] * nrv + M[i, 2]) for i in range(3)],
                     axis=1)
        fr = _Frame(rows=nr + r0, cols=ncl + c0, P=P, valid=nvalid, z=nz, rgb=rgbc[nr, ncl],
                    lum=lum[nr, ncl], plab=plab, pst={}, C=C, M=M, cam=cam, k_noise=k_noise)
        fr.pst = self._patch_stats(plab, npatch, P, nvalid, cr[nr, ncl], cg[nr, ncl], fr.lum,
                                   k_noise, nz, C)
        # patch boundaries: colour edges without a depth jump (merge candidates) and occlusions
        ba = np.concatenate([b[0] for b in bnd])
        bb = np.concatenate([b[1] for b in bnd])
        bza = np.concatenate([b[2] for b in bnd])
        bzb = np.concatenate([b[3] for b in bnd])
        pa, pb = plab[ba], plab[bb]
        keep = pa != pb
        pa, pb, bza, bzb = pa[keep], pb[keep], bza[keep], bzb[keep]
        both_valid = (bza > 0) & (bzb > 0)
        jump = np.abs(bza - bzb) > (p.depth_jump + p.depth_jump_rel * np.maximum(bza, bzb))
        cont = ~(both_valid & jump)
        adj = self._pair_counts(pa[cont], pb[cont], npatch, symmetric=True)
        nb_a, nb_b = pa, pb                  # any shared boundary: neighbours
        tick("patches")

        # 4. objects -----------------------------------------------------------------------------
        if self.segmenter is not None:
            seg = self.segmenter.segment(rgb, np.where(np.isfinite(depth) & (depth > 0), depth, 0),
                                         cam)
            olab = self._labels_from_masks(seg, fr.rows, fr.cols, nn)
        else:
            glab = self._merge_patches(npatch, fr.pst, adj)
            glab = self._join_fragments(glab, fr, nb_a, nb_b)
            olab = glab[plab]
        fits = []
        order = np.argsort(olab, kind="stable")
        bounds = np.flatnonzero(np.diff(olab[order])) + 1
        for grp in np.split(order, bounds):
            if len(grp) < p.min_object_pixels or olab[grp[0]] < 0:
                continue
            if np.count_nonzero(nvalid[grp]) < p.min_object_points:
                continue
            f = self._fit_object(grp, fr)
            if f is not None:
                fits.append(f)
        tick("fit")
        self._resolve_support(fits)
        fits = [f for f in fits if f.top - f.bottom >= p.min_object_height
                and max(f.size_uv) < 2 * p.max_object_size]

        # 5. priors ------------------------------------------------------------------------------
        objects = self._to_priors(fits, Rpl, origin, R)
        if self.namer is not None and objects:
            masks = []
            for f in fits:
                mk = np.zeros((cam.height, cam.width), dtype=bool)
                mk[fr.rows[f.nodes], fr.cols[f.nodes]] = True
                masks.append(mk)
            for ob, name in zip(objects, self.namer.name(rgb, masks)):
                ob.label = name
        objects.sort(key=lambda ob: (ob.roi[0], ob.roi[1]))
        objects = self.tracker.assign(objects)
        tick("priors")
        self.last.update(num_patches=int(npatch), num_nodes=nn, crop=(r0, r1, c0, c1),
                         timing_ms=tick.times)
        return Scene(scene_id=scene_id, objects=objects, **scene_kw)

    # -- segmentation helpers ------------------------------------------------------------------
    @staticmethod
    def _colour_model(grgb: np.ndarray):
        """Chromaticity (median, tolerance) and log-brightness range of the table's pixels."""
        ssum = grgb.sum(axis=1) + 24.0
        cr = (grgb[:, 0] + 8.0) / ssum
        cg = (grgb[:, 1] + 8.0) / ssum
        lum = np.log(ssum)
        chr_ = np.array([_q(cr, 0.5), _q(cg, 0.5)])
        mad = np.array([_q(np.abs(cr - chr_[0]), 0.5), _q(np.abs(cg - chr_[1]), 0.5)])
        tol = np.maximum(0.02, 6 * 1.4826 * mad)
        return chr_, tol, (_q(lum, 0.005) - math.log(2.0), _q(lum, 0.995) + math.log(1.15))

    @staticmethod
    def _pair_counts(a, b, K, symmetric: bool) -> dict:
        if len(a) == 0:
            return {}
        if symmetric:
            a, b = np.minimum(a, b), np.maximum(a, b)
        key, cnt = np.unique(a.astype(np.int64) * K + b, return_counts=True)
        return {(int(k // K), int(k % K)): int(c) for k, c in zip(key, cnt)}

    @staticmethod
    def _patch_stats(plab, K, P, valid, cr, cg, lum, k_noise, nz, C) -> dict:
        w = valid.astype(np.float64)
        cnt = np.bincount(plab, minlength=K).astype(np.float64)
        nv = np.bincount(plab, weights=w, minlength=K)
        Pv = np.where(valid[:, None], P, 0.0)
        S1 = np.stack([np.bincount(plab, weights=Pv[:, i], minlength=K) for i in range(3)], 1)
        mean = S1 / np.maximum(nv, 1)[:, None]
        S2 = np.empty((K, 3, 3))
        for i in range(3):
            for j in range(i, 3):
                v = np.bincount(plab, weights=Pv[:, i] * Pv[:, j], minlength=K)
                S2[:, i, j] = S2[:, j, i] = v
        cov = S2 / np.maximum(nv, 1)[:, None, None] - mean[:, :, None] * mean[:, None, :]
        evals, evecs = np.linalg.eigh(cov)
        normal = evecs[:, :, 0]
        # orient towards the camera (outward for a visible face)
        normal *= np.where(np.einsum("ij,ij->i", normal, C - mean) < 0, -1.0, 1.0)[:, None]
        zmean = np.bincount(plab, weights=nz * w, minlength=K) / np.maximum(nv, 1)
        sigma = k_noise * zmean**2
        resid = np.sqrt(np.maximum(evals[:, 0], 0))
        planar = (nv >= 12) & (resid < 2.5 * sigma + 0.0015)
        horizontal = planar & (np.abs(normal[:, 2]) > 0.94)
        hmax = np.full(K, -np.inf)
        np.maximum.at(hmax, plab[valid], P[valid, 2])
        lo = np.full((K, 2), np.inf)
        hi = np.full((K, 2), -np.inf)
        for i in range(2):
            np.minimum.at(lo[:, i], plab[valid], P[valid, i])
            np.maximum.at(hi[:, i], plab[valid], P[valid, i])
        return dict(
            count=cnt, nvalid=nv, mean=mean, normal=normal, resid=resid, planar=planar,
            horizontal=horizontal, hmax=hmax, lo=lo, hi=hi,
            cr=np.bincount(plab, weights=cr, minlength=K) / np.maximum(cnt, 1),
            cg=np.bincount(plab, weights=cg, minlength=K) / np.maximum(cnt, 1),
            lum=np.bincount(plab, weights=lum, minlength=K) / np.maximum(cnt, 1),
            sigma=sigma)

    def _merge_patches(self, K, pst, adj: dict) -> np.ndarray:
        """Group label per patch: adjacent patches of one chromaticity that form one object."""
        tol = 1.5 * self.params.chroma_tol
        ra, rb = [], []
        small: dict[int, tuple[float, int]] = {}   # patch without geometry -> best neighbour
        nv, lum = pst["nvalid"], pst["lum"]
        for (a, b), c in adj.items():
            if c < 2:
                continue
            if abs(pst["cr"][a] - pst["cr"][b]) > tol or abs(pst["cg"][a] - pst["cg"][b]) > tol:
                continue
            if nv[a] < 8 or nv[b] < 8:
                # a patch with (almost) no depth joins only its most similar neighbour, so
                # that it cannot bridge two objects
                if not self._same_object(a, b, pst):
                    continue
                dl = abs(lum[a] - lum[b])
                for x, y in ((a, b), (b, a)):
                    if nv[x] < 8 and (x not in small or dl < small[x][0]):
                        small[x] = (dl, y)
                continue
            if self._same_object(a, b, pst):
                ra.append(a)
                rb.append(b)
        for x, (_, y) in small.items():
            ra.append(x)
            rb.append(y)
        g = sp.csr_matrix((np.ones(len(ra), np.int8), (ra, rb)), shape=(K, K))
        return connected_components(g, directed=False)[1]

    def _same_object(self, a: int, b: int, pst: dict) -> bool:
        """Do adjacent patches a and b of one chromaticity belong to one convex object?"""
        nv, hor, pla = pst["nvalid"], pst["horizontal"], pst["planar"]
        dl = abs(pst["lum"][a] - pst["lum"][b])
        ratio_ok = dl < math.log(self.params.merge_brightness_ratio)
        if nv[a] < 8 or nv[b] < 8:
            return ratio_ok
        if dl > math.log(2.5):        # faces of one object under one light: not that different
            return False
        mean, nrm = pst["mean"], pst["normal"]
        margin = 0.004 + 2 * max(pst["sigma"][a], pst["sigma"][b])
        if hor[a] or hor[b]:
            if hor[a] and hor[b]:
                return abs(mean[a, 2] - mean[b, 2]) < margin
            top, side = (a, b) if hor[a] else (b, a)
            # a side face hangs below its top face and reaches up to it; a patch rising above
            # a top stands on it; one ending well below it is a lower neighbour
            reach = max(0.008, 4 * pst["sigma"][side])
            return bool(mean[side, 2] < mean[top, 2] - 0.003
                        and mean[top, 2] - reach < pst["hmax"][side] < mean[top, 2] + margin)
        if pla[a] and pla[b]:
            d1 = (mean[b] - mean[a]) @ nrm[a]
            d2 = (mean[a] - mean[b]) @ nrm[b]
            return bool(d1 < margin and d2 < margin and d1 + d2 < -margin)
        # a curved or irregular patch: only a smooth continuation of similar brightness
        return dl < math.log(1.3)

    def _join_fragments(self, glab: np.ndarray, fr: _Frame, nb_a, nb_b) -> np.ndarray:
        """Join groups of one colour that border a common object (an occluder in front, or an
        object standing on them that splits their top) when their union is small enough to be
        one object and their tops are level."""
        pst, p = fr.pst, self.params
        G = int(glab.max()) + 1 if len(glab) else 0
        if G < 3 or len(nb_a) == 0:
            return glab
        pairs = self._pair_counts(glab[nb_a], glab[nb_b], G, symmetric=True)
        nbrs: dict[int, set] = {}
        for (a, b), c in pairs.items():
            if c >= 3 and a != b:
                nbrs.setdefault(a, set()).add(b)
                nbrs.setdefault(b, set()).add(a)
        w = pst["count"]
        gstats = {}
        for gi in nbrs:
            sel = glab == gi
            ws = w[sel].sum()
            if ws < 10:
                continue
            gstats[gi] = (float((pst["cr"][sel] * w[sel]).sum() / ws),
                          float((pst["cg"][sel] * w[sel]).sum() / ws),
                          float(pst["lum"][sel].max()), np.flatnonzero(sel))
        keys = sorted(gstats)
        if len(keys) < 2:
            return glab
        out = glab.copy()
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                ca, cb = gstats[a], gstats[b]
                if out[ca[3][0]] == out[cb[3][0]] or b in nbrs[a] or not (nbrs[a] & nbrs[b]):
                    continue
                if (abs(ca[0] - cb[0]) > p.chroma_tol or abs(ca[1] - cb[1]) > p.chroma_tol
                        or abs(ca[2] - cb[2]) > math.log(p.merge_brightness_ratio)):
                    continue
                ma = np.isin(fr.plab, ca[3]) & fr.valid
                mb = np.isin(fr.plab, cb[3]) & fr.valid
                if ma.sum() < 5 or mb.sum() < 5:
                    continue
                Pa, Pb = fr.P[ma], fr.P[mb]
                _, size, _ = _rect_from_points(np.concatenate([Pa[:, :2], Pb[:, :2]]))
                if max(size) > p.max_object_size:
                    continue
                if abs(np.percentile(Pa[:, 2], 95) - np.percentile(Pb[:, 2], 95)) > 0.03:
                    continue
                la, lb = out[ca[3][0]], out[cb[3][0]]
                out[out == lb] = la
        return out

    @staticmethod
    def _labels_from_masks(seg: Segmentation, rows, cols, nn) -> np.ndarray:
        lab = np.full(nn, -1, dtype=np.int64)
        for i, mk in enumerate(seg.masks):
            hit = np.asarray(mk, dtype=bool)[rows, cols]
            lab[hit & (lab < 0)] = i
        return lab

    # -- fitting ---------------------------------------------------------------------------------
    @staticmethod
    def _corner_rays(r_, c_, cam: CameraModel, M: np.ndarray) -> np.ndarray:
        """Plane-frame rays through the 4 corners of each pixel: (4N, 3)."""
        xu = (np.concatenate([c_ - 0.5, c_ + 0.5, c_ + 0.5, c_ - 0.5]) - cam.cx) / cam.fx
        xv = (np.concatenate([r_ - 0.5, r_ - 0.5, r_ + 0.5, r_ + 0.5]) - cam.cy) / cam.fy
        return np.stack([M[i, 0] * xu + M[i, 1] * xv + M[i, 2] for i in range(3)], axis=1)

    def _fit_object(self, grp: np.ndarray, fr: _Frame) -> Optional[_Fit]:
        pst = fr.pst
        f = _Fit(nodes=grp)
        vsel = fr.valid[grp]
        Pv = fr.P[grp][vsel]
        f.num_points = len(Pv)
        hs = Pv[:, 2]
        q2, q99 = _q(hs, 0.02), _q(hs, 0.99)
        f.low = float(q2)
        rr, cc = fr.rows[grp], fr.cols[grp]
        f.roi = (int(cc.min()), int(rr.min()), int(cc.max() - cc.min() + 1),
                 int(rr.max() - rr.min() + 1))
        lg = fr.lum[grp]
        bright = lg >= _q(lg, 0.9)
        br = fr.rgb[grp][bright]
        f.rgb = tuple(int(_q(br[:, i], 0.5)) for i in range(3))
        plg = fr.plab[grp]
        patches = np.unique(plg)
        zmed = _q(fr.z[grp][vsel], 0.5)
        sigma = fr.k_noise * zmed**2              # axial depth noise here
        band = max(0.004, 3.0 * sigma)

        # top: the highest horizontal planar patch near the top, else the height plateau
        top_patch = None
        for q in patches:
            if (pst["horizontal"][q] and pst["nvalid"][q] >= 10
                    and pst["mean"][q, 2] > q99 - band - 0.01):
                if top_patch is None or pst["mean"][q, 2] > pst["mean"][top_patch, 2]:
                    top_patch = q
        top_xy = None
        if top_patch is not None:
            tsel = grp[plg == top_patch]
            f.top = _q(fr.P[tsel][fr.valid[tsel], 2], 0.5)
            D = self._corner_rays(fr.rows[tsel], fr.cols[tsel], fr.cam, fr.M)
            tt = (f.top - fr.C[2]) / D[:, 2]
            top_xy = fr.C[:2] + D[:, :2] * tt[:, None]
        else:
            f.top = _q(hs[hs > q99 - band], 0.5)
        side_h = hs < f.top - band
        side_xy = Pv[side_h, :2]

        # outline of the object seen from above: side points plus the (densified) outline of
        # the top face, or of the top band when no flat top face stands out
        if top_xy is None:
            tb = fr.valid[grp] & (fr.P[grp][:, 2] > f.top - band)
            tsel = grp[tb]
            D = np.stack([fr.M[i, 0] * (fr.cols[tsel] - fr.cam.cx) / fr.cam.fx
                          + fr.M[i, 1] * (fr.rows[tsel] - fr.cam.cy) / fr.cam.fy + fr.M[i, 2]
                          for i in range(3)], axis=1)
            tt = (f.top - fr.C[2]) / D[:, 2]
            band_xy = fr.C[:2] + D[:, :2] * tt[:, None]
        else:
            band_xy = top_xy
        rect_fill, top_yaw = 0.0, None
        hull = None
        if len(band_xy) >= 12:
            hull = cv2.convexHull(band_xy.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        if top_xy is not None and len(top_xy) >= 40 and hull is not None:
            _, rsize, top_yaw = _rect_from_points(hull)
            rect_fill = cv2.contourArea(hull.astype(np.float32)) / max(rsize[0] * rsize[1], 1e-12)
        sub = side_xy[:: max(1, len(side_xy) // 200)]
        if top_patch is not None and len(side_xy) >= 30:
            outline = sub       # a crisp but partly hidden top: its outline would mislead
        else:
            outline = np.concatenate([sub, _densify(hull, 0.003)]) if hull is not None else sub
        sigma_xy = sigma                           # noise of x, y: at most the axial noise
        shape, sph, circle, yaw_r = "box", None, None, None
        if not (top_patch is not None and rect_fill >= 0.9) and len(outline) >= 15:
            circle = _robust_circle(outline, 0.002 + 2 * sigma_xy)
            yaw_r, res_r = fit_rectangle_yaw(outline, d0=max(0.0015, 1.5 * sigma_xy))
            ex_r = math.sqrt(max(res_r**2 - sigma_xy**2, 0.0))
            ex_c = np.inf
            oc = outline - outline.mean(axis=0)
            line_res = math.sqrt(max(np.linalg.eigvalsh(oc.T @ oc / len(oc))[0], 0.0))
            # side points on flat vertical faces (clearly planar patches) are a box's
            pv_side = plg[vsel][side_h]
            flat = np.zeros(len(pv_side), dtype=bool)
            for q in patches:
                if (q != top_patch and pst["nvalid"][q] >= 30 and abs(pst["normal"][q][2]) < 0.3
                        and pst["resid"][q] < pst["sigma"][q] + 0.001):
                    flat |= pv_side == q
            mostly_flat = len(flat) > 0 and flat.mean() > 0.5
            if circle is not None and len(band_xy) >= 10:
                # a cylinder's top lies inside its circle
                rr_ = np.hypot(band_xy[:, 0] - circle[0][0], band_xy[:, 1] - circle[0][1])
                if np.mean(rr_ < circle[1] + 0.003 + 2 * sigma_xy) < 0.9:
                    circle = None
            if (circle is not None and line_res > 1.5 * sigma_xy + 0.0007     # not straight
                    and not mostly_flat):
                ex_c = math.sqrt(max(circle[2] ** 2 - sigma_xy**2, 0.0))
                if ex_c < 0.7 * ex_r - 0.0003:
                    shape = "cylinder"
            if top_patch is None:
                # a sphere: fits a sphere better than its outline fits a circle or a rectangle
                cs, rs, es = _sphere_fit(Pv[:: max(1, len(Pv) // 600)])
                ex_s = math.sqrt(max(es**2 - sigma**2, 0.0))
                if (0.01 < rs < 0.2 and es < 2 * sigma + 0.0015 and ex_s < min(ex_c, ex_r)
                        and cs[2] - rs > -0.01):
                    shape, sph = "sphere", (cs, rs)
        f.shape = shape

        if shape == "sphere":
            cs, rs = sph
            f.sphere_center, f.top = cs, float(cs[2] + rs)
            f.center_uv, f.size_uv, f.yaw = cs[:2].copy(), np.array([2 * rs, 2 * rs]), 0.0
            f.quality = 0.9
        elif shape == "cylinder":
            cen, rad = circle[0], circle[1]
            if len(side_xy) >= 30:
                # the side wall alone is free of the top band's projection bias
                c2, r2, _ = _circle_fit_geometric(side_xy[:: max(1, len(side_xy) // 300)])
                if abs(r2 - rad) < 0.3 * rad and np.linalg.norm(c2 - cen) < 0.3 * rad:
                    cen, rad = c2, r2
            f.center_uv, f.size_uv, f.yaw = np.asarray(cen, float), np.array([2 * rad] * 2), 0.0
            f.quality = 0.9 if len(side_xy) >= 30 else 0.7
        else:
            top_complete = top_xy is not None and rect_fill >= 0.9 and len(top_xy) >= 120
            if top_yaw is not None and rect_fill >= 0.85 and len(top_xy) >= 120:
                yaw = top_yaw
            elif yaw_r is not None:
                yaw = yaw_r
            elif len(outline) >= 15:
                yaw = fit_rectangle_yaw(outline, d0=max(0.0015, 1.5 * sigma_xy))[0]
            else:
                yaw = _rect_from_points(Pv[:, :2])[2]
            self._box_footprint(top_xy, side_xy, band_xy if len(band_xy) else Pv[:, :2], sigma,
                                f, yaw, top_complete)
            # how much of the box was seen: its whole top, part of it, none
            f.quality = 1.0 if top_complete else 0.85 if top_xy is not None else 0.7
        return f

    @staticmethod
    def _box_footprint(top_xy, side_xy, all_xy, sigma, f: _Fit, yaw: float,
                       top_complete: bool) -> None:
        """Box footprint for a given yaw. Along each box axis: the top face's exact outline,
        the robust position of the visible side face at one end (the camera sees at most one of
        two opposite faces) and where the other faces end. Sets f.center_uv, size_uv, yaw."""
        have_top = top_xy is not None and len(top_xy) >= 16
        c, s = math.cos(yaw), math.sin(yaw)
        axes = np.array([[c, s], [-s, c]])             # rows: box x, box y
        tol = 2.5 * sigma + 0.0015
        lo, hi = np.zeros(2), np.zeros(2)
        ns = len(side_xy)
        for k in range(2):
            t_lo = t_hi = None
            if have_top:
                ts = top_xy @ axes[k]
                t_lo, t_hi = float(ts.min()), float(ts.max())
            e_lo, e_hi = -np.inf, np.inf                # side-face evidence (none yet)
            if not top_complete and ns >= 12:
                v = side_xy @ axes[k]
                ends = []
                for sign in (1.0, -1.0):
                    w = sign * v
                    m_ = _q(w, 0.97)
                    sel = np.abs(w - m_) < tol
                    for _ in range(3):
                        if sel.sum() < 8:
                            break
                        m_ = _q(w[sel], 0.5)
                        sel = np.abs(w - m_) < tol
                    ends.append((int(sel.sum()), sign * m_, sign * _q(w, 0.99)))
                (n_hi, face_hi, ext_hi), (n_lo, face_lo, ext_lo) = ends
                if n_hi >= n_lo and n_hi >= max(8, 0.2 * ns):
                    e_hi, e_lo = face_hi, ext_lo        # face at the + end
                elif n_lo >= max(8, 0.2 * ns):
                    e_hi, e_lo = ext_hi, face_lo        # face at the - end
                else:
                    e_hi, e_lo = ext_hi, ext_lo
            if have_top:
                hi[k] = t_hi if not np.isfinite(e_hi) else max(t_hi, e_hi)
                lo[k] = t_lo if not np.isfinite(e_lo) else min(t_lo, e_lo)
            elif np.isfinite(e_hi) and np.isfinite(e_lo):
                hi[k], lo[k] = e_hi, e_lo
            else:
                a_ = all_xy @ axes[k]
                lo[k], hi[k] = _q(a_, 0.01), _q(a_, 0.99)
            # never smaller than the bulk of the points seen
            a_ = all_xy @ axes[k]
            q_lo, q_hi = (_q(a_, 0.03), _q(a_, 0.97)) if len(a_) >= 10 else (lo[k], hi[k])
            lo[k], hi[k] = min(lo[k], q_lo), max(hi[k], q_hi)
        size = np.maximum(hi - lo, 0.002)
        f.center_uv = ((hi + lo) / 2) @ axes
        f.size_uv, f.yaw = size, yaw

    @staticmethod
    def _resolve_support(fits: list[_Fit]) -> None:
        """Each object rests on the table or on the object under it: set ``bottom``; a base's
        footprint grows to contain what stands on it."""
        order = sorted(range(len(fits)), key=lambda i: fits[i].top)
        for i in order:
            f = fits[i]
            f.bottom = 0.0
            if f.shape == "sphere" or f.low < 0.015:
                continue
            best, best_gap = None, None
            for j in order:
                b = fits[j]
                if j == i or b.top > f.top - 0.005:
                    continue
                gap = abs(f.low - b.top)
                if gap > 0.02:
                    continue
                inter = cv2.intersectConvexConvex(
                    (b.rect() * 1000).astype(np.float32).reshape(-1, 1, 2),
                    (f.rect() * 1000).astype(np.float32).reshape(-1, 1, 2))[0]
                area = min(f.size_uv[0] * f.size_uv[1], b.size_uv[0] * b.size_uv[1]) * 1e6
                if inter > 0.3 * area and (best_gap is None or gap < best_gap):
                    best, best_gap = j, gap
            if best is not None:
                f.support = best
                f.bottom = fits[best].top
        for f in fits:
            if f.support is None:
                continue
            b = fits[f.support]
            if b.shape != "box":
                continue
            # the base extends under what stands on it (allowing a few mm of overhang)
            c, s = math.cos(b.yaw), math.sin(b.yaw)
            axes = np.array([[c, s], [-s, c]])
            rect = f.rect()
            cen = rect.mean(axis=0)
            shrink = np.clip(1 - 0.008 / max(float(f.size_uv.min()), 1e-3), 0.5, 1.0)
            loc = ((rect - cen) * shrink + cen - b.center_uv) @ axes.T
            lo = np.minimum(-b.size_uv / 2, loc.min(axis=0))
            hi = np.maximum(b.size_uv / 2, loc.max(axis=0))
            b.center_uv = b.center_uv + ((lo + hi) / 2) @ axes
            b.size_uv = hi - lo

    # -- output ----------------------------------------------------------------------------------
    def _to_priors(self, fits: list[_Fit], Rpl, origin, Rcam) -> list[ObjectPrior]:
        out = []
        up = Rpl[:, 2]
        fwd = Rcam[:, 2] - (Rcam[:, 2] @ up) * up
        front = -_unit(fwd)                        # towards the viewer
        right = Rcam[:, 0] - (Rcam[:, 0] @ up) * up
        right = _unit(right - (right @ front) * front)
        left = -right
        dirs = np.stack([up, -up, left, right, front, -front, _unit(front + left),
                         _unit(front + right), _unit(-front + left), _unit(-front + right)])
        q_pl = Rotation.from_matrix(Rpl).as_quat()
        for f in fits:
            if f.shape == "sphere":
                cen_pl = f.sphere_center.copy()
                size = np.array([f.size_uv[0]] * 3)
            else:
                cen_pl = np.array([f.center_uv[0], f.center_uv[1], (f.top + f.bottom) / 2])
                size = np.array([f.size_uv[0], f.size_uv[1], f.top - f.bottom])
            center = origin + Rpl @ cen_pl
            c, s = math.cos(f.yaw), math.sin(f.yaw)
            Rb = Rpl @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
            quat = _quat_mul(q_pl, np.array([0, 0, math.sin(f.yaw / 2), math.cos(f.yaw / 2)]))
            axis_names = [DIRECTION_NAMES[int(np.argmax(dirs @ Rb[:, k]))] for k in range(3)]
            color = shading_invariant_color_name(f.rgb)
            noun = {"box": "box", "cylinder": "cylinder", "sphere": "sphere"}.get(f.shape, "object")
            adj = ""
            if f.shape in ("box", "cylinder"):
                if size[2] > 1.5 * max(size[0], size[1]):
                    adj = "tall "
                elif size[2] < 0.5 * min(size[0], size[1]):
                    adj = "flat "
            conf = float(np.clip(f.num_points / 150.0, 0.2, 1.0) * f.quality)
            out.append(ObjectPrior(
                id="", label=f"{adj}{color} {noun}", pose=Pose(center, quat), size=size,
                shape=f.shape, color_name=color, confidence=round(conf, 3), roi=f.roi,
                num_points=f.num_points, axis_names=axis_names,
                yaw_symmetric=f.shape in ("cylinder", "sphere"), rgb=f.rgb))
        return out
