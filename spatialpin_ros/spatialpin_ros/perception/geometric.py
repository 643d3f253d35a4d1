"""The geometric perception backend: RGB-D frame -> 3D object priors; no learned models, CPU.

Geometry decides what an object is; colour only names it. One frame goes through five stages,
each a module with its own typed result and parameters:

1. :mod:`~spatialpin_ros.perception.support` -- the support plane (the table, never a wall)
   and its extent;
2. :mod:`~spatialpin_ros.perception.segmentation` -- what stands on it, cut into objects at
   depth jumps and concave folds, never at texture (convexity-based, LCCP-like); no piece
   keeps a part that borders it across a depth jump (:mod:`~spatialpin_ros.perception.
   jump_clean`);
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
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.errors import ImageError, PerceptionError
from spatialpin_ros.core.geometry import last_axis_sum, quantile
from spatialpin_ros.core.heap import keep_freed_memory
from spatialpin_ros.core.types import (ObjectPrior, PerceptionStatus, Pose, RGBDFrame, Scene)
from spatialpin_ros.perception.base import (DepthEstimator, ObjectNamer, PerceptionBackend,
                                            Segmenter)
from spatialpin_ros.perception.colour_regions import edge_map, split_at_colour_edges
from spatialpin_ros.perception.colour_split import ColourSplitParams, split_by_colour
from spatialpin_ros.perception.depth_grid import sample_depth
from spatialpin_ros.perception.depth_holes import DepthHoleParams
from spatialpin_ros.perception.jump_clean import JumpCleanParams, drop_across_jumps
from spatialpin_ros.perception.occluded import OccludedParams, recover_occluded
from spatialpin_ros.perception.objects import (WorldView, core_colours, full_resolution,
                                               grown_labels, label_boxes, make_prior,
                                               mask_pixels)
from spatialpin_ros.perception.selection import Candidate, SelectionParams, select_objects
from spatialpin_ros.perception.segmentation import (SegmentationParams, SurfaceSegmentation,
                                                    foreground_surfaces, labels_from_masks,
                                                    segment_surfaces, working_stride)
from spatialpin_ros.perception.shapes import ShapeParams
from spatialpin_ros.perception.support import (SupportParams, SupportPlane, find_support,
                                               support_extent)
from spatialpin_ros.perception.top_faces import describe_tops
from spatialpin_ros.perception.tracking import ObjectTracker
from spatialpin_ros.perception.visibility import set_hidden

FLAT_ITEMS_MODES = ("list", "drop")


@dataclass
class GeometricParams:
    """Tuning of :class:`GeometricBackend` (metres, pixels). Stage parameters live in
    ``support``, ``segmentation``, ``colour_split``, ``jumps``, ``occluded``, ``selection`` and
    ``shapes``; keyword overrides may name a field of any."""

    support: SupportParams = field(default_factory=SupportParams)
    segmentation: SegmentationParams = field(default_factory=SegmentationParams)
    shapes: ShapeParams = field(default_factory=ShapeParams)
    colour_split: ColourSplitParams = field(default_factory=ColourSplitParams)
    jumps: JumpCleanParams = field(default_factory=JumpCleanParams)
    occluded: OccludedParams = field(default_factory=OccludedParams)
    holes: DepthHoleParams = field(default_factory=DepthHoleParams)
    selection: SelectionParams = field(default_factory=SelectionParams)
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
    #: Smallest object height above what it rests on.
    min_object_height: float = 0.015
    #: Full-resolution masks grow by this many pixels over unclaimed silhouette pixels.
    mask_margin: int = 3
    #: Thin things lying on the support (lower than ``flat_max_height``): "list" keeps them in
    #: ``Scene.flat_items``, "drop" drops them.
    flat_max_height: float = 0.022
    #: ... and thin for their size (height below this share of their longest side): a phone,
    #: a board, paper; a jenga block or a lego brick lying down is an object, and so is a dish
    #: (a plate: its top a rim around a lower middle, ``ShapeFit.dish``).
    flat_max_ratio: float = 0.2
    flat_items: str = "list"
    #: Frame id of scenes perceived without a camera pose.
    plane_frame: str = "support_plane"
    #: Tracker: largest centre distance (m) to keep an id, frames an unseen id is remembered.
    track_gate: float = 0.06
    track_memory: int = 30
    #: Raise glibc's mmap and trim thresholds once per process (``core.heap``), so that a
    #: frame's arrays reuse the last frame's freed memory (a few ms a frame; the process keeps
    #: up to 256 MB of freed heap). A process-wide setting: off leaves malloc as it is.
    keep_freed_memory: bool = True

    def set(self, name: str, value) -> None:
        """Set a top-level or stage field by name; ValueError for an unknown name."""
        stages = (self, self.support, self.segmentation, self.shapes, self.colour_split,
                  self.occluded, self.selection, self.holes, self.jumps)
        for obj in stages:
            if name in {f.name for f in dataclasses.fields(obj)} and not dataclasses.is_dataclass(
                    getattr(obj, name)):
                setattr(obj, name, value)
                return
        known = sorted({f.name for o in stages for f in dataclasses.fields(o)}
                       - {"support", "segmentation", "shapes", "colour_split", "occluded",
                          "selection", "holes", "jumps"})
        raise ValueError(f"unknown geometric backend parameter {name!r}; known: "
                         f"{', '.join(known)}")


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """The depth (float32 metres) with invalid values 0; ImageError when its median (of every
    8th pixel) says millimetres."""
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32, copy=False)
    sample = depth[::8, ::8]
    ok = sample > 0
    if ok.any() and float(quantile(sample[ok], 0.5)) > 50.0:
        raise ImageError(f"depth must be in metres, but its median is "
                         f"{float(quantile(sample[ok], 0.5)):.0f}: millimetres? (divide 16-bit "
                         "depth by 1000)")
    return depth


@dataclass
class Prepared:
    """What :meth:`GeometricBackend.prepare` found from the depth alone: the checked depth,
    the support, the working grid's points and camera, the foreground (no pieces yet), the
    support's extent on the working grid, and the stage timer."""

    frame: RGBDFrame
    depth: np.ndarray
    support: SupportPlane
    points: np.ndarray
    camera: object
    foreground: SurfaceSegmentation
    extent: np.ndarray
    tick: "_Ticker"


