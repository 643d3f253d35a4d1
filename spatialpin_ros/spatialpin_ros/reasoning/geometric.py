"""Answers from the 3D scene priors alone (the default backend: offline, deterministic)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.stacking import polygon_gap
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.reasoning.query import Query
from spatialpin_ros.reasoning.resolve import describe, resolve
from spatialpin_ros.reasoning.viewer import ViewerFrame

ON_TOP_TOLERANCE = 0.02   # m between one object's bottom and the other's top
NEXT_TO_GAP = 0.05        # m: surfaces closer than this are "next to" each other


@dataclass
class Answer:
    """A grounded answer: words, the number and its unit (NaN / "" when not numeric), the ids of
    the objects used, and the 3D facts behind it."""

    success: bool
    answer: str = ""
    value: float = float("nan")
    unit: str = ""
    object_ids: list[str] = field(default_factory=list)
    explanation: str = ""
    message: str = ""
    backend: str = "geometric"


class TwoViewError(SpatialPinError, ValueError):
    """A question about two views without a second scene, or with scenes that cannot be
    related."""


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in v) + ")"


def footprint(o: ObjectPrior) -> np.ndarray:
    """(4, 2) corners of the object's box seen from above (world x, y)."""
    c = o.corners()
    return cv2.convexHull(c[:, :2].astype(np.float32)).reshape(-1, 2).astype(float)


def surface_gap(a: ObjectPrior, b: ObjectPrior) -> float:
    """Shortest distance between two gravity-aligned boxes (0 when they touch or overlap)."""
    h = polygon_gap(footprint(a), footprint(b))
    a0, a1 = a.center[2] - a.size[2] / 2, a.center[2] + a.size[2] / 2
    b0, b1 = b.center[2] - b.size[2] / 2, b.center[2] + b.size[2] / 2
    v = max(0.0, max(a0, b0) - min(a1, b1))
    return math.hypot(h, v)


def volume(o: ObjectPrior) -> float:
    """Volume (m^3) of the object's primitive: box, cylinder [d, d, h] or sphere [d, d, d]."""
    if o.shape == "sphere":
        return math.pi / 6 * float(np.mean(o.size)) ** 3
    if o.shape == "cylinder":
        return math.pi / 4 * float(o.size[0] * o.size[1] * o.size[2])
    return float(np.prod(o.size))


def long_axis_yaw(o: ObjectPrior) -> float:
    """Yaw (radians) of the box's longer horizontal axis."""
    R = o.pose.rotation.as_matrix()
    ax = R[:, 0] if o.size[0] >= o.size[1] else R[:, 1]
    return math.atan2(ax[1], ax[0])


def fold_axis_angle(d: float) -> float:
    """An angle between two undirected axes, folded into [0, 90] degrees."""
    d = abs((d + 90.0) % 180.0 - 90.0)
    return d


def signed_axis_angle(d: float) -> float:
    """An angle between undirected axes folded into (-90, 90] degrees."""
    return (d + 90.0) % 180.0 - 90.0


def object_dims(o: ObjectPrior, viewer: ViewerFrame) -> tuple[float, float, float]:
    """(width, depth, height) as the viewer sees them: width is the horizontal box axis closer
    to the viewer's left-right, depth the other one."""
    R = o.pose.rotation.as_matrix()
    if abs(R[:, 0] @ viewer.right) >= abs(R[:, 1] @ viewer.right):
        return float(o.size[0]), float(o.size[1]), float(o.size[2])
    return float(o.size[1]), float(o.size[0]), float(o.size[2])


def _rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


