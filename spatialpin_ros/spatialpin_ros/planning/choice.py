"""Choosing the grasp and the placement of a pick and place (ROS-free): the first grasp and
placement, best first, whose pre-poses have a collision-free IK solution and whose straight
moves (descend, lift, lower, retreat) work, with those moves (``choose``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.planning.cartesian import CartesianResult, straight_line
from spatialpin_ros.planning.grasps import Grasp, Placement, placements_at, placements_for
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.scene import TABLE, PlanningScene

#: How much higher than ``approach_height`` the pre-grasp, lift, pre-place and retreat poses
#: may go to clear tall neighbours (metres).
RAISE = 0.16
#: How much wider (m per finger) than the preshape the fingers open to let go, where the
#: retreat stays clear of the neighbours so: an object perceived narrower than it is stops
#: the closing fingers at or beyond the preshape, and opening only to the preshape left it
#: wedged between them and carried it away.
RELEASE_EXTRA = 0.01
#: How much farther than ``approach_height`` a side grasp's pre-grasp may back off (metres).
BACK_MORE = 0.04


def raised(p: Pose, dz: float) -> Pose:
    """``p`` moved ``dz`` metres up (world z)."""
    return Pose(p.position + [0.0, 0.0, dz], p.quaternion)


def backed(p: Pose, d: float) -> Pose:
    """``p`` moved ``d`` metres back along its own z axis (out of a side grasp)."""
    return Pose(p.position - d * p.rotation.as_matrix()[:, 2], p.quaternion)


@dataclass(frozen=True)
class Rejection:
    """Why one grasp or placement was not taken: ``status`` (UNREACHABLE or BLOCKED) and
    ``reason`` in words."""

    status: PlanStatus
    reason: str


@dataclass
class StraightMove:
    """A straight TCP move found while choosing (``line``, timed) and the seconds it took."""

    line: CartesianResult
    seconds: float

    @property
    def end(self) -> np.ndarray:
        """The arm configuration where the move ends."""
        return self.line.path[-1]


@dataclass
class Choice:
    """The grasp and placement chosen, the arm configurations above them (``q_pregrasp``,
    ``q_preplace``, rad) and the straight moves between."""

    grasp: Grasp
    placement: Placement
    q_pregrasp: np.ndarray
    descend: StraightMove
    lift: StraightMove
    q_preplace: np.ndarray
    lower: StraightMove
    retreat: StraightMove
    #: Each finger's opening (m) when letting go: the preshape, or wider (``RELEASE_EXTRA``).
    release_width: float
    #: After a side grasp's retreat (backwards, horizontally): straight up.
    rise: Optional[StraightMove] = None


@dataclass(frozen=True)
class ChoiceContext:
    """What ``choose`` needs besides the robot and the scene: the object and where it goes
    (``target`` or ``place_pose``), the object's poses on the target (``poses_on``), the
    support it stands on, the arm's start (rad), and the settings (``clearance``,
    ``approach_height``, ``fine_clearance`` m; ``speed`` m/s; ``dt`` s)."""

    obj: ObjectPrior
    target: Optional[ObjectPrior]
    place_pose: Optional[Pose]
    poses_on: Optional[list]
    support_id: Optional[str]
    q_start: np.ndarray
    clearance: float
    approach_height: float
    fine_clearance: float
    speed: float
    dt: float
    #: Placements found to fail whatever the grasp (``placement_keys``), filled by ``choose``.
    dead: set = field(default_factory=set, compare=False)


def above(robot: RobotModel, ps: PlanningScene, pose: Pose, seed: np.ndarray,
          height: float, label: str, back: bool = False
          ) -> tuple[Optional[np.ndarray], Optional[Rejection]]:
    """(q, None) for the lowest pose ``height`` .. ``height + RAISE`` above ``pose`` (2 cm
    steps; with ``back``, ``height`` .. ``height + BACK_MORE`` backed off along the TCP's z
    axis: a side grasp) with an IK solution that is collision-free with padding; else (None,
    why)."""
    why = Rejection(PlanStatus.UNREACHABLE, f"no IK for the {label} pose")
    for i, extra in enumerate(np.arange(0.0, (BACK_MORE if back else RAISE) + 1e-9, 0.02)):
        pre = backed(pose, height + extra) if back else raised(pose, height + extra)
        q = robot.ik(pre, seed, restarts=6 if i == 0 else 1)
        if q is None:
            if i == 0 and robot.ik(pose, seed, restarts=2) is None:
                break  # not even the pose itself is reachable
            continue
        seed = q
        if ps.is_valid_strict(q):
            return q, None
        pairs = ", ".join(f"{a}-{b}" for a, b, _ in ps.collisions(q)[:2])
        why = Rejection(PlanStatus.BLOCKED, f"{label} in collision ({pairs})")
    return None, why


def _timed_line(robot: RobotModel, ps: PlanningScene, q0: np.ndarray, goal: Pose,
                c: ChoiceContext, **kw) -> StraightMove:
    t0 = time.perf_counter()
    line = straight_line(robot, ps, q0, goal, speed=c.speed, dt=c.dt, **kw)
    return StraightMove(line, time.perf_counter() - t0)


def choose(robot: RobotModel, ps: PlanningScene, grasps: list[Grasp], c: ChoiceContext,
           check_cancel: Callable[[], None]) -> Choice:
    """The first grasp and placement whose IK and straight moves work, with those moves.
    Raises ``PlanFailure``: UNREACHABLE when nothing could be reached, else BLOCKED."""
    rejected: list[Rejection] = []
    support_allow = [TABLE] + ([c.support_id] if c.support_id else [])
    obj = c.obj
    for g in grasps:
        check_cancel()
        found = _with_grasp(robot, ps, g, c, support_allow, check_cancel, rejected)
        if found is not None:
            return found
    unreachable = [r for r in rejected if r.status is PlanStatus.UNREACHABLE]
    if rejected and len(unreachable) == len(rejected):
        raise PlanFailure(PlanStatus.UNREACHABLE, f"unreachable: no reachable grasp and "
                          f"placement for {obj.id!r} ({unreachable[0].reason})")
    detail = "; ".join(dict.fromkeys(r.reason for r in rejected))[:400]
    raise PlanFailure(PlanStatus.BLOCKED,
                      f"no collision-free grasp/placement for {obj.id!r}: {detail}")


def _blocked(rejected: list[Rejection], why: str) -> None:
    rejected.append(Rejection(PlanStatus.BLOCKED, why))


def _label(g: Grasp) -> str:
    """The grasp in a few words, for the reasons a grasp was not taken."""
    if g.kind == "side":
        return (f"side grasp at heading {math.degrees(g.yaw):.0f} deg, "
                f"{100 * g.pose.position[2]:.1f} cm high")
    return f"grasp at yaw {math.degrees(g.yaw):.0f} deg"


def _with_grasp(robot, ps, g: Grasp, c: ChoiceContext, support_allow, check_cancel,
                rejected: list[Rejection]) -> Optional[Choice]:
    """The first placement that works with grasp ``g`` (None: add why not to ``rejected``)."""
    obj = c.obj
    side, yaw = g.kind == "side", _label(g)
    ps.finger_width = g.preshape
    q_pre, why = above(robot, ps, g.pose, c.q_start, c.approach_height, "pre-grasp", side)
    if q_pre is None:
        rejected.append(Rejection(why.status, f"{why.reason} ({yaw})"))
        return None
    g.pregrasp = robot.fk(q_pre)
    # A side grasp comes in clear of the table; only its fingers may touch the object's box,
    # or the whole gripper where the hand was found clear of its points.
    with (ps.allow([obj.id], robot_links=None if g.hand_clear else robot.finger_links)
          if side else
          ps.allow([obj.id] + support_allow)), ps.fine(c.fine_clearance):
        desc = _timed_line(robot, ps, q_pre, g.pose, c)
    if not desc.line.success:
        _blocked(rejected, f"{yaw}: {desc.line.reason}")
        return None
    q_g = desc.end
    ps.attach(obj.id, q_g, min(g.preshape, g.width / 2))
    try:
        # A neighbour the object already touches (perceived boxes of touching objects overlap
        # by a few millimetres, more where one is misperceived) may keep touching it on the way
        # straight up: the overlap does not grow. So may the closed fingers, lying on the
        # object's sides, where such a neighbour's box reaches into the object's (the open
        # fingers came down clear of it: it is not in their way); the rest of the gripper is
        # still checked against it.
        with ps.fine(c.fine_clearance):
            hits = ps.collisions(q_g)
        touching = sorted({b for a, b, _ in hits if a == "held"})
        fingers = set(robot.description.gripper.finger_links)
        pressed = sorted({b for a, b, _ in hits if a in fingers and b in touching})
        with ps.allow([obj.id] + support_allow), ps.allow(touching, robot_links=[]), \
                ps.allow(pressed, robot_links=robot.finger_links, attached=False), \
                ps.fine(c.fine_clearance):
            lift = _timed_line(robot, ps, q_g, raised(g.pose, c.approach_height + RAISE), c,
                               min_length=c.approach_height, stop=ps.is_valid_strict)
        if not lift.line.success:
            _blocked(rejected, f"lift: {lift.line.reason}")
            return None
        g.lift = robot.fk(lift.end)
        if c.target is not None:
            places = placements_for(robot.hand, obj, g, c.poses_on, c.approach_height,
                                    c.target.id)
            allow_place = [c.target.id]
        else:
            places = placements_at(robot.hand, obj, g, c.place_pose, c.clearance,
                                   c.approach_height)
            allow_place = [TABLE]
        for pl in places:
            check_cancel()
            found = _with_placement(robot, ps, g, pl, q_g, desc, lift, q_pre, c, allow_place,
                                    rejected)
            if found is not None:
                return found
        return None
    finally:
        ps.detach()
        ps.enable(obj.id)
        ps.move_object(obj.id, obj.pose)


def placement_keys(g: Grasp, pl: Placement) -> tuple[tuple, tuple]:
    """Keys (to the millimetre) of what decides whether placement ``pl`` with grasp ``g`` can
    be put down: the object's pose alone (where the held object collides), and that with the
    hand's pose and opening (where the gripper collides: the same for every grasp that holds
    the object the same way)."""
    obj = (tuple(np.round(pl.object_pose.position, 3)),
           tuple(np.round(pl.object_pose.quaternion, 3)))
    return (("object",) + obj, ("hand",) + obj + (tuple(np.round(pl.pose.position, 3)),
            tuple(np.round(pl.pose.quaternion, 3)), round(float(g.preshape), 3),
            round(float(g.width), 3)))


def _dead_after_lower(robot: RobotModel, line: CartesianResult, keys: tuple[tuple, tuple],
                      dead: set) -> None:
    """Remember a placement whose lowering collided with the held object or the gripper
    only: no other grasp holding the object the same way gets it down either (an arm link's
    collision depends on the IK solution, and is not remembered)."""
    who = {a for a, _ in line.contacts}
    hand = set(robot.description.gripper.finger_links) | set(
        robot.description.gripper.hand_links) | {"held"}
    if who and who <= {"held"}:
        dead.add(keys[0])
    elif who and who <= hand:
        dead.add(keys[1])


def _with_placement(robot, ps, g, pl: Placement, q_g, desc, lift, q_pre, c: ChoiceContext,
                    allow_place, rejected: list[Rejection]) -> Optional[Choice]:
    """The choice with placement ``pl`` (the object held), or None with why not. A placement
    already found to fail whatever the grasp (``ChoiceContext.dead``) is skipped."""
    obj = c.obj
    keys = placement_keys(g, pl)
    if keys[0] in c.dead or keys[1] in c.dead:
        return None
    where = np.round(pl.object_pose.position, 3).tolist()
    with ps.allow(allow_place), ps.fine(c.fine_clearance):
        if not ps.held_clear_at(pl.object_pose):
            _blocked(rejected, f"place: the held object would touch a neighbour at {where}")
            c.dead.add(keys[0])
            return None
    reach = ("reach", tuple(np.round(pl.pose.position, 3)), tuple(np.round(pl.pose.quaternion, 2)))
    if reach in c.dead:
        return None
    q_pp, why = above(robot, ps, pl.pose, lift.end, c.approach_height, "pre-place")
    if q_pp is None:
        rejected.append(Rejection(why.status, f"{why.reason} (placement at {where})"))
        if why.status is PlanStatus.UNREACHABLE:
            c.dead.add(reach)   # no IK above this hand pose: none for the next grasp either
        return None
    pl.preplace = robot.fk(q_pp)
    with ps.allow(allow_place), ps.fine(c.fine_clearance):
        lower = _timed_line(robot, ps, q_pp, pl.pose, c)
    if not lower.line.success:
        _blocked(rejected, f"lower: {lower.line.reason}")
        _dead_after_lower(robot, lower.line, keys, c.dead)
        return None
    # Retreat after letting go: the object stands on the target.
    att = ps.attached
    ps.detach(Pose(pl.object_pose.position - [0, 0, c.clearance], pl.object_pose.quaternion))
    wide = min(robot.finger_open, g.preshape + RELEASE_EXTRA)
    try:
        for width in dict.fromkeys((wide, g.preshape)):
            ps.finger_width = width
            with ps.allow([obj.id] + allow_place), ps.fine(c.fine_clearance):
                retreat, rise = _retreat(robot, ps, g, pl, lower.end, c)
            if retreat.line.success and (rise is None or rise.line.success):
                pl.retreat = robot.fk((rise or retreat).end)
                break
    finally:
        ps.finger_width = g.preshape
        ps.move_object(obj.id, obj.pose)
        ps.attach(obj.id, q_g, att.finger_width, prior=att.prior)
    failed = retreat if not retreat.line.success else rise
    if failed is not None and not failed.line.success:
        _blocked(rejected, f"retreat: {failed.line.reason}")
        return None
    return Choice(g, pl, q_pre, desc, lift, q_pp, lower, retreat, release_width=width,
                  rise=rise)


def _retreat(robot: RobotModel, ps: PlanningScene, g: Grasp, pl: Placement, q: np.ndarray,
             c: ChoiceContext) -> tuple[StraightMove, Optional[StraightMove]]:
    """The moves away after letting go, from ``q``: straight up (top-down grasps); for a side
    grasp backwards along the approach, then (the second move) straight up."""
    if g.kind != "side":
        return _timed_line(robot, ps, q, raised(pl.pose, c.approach_height + RAISE), c,
                           min_length=c.approach_height, stop=ps.is_valid_strict), None
    back = backed(pl.pose, c.approach_height)
    retreat = _timed_line(robot, ps, q, back, c)
    if not retreat.line.success:
        return retreat, None
    return retreat, _timed_line(robot, ps, retreat.end, raised(back, RAISE), c,
                                min_length=c.approach_height, stop=ps.is_valid_strict)
