"""Task rules on a perceived scene (ROS-free): is a task of some kind feasible here, where does
the object go, and, on a fresh perceived scene afterwards, was it done. The rules themselves
are ``core.task_kinds``' (with ``core.stacking``'s); this adds what the scene says: both objects
exist, the object carries nothing, the target carries nothing yet, and re-finding the objects
after the task (perception may renumber a moved object)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from spatialpin_ros.core.stacking import Infeasible, bottom_z, top_z
from spatialpin_ros.core.task_kinds import (BASE_KINDS, DONE_XY_TOL, DONE_Z_TOL, TaskCheck,
                                            TaskKind, check_done, check_kind, place_pose,
                                            real_objects)
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene

STACK_TOLERANCE = 0.02      # m: an object whose bottom is this close to another's top rests on it


def support_z(scene: Scene) -> float:
    a, b, c, d = scene.support_plane
    return float(-d / c) if c > 0.9 else 0.0


def rests_on(a: ObjectPrior, b: ObjectPrior) -> bool:
    """Whether ``a`` stands on (or in) ``b``: its bottom near ``b``'s top, or inside ``b``'s box
    when ``b`` is a container, and its centre over ``b``."""
    a_bottom = a.center[2] - a.size[2] / 2
    b_top = b.center[2] + b.size[2] / 2
    inside = np.linalg.norm(a.center[:2] - b.center[:2]) < 0.5 * max(b.size[:2])
    if not inside:
        return False
    if b.container:
        return b_top - b.inner_depth - STACK_TOLERANCE <= a_bottom <= b_top + STACK_TOLERANCE
    return abs(a_bottom - b_top) < STACK_TOLERANCE


def check_task(scene: Scene, kind: TaskKind, object_id: str, target_id: str = "") -> Optional[str]:
    """None if the task looks feasible, else the reason (the planner's rules)."""
    ids = {o.id: o for o in scene.objects}
    need = (object_id, target_id) if kind != TaskKind.MOVE else (object_id,)
    for i in need:
        if i not in ids:
            return f"no object {i!r} in the scene; known: {', '.join(ids) or 'none'}"
    if kind != TaskKind.MOVE and object_id == target_id:
        return ("an object cannot be stacked on itself" if kind == TaskKind.STACK
                else "an object cannot be put on, in or next to itself")
    a = ids[object_id]
    b = ids.get(target_id) if kind != TaskKind.MOVE else None
    try:
        check_kind(kind, a, b, scene.objects)
    except Infeasible as e:
        return e.reason
    for o in real_objects(scene.objects):
        if b is not None and kind in BASE_KINDS and o.id not in (a.id, b.id) and rests_on(o, b):
            return f"{b.id} already carries {o.id}"
        if o.id != a.id and rests_on(o, a):
            return f"{a.id} carries {o.id}; move that first"
    if b is not None and kind in BASE_KINDS and rests_on(a, b):
        return f"{a.id} is already on {b.id}"
    return None


def task_pose(scene: Scene, kind: TaskKind, object_id: str, target_id: str = "") -> Optional[Pose]:
    """Where the object's centre should end (the planner may turn it about z)."""
    a = scene.get(object_id)
    b = scene.get(target_id) if target_id else None
    return place_pose(kind, a, b, scene.objects, support_z(scene))


#: How near (m) the expected place a newly seen object must be to count as the moved object.
NEW_OBJECT_RADIUS = 0.04


def find_again(after: Scene, o: ObjectPrior, near: Optional[np.ndarray] = None,
               before: Optional[Scene] = None) -> Optional[ObjectPrior]:
    """The object ``o`` in a later scene: the same id and colour, else the nearest (to ``near``,
    default its old centre) of the same colour and shape, else of the same colour; else (with
    ``before``) an object not in ``before`` within ``NEW_OBJECT_RADIUS`` of ``near`` (its colour
    may be seen mixed with what it now stands on)."""
    same = [x for x in after.objects if x.id == o.id]
    if same and same[0].color_name == o.color_name:
        return same[0]
    ref = o.center if near is None else np.asarray(near, dtype=float)
    for pick in (lambda x: x.color_name == o.color_name and x.shape == o.shape,
                 lambda x: x.color_name == o.color_name and bool(o.color_name)):
        cands = [x for x in after.objects if pick(x)]
        if cands:
            return min(cands, key=lambda x: np.linalg.norm(x.center - ref))
    if before is not None:
        old_ids = {x.id for x in before.objects}
        cands = [x for x in after.objects if x.id not in old_ids
                 and np.linalg.norm(x.center[:2] - ref[:2]) <= NEW_OBJECT_RADIUS]
        if cands:
            return min(cands, key=lambda x: np.linalg.norm(x.center[:2] - ref[:2]))
    return None


#: How far (m) from where it was grasped an object that slipped out may have ended.
DROP_RADIUS = 0.30
#: A dropped object's box volume is within this factor of its volume before (it may lie down).
DROP_VOLUME_RATIO = 3.0


def find_dropped(after: Scene, before: Scene, o: ObjectPrior,
                 radius: float = DROP_RADIUS) -> Optional[ObjectPrior]:
    """The object ``o`` after it slipped out of the hand or was missed (it may have been
    dragged, dropped or knocked over, and be seen with another colour name or shape). Only
    the objects of ``after`` that no other object of ``before`` accounts for (the same colour
    within ``NEW_OBJECT_RADIUS`` of its place: the target, the neighbours) are candidates:
    ``find_again``'s match among them, else the one nearest ``o``'s place within ``radius``
    whose box volume is within ``DROP_VOLUME_RATIO`` of ``o``'s; None when there is none."""
    taken: set[str] = set()
    for b in before.objects:
        if b.id == o.id:
            continue
        same = [x for x in after.objects if x.id not in taken and x.color_name == b.color_name
                and np.linalg.norm(x.center[:2] - b.center[:2]) <= NEW_OBJECT_RADIUS]
        if same:
            taken.add(min(same, key=lambda x: np.linalg.norm(x.center - b.center)).id)
    free = after.replace(objects=[x for x in after.objects if x.id not in taken])
    a = find_again(free, o)
    if a is not None:
        return a
    vol = max(float(np.prod(o.size)), 1e-9)

    def near(x: ObjectPrior) -> float:
        return float(np.linalg.norm(x.center[:2] - o.center[:2]))

    cands = [x for x in after.objects if x.id not in taken and near(x) <= radius
             and 1.0 / DROP_VOLUME_RATIO <= float(np.prod(x.size)) / vol <= DROP_VOLUME_RATIO]
    return min(cands, key=near) if cands else None


def find_target(after: Scene, b0: ObjectPrior, max_shift: float = 0.03
                ) -> tuple[ObjectPrior, bool]:
    """The target in a later scene: found again (same colour, container flag as before, centre
    within ``max_shift`` of where it was: a target stays where it is), else its prior from
    before (a container with something in it may be seen in pieces); (prior, found again)."""
    cands = [x for x in after.objects if x.color_name == b0.color_name
             and x.container == b0.container
             and np.linalg.norm(x.center[:2] - b0.center[:2]) <= max_shift]
    if cands:
        return min(cands, key=lambda x: np.linalg.norm(x.center - b0.center)), True
    return b0, False


#: The least height (m) of a stacked object for a stack seen as one object to be told from the
#: target alone (below it, the rise is within the depth noise).
MIN_RISE = 0.03
#: How far (m) a stack seen as one may be wider, on each side, than the wider of the two.
ONE_STACK_SPREAD = 0.03


def seen_as_one_stack(after: Scene, a0: ObjectPrior, b0: ObjectPrior,
                      xy_tol: float = DONE_XY_TOL, z_tol: float = STACK_TOLERANCE
                      ) -> Optional[ObjectPrior]:
    """The object of ``after`` that is the object ``a0`` standing on ``b0``, perceived as one
    (a stack is one convex surface from the camera, and its colours may mix): at ``b0``'s place
    (centre within ``xy_tol``), standing where ``b0`` stood (bottom within ``z_tol`` of
    ``b0``'s, or of the support surface: a target's hidden lower part may be missed), as tall
    as ``b0`` and ``a0`` together (its top ``a0``'s height above ``b0``'s, within 25 % of it
    or ``z_tol``) and no wider than the wider of the two by more than ``ONE_STACK_SPREAD``
    (an object fallen beside the target and joined to it is wider, and lower). None when
    there is none, or ``a0`` is too low (``MIN_RISE``) to tell the stack from ``b0`` alone."""
    rise = float(a0.size[2])
    if rise < MIN_RISE:
        return None
    tol = max(z_tol, 0.25 * rise)
    widest = np.maximum(np.sort(np.asarray(a0.size[:2], dtype=float)),
                        np.sort(np.asarray(b0.size[:2], dtype=float)))
    floor = support_z(after)
    for m in after.objects:
        if (np.linalg.norm(m.center[:2] - b0.center[:2]) <= xy_tol
                and min(abs(bottom_z(m) - bottom_z(b0)), abs(bottom_z(m) - floor)) <= z_tol
                and abs(top_z(m) - top_z(b0) - rise) <= tol
                and np.all(np.sort(np.asarray(m.size[:2], dtype=float))
                           <= widest + 2 * ONE_STACK_SPREAD)):
            return m
    return None


def verify_task(after: Scene, before: Scene, kind: TaskKind, object_id: str,
                target_id: str = "", goal: Optional[Pose] = None) -> TaskCheck:
    """The task's own success rule (``core.task_kinds.check_done``) on a fresh perceived scene.
    The target is the one found again there, else its prior from before (said in the detail).
    A stack may be perceived as one object (``seen_as_one_stack``), or with the placed
    object's bottom hidden behind the target's top edge (its top then stands its height above
    the target's, within ``DONE_Z_TOL``): the stack's rule holds then too, and the detail says
    so."""
    a0 = before.get(object_id)
    b0 = before.get(target_id) if target_id else None
    b, found = find_target(after, b0) if b0 is not None else (None, True)
    expect = goal.position if goal is not None else (b0.center if b0 is not None else None)
    a = find_again(after, a0, expect, before)
    check = check_done(kind, a0, a, b, goal, support_z(after))
    if kind == TaskKind.STACK and not check.ok and b0 is not None:
        one = seen_as_one_stack(after, a0, b0)
        if one is not None:
            return TaskCheck(True, check.rule, (
                f"seen as one object with its target ({one.id}): {100 * float(one.size[2]):.1f}"
                f" cm tall at the target's place, {100 * (top_z(one) - top_z(b0)):.1f} cm above"
                f" the target's top for the object's {100 * float(a0.size[2]):.1f} cm"))
    if kind == TaskKind.STACK and not check.ok and a is not None and b is not None:
        # The placed object's bottom may be hidden behind the target's top edge: its top,
        # seen best, stands its height above the target's top (and it is seen above the
        # target's bottom, not as one object with it).
        dxy = float(np.linalg.norm(a.center[:2] - b.center[:2]))
        rise = top_z(a) - top_z(b) - float(a0.size[2])
        if (dxy <= DONE_XY_TOL and abs(rise) <= DONE_Z_TOL
                and bottom_z(a) > bottom_z(b) + DONE_Z_TOL):
            return TaskCheck(True, check.rule, (
                f"{100 * dxy:.1f} cm from the target's centre, top {100 * rise:+.1f} cm from "
                f"its height above the target's top (bottom hidden: {check.detail})"))
    if not found:
        check.detail += f" (target {b0.id} not seen again: judged at its place before)"
    return check
