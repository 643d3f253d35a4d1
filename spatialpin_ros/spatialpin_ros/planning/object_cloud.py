"""The perceived points of a scene, each with the object it belongs to (ROS-free): what grasp
sampling (``planning.antipodal``) reads to see an object's real shape and the things near the
hand, and where a round container's opening is (``opening_centre``).

A ``SceneCloud`` is built from the perceived frame and the priors' pixel masks
(``SceneCloud.from_frame``), or from any world-frame cloud by which prior's box (grown by a
margin) each point falls in (``SceneCloud.from_points``, for a cloud without masks). Points on
or just above the support plane (``table_margin``) are dropped: the table is modelled apart.
Points of no object (a piece perception left out) are kept as ``others`` of every object.

The simulator's truth is never read: the points are the rendered (noisy) depth's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.geometry import robust_circle
from spatialpin_ros.core.stacking import footprint, point_polygon_distance, top_z
from spatialpin_ros.core.types import ObjectPrior, Pose, RGBDFrame, Scene


def _support_z(scene: Scene) -> float:
    a, b, c, d = scene.support_plane
    return float(-d / c) if c > 0.9 else 0.0


@dataclass
class SceneCloud:
    """World-frame ``points`` (N, 3) and their ``owner`` (N,): an index into ``ids``, or -1
    for a point of no object."""

    points: np.ndarray
    owner: np.ndarray
    ids: list[str]

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 3)
        self.owner = np.asarray(self.owner, dtype=int).reshape(-1)
        if len(self.owner) != len(self.points):
            raise ValueError(f"{len(self.points)} points but {len(self.owner)} owners")

    def _index(self, object_id: str) -> int:
        return self.ids.index(object_id) if object_id in self.ids else -2

    def of(self, object_id: str) -> np.ndarray:
        """The points (M, 3) of one object (empty for an unknown id)."""
        return self.points[self.owner == self._index(object_id)]

    def others(self, object_id: str, exclude: Sequence[str] = ()) -> np.ndarray:
        """The points of everything but ``object_id`` (and ``exclude``)."""
        skip = [self._index(object_id)] + [self._index(e) for e in exclude]
        return self.points[~np.isin(self.owner, skip)]

    def moved(self, object_id: str, before: Pose, after: Pose) -> "SceneCloud":
        """The cloud with one object's points carried from pose ``before`` to ``after`` (an
        object the plan moves out of the way first)."""
        i = self._index(object_id)
        sel = self.owner == i
        if not np.any(sel):
            return self
        pts = self.points.copy()
        T = after.matrix() @ np.linalg.inv(before.matrix())
        pts[sel] = pts[sel] @ T[:3, :3].T + T[:3, 3]
        return dataclasses.replace(self, points=pts)

    @classmethod
    def from_frame(cls, frame: RGBDFrame, scene: Scene, stride: int = 2,
                   table_margin: float = 0.006) -> "SceneCloud":
        """Points of ``frame`` (every ``stride``-th pixel each way), owned by the prior whose
        pixel mask covers them. Needs the frame's camera pose (the scene's when it has
        none)."""
        if frame.camera_pose is None:
            frame = dataclasses.replace(frame, camera_pose=scene.camera_pose)
        s = max(1, int(stride))
        pts = frame.points_world()[::s, ::s].reshape(-1, 3)
        h, w = frame.camera.height, frame.camera.width
        owner = np.full(len(pts), -1, dtype=int)
        ids = []
        for o in scene.objects:
            m = o.full_mask(h, w)
            if m is None:
                continue
            owner[m[::s, ::s].reshape(-1) & (owner < 0)] = len(ids)
            ids.append(o.id)
        keep = np.all(np.isfinite(pts), axis=1)
        keep &= pts[:, 2] > _support_z(scene) + table_margin
        out = cls(pts[keep], owner[keep], ids)
        if not ids:  # no masks: fall back on the boxes
            return cls.from_points(out.points, scene, table_margin=table_margin)
        return out

    @classmethod
    def from_points(cls, points: np.ndarray, scene: Scene, margin: float = 0.008,
                    table_margin: float = 0.006) -> "SceneCloud":
        """A world-frame cloud (N, 3), each point owned by the smallest prior whose box grown
        by ``margin`` holds it."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        pts = pts[pts[:, 2] > _support_z(scene) + table_margin]
        owner = np.full(len(pts), -1, dtype=int)
        ids = [o.id for o in scene.objects]
        best = np.full(len(pts), np.inf)
        for i, o in enumerate(scene.objects):
            local = o.pose.inverse().transform_points(pts)
            inside = np.all(np.abs(local) <= np.asarray(o.size) / 2 + margin, axis=1)
            vol = float(np.prod(o.size))
            take = inside & (vol < best)
            owner[take], best[take] = i, vol
        return cls(pts, owner, ids)

    @classmethod
    def empty(cls) -> "SceneCloud":
        return cls(np.zeros((0, 3)), np.zeros(0, dtype=int), [])


#: The rim of a container (``opening_centre``): its points within ``RIM_BAND`` (m) of its top;
#: a circle is fitted to them, refitted without those more than ``RIM_INSIDE`` (m) inside it
#: (``core.geometry.robust_circle``), and kept where its fit residual is at most ``RIM_RMS``
#: (m), at least ``RIM_MIN_POINTS`` points describe it and its diameter is at least
#: ``RIM_MIN_SPAN`` of the box's longer side (a mug's box holds its handle as well).
RIM_BAND = 0.01
RIM_MIN_SPAN = 0.6
RIM_INSIDE = 0.004
RIM_RMS = 0.004
RIM_MIN_POINTS = 30


def opening_centre(target: ObjectPrior, points: np.ndarray) -> Optional[np.ndarray]:
    """The centre (x, y) of a round container's opening, from the circle its rim's points
    (``points``: the container's own, world frame) lie on; None where they do not fit one
    (a square tray), the circle is much smaller than the box (a few points at the top: a
    piece of something else) or its centre lies outside the box. The box's centre may be
    well off the opening: a mug's box holds its handle, and a bowl seen in part (its far
    side cut away or merged into a neighbour) has a box of that part."""
    top = top_z(target)
    band = points[points[:, 2] > top - RIM_BAND][:, :2] if len(points) else points
    if len(band) < RIM_MIN_POINTS:
        return None
    fit = robust_circle(band, RIM_INSIDE, float(max(target.size[:2])))
    if (fit is None or fit[2] > RIM_RMS
            or 2 * fit[1] < RIM_MIN_SPAN * float(max(target.size[:2]))):
        return None
    centre = np.asarray(fit[0], dtype=float)
    if point_polygon_distance(centre[None], footprint(target))[0] > 0.0:
        return None
    return centre
