"""The geometric perception backend: RGB-D frame -> 3D object priors; no learned models, CPU.

Geometry decides what an object is; colour only names it. One frame goes through five stages,
each a module with its own typed result and parameters:

1. :mod:`~spatialpin_ros.perception.support` -- the support plane (the table, never a wall)
   and its extent;
2. :mod:`~spatialpin_ros.perception.segmentation` -- what stands on it, cut into objects at
   depth jumps and concave folds, never at texture (convexity-based, LCCP-like);
3. :mod:`~spatialpin_ros.perception.shapes` -- cylinder, box, sphere or other, containers with
   their inner depth, hidden backs completed by symmetry; what rests on what;
4. :mod:`~spatialpin_ros.perception.attributes` -- colour name, label, named axes;
5. :mod:`~spatialpin_ros.perception.tracking` -- ids stable across frames.

Objects are what stands on the support plane's extent. Thin things lying on it (paper, a board,
a phone) go to ``Scene.flat_items`` or are dropped (``flat_items`` parameter). Without a camera
pose the frame is perceived in a gravity frame built from the support plane (z up, the plane at
z = 0, x the viewing direction laid flat); the scene then carries that camera pose.

A frame with no usable depth or no support plane in view gives an empty scene with a status
saying why; a malformed frame raises :class:`~spatialpin_ros.core.errors.ImageError`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.errors import ImageError, PerceptionError
from spatialpin_ros.core.geometry import quantile, quat_mul, rect_from_points
from spatialpin_ros.core.types import (ObjectPrior, PerceptionStatus, Pose, RGBDFrame, Scene)
from spatialpin_ros.perception.attributes import (axis_names, object_label,
                                                  shading_invariant_color_name,
                                                  viewer_directions)
from spatialpin_ros.perception.base import (DepthEstimator, ObjectNamer, PerceptionBackend,
                                            Segmenter)
from spatialpin_ros.perception.colour_split import ColourSplitParams, split_by_colour
from spatialpin_ros.perception.pieces import gather_pieces, merge_nested
from spatialpin_ros.perception.segmentation import (SegmentationParams, SurfaceSegmentation,
                                                    segment_surfaces, working_stride)
from spatialpin_ros.perception.shapes import ShapeFit, ShapeParams, fit_shape, resolve_support
from spatialpin_ros.perception.support import (SupportParams, SupportPlane, find_support,
                                               support_extent)
from spatialpin_ros.perception.tracking import ObjectTracker

# Re-exported for callers of the former single-module backend.
from spatialpin_ros.core.geometry import fit_plane_ransac  # noqa: F401  (re-export)
from spatialpin_ros.perception.attributes import DIRECTION_NAMES  # noqa: F401  (re-export)

FLAT_ITEMS_MODES = ("list", "drop")


@dataclass
class GeometricParams:
    """Tuning of :class:`GeometricBackend` (metres, pixels). Stage parameters live in
    ``support``, ``segmentation`` and ``shapes``; keyword overrides may name a field of any."""

    support: SupportParams = field(default_factory=SupportParams)
    segmentation: SegmentationParams = field(default_factory=SegmentationParams)
    shapes: ShapeParams = field(default_factory=ShapeParams)
    colour_split: ColourSplitParams = field(default_factory=ColourSplitParams)
    #: Workspace in the world frame (x, y bounds of object centres, metres) when the camera pose
    #: is known; None disables a bound (the simulator's robot stands at x < 0.1).
    workspace_x: Optional[tuple[float, float]] = (0.15, 1.20)
    workspace_y: Optional[tuple[float, float]] = (-0.60, 0.60)
    #: Depth pixels that must be valid in a frame; about ``plane_points`` working pixels feed the
    #: support-plane search.
    min_valid_pixels: int = 500
    plane_points: int = 4000
    #: Stride of the coarse grid that finds the support plane and the objects' distance.
    support_stride: int = 4
    #: At most this many pieces (the largest) go on to shape fitting: a bound on the cost.
    max_pieces: int = 30
    #: Smallest object: image area at its depth (square metres), height above what it rests on.
    min_object_area: float = 1.2e-4
    min_object_height: float = 0.015
    #: Largest object footprint (furniture, walls and monitors are larger).
    max_object_size: float = 0.5
    #: A piece thinner than ``wall_thickness`` and longer than ``wall_length`` (its footprint)
    #: is a wall, a bin's side or a board on edge, not an object.
    wall_thickness: float = 0.015
    wall_length: float = 0.2
    #: An object's lowest point is at most this high above the plane (or on another object).
    rest_tolerance: float = 0.03
    #: At least this share of its footprint lies on the plane's extent.
    min_on_extent: float = 0.5
    #: Full-resolution masks grow by this many pixels over unclaimed silhouette pixels.
    mask_margin: int = 3
    #: Thin things lying on the support (lower than ``flat_max_height``): "list" keeps them in
    #: ``Scene.flat_items``, "drop" drops them.
    flat_max_height: float = 0.022
    #: ... and thin for their size (height below this share of their longest side): a phone,
    #: a board, paper; a jenga block or a lego brick lying down is an object.
    flat_max_ratio: float = 0.2
    flat_items: str = "list"
    #: Frame id of scenes perceived without a camera pose.
    plane_frame: str = "support_plane"
    #: Tracker: largest centre distance (m) to keep an id, frames an unseen id is remembered.
    track_gate: float = 0.06
    track_memory: int = 30

    def set(self, name: str, value) -> None:
        """Set a top-level or stage field by name; ValueError for an unknown name."""
        stages = (self, self.support, self.segmentation, self.shapes, self.colour_split)
        for obj in stages:
            if name in {f.name for f in dataclasses.fields(obj)} and not dataclasses.is_dataclass(
                    getattr(obj, name)):
                setattr(obj, name, value)
                return
        known = sorted({f.name for o in stages for f in dataclasses.fields(o)}
                       - {"support", "segmentation", "shapes", "colour_split"})
        raise ValueError(f"unknown geometric backend parameter {name!r}; known: "
                         f"{', '.join(known)}")


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
class _Candidate:
    """One segmented piece on its way to a prior."""

    label: int
    fit: ShapeFit
    rows: np.ndarray                 # working-grid pixels
    cols: np.ndarray
    num_points: int
    noise: float


class GeometricBackend(PerceptionBackend):
    """The default backend: support plane, convexity segmentation, shape fits.

    Optional pluggable parts: ``depth_estimator`` (used when the frame has no valid depth, or
    always with ``always_estimate_depth``), ``segmenter`` (its masks replace the geometric
    segmentation), ``namer`` (its names replace the colour-and-shape labels). Other keyword
    arguments set :class:`GeometricParams` fields by name (ValueError for unknown ones).
    """

    name = "geometric"

    def __init__(self, params: Optional[GeometricParams] = None,
                 depth_estimator: Optional[DepthEstimator] = None,
                 segmenter: Optional[Segmenter] = None, namer: Optional[ObjectNamer] = None,
                 always_estimate_depth: bool = False, seed: int = 0, **overrides):
        self.params = params or GeometricParams()
        for k, v in overrides.items():
            self.params.set(k, v)
        if self.params.flat_items not in FLAT_ITEMS_MODES:
            raise ValueError(f"flat_items must be one of {FLAT_ITEMS_MODES}, got "
                             f"{self.params.flat_items!r}")
        self.depth_estimator, self.segmenter, self.namer = depth_estimator, segmenter, namer
        self.always_estimate_depth = always_estimate_depth
        self.seed = seed
        self.tracker = ObjectTracker(gate=self.params.track_gate, memory=self.params.track_memory)
        #: Internals of the last frame (plane, noise level, timings) for tests and debugging.
        self.last: dict = {}

    def reset(self) -> None:
        self.tracker.reset()

    # -- main entry ------------------------------------------------------------------------------
    def perceive(self, frame: RGBDFrame, scene_id: str = "") -> Scene:
        tick = _Ticker()
        depth = self._depth(frame)
        cam, pose = frame.camera, frame.camera_pose
        c = self.params.support_stride
        coarse = cam.subsampled(c).backproject(depth[::c, ::c]).astype(np.float32)
        up = None
        if pose is not None:
            up = pose.rotation.inv().apply([0.0, 0.0, 1.0])
        try:
            support = self._support(coarse, up, c)
        except PerceptionError as e:
            status = (PerceptionStatus.NO_VALID_DEPTH if "depth" in str(e)
                      else PerceptionStatus.NO_SUPPORT_PLANE)
            return self._empty(frame, scene_id, status, str(e), tick)
        if pose is not None:                  # plane x along world x: yaws read in the world
            self._align_to_world(support, pose)
        tick("support")
        dist, area = self._object_layout(coarse, support, c, self._workspace_mask(coarse, pose))
        s = working_stride(cam.fx, dist, self.params.segmentation, area)
        wcam = cam.subsampled(s)
        pts = wcam.backproject(depth[::s, ::s]).astype(np.float32)
        tick("points")
        T_wc, world = self._world(frame, support)
        if self.segmenter is not None:
            seg = self._segment_from_masks(frame, depth, pts, support)
        else:
            small = frame.rgb[::s, ::s] if s > 1 else frame.rgb
            small = small[: pts.shape[0], : pts.shape[1]]
            seg = segment_surfaces(depth, pts, support, self.params.segmentation, wcam.fx, s)
            lab = split_by_colour(seg.labels, small, self.params.colour_split)
            seg = dataclasses.replace(seg, labels=lab, num_labels=int(lab.max()))
        region, _ = support_extent(support, pts, seg.height, self.params.support, wcam.fx)
        tick("segmentation")
        cands = self._candidates(seg, support, region)
        tick("shapes")
        objects, flat = self._priors(cands, seg, support, frame, T_wc)
        objects = self.tracker.assign(objects)
        tick("priors")
        self.last = {"support": support, "segmentation": seg, "extent": region,
                     "dropped": self.last_dropped,
                     "num_pieces": seg.num_labels, "timing_ms": tick.times,
                     "plane_inlier_share": support.inlier_share, "noise_k": support.noise_k}
        return Scene(scene_id=scene_id, objects=objects, camera=cam,
                     camera_pose=T_wc, stamp=frame.stamp, frame_id=world,
                     support_plane=self._plane_world(support, T_wc), flat_items=flat)

    # -- stages ----------------------------------------------------------------------------------
    def _depth(self, frame: RGBDFrame) -> np.ndarray:
        cam = frame.camera
        depth = np.asarray(frame.depth)
        if depth.shape != (cam.height, cam.width):
            raise ImageError(f"depth {depth.shape} does not match the camera "
                             f"{cam.height}x{cam.width}")
        if self.depth_estimator is not None and (self.always_estimate_depth or not np.any(
                np.isfinite(depth) & (depth > 0))):
            depth = np.asarray(self.depth_estimator.estimate(frame.rgb, cam), dtype=np.float32)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
        sample = depth[::8, ::8]
        ok = sample > 0
        if ok.any() and float(quantile(sample[ok], 0.5)) > 50.0:
            raise ImageError(f"depth must be in metres, but its median is "
                             f"{float(quantile(sample[ok], 0.5)):.0f}: millimetres? (divide 16-bit "
                             "depth by 1000)")
        return depth

    def _support(self, pts: np.ndarray, up: Optional[np.ndarray], s: int) -> SupportPlane:
        P = pts.reshape(-1, 3)
        ok = np.isfinite(P[:, 2])
        nvalid = int(ok.sum()) * s * s
        if nvalid < self.params.min_valid_pixels:
            raise PerceptionError(f"only about {nvalid} depth pixels are valid; need at least "
                                  f"{self.params.min_valid_pixels}: is the depth image empty, "
                                  "all zero or NaN, or the camera too close?")
        Ps = P[ok]
        Ps = Ps[:: max(1, len(Ps) // self.params.plane_points)].astype(np.float64)
        rng = np.random.default_rng(self.seed)
        return find_support(Ps, up, self.params.support, rng)

    @staticmethod
    def _align_to_world(sup: SupportPlane, pose: Pose) -> None:
        """Turn the plane frame about its normal so that its x axis is world x laid on the
        plane (world y when world x is nearly vertical)."""
        R_cw = pose.rotation.inv().as_matrix()           # world axes in the optical frame
        for axis in (R_cw[:, 0], R_cw[:, 1]):
            x = axis - (axis @ sup.normal) * sup.normal
            if np.linalg.norm(x) > 0.3:
                e1 = x / np.linalg.norm(x)
                sup.R = np.stack([e1, np.cross(sup.normal, e1), sup.normal], axis=1)
                return

    def _workspace_mask(self, P: np.ndarray, pose: Optional[Pose]) -> Optional[np.ndarray]:
        """(h, w) bool: optical-frame points (h, w, 3) inside the workspace bounds (x, y in the
        world frame); None without a camera pose (then no bounds apply)."""
        if pose is None:
            return None
        W = pose.transform_points(P.reshape(-1, 3)).reshape(P.shape)
        ok = np.ones(P.shape[:2], dtype=bool)
        for k, b in ((0, self.params.workspace_x), (1, self.params.workspace_y)):
            if b is not None:
                ok &= (W[..., k] > b[0]) & (W[..., k] < b[1])
        return ok

    @staticmethod
    def _object_layout(coarse: np.ndarray, sup: SupportPlane, c: int,
                       inside: Optional[np.ndarray] = None) -> tuple[float, float]:
        """Median distance (metres) of what rises above the plane (else of the plane), and an
        estimate of the image area (full-resolution pixels) the segmentation will work on:
        three times the area of what rises above the plane (its bounding boxes' share)."""
        h = coarse @ sup.normal + sup.offset
        above = np.nan_to_num(h, nan=-1.0)
        above = (above > 0.01) & (above < 0.4)
        if inside is not None:                # the robot beside the workspace does not count
            above &= inside
        above = cv2.morphologyEx(above.view(np.uint8), cv2.MORPH_OPEN,
                                 np.ones((2, 2), np.uint8)).view(bool)   # not noise speckles
        z = coarse[..., 2]
        if above.sum() < 20:
            return float(np.nanmedian(z)), 0.0
        rows, cols = np.nonzero(above.any(axis=1))[0], np.nonzero(above.any(axis=0))[0]
        box = float((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
        area = min(3.0 * float(above.sum()), box) * c * c
        return float(quantile(z[above], 0.5)), area

    def _world(self, frame: RGBDFrame, sup: SupportPlane) -> tuple[Pose, str]:
        """The camera's pose in the scene's world frame, and that frame's id."""
        if frame.camera_pose is not None:
            return frame.camera_pose, frame.world_frame
        # gravity frame of the plane: R's columns are the plane axes in the optical frame
        R_pc = sup.R.T                                   # optical -> plane
        t = R_pc @ (-sup.origin)                         # camera centre in the plane frame
        return Pose(t, Rotation.from_matrix(R_pc).as_quat()), self.params.plane_frame

    @staticmethod
    def _plane_world(sup: SupportPlane, T_wc: Pose) -> np.ndarray:
        R = T_wc.rotation.as_matrix()
        n = R @ sup.normal
        o = T_wc.transform_points(sup.origin[None])[0]
        return np.append(n, -n @ o)

    def _segment_from_masks(self, frame: RGBDFrame, depth: np.ndarray, pts: np.ndarray,
                            support: SupportPlane) -> SurfaceSegmentation:
        """Labels from the external segmenter's masks (first mask wins), on the working grid."""
        p = self.params.segmentation
        s = int(round(frame.camera.width / pts.shape[1]))
        seg = segment_surfaces(depth, pts, support, p, frame.camera.fx / s, s)
        masks = self.segmenter.segment(frame.rgb, depth, frame.camera).masks
        lab = np.zeros(seg.labels.shape, dtype=np.int32)
        for i, mk in enumerate(masks):
            m = np.asarray(mk, dtype=bool)[::s, ::s][: lab.shape[0], : lab.shape[1]]
            lab[m & (lab == 0) & seg.foreground] = i + 1
        return dataclasses.replace(seg, labels=lab, num_labels=len(masks))

    def _candidates(self, seg: SurfaceSegmentation, sup: SupportPlane,
                    region: np.ndarray) -> list[_Candidate]:
        p = self.params
        pieces = gather_pieces(seg, sup, p.min_object_area)
        if len(pieces) > p.max_pieces:                 # clutter or noise: the largest only
            pieces = sorted(pieces, key=lambda pc: -len(pc.Q))[: p.max_pieces]
        pieces, joined = merge_nested(pieces)
        if joined:                                   # the masks follow the merge
            remap = np.arange(int(seg.labels.max()) + 1, dtype=np.int32)
            for k, v in joined.items():
                remap[k] = v
            seg.labels = remap[seg.labels]
        cands = []
        dropped = self.last_dropped = []
        for pc in pieces:
            r, c, Q = pc.rows, pc.cols, pc.Q
            zmed = float(quantile(seg.points[r, c, 2][np.isfinite(seg.points[r, c, 2])], 0.5))
            noise = sup.noise_k * zmed * zmed
            low = quantile(Q[:, 2], 0.02)
            base = Q[Q[:, 2] < low + 0.02, :2]
            rows, cols = self._pixels_of(pc, seg)
            on_region = region[rows, cols].mean() if len(rows) else 0.0
            if sup.inside(base).mean() < p.min_on_extent or on_region < p.min_on_extent:
                dropped.append((pc.label, "beyond the support's extent", len(r)))
                continue
            ext = np.ptp(Q[:, :2], axis=0)
            if max(ext) > p.max_object_size:
                dropped.append((pc.label, "too large (furniture, a wall)", len(r)))
                continue
            thin = rect_from_points(Q[:: max(1, len(Q) // 400), :2])[1]
            if min(thin) < p.wall_thickness and max(thin) > p.wall_length:
                dropped.append((pc.label, "a wall (thin, long, upright)", len(r)))
                continue
            f = fit_shape(Q, noise, p.shapes, camera=np.array([0.0, 0.0, sup.offset]))
            cands.append(_Candidate(pc.label, f, r, c, len(Q), noise))
        fits = [c.fit for c in cands]
        resolve_support(fits, tol=p.rest_tolerance)
        floating = {i for i, c in enumerate(cands)
                    if c.fit.support is None and c.fit.low > p.rest_tolerance + 3 * c.noise
                    and not self._bottom_occluded(c, seg)}
        if floating:
            resolve_support(fits, tol=p.rest_tolerance, only=floating)
        out = []
        for i, c in enumerate(cands):
            if i in floating and c.fit.support is None:
                dropped.append((c.label, "not resting on anything", len(c.rows)))
                continue
            out.append(c)
        return out

    @staticmethod
    def _pixels_of(pc, seg: SurfaceSegmentation) -> tuple[np.ndarray, np.ndarray]:
        """Working pixels of the piece's lowest visible band (its base)."""
        h = seg.height[pc.rows, pc.cols]
        ok = np.isfinite(h)
        if not ok.any():
            return pc.rows, pc.cols
        sel = ok & (h < quantile(h[ok], 0.02) + 0.02)
        return pc.rows[sel], pc.cols[sel]

    @staticmethod
    def _bottom_occluded(c: _Candidate, seg: SurfaceSegmentation, reach: float = 0.04,
                         min_share: float = 0.5) -> bool:
        """True when the object's lowest visible edge is hidden behind a nearer object: below
        most of its bottom pixels (within ``reach`` metres in the image, across the cut band
        between them) lies another object, nearer the camera. Its base is then not seen and it
        may stand on the table behind."""
        lab, z = seg.labels, seg.points[..., 2]
        h = lab.shape[0]
        zc = quantile(np.nan_to_num(z[c.rows, c.cols], nan=1.0), 0.5)
        reach = int(np.clip(reach * seg.focal / max(zc, 0.1), 3, 40))
        cols = np.unique(c.cols)
        bottom = np.full(lab.shape[1], -1)
        np.maximum.at(bottom, c.cols, c.rows)
        rb = bottom[cols]
        hidden = np.zeros(len(cols), dtype=bool)
        for dr in range(1, reach + 1):
            r = np.minimum(rb + dr, h - 1)
            other = (lab[r, cols] > 0) & (lab[r, cols] != c.label)
            nearer = np.nan_to_num(z[r, cols], nan=np.inf) < np.nan_to_num(
                z[rb, cols], nan=0.0) - 0.01
            hidden |= other & nearer
        return bool(hidden.mean() >= min_share)

    def _priors(self, cands: list[_Candidate], seg: SurfaceSegmentation, sup: SupportPlane,
                frame: RGBDFrame, T_wc: Pose) -> tuple[list[ObjectPrior], list[ObjectPrior]]:
        p = self.params
        cam = frame.camera
        s = seg.stride
        R_wc = T_wc.rotation.as_matrix()
        R_wp = R_wc @ sup.R                               # plane axes in the world
        o_w = T_wc.transform_points(sup.origin[None])[0]
        dirs = viewer_directions(R_wp[:, 2], R_wc[:, 2], R_wc[:, 0])
        q_wp = Rotation.from_matrix(R_wp).as_quat()
        full = self._full_labels(seg, cam.width, cam.height)
        objects, flat, masks = [], [], []
        for c in cands:
            f = c.fit
            height = f.top - f.bottom
            is_flat = (f.top < p.flat_max_height and not f.container
                       and f.top < p.flat_max_ratio * float(max(f.size_uv)))
            if not is_flat and height < p.min_object_height:
                continue
            if is_flat and p.flat_items == "drop":
                continue
            if f.shape == "sphere":
                cen_p = f.sphere_center.copy()
                size = np.array([f.size_uv[0]] * 3)
            else:
                cen_p = np.array([f.center_uv[0], f.center_uv[1], (f.top + f.bottom) / 2])
                size = np.array([f.size_uv[0], f.size_uv[1], max(height, 0.002)])
            center = o_w + R_wp @ cen_p
            if frame.camera_pose is not None and not self._in_workspace(center):
                continue
            cz, sz = math.cos(f.yaw), math.sin(f.yaw)
            Rb = R_wp @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
            r0, c0 = int(c.rows.min()) * s, int(c.cols.min()) * s
            r1 = min(int(c.rows.max()) * s + s, cam.height)
            c1 = min(int(c.cols.max()) * s + s, cam.width)
            mask = full[r0:r1, c0:c1] == c.label
            st = max(1, int(math.sqrt(mask.size / 4000)))
            rgb = self._colour(frame.rgb[r0:r1:st, c0:c1:st][mask[::st, ::st]])
            color = shading_invariant_color_name(rgb)
            conf = float(np.clip(c.num_points / 80.0, 0.2, 1.0)
                         * np.clip(1.0 - f.residual / 0.02, 0.5, 1.0))
            prior = ObjectPrior(
                id="", label=object_label(color, f.shape, size, f.container),
                pose=Pose(center, quat_mul(q_wp, np.array([0.0, 0.0, math.sin(f.yaw / 2),
                                                            math.cos(f.yaw / 2)]))), size=size,
                shape=f.shape, color_name=color, confidence=round(conf, 3),
                roi=(c0, r0, c1 - c0, r1 - r0), num_points=c.num_points,
                axis_names=axis_names(Rb, dirs), yaw_symmetric=f.shape in ("cylinder", "sphere"),
                rgb=rgb, container=f.container, inner_depth=round(f.inner_depth, 4), mask=mask)
            if is_flat:
                prior.id = f"flat_{len(flat)}"
                flat.append(prior)
            else:
                objects.append(prior)
                masks.append(prior)
        if self.namer is not None and objects:
            names = self.namer.name(frame.rgb, [o.full_mask(cam.height, cam.width)
                                                for o in objects])
            for ob, name in zip(objects, names):
                ob.label = name
        objects.sort(key=lambda ob: (ob.roi[0], ob.roi[1]))
        return objects, flat

    def _full_labels(self, seg: SurfaceSegmentation, width: int, height: int) -> np.ndarray:
        """The working-grid labels at full resolution; each object's outline first grows by
        ``mask_margin`` full-resolution pixels (rounded up to working pixels) over working
        pixels that are nobody's and have no depth or a depth near the object's: the
        silhouette's mixed pixels that segmentation cuts away."""
        labels = seg.labels
        g = int(math.ceil(self.params.mask_margin / seg.stride))
        if g > 0 and labels.max() > 0:
            k = np.ones((2 * g + 1, 2 * g + 1), np.uint8)
            grown = cv2.dilate(labels.astype(np.uint16), k)
            z = np.nan_to_num(seg.points[..., 2], nan=0.0)
            zl = cv2.dilate(np.where(labels > 0, z, 0).astype(np.float32), k)
            take = (labels == 0) & (grown > 0) & ((z <= 0) | (np.abs(z - zl) < 0.03))
            labels = labels.copy()
            labels[take] = grown[take].astype(labels.dtype)
        if labels.shape == (height, width):
            return labels
        return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)

    @staticmethod
    def _colour(px: np.ndarray) -> tuple[int, int, int]:
        """The lit part's colour: the median of the brightest half of the pixels."""
        if len(px) == 0:
            return (0, 0, 0)
        px = px.reshape(-1, 3)[:: max(1, len(px) // 2000)].astype(np.float32)
        lum = px.sum(axis=1)
        bright = px[lum >= quantile(lum, 0.5)]
        return tuple(int(round(float(v))) for v in bright.mean(axis=0))

    def _in_workspace(self, c: np.ndarray) -> bool:
        for v, b in ((c[0], self.params.workspace_x), (c[1], self.params.workspace_y)):
            if b is not None and not (b[0] < v < b[1]):
                return False
        return True

    def _empty(self, frame: RGBDFrame, scene_id: str, status: PerceptionStatus, message: str,
               tick: _Ticker) -> Scene:
        tick("support")
        self.last = {"timing_ms": tick.times, "status": status}
        pose = frame.camera_pose if frame.camera_pose is not None else Pose()
        world = frame.world_frame if frame.camera_pose is not None else self.params.plane_frame
        return Scene(scene_id=scene_id, objects=[], camera=frame.camera, camera_pose=pose,
                     stamp=frame.stamp, frame_id=world, status=status, status_message=message)
