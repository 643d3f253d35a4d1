"""Task kinds and their rules: what may go where, where it is put, and how success is judged
(ROS-free). Built on ``core.stacking`` (the gripper, support and stability rules): together they
are the one set of rules the proposer (``reasoning.tasks``), the VLM proposals' checks and the
planner (``planning``) share.

Kinds (``TaskKind``):

* ``stack``: on a flat, level, stable, solid top (``stacking.check_support``). Never on a
  container, an irregular object (shape ``other``) or a ball.
* ``put_in``: into a container deeper than ``FLAT_HOLDER_MAX_DEPTH`` (a bowl, a cup, a mug): the
  object (its diagonal, or diameter) must fit the inner width (outer width less ``WALL`` each
  side) with ``FIT_MARGIN`` each side, and its centre of mass must end at most ``STICK_OUT``
  above the rim. The object is let go with the fingertips ``RIM_CLEARANCE`` above the rim, or
  lower where it reaches the inner bottom first.
* ``place_on``: onto a flat holder (a plate, a tray: a container at most
  ``FLAT_HOLDER_MAX_DEPTH`` deep, at least ``FLAT_HOLDER_MIN_WIDTH`` wide), inside its rim
  (outer half-width less ``PLATE_RIM``), standing stably (``MIN_TIP_ANGLE`` on its own base).
* ``place_next_to``: on the table beside an object, ``NEXT_GAP`` from its footprint, on a free
  spot; never a ball (it would roll away), never an object already within ``NEXT_MAX_GAP`` of
  it; done when it has moved and ends on the table within ``NEXT_MAX_GAP`` of it.
* ``move``: to a free spot on the table (the former ``pick_and_place``).

Bases (the target of stack, put_in and place_on) are never a ball nor an irregular solid object
(shape ``other``): a stack needs a box or a cylinder; a container is judged by its container flag
and inner depth (perception may call a bowl or tray ``other`` for its hollow). Success rules (``check_done``) read perceived priors of the scene after the
task (or, for scoring, the simulator's truth): each kind its own.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.stacking import (FREE_AREA, MIN_TIP_ANGLE, Infeasible, bottom_z,
                                          check_graspable, check_support, footprint,
                                          point_polygon_distance, polygon_gap, top_z)
from spatialpin_ros.core.types import ObjectPrior, Pose


class TaskKind(str, enum.Enum):
    STACK = "stack"
    PUT_IN = "put_in"
    PLACE_ON = "place_on"
    PLACE_NEXT_TO = "place_next_to"
    MOVE = "move"


#: Kinds whose target carries the object (its "base").
BASE_KINDS = (TaskKind.STACK, TaskKind.PUT_IN, TaskKind.PLACE_ON)
#: Shapes a base may have.
BASE_SHAPES = ("box", "cylinder")

#: Horizontal distance from the robot base (m) within which objects and targets are in reach.
REACH = (0.25, 0.80)
#: A container at most this deep (m, rim to inner bottom) is a flat holder (plate, tray).
FLAT_HOLDER_MAX_DEPTH = 0.03
#: A flat holder is at least this wide (m).
FLAT_HOLDER_MIN_WIDTH = 0.10
#: Wall thickness assumed for a container (m): inner width = outer width - 2 WALL.
WALL = 0.008
#: Width of a plate's or tray's rim (m): the object must stand inside it.
PLATE_RIM = 0.02
#: Free room (m) on each side of an object put into a container.
FIT_MARGIN = 0.008
#: How far (m) an object's centre of mass may end above a container's rim: none. Only with its
#: centre of mass below the rim do the walls hold an object upright; a bottle in a mug leans
#: on the rim and tips the mug over.
STICK_OUT = 0.0
#: Fingertips stay this far (m) above a container's rim when letting go into it.
RIM_CLEARANCE = 0.01
#: Gap (m) between an object placed next to another and that object.
NEXT_GAP = 0.03
#: Largest gap (m) that still counts as "next to" when checking.
NEXT_MAX_GAP = 0.07
#: ``check_done``'s tolerances (m): a stacked object's centre within ``DONE_XY_TOL`` of the
#: target's, its bottom within ``DONE_Z_TOL`` of the target's top (and the same ``DONE_Z_TOL``
#: for resting on the table or sunk into a container).
DONE_XY_TOL, DONE_Z_TOL = 0.025, 0.015
#: Gap (m) kept from every other object at a place-next-to spot.
NEXT_CLEAR = 0.02


def kind_of(action: str, kind: str = "", target_id: str = "") -> TaskKind:
    """The kind of a task message: ``kind`` when given, else from ``action`` (``stack``, or
    ``pick_and_place`` = move). Raises ValueError for an unknown kind or action."""
    if kind:
        return TaskKind(kind)
    if action == "stack":
        return TaskKind.STACK
    if action == "pick_and_place":
        return TaskKind.MOVE
    raise ValueError(f"unknown action {action!r}")


def action_of(kind: TaskKind) -> str:
    """The message's ``action`` for a kind: ``stack`` puts on top of the target; everything else
    puts the object down at ``place_pose`` (``pick_and_place``)."""
    return "stack" if kind == TaskKind.STACK else "pick_and_place"


def is_flat_holder(o: ObjectPrior) -> bool:
    return (o.container and o.inner_depth <= FLAT_HOLDER_MAX_DEPTH
            and min(o.size[:2]) >= FLAT_HOLDER_MIN_WIDTH)


def is_deep_container(o: ObjectPrior) -> bool:
    return o.container and o.inner_depth > FLAT_HOLDER_MAX_DEPTH


def across(o: ObjectPrior) -> float:
    """Widest horizontal extent of the object at any yaw: its diagonal, a round one's diameter."""
    if o.shape in ("cylinder", "sphere"):
        return float(max(o.size[:2]))
    return float(np.hypot(o.size[0], o.size[1]))