class _Ticker:
    """Milliseconds spent per named stage (for ``GeometricBackend.last['timing_ms']``)."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(1000 * (now - self.t), 2)
        self.t = now


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
        if self.params.keep_freed_memory:
            keep_freed_memory()      # a frame's arrays reuse the last frame's memory
        #: Internals of the last frame (plane, noise level, timings) for tests and debugging.
        self.last: dict = {}

    def reset(self) -> None:
        self.tracker.reset()

    # -- main entry ------------------------------------------------------------------------------
    def perceive(self, frame: RGBDFrame, scene_id: str = "") -> Scene:
        prep = self.prepare(frame, scene_id)
        if isinstance(prep, Scene):
            return prep
        return self.finish(prep, scene_id)

    def prepare(self, frame: RGBDFrame, scene_id: str = "",
                depth: Optional[np.ndarray] = None) -> "Prepared | Scene":
        """The stages that need the depth alone: support plane, working grid, foreground and
        the support's extent. Returns a :class:`Prepared` for :meth:`finish`, or the empty
        scene (with its status) when the frame has no valid depth or no support. ``depth``:
        the frame's depth already checked by :meth:`_depth` (estimated, say)."""
        tick = _Ticker()
        depth = self._depth(frame) if depth is None else depth
        cam, pose = frame.camera, frame.camera_pose
        c = self.params.support_stride
        coarse = cam.subsampled(c).backproject(sample_depth(depth, c))
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
        pts = coarse if s == c else wcam.backproject(sample_depth(depth, s))   # the same grid
        tick("points")
        fg = foreground_surfaces(pts, support, self.params.segmentation, wcam.fx, s)
        region = support_extent(support, pts, fg.height, self.params.support, wcam.fx)
        tick("foreground")
        return Prepared(frame=frame, depth=depth, support=support, points=pts, camera=wcam,
                        foreground=fg, extent=region, tick=tick)

    def finish(self, prep: "Prepared", scene_id: str = "",
               masks: Optional[Sequence[np.ndarray]] = None) -> Scene:
        """The rest of :meth:`perceive` after :meth:`prepare`: pieces (from ``masks``, else
        from the segmenter's masks, else the geometric segmentation), shapes, priors, ids."""
        frame, depth, support, pts, tick = (prep.frame, prep.depth, prep.support, prep.points,
                                            prep.tick)
        s, wcam = prep.foreground.stride, prep.camera
        T_wc, world = self._world(frame, support)
        if masks is None and self.segmenter is not None:
            masks = self.segmenter.segment(frame.rgb, depth, frame.camera).masks
        small = None                     # the working grid's colours (geometric pieces only)
        if masks is not None:
            seg = labels_from_masks(prep.foreground, masks)
        else:
            small = frame.rgb[::s, ::s] if s > 1 else frame.rgb
            small = small[: pts.shape[0], : pts.shape[1]]
            seg = segment_surfaces(depth, pts, support, self.params.segmentation, wcam.fx, s,
                                   base=prep.foreground)
            edges = edge_map(small, seg.labels, self.params.colour_split)
            lab = split_by_colour(seg.labels, small, self.params.colour_split, edges[1])
            lab = split_at_colour_edges(lab, small, self.params.colour_split, edges)
            sp = self.params.segmentation
            lab = drop_across_jumps(lab, pts[..., 2], sp.jump_abs * s, sp.jump_rel,
                                    self.params.jumps, small)
            lab = recover_occluded(lab, seg.foreground, pts[..., 2], small,
                                   seg.metric_pixel(), self.params.occluded)
            seg = dataclasses.replace(seg, labels=lab, num_labels=int(lab.max()))
        tick("segmentation")
        pieces = seg.labels.copy()        # before selection's layout rules (for diagnosis)
        sel = select_objects(seg, support, prep.extent, self.params.selection,
                             self.params.shapes, rgb=small,
                             colour=self.params.colour_split, join_overlaps=masks is None,
                             jumps=(self.params.segmentation.jump_abs,
                                    self.params.segmentation.jump_rel))
        tick("shapes")
        objects, flat = self._priors(sel.candidates, seg, support, frame, T_wc,
                                     claim_holes=masks is None)
        self.describe_tops(objects, prep, T_wc)
        set_hidden(objects, depth)
        objects = self.tracker.assign(objects)
        tick("priors")
        self.last = {"support": support, "segmentation": seg, "extent": prep.extent,
                     "dropped": sel.dropped, "pieces": pieces,
                     "num_pieces": seg.num_labels, "timing_ms": tick.times,
                     "plane_inlier_share": support.inlier_share, "noise_k": support.noise_k}
        return Scene(scene_id=scene_id, objects=objects, camera=frame.camera,
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
        return clean_depth(depth)

    def _support(self, pts: np.ndarray, up: Optional[np.ndarray], s: int) -> SupportPlane:
        P = pts.reshape(-1, 3)
        ok = np.isfinite(P[:, 2])
        nvalid = int(ok.sum()) * s * s
        if nvalid < self.params.min_valid_pixels:
            raise PerceptionError(f"only about {nvalid} depth pixels are valid; need at least "
                                  f"{self.params.min_valid_pixels}: is the depth image empty, "
                                  "all zero or NaN, or the camera too close?")
        keep = np.flatnonzero(ok)
        Ps = P[keep[:: max(1, len(keep) // self.params.plane_points)]].astype(np.float64)
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

    def _priors(self, cands: list[Candidate], seg: SurfaceSegmentation, sup: SupportPlane,
                frame: RGBDFrame, T_wc: Pose, claim_holes: bool = True
                ) -> tuple[list[ObjectPrior], list[ObjectPrior]]:
        """Objects and flat items from the candidates (:meth:`assemble_priors`), with masks
        grown over the silhouette (and, for the geometric segmentation, ``claim_holes``, the
        dark depth holes that are an object's own)."""
        p = self.params
        cam = frame.camera
        view = WorldView.of(sup, T_wc)
        s = seg.stride
        if claim_holes:                  # the geometric segmentation's own pieces
            lum = last_axis_sum(frame.rgb[::s, ::s][: seg.labels.shape[0],
                                                    : seg.labels.shape[1]].astype(np.float32)) / 3
            grid = grown_labels(seg, p.mask_margin, lum, p.holes)
            full = full_resolution(grid, cam.width, cam.height)
            boxes = label_boxes(grid, s, cam.width, cam.height)

            def own(c):                  # the piece's own pixels, not the grown margin
                return frame.rgb[c.rows * s, c.cols * s]
        else:                            # pieces from masks: as the torch lifting does
            full = full_resolution(grown_labels(seg, p.mask_margin), cam.width, cam.height)
            boxes = label_boxes(full)

            def own(c):
                return mask_pixels(frame.rgb, full, boxes[c.label], c.label)
        return self.assemble_priors(cands, view, full, boxes, own, frame, self.namer)

    def assemble_priors(self, cands: list[Candidate], view: WorldView, full: np.ndarray,
                        boxes: dict, own, frame: RGBDFrame, namer: Optional[ObjectNamer]
                        ) -> tuple[list[ObjectPrior], list[ObjectPrior]]:
        """The priors of the fitted candidates, for the numpy and the torch lifting alike:
        thin things lying flat go to the flat items (or nowhere), objects too low or outside
        the workspace are dropped. ``full``: full-resolution labels; ``boxes``: each label's
        image box (:func:`~spatialpin_ros.perception.objects.label_boxes`); ``own(c)``: the
        candidate's colour sample (N, 3); ``namer`` names the objects from their masks."""
        p = self.params
        objects, flat, kept = [], [], []
        for c in cands:
            f = c.fit
            is_flat = (f.top < p.flat_max_height and not (f.container or f.dish)
                       and f.top < p.flat_max_ratio * float(max(f.size_uv)))
            if (not is_flat and f.top - f.bottom < p.min_object_height) or (
                    is_flat and p.flat_items == "drop"):
                continue
            if frame.camera_pose is not None and not self._in_workspace(view.box(f)[0]):
                continue
            kept.append((c, is_flat))
        colours = core_colours([own(c) for c, _ in kept])       # all pieces in one pass
        for (c, is_flat), colour in zip(kept, colours):
            prior = make_prior(c.fit, c.label, boxes[c.label], c.num_points, view, full, colour)
            if is_flat:
                prior.id = f"flat_{len(flat)}"
                flat.append(prior)
            else:
                objects.append(prior)
        if namer is not None and objects:
            names = namer.name_priors(frame.rgb, objects)
            for ob, name in zip(objects, names):
                ob.label = name
        objects.sort(key=lambda ob: (ob.roi[0], ob.roi[1]))
        return objects, flat

    def describe_tops(self, objects: list[ObjectPrior], prep: "Prepared", T_wc: Pose) -> None:
        """Each object's top face from its mask's depth points (``perception.top_faces``)."""
        describe_tops(objects, prep.depth, prep.frame.camera, T_wc,
                      self._plane_world(prep.support, T_wc))

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