class GeometricAnswerer:
    """Answers typed queries from a Scene's priors."""

    name = "geometric"

    def answer(self, q: Query, scene: Scene, ref_scene: Optional[Scene] = None,
               camera_motion: Optional[Pose] = None) -> Answer:
        """Answer ``q`` about ``scene``. Two-view queries need ``ref_scene`` (the earlier view);
        ``camera_motion`` (the second camera in the first camera's frame) replaces the scenes'
        camera poses where those are unknown (e.g. estimated by registration)."""
        viewer = ViewerFrame.from_camera(scene.camera_pose)
        if q.kind == "two_view":
            return self._two_view(q, scene, ref_scene, camera_motion)
        notes: list[str] = []
        objs = [resolve(r, scene, viewer, notes) for r in q.refs]
        if len(objs) == 2 and objs[0].id == objs[1].id:
            raise SpatialPinError(f"both phrases refer to the same object, {describe(objs[0])}")
        ids = [o.id for o in objs]
        facts = [f"{describe(o)}: center {_fmt(o.center)} m, size {_fmt(o.size)} m, yaw "
                 f"{math.degrees(o.pose.yaw()):.1f} deg" for o in objs]
        if q.kind in ("relation", "choice"):
            ans = self._relation(q, objs, viewer, ids, facts)
        elif q.kind == "metric":
            ans = self._metric(q, objs, viewer, ids, facts)
        else:
            ans = self._angle(q, objs, viewer, ids, facts)
        if notes:
            ans.message = "; ".join(notes + ([ans.message] if ans.message else []))
        return ans

    # -- relations -----------------------------------------------------------------------------
    def relation_holds(self, name: str, a: ObjectPrior, b: ObjectPrior,
                       viewer: ViewerFrame) -> tuple[bool, str]:
        d = b.center - a.center
        v = viewer.to_viewer(d)  # b relative to a: (right, away, up)
        if name == "left_of":
            return v[0] > 0, f"{b.id} is {v[0]:+.3f} m to the right of {a.id}"
        if name == "right_of":
            return v[0] < 0, f"{b.id} is {v[0]:+.3f} m to the right of {a.id}"
        if name == "in_front_of":
            return v[1] > 0, f"{b.id} is {v[1]:+.3f} m farther back than {a.id}"
        if name == "behind":
            return v[1] < 0, f"{b.id} is {v[1]:+.3f} m farther back than {a.id}"
        if name == "above":
            return v[2] < 0, f"center heights {a.center[2]:.3f} and {b.center[2]:.3f} m"
        if name == "below":
            return v[2] > 0, f"center heights {a.center[2]:.3f} and {b.center[2]:.3f} m"
        if name in ("closer_to_camera", "farther_from_camera"):
            da, db = (float(np.linalg.norm(o.center - viewer.eye)) for o in (a, b))
            return (da < db) == (name == "closer_to_camera"), \
                f"distances to the camera {da:.3f} and {db:.3f} m"
        if name in ("bigger", "smaller"):
            va, vb = volume(a), volume(b)
            return (va > vb) == (name == "bigger"), f"volumes {va * 1e6:.0f} and {vb * 1e6:.0f} cm^3"
        if name in ("taller", "shorter"):
            return (a.size[2] > b.size[2]) == (name == "taller"), \
                f"heights {a.size[2]:.3f} and {b.size[2]:.3f} m"
        if name == "on_top_of":
            gap_z = (a.center[2] - a.size[2] / 2) - (b.center[2] + b.size[2] / 2)
            overlap, _ = cv2.intersectConvexConvex(footprint(a).astype(np.float32),
                                                   footprint(b).astype(np.float32))
            holds = abs(gap_z) < ON_TOP_TOLERANCE and overlap > 1e-6
            return holds, (f"{a.id}'s bottom is {gap_z * 100:+.1f} cm from {b.id}'s top; "
                           f"footprints overlap {overlap * 1e4:.1f} cm^2")
        if name == "next_to":
            g = surface_gap(a, b)
            return g < NEXT_TO_GAP, f"surfaces {g:.3f} m apart"
        raise SpatialPinError(f"unknown relation {name!r}")

    def _relation(self, q, objs, viewer, ids, facts) -> Answer:
        a, b = objs
        holds, why = self.relation_holds(q.name, a, b, viewer)
        words = q.name.replace("_", " ").replace(" of", "").replace("camera", "the camera")
        if q.kind == "choice":
            pick = a if holds else b
            return Answer(True, f"{pick.label} ({pick.id}) is {words}.", object_ids=[pick.id] +
                          [o.id for o in objs if o.id != pick.id],
                          explanation="; ".join(facts + [why]))
        return Answer(True, ("Yes" if holds else "No") + f": {a.label} ({a.id}) is "
                      f"{'' if holds else 'not '}{q.name.replace('_', ' ')} {b.label} ({b.id}).",
                      value=1.0 if holds else 0.0, object_ids=ids,
                      explanation="; ".join(facts + [why]))

    # -- metric --------------------------------------------------------------------------------
    def _metric(self, q, objs, viewer, ids, facts) -> Answer:
        n = q.name
        a = objs[0]
        if n in ("width", "depth", "height", "length", "size"):
            w, d, h = object_dims(a, viewer)
            if n == "size":
                return Answer(True, f"{a.label} is {w:.3f} m wide, {d:.3f} m deep and {h:.3f} m "
                              "tall.", value=float(max(w, d, h)), unit="m", object_ids=ids,
                              explanation="; ".join(facts) + " (value: the largest extent)")
            val = {"width": w, "depth": d, "height": h, "length": max(w, d)}[n]
            return Answer(True, f"The {n} of {a.label} is {val:.3f} m.", val, "m", ids,
                          "; ".join(facts))
        if n == "distance_to_camera":
            val = float(np.linalg.norm(a.center - viewer.eye))
            return Answer(True, f"{a.label} is {val:.3f} m from the camera.", val, "m", ids,
                          "; ".join(facts + [f"camera at {_fmt(viewer.eye)} m"]))
        b = objs[1]
        d = b.center - a.center
        if n == "distance":
            val, what = float(np.linalg.norm(d)), "center to center"
        elif n == "gap":
            val, what = surface_gap(a, b), "between their surfaces"
        elif n == "horizontal_distance":
            val, what = float(np.hypot(d[0], d[1])), "horizontally, center to center"
        else:
            val, what = float(abs(d[2])), "vertically, center to center"
        extra = ""
        if n == "vertical_distance":
            extra = f" ({a.label} is {'higher' if d[2] < 0 else 'lower'})"
        return Answer(True, f"{a.label} and {b.label} are {val:.3f} m apart {what}{extra}.", val,
                      "m", ids, "; ".join(facts))

    # -- angles --------------------------------------------------------------------------------
    def _angle(self, q, objs, viewer, ids, facts) -> Answer:
        a = objs[0]
        n = q.name
        sym = [o for o in objs if o.yaw_symmetric or o.shape in ("cylinder", "sphere")]
        if n == "tilt":
            up = a.pose.rotation.as_matrix()[:, 2]
            val = math.degrees(math.acos(np.clip(abs(up @ viewer.up), 0, 1)))
            return Answer(True, f"{a.label} is tilted {val:.1f} deg from upright.", val, "deg",
                          ids, "; ".join(facts))
        if n == "direction":
            b = objs[1]
            d = b.center - a.center
            name = viewer.name(d, horizontal_only=True)
            bearing = viewer.bearing_deg(d)
            return Answer(True, f"{b.label} is to the {name} of {a.label} (bearing "
                          f"{bearing:.0f} deg; 0 = right, 90 = away from the camera).",
                          bearing, "deg", [a.id, b.id], "; ".join(facts))
        if sym and n in ("yaw_relative", "align_rotation", "yaw_to_camera"):
            return Answer(True, f"{', '.join(o.label for o in sym)} "
                          f"{'is' if len(sym) == 1 else 'are'} rotationally symmetric about the "
                          "vertical axis, so any rotation aligns it; no angle is defined.",
                          float("nan"), "deg", ids, "; ".join(facts),
                          message="orientation undefined for a symmetric object")
        ya = math.degrees(long_axis_yaw(a))
        if n == "yaw_to_camera":
            yc = math.degrees(math.atan2(viewer.away[1], viewer.away[0]))
            val = fold_axis_angle(ya - yc)
            return Answer(True, f"The long side of {a.label} is at {val:.1f} deg to the "
                          "camera's viewing direction.", val, "deg", ids, "; ".join(facts))
        b = objs[1]
        yb = math.degrees(long_axis_yaw(b))
        if n == "yaw_relative":
            val = fold_axis_angle(yb - ya)
            return Answer(True, f"The long sides of {a.label} and {b.label} are {val:.1f} deg "
                          "apart.", val, "deg", ids, "; ".join(facts))
        s = signed_axis_angle(yb - ya)
        turn = "counter-clockwise" if s > 0 else "clockwise"
        return Answer(True, f"Rotate {a.label} {abs(s):.1f} deg {turn} (seen from above) to align "
                      f"it with {b.label}.", abs(s), "deg", ids, "; ".join(facts))

    # -- two views -------------------------------------------------------------------------------
    def _two_view(self, q, scene, ref_scene, camera_motion) -> Answer:
        if ref_scene is None:
            raise TwoViewError("this question compares two views: give reference_scene_id")
        if q.name in ("camera_translation", "camera_rotation"):
            if camera_motion is None:
                camera_motion = ref_scene.camera_pose.inverse() @ scene.camera_pose
                how = "from the two scenes' camera poses"
            else:
                how = "estimated by registering the two scenes' point clouds"
            if q.name == "camera_translation":
                val = float(np.linalg.norm(camera_motion.position))
                return Answer(True, f"The camera moved {val:.3f} m between the views.", val, "m",
                              [], f"relative camera motion {how}: translation "
                              f"{_fmt(camera_motion.position)} m")
            val = _rotation_angle_deg(camera_motion.rotation.as_matrix())
            return Answer(True, f"The camera rotated {val:.1f} deg between the views.", val,
                          "deg", [], f"relative camera motion {how}")
        phrase = q.refs[0]
        o1 = resolve(phrase, ref_scene)
        o2 = resolve(phrase, scene)
        if q.name == "object_displacement":
            val = float(np.linalg.norm(o2.center - o1.center))
            return Answer(True, f"{o2.label} moved {val:.3f} m between the views.", val, "m",
                          [o2.id], f"center {_fmt(o1.center)} m in {ref_scene.scene_id}, "
                          f"{_fmt(o2.center)} m in {scene.scene_id} (world frame)")
        if o2.yaw_symmetric or o2.shape in ("cylinder", "sphere"):
            return Answer(True, f"{o2.label} is rotationally symmetric; its rotation about the "
                          "vertical is not observable.", float("nan"), "deg", [o2.id],
                          message="orientation undefined for a symmetric object")
        d = math.degrees(long_axis_yaw(o2) - long_axis_yaw(o1))
        val = fold_axis_angle(d)
        return Answer(True, f"{o2.label} turned {val:.1f} deg between the views.", val, "deg",
                      [o2.id], f"long-axis yaw {math.degrees(long_axis_yaw(o1)):.1f} deg then "
                      f"{math.degrees(long_axis_yaw(o2)):.1f} deg")