def self_tip_angle(o: ObjectPrior) -> float:
    """Tilt (radians) the object survives standing on a flat surface on its own base."""
    half = min(o.size[:2]) / 2 if o.shape != "cylinder" else max(o.size[:2]) / 2
    return math.atan2(half, max(float(o.size[2]) / 2, 1e-6))


def check_reach(*objs: ObjectPrior) -> None:
    for o in objs:
        r = float(np.hypot(o.center[0], o.center[1]))
        if not REACH[0] <= r <= REACH[1]:
            raise Infeasible("unreachable", f"{o.id} is {r:.2f} m from the robot base, "
                             "outside its reach")


def _check_base(kind: TaskKind, target: ObjectPrior) -> None:
    """A stack needs a box or cylinder; a container (put_in, place_on) may have any outline but
    a ball's (its hollow makes perception call a bowl or tray ``other``)."""
    if target.shape == "sphere" or (target.shape not in BASE_SHAPES and not target.container):
        what = "a ball" if target.shape == "sphere" else "an irregular object"
        raise Infeasible("no_flat_top", f"target {target.id!r} is {what}: no flat top or "
                         f"inside to carry things (no base for {kind.value})")


def check_kind(kind: TaskKind, obj: ObjectPrior, target: Optional[ObjectPrior],
               objects: Sequence[ObjectPrior] = ()) -> None:
    """Raises Infeasible when ``obj`` cannot be taken to ``target`` for ``kind`` (the gripper,
    support, stability, fit and reach rules); ``objects``: the whole scene, for free space."""
    check_graspable(obj)
    if kind == TaskKind.MOVE:
        check_reach(obj)
        return
    if target is None:
        raise Infeasible("missing_object", f"{kind.value} needs a target")
    if target.id == obj.id:
        raise Infeasible("error", "an object cannot be put on, in or next to itself")
    check_reach(obj, target)
    if kind in BASE_KINDS:
        _check_base(kind, target)
    if kind == TaskKind.STACK:
        if target.shape not in BASE_SHAPES:
            raise Infeasible("no_flat_top", f"target {target.id!r} is an irregular object: "
                             "no flat top to stack on")
        if target.container:
            raise Infeasible("container", f"target {target.id!r} is a container (hollow): "
                             "put things in or on it, never stack on it")
        check_support(obj, target)
    elif kind == TaskKind.PUT_IN:
        _check_put_in(obj, target)
    elif kind == TaskKind.PLACE_ON:
        _check_place_on(obj, target)
    elif kind == TaskKind.PLACE_NEXT_TO:
        if obj.shape == "sphere":
            raise Infeasible("unstable", f"{obj.id!r} is a ball and would roll away")
        if polygon_gap(footprint(obj), footprint(target)) <= NEXT_MAX_GAP:
            raise Infeasible("already_done", f"{obj.id!r} is already next to {target.id!r}")
        if next_to_spot(obj, target, objects) is None:
            raise Infeasible("no_free_spot", f"no free spot next to {target.id!r} for "
                             f"{obj.id!r}")


