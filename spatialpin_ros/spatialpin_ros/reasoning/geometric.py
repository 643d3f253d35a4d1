"""Answers from the 3D scene priors alone (the default backend: offline, deterministic)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.reasoning.answer import Answer
from spatialpin_ros.reasoning.measures import (  # noqa: F401 (re-exported for callers)
    NEXT_TO_GAP, ON_TOP_TOLERANCE, ROBOT_BASE, clock_hour, distance_to, fold_axis_angle,
    footprint, long_axis_yaw, object_dims, radius, relation_holds, signed_axis_angle,
    surface_gap, top, volume)
from spatialpin_ros.reasoning.query import Query
from spatialpin_ros.reasoning.resolve import describe, ground_all, resolve
from spatialpin_ros.reasoning.superlatives import answer_count, answer_superlative
from spatialpin_ros.reasoning.units import BASE, convert, format_value
from spatialpin_ros.reasoning.viewer import ViewerFrame


class TwoViewError(SpatialPinError, ValueError):
    """A question about two views without a second scene, or with scenes that cannot be
    related."""


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in v) + ")"


def in_unit(ans: Answer, q: Query) -> Answer:
    """``ans`` (value in metres or degrees) with its value in the unit ``q`` asks for."""
    if ans.success and ans.unit and q.unit and ans.unit != q.unit and ans.unit in BASE.values():
        ans.value = convert(ans.value, ans.unit, q.unit)
        ans.unit = q.unit
    return ans


def _rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


class GeometricAnswerer:
    """Answers typed queries from a Scene's priors."""

    name = "geometric"

    def answer(self, q: Query, scene: Scene, ref_scene: Optional[Scene] = None,
               camera_motion: Optional[Pose] = None) -> Answer:
        """Answer ``q`` about ``scene``. Two-view queries need ``ref_scene`` (the earlier view);
        ``camera_motion`` (the second camera in the first camera's frame) replaces the scenes'
        camera poses where those are unknown (e.g. estimated by registration). Numbers come in
        the unit the question asked for (metres and degrees by default)."""
        viewer = ViewerFrame.from_camera(scene.camera_pose)
        if q.kind == "two_view":
            return in_unit(self._two_view(q, scene, ref_scene, camera_motion), q)
        if q.kind == "superlative":
            return answer_superlative(q, scene, viewer)
        if q.kind in ("count", "exists", "count_relative"):
            return answer_count(q, scene, viewer)
        notes: list[str] = []
        objs, scene = ground_all(list(q.refs), scene, viewer, notes)
        ids = [o.id for o in objs]
        facts = [f"{describe(o)}: center {_fmt(o.center)} m, size {_fmt(o.size)} m, yaw "
                 f"{math.degrees(o.pose.yaw()):.1f} deg" for o in objs]
        if q.kind in ("relation", "choice", "side"):
            ans = self._relation(q, objs, viewer, ids, facts)
        elif q.kind == "metric":
            ans = self._metric(q, objs, viewer, ids, facts)
        else:
            ans = self._angle(q, objs, viewer, ids, facts)
        if notes:
            ans.message = "; ".join(notes + ([ans.message] if ans.message else []))
        return in_unit(ans, q)

    # -- relations -----------------------------------------------------------------------------
    def relation_holds(self, name: str, a: ObjectPrior, b: ObjectPrior,
                       viewer: ViewerFrame) -> tuple[bool, str]:
        return relation_holds(name, a, b, viewer)

    _SIDES = {"left_right": ("left_of", "to the left of", "to the right of"),
              "front_behind": ("in_front_of", "in front of", "behind"),
              "above_below": ("above", "above", "below")}

    def _relation(self, q, objs, viewer, ids, facts) -> Answer:
        a, b = objs
        if q.kind == "side":  # value 1: the first word (left / in front / above)
            rel, yes, no = self._SIDES[q.name]
            holds, why = relation_holds(rel, a, b, viewer)
            return Answer(True, f"{a.label} ({a.id}) is {yes if holds else no} {b.label} "
                          f"({b.id}).", 1.0 if holds else 0.0, "", ids, "; ".join(facts + [why]))
        holds, why = relation_holds(q.name, a, b, viewer)
        words = q.name.replace("_", " ").replace(" of", "").replace("camera", "the camera") \
            .replace("robot", "the robot")
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
        n, a, u = q.name, objs[0], q.unit or "m"
        f = lambda v: format_value(convert(v, "m", u), u)  # noqa: E731
        if n in ("width", "depth", "height", "length", "size", "diameter"):
            w, d, h = object_dims(a, viewer)
            if n == "size":
                return Answer(True, f"{a.label} is {f(w)} wide, {f(d)} deep and {f(h)} tall.",
                              value=float(max(w, d, h)), unit="m", object_ids=ids,
                              explanation="; ".join(facts) + " (value: the largest extent)")
            if n == "diameter":
                val = 2 * radius(a) if a.shape in ("cylinder", "sphere") else max(w, d)
                note = "" if a.shape in ("cylinder", "sphere") else \
                    f"{a.label} is not round: its longer horizontal side is given"
                return Answer(True, f"The diameter of {a.label} is {f(val)}.", val, "m", ids,
                              "; ".join(facts), message=note)
            val = {"width": w, "depth": d, "height": h, "length": max(w, d)}[n]
            return Answer(True, f"The {n} of {a.label} is {f(val)}.", val, "m", ids,
                          "; ".join(facts))
        for key, what, point in (("distance_to_camera", "camera", viewer.eye),
                                 ("distance_to_robot", "robot's base", ROBOT_BASE)):
            if n == key:
                val = distance_to(a, point)
                return Answer(True, f"{a.label} is {f(val)} from the {what}.", val, "m", ids,
                              "; ".join(facts + [f"{what} at {_fmt(np.asarray(point))} m"]))
        b = objs[1]
        d = b.center - a.center
        extra = ""
        if n == "distance":
            val, what = float(np.linalg.norm(d)), "center to center"
        elif n == "gap":
            val, what = surface_gap(a, b), "between their surfaces"
        elif n == "horizontal_distance":
            val, what = float(np.hypot(d[0], d[1])), "horizontally, center to center"
        elif n == "height_difference":
            dh = float(a.size[2] - b.size[2])
            val, what = abs(dh), "in height"
            extra = f" ({a.label} is {'taller' if dh > 0 else 'shorter'})"
        elif n == "top_difference":
            dt = top(a) - top(b)
            val, what = abs(dt), "in the heights of their tops"
            extra = f" ({a.label}'s top is {'higher' if dt > 0 else 'lower'})"
        else:
            val, what = float(abs(d[2])), "vertically, center to center"
            extra = f" ({a.label} is {'higher' if d[2] < 0 else 'lower'})"
        return Answer(True, f"{a.label} and {b.label} differ by {f(val)} {what}{extra}."
                      if n in ("top_difference", "height_difference") else
                      f"{a.label} and {b.label} are {f(val)} apart {what}{extra}.", val, "m",
                      ids, "; ".join(facts))

    # -- angles --------------------------------------------------------------------------------
    def _angle(self, q, objs, viewer, ids, facts) -> Answer:
        a, n, u = objs[0], q.name, q.unit or "deg"
        f = lambda v: format_value(convert(v, "deg", u), u)  # noqa: E731
        sym = [o for o in objs if o.yaw_symmetric or o.shape in ("cylinder", "sphere")]
        if n == "tilt":
            up = a.pose.rotation.as_matrix()[:, 2]
            val = math.degrees(math.acos(np.clip(abs(up @ viewer.up), 0, 1)))
            return Answer(True, f"{a.label} is tilted {f(val)} from upright.", val, "deg",
                          ids, "; ".join(facts))
        if n == "direction":
            return self._direction(a, objs[1], viewer, facts)
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
            return Answer(True, f"The long side of {a.label} is at {f(val)} to the "
                          "camera's viewing direction.", val, "deg", ids, "; ".join(facts))
        b = objs[1]
        yb = math.degrees(long_axis_yaw(b))
        if n == "yaw_relative":
            val = fold_axis_angle(yb - ya)
            return Answer(True, f"The long sides of {a.label} and {b.label} are {f(val)} "
                          "apart.", val, "deg", ids, "; ".join(facts))
        s = signed_axis_angle(yb - ya)
        turn = "counter-clockwise" if s > 0 else "clockwise"
        return Answer(True, f"Rotate {a.label} {f(abs(s))} {turn} (seen from above) to align "
                      f"it with {b.label}.", abs(s), "deg", ids, "; ".join(facts))

    def _direction(self, a, b, viewer, facts) -> Answer:
        """Where ``b`` is from ``a``: named direction, clock position (12 = away from the
        camera, 3 = right) and bearing (value, degrees: 0 = right, 90 = away)."""
        d = b.center - a.center
        name = viewer.name(d, horizontal_only=True)
        bearing = viewer.bearing_deg(d)
        dist = float(np.hypot(d[0], d[1]))
        return Answer(True, f"From {a.label}, {b.label} is at {clock_hour(bearing)} o'clock, to "
                      f"the {name}, {dist:.3f} m away (12 o'clock = away from the camera, 3 = "
                      f"right; bearing {bearing:.0f} deg, 0 = right, 90 = away).", bearing,
                      "deg", [a.id, b.id], "; ".join(facts))

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
        notes: list[str] = []
        o1 = resolve(q.refs[0], ref_scene, notes=notes)
        n_ref = len(notes)
        o2 = resolve(q.refs[0], scene, notes=notes)
        ans = self._object_motion(q, o1, o2, ref_scene, scene)
        notes = [f"in the earlier view, {n}" for n in notes[:n_ref]] + notes[n_ref:]
        if notes:
            ans.message = "; ".join(notes + ([ans.message] if ans.message else []))
        return ans

    def _object_motion(self, q, o1, o2, ref_scene, scene) -> Answer:
        """How far or how much the object (o1 earlier, o2 now) moved between the views."""
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