def _check_put_in(obj: ObjectPrior, target: ObjectPrior) -> None:
    if not is_deep_container(target):
        raise Infeasible("not_container", f"target {target.id!r} is not a container deep "
                         f"enough to put things in")
    inner = float(min(target.size[:2])) - 2 * WALL
    need = across(obj) + 2 * FIT_MARGIN
    if need > inner:
        raise Infeasible("does_not_fit", (
            f"{obj.id!r} ({100 * across(obj):.1f} cm across) does not fit into {target.id!r} "
            f"({100 * inner:.1f} cm inside; {100 * FIT_MARGIN:.1f} cm room each side needed)"))
    if obj.size[2] / 2 > target.inner_depth + STICK_OUT:
        raise Infeasible("unstable", (
            f"{obj.id!r} ({100 * obj.size[2]:.1f} cm tall) would stick out of {target.id!r} "
            f"({100 * target.inner_depth:.1f} cm deep) and tip over"))


def _check_place_on(obj: ObjectPrior, target: ObjectPrior) -> None:
    if not is_flat_holder(target):
        raise Infeasible("not_holder", f"target {target.id!r} is not a plate, tray or board")
    inner = float(min(target.size[:2])) - 2 * PLATE_RIM
    if across(obj) + 2 * FIT_MARGIN > inner:
        raise Infeasible("target_too_small", (
            f"{obj.id!r} ({100 * across(obj):.1f} cm across) does not fit inside the rim of "
            f"{target.id!r} ({100 * inner:.1f} cm inside)"))
    if obj.shape != "sphere" and self_tip_angle(obj) < MIN_TIP_ANGLE:
        raise Infeasible("unstable", f"{obj.id!r} is too tall and narrow to stand on "
                         f"{target.id!r}")


def holder_floor_z(target: ObjectPrior) -> float:
    """Height of a container's inner bottom (its top less its inner depth)."""
    return top_z(target) - float(target.inner_depth)


def put_in_pose(obj: ObjectPrior, target: ObjectPrior, grasp_depth: float = 0.025,
                fingertip_below_tcp: float = 0.007, clearance: float = 0.005) -> Pose:
    """Where the object's centre is let go into a container: over its centre, the fingertips
    ``RIM_CLEARANCE`` above the rim (the TCP ``grasp_depth`` below the object's top), or resting
    just above the inner bottom where that is higher. ``fingertip_below_tcp``: the robot's
    (``RobotModel.fingertip_below_tcp``; the default, a typical finger, gives the nominal
    pose a task is checked against)."""
    h = float(obj.size[2])
    depth = min(grasp_depth, 0.75 * h)
    bottom_tips = top_z(target) + RIM_CLEARANCE + fingertip_below_tcp - (h - depth)
    bottom = max(holder_floor_z(target) + clearance, bottom_tips)
    return Pose.from_yaw([target.center[0], target.center[1], bottom + h / 2], obj.pose.yaw())


def place_on_pose(obj: ObjectPrior, target: ObjectPrior, clearance: float = 0.005) -> Pose:
    """Where the object's centre goes on a plate or tray: its centre, on the inner bottom."""
    bottom = holder_floor_z(target) + clearance
    return Pose.from_yaw([target.center[0], target.center[1], bottom + obj.size[2] / 2],
                         obj.pose.yaw())


def next_to_spot(obj: ObjectPrior, target: ObjectPrior, objects: Sequence[ObjectPrior],
                 table_z: float = 0.0, clearance: float = 0.005,
                 area=FREE_AREA) -> Optional[Pose]:
    """A free spot on the table for ``obj`` (its centre pose, at its own yaw) whose footprint
    is ``NEXT_GAP`` from ``target``'s, the one nearest the object's current place, with
    ``NEXT_CLEAR`` round it (as a disc) from every other object; None when there is none."""
    r_o = across(obj) / 2
    ft = footprint(target)
    fo = footprint(obj, xy=(0.0, 0.0))          # kept at its yaw, about its centre
    c = np.asarray(target.center[:2], dtype=float)
    others = [footprint(o) for o in objects if o.id not in (obj.id, target.id)]
    best, best_d = None, math.inf
    for a in np.linspace(0, 2 * math.pi, 24, endpoint=False):
        d = np.array([math.cos(a), math.sin(a)])
        reach_t = float(np.max((ft - c) @ d))
        # The object's own extent toward the target, not its half diagonal: the gap between
        # the two footprints is NEXT_GAP, so that a perceived size a little off keeps it
        # within NEXT_MAX_GAP.
        reach_o = float(np.max(fo @ -d))
        p = c + d * (reach_t + NEXT_GAP + reach_o)
        if not (area[0][0] <= p[0] <= area[0][1] and area[1][0] <= p[1] <= area[1][1]):
            continue
        if not REACH[0] + 0.05 <= float(np.hypot(*p)) <= REACH[1] - 0.05:
            continue
        if any(point_polygon_distance(p[None], f)[0] < r_o + NEXT_CLEAR for f in others):
            continue
        dist = float(np.linalg.norm(p - obj.center[:2]))
        if dist < best_d:
            best, best_d = p, dist
    if best is None:
        return None
    z = table_z + clearance + float(obj.center[2]) - bottom_z(obj)
    return Pose.from_yaw([best[0], best[1], z], obj.pose.yaw())


def place_pose(kind: TaskKind, obj: ObjectPrior, target: Optional[ObjectPrior],
               objects: Sequence[ObjectPrior] = (), table_z: float = 0.0,
               clearance: float = 0.005) -> Optional[Pose]:
    """The nominal pose of the object's centre when the task is done (None: no spot)."""
    if kind == TaskKind.STACK:
        z = top_z(target) + clearance + float(obj.center[2]) - bottom_z(obj)
        return Pose([target.center[0], target.center[1], z], obj.pose.quaternion)
    if kind == TaskKind.PUT_IN:
        return put_in_pose(obj, target, clearance=clearance)
    if kind == TaskKind.PLACE_ON:
        return place_on_pose(obj, target, clearance)
    if kind == TaskKind.PLACE_NEXT_TO:
        return next_to_spot(obj, target, objects, table_z, clearance)
    return None


@dataclass
class TaskCheck:
    """The verdict of a task's own success rule: ``ok``, the ``rule`` that decided (a short
    name), and what was measured (``detail``)."""

    ok: bool
    rule: str
    detail: str


def check_done(kind: TaskKind, obj_before: ObjectPrior, obj: Optional[ObjectPrior],
               target: Optional[ObjectPrior], goal: Optional[Pose] = None,
               table_z: float = 0.0, xy_tol: float = DONE_XY_TOL, z_tol: float = DONE_Z_TOL
               ) -> TaskCheck:
    """Judge a finished task from the object (``obj``) and its target as seen afterwards.
    ``obj_before``: the object before (its height); ``goal``: the planned place (``move``)."""
    rule = {TaskKind.STACK: "on_top", TaskKind.PUT_IN: "inside",
            TaskKind.PLACE_ON: "inside_rim", TaskKind.PLACE_NEXT_TO: "beside",
            TaskKind.MOVE: "at_spot"}[kind]
    if obj is None:
        return TaskCheck(False, rule, f"{obj_before.id} is no longer seen")
    if kind != TaskKind.MOVE and target is None:
        return TaskCheck(False, rule, "the target is no longer seen")
    dxy = float(np.linalg.norm(obj.center[:2] - (target.center[:2] if target is not None
                                                  else goal.position[:2])))
    if kind == TaskKind.STACK:
        dz = bottom_z(obj) - top_z(target)
        return TaskCheck(dxy <= xy_tol and abs(dz) <= z_tol, rule,
                         f"{dxy * 100:.1f} cm from the target's centre, bottom {dz * 100:+.1f} "
                         "cm from its top")
    if kind in (TaskKind.PUT_IN, TaskKind.PLACE_ON):
        inner_r = float(min(target.size[:2])) / 2 - (WALL if kind == TaskKind.PUT_IN
                                                      else PLATE_RIM)
        # The object's top is seen best: resting inside, it is lower than it would be
        # standing on the rim.
        sunk = top_z(target) + float(obj_before.size[2]) - top_z(obj)
        need = min(z_tol, 0.5 * float(target.inner_depth)) if kind == TaskKind.PUT_IN \
            else -z_tol
        ok = dxy <= max(inner_r, 0.0) and sunk >= need and top_z(obj) > bottom_z(target)
        return TaskCheck(ok, rule, f"{dxy * 100:.1f} cm from the centre (inside "
                         f"{inner_r * 100:.1f} cm), top {sunk * 100:.1f} cm below standing on "
                         "the rim")
    on_table = bottom_z(obj) - table_z <= z_tol
    if kind == TaskKind.PLACE_NEXT_TO:
        gap = polygon_gap(footprint(obj), footprint(target))
        moved = float(np.linalg.norm(obj.center[:2] - obj_before.center[:2]))
        ok = on_table and gap <= NEXT_MAX_GAP and dxy > 0.02 and moved > 0.02
        return TaskCheck(ok, rule, f"moved {moved * 100:.1f} cm, {gap * 100:.1f} cm from the "
                         f"target (at most {NEXT_MAX_GAP * 100:.0f}), bottom {100 * (bottom_z(obj) - table_z):.1f}"
                         " cm above the table")
    ok = on_table and dxy <= 2 * xy_tol
    return TaskCheck(ok, rule, f"{dxy * 100:.1f} cm from the planned spot")


#: A perceived piece no longer than ``PHANTOM_MAX_SIDE`` that is smaller in volume than
#: ``PHANTOM_MAX_VOLUME`` (m^3; a 2 cm cube) or thinner than ``PHANTOM_MIN_THICKNESS`` is no
#: graspable object: a fragment of a textured or hollow object.
PHANTOM_MAX_VOLUME = 8.0e-6
PHANTOM_MIN_THICKNESS = 0.01
PHANTOM_MAX_SIDE = 0.045
#: Share of a piece's box inside another object's box (grown by ``PHANTOM_INSIDE_MARGIN``) above
#: which it counts as part of that object.
PHANTOM_INSIDE_SHARE = 0.7
PHANTOM_INSIDE_MARGIN = 0.01


def _inside_share(p: ObjectPrior, o: ObjectPrior, margin: float) -> float:
    """Share of ``p``'s box volume inside ``o``'s box grown by ``margin`` (sampled)."""
    g = np.linspace(-0.5, 0.5, 5)
    local = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) * p.size
    pts = p.pose.transform_points(local)
    rel = o.pose.inverse().transform_points(pts)
    return float(np.mean(np.all(np.abs(rel) <= o.size / 2 + margin, axis=1)))


def phantom_reason(p: ObjectPrior, objects: Sequence[ObjectPrior]) -> Optional[str]:
    """Why a perceived piece is not a real object to plan around or act on (None when it is):
    smaller than any graspable object, or lying inside another object's box."""
    if float(max(p.size)) < PHANTOM_MAX_SIDE and (float(np.prod(p.size)) < PHANTOM_MAX_VOLUME
                                                  or float(min(p.size)) < PHANTOM_MIN_THICKNESS):
        return f"{p.id} is smaller than a graspable object"
    for o in objects:
        if o.id == p.id or float(np.prod(o.size)) <= float(np.prod(p.size)):
            continue
        if _inside_share(p, o, PHANTOM_INSIDE_MARGIN) >= PHANTOM_INSIDE_SHARE:
            return f"{p.id} lies inside {o.id}'s box"
    return None


def real_objects(objects: Sequence[ObjectPrior]) -> list[ObjectPrior]:
    """The objects that are not phantoms (``phantom_reason``)."""
    return [o for o in objects if phantom_reason(o, objects) is None]
