"""Top-down grasps and placements on top of other objects, with feasibility rules (ROS-free).

Grasps (see ``planning.robot`` for the TCP frame): the TCP points straight down; for a box
the fingers close across one of its horizontal sides, preferring the narrower side, and only
across a side no wider than ``max_width`` (the gripper opens 0.08 m; the default keeps 4 mm on
each side). Cylinders and spheres are grasped at any heading (candidates every 22.5 degrees).
For each grasp heading its twin turned by 180 degrees is also a candidate (the gripper is
symmetric). Order: narrower side first (boxes), then headings that keep joint 7 at least 0.8 rad
inside its limits (predicted from the heading, ``wrist_margin``), then the least turn from the
current wrist heading.

The TCP goes ``depth`` below the object's top (a sphere: to its centre), but keeps the
fingertips ``fingertip_clearance`` above the surface the object stands on. The fingers are
commanded ``squeeze`` metres inside the object's half-width so that they press on it (the
task planner then commands them nearly closed instead, ``hold.until_stopped``).

Placement on a target (stacking): the object is centred over the target's top, its bottom
``clearance`` above it, turned so that its sides line up with a box target's sides (the
candidate turns differ by 90 degrees). The support and stability rules and the gripper width
are ``core.stacking``'s, shared with the task proposer: a flat, level top covering at least
``min_support`` (60 %) of the object's footprint, and an object that survives a 15 degree tilt.

Grasp variants for clutter (``GRASP_VARIANTS``): after every heading of the default grasp, the
same headings with a tighter finger preshape (7 mm instead of 15 mm beyond the object's sides,
for a narrow gap to a neighbour) and a shallower grasp (60 % of ``depth``, to keep the hand
above a taller neighbour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, MIN_SUPPORT, Infeasible, bottom_z,
                                          check_graspable, check_support, footprint,
                                          polygon_gap, stable_at, support_centre,
                                          support_ratio, top_z)
from spatialpin_ros.core.stacking import wrap as _wrap
from spatialpin_ros.core.stacking import yaw_of as _yaw_of
from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.planning.robot import top_down_pose

@dataclass
class Grasp:
    """A grasp of ``object_id``: TCP ``pose`` at the grasp, ``pregrasp`` above it (a side
    grasp: backed off horizontally), ``yaw`` of the TCP x axis (a side grasp: the heading of
    its approach), object ``width`` across the closing direction (m), the finger
    position to open to before the approach (``preshape``) and to close to (``finger_target``),
    each per finger (m)."""

    object_id: str
    pose: Pose
    pregrasp: Pose
    lift: Pose
    yaw: float
    width: float
    preshape: float
    finger_target: float
    depth: float
    #: How it was found: "box" (from the perceived box), "cloud" (across the object's points),
    #: "rim" (pinching a wall: a bowl's or cup's rim) or "side" (horizontally, a tall object:
    #: ``planning.side_grasps``); its ``score`` (higher is better).
    kind: str = "box"
    score: float = 0.0
    #: A side grasp whose hand (not only its fingers) was found clear of the object's points:
    #: the planner lets the hand near the object's perceived box (``planning.side_grasps``).
    hand_clear: bool = False
    #: The fingers pinch a wall or a thin part (a rim grasp; a part no wider than twice the
    #: squeeze): the object may swing in the hand, but does not pivot like a grasp of a
    #: solid part high above its centre of mass (``hold.swings``, ``pivots``).
    pinch: bool = False


@dataclass
class Placement:
    """Where the held object goes: ``object_pose`` (centre, with the clearance gap), the TCP
    ``pose`` there, ``preplace`` above it and ``retreat`` after letting go."""

    object_pose: Pose
    pose: Pose
    preplace: Pose
    retreat: Pose
    target_id: Optional[str]
    support_ratio: float


@dataclass(frozen=True)
class Hand:
    """What grasp geometry needs of the robot (``RobotModel.hand``): ``finger_open`` (m, one
    finger's opening when open), ``fingertip_below_tcp`` (m along the TCP z axis) and the wrist:
    the last arm joint's limits ``wrist_lower``/``wrist_upper`` (rad), its ``wrist_home``
    value, the ``wrist_sign`` of its turn against the TCP heading about world z and the TCP
    heading at home relative to its bearing from the base (``wrist_heading``, rad); a finger's
    ``finger_thickness`` (m, outward from its gripping face) and ``finger_width`` (m, across
    the closing axis)."""

    finger_open: float
    fingertip_below_tcp: float
    wrist_lower: float
    wrist_upper: float
    wrist_home: float
    wrist_sign: float
    wrist_heading: float
    finger_thickness: float = 0.02
    finger_width: float = 0.02


def wrist_margin(hand: Hand, x: float, y: float, yaw: float) -> float:
    """Predicted distance (rad) of the last arm joint from its nearer limit for a top-down TCP
    with heading ``yaw`` above (x, y): the joint is about home + sign * (yaw - heading_home -
    atan2(y, x)) (within ~0.1 rad). Grasps and placements with little margin make IK and
    straight moves fail."""
    q = hand.wrist_home + hand.wrist_sign * (yaw - hand.wrist_heading - math.atan2(y, x))
    return max(min(v - hand.wrist_lower, hand.wrist_upper - v)
               for v in (q - 2 * math.pi, q, q + 2 * math.pi))


#: Fallback grasp variants for cluttered spots, tried after every heading of the default grasp:
#: (depth scale, preshape margin in metres). A shallower grasp keeps the hand above a tall
#: neighbour; a tighter preshape keeps the open fingers out of a narrow gap.
GRASP_VARIANTS = ((1.0, None), (1.0, 0.007), (0.6, None), (0.6, 0.007))


def grasp_candidates(hand: Hand, prior: ObjectPrior, support_z: float = 0.0,
                     current_yaw: float = 0.0,
                     max_width: float = MAX_GRASP_WIDTH, depth: float = 0.025,
                     approach_height: float = 0.10, lift_height: float = 0.10,
                     squeeze: float = 0.005, preshape_margin: float = 0.015,
                     fingertip_clearance: float = 0.006,
                     variants: Sequence[tuple[float, Optional[float]]] = GRASP_VARIANTS
                     ) -> list[Grasp]:
    """Top-down grasps of ``prior``, best first. Raises Infeasible("too_wide") when every side
    is wider than ``max_width``, ("no_shape") for a degenerate prior.

    ``variants``: (depth scale, preshape margin or None for ``preshape_margin``) tiers; every
    heading of the first tier comes before any of the next (see ``GRASP_VARIANTS``)."""
    out: list[Grasp] = []
    for scale, margin in variants:
        out += _grasps(hand, prior, support_z, current_yaw, max_width, depth * scale, approach_height,
                       lift_height, squeeze,
                       preshape_margin if margin is None else min(margin, preshape_margin),
                       fingertip_clearance)
    # Variants that come out the same (a thin object, a margin already at the limit) once.
    seen, unique = set(), []
    for g in out:
        key = (round(g.yaw, 4), round(g.depth, 4), round(g.preshape, 4))
        if key not in seen:
            seen.add(key)
            unique.append(g)
    return unique


def _grasps(hand: Hand, prior: ObjectPrior, support_z: float, current_yaw: float, max_width: float,
            depth: float, approach_height: float, lift_height: float, squeeze: float,
            preshape_margin: float, fingertip_clearance: float) -> list[Grasp]:
    size = np.asarray(prior.size, dtype=float)
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise Infeasible("no_shape", f"object {prior.id!r} has no usable size {size.tolist()}")
    check_graspable(prior, max_width)
    yaw_o = _yaw_of(prior)
    options: list[tuple[float, float]] = []  # (closing-direction angle, width)
    if prior.shape in ("cylinder", "sphere"):
        d = float(max(size[:2]))
        base = current_yaw + math.pi / 2  # closing direction that keeps the wrist where it is
        for k in (0, 1, -1, 2, -2, 3, -3, 4):
            options.append((base + k * math.pi / 8, d))
    else:
        sides = sorted([(float(size[0]), yaw_o), (float(size[1]), yaw_o + math.pi / 2)])
        for w, ang in sides:
            if w <= max_width:
                options.append((ang, w))
    top = top_z(prior)
    if prior.shape == "sphere":
        tcp_z = float(prior.center[2])
    else:
        tcp_z = top - min(depth, 0.75 * size[2])
    tcp_z = max(tcp_z, support_z + hand.fingertip_below_tcp + fingertip_clearance)
    out = []
    for ang, w in options:
        for flip in (0.0, math.pi):
            # Fingers close along the TCP y axis = (sin yaw, -cos yaw): yaw = closing angle + 90.
            yaw = _wrap(ang + math.pi / 2 + flip)
            pos = np.array([prior.center[0], prior.center[1], tcp_z])
            out.append(Grasp(
                object_id=prior.id, pose=top_down_pose(pos, yaw),
                pregrasp=top_down_pose(pos + [0, 0, approach_height], yaw),
                lift=top_down_pose(pos + [0, 0, lift_height], yaw), yaw=yaw, width=w,
                preshape=min(hand.finger_open, w / 2 + preshape_margin),
                finger_target=max(0.0, w / 2 - squeeze), depth=top - tcp_z,
                pinch=w / 2 <= squeeze))
    # Narrower first (stable, more room for the fingers), then a wrist well inside its
    # limits, then least wrist turn.
    x, y = float(prior.center[0]), float(prior.center[1])
    out.sort(key=lambda g: (round(g.width, 3) if prior.shape != "cylinder" and
                            prior.shape != "sphere" else 0.0,
                            -min(wrist_margin(hand, x, y, g.yaw), 0.8),
                            abs(_wrap(g.yaw - current_yaw))))
    return out


#: Off-centre placements (metres from the target's centre) tried after the centred ones when a
#: neighbour stands close to the target: away from it, as far as support and stability allow.
PLACEMENT_SHIFTS = (0.005, 0.01, 0.015)


def placements_on(hand: Hand, obj: ObjectPrior, grasp: Grasp, target: ObjectPrior,
                  clearance: float = 0.005, approach_height: float = 0.10,
                  min_support: float = MIN_SUPPORT, neighbours: Sequence[ObjectPrior] = (),
                  shifts: Sequence[float] = PLACEMENT_SHIFTS) -> list[Placement]:
    """Placements of ``obj`` (held with ``grasp``) on top of ``target``: centred, least wrist
    turn first, then off-centre ones (``stack_poses``). Raises Infeasible when the target
    cannot support the object."""
    return placements_for(hand, obj, grasp, stack_poses(obj, target, clearance, min_support,
                                                  neighbours, shifts), approach_height,
                          target.id)


def stack_poses(obj: ObjectPrior, target: ObjectPrior, clearance: float = 0.005,
                min_support: float = MIN_SUPPORT, neighbours: Sequence[ObjectPrior] = (),
                shifts: Sequence[float] = PLACEMENT_SHIFTS) -> list[list[tuple[Pose, float]]]:
    """Object poses on top of ``target`` in tiers, each (pose let go ``clearance`` above the
    top, support ratio): first centred (on the target's ``core.stacking.support_centre``, the
    centre of its seen flat top) at every supported and stable yaw; then, when one of
    ``neighbours`` stands within 2 cm of the placed object and reaches above the target's top,
    moved ``shifts`` away from such neighbours where the support and stability rules still hold
    (``core.stacking.stable_at``). Raises Infeasible when the target cannot support the
    object."""
    best, yaws = check_support(obj, target, min_support)
    z = top_z(target) + clearance + (float(obj.center[2]) - bottom_z(obj))
    xy = support_centre(target)
    tiers = [[(Pose.from_yaw([xy[0], xy[1], z], yaw), support_ratio(obj, yaw, target))
              for yaw in yaws]]
    away = _away_from(obj, target, yaws, neighbours)
    for m in (shifts if away is not None else ()):
        p = xy + m * away
        tier = [(Pose.from_yaw([p[0], p[1], z], yaw), support_ratio(obj, yaw, target, p))
                for yaw in yaws if stable_at(obj, yaw, target, p, min_support)]
        if tier:
            tiers.append(tier)
    return tiers


def placements_for(hand: Hand, obj: ObjectPrior, grasp: Grasp, tiers: Sequence[Sequence[tuple[Pose, float]]],
                   approach_height: float = 0.10,
                   target_id: Optional[str] = None) -> list[Placement]:
    """Placements for object poses in tiers (``stack_poses``), least wrist turn first within
    a tier."""
    out: list[Placement] = []
    for tier in tiers:
        cands = []
        for pose, ratio in tier:
            cands += _placements(obj, grasp, pose, approach_height, target_id, ratio)
        out += _by_wrist_turn(hand, cands, grasp.yaw)
    return out


def _away_from(obj: ObjectPrior, target: ObjectPrior, yaws: Sequence[float],
               neighbours: Sequence[ObjectPrior], near: float = 0.02) -> Optional[np.ndarray]:
    """Unit direction (2,) away from the neighbours that crowd the placed object, or None."""
    xy = support_centre(target)
    placed = [footprint(obj, y, xy) for y in yaws]
    push = np.zeros(2)
    for n in neighbours:
        if n.id in (obj.id, target.id) or top_z(n) < top_z(target) - 0.005:
            continue
        fn = footprint(n)
        if min(polygon_gap(f, fn) for f in placed) < near:
            d = xy - np.asarray(n.center[:2], dtype=float)
            norm = float(np.linalg.norm(d))
            if norm > 1e-6:
                push += d / norm
    norm = float(np.linalg.norm(push))
    return push / norm if norm > 1e-6 else None


def placements_at(hand: Hand, obj: ObjectPrior, grasp: Grasp, place: Pose, clearance: float = 0.005,
                  approach_height: float = 0.10) -> list[Placement]:
    """Placements of ``obj`` to rest with its centre at ``place`` (at its yaw, or a half turn
    from it; any yaw for cylinders and spheres), let go ``clearance`` above it."""
    pos = place.position + [0.0, 0.0, clearance]
    cands = _placements(obj, grasp, Pose.from_yaw(pos, place.yaw()), approach_height,
                        None, float("nan"))
    return _by_wrist_turn(hand, cands, grasp.yaw)


def _placements(obj: ObjectPrior, grasp: Grasp, obj_pose: Pose, approach_height: float,
                target_id: Optional[str], ratio: float) -> list[Placement]:
    T_tcp_obj = grasp.pose.inverse().matrix() @ obj.pose.matrix()
    out = []
    turns = (0.0, math.pi) if obj.shape == "box" or obj.shape == "other" else (
        0.0, math.pi / 2, math.pi, -math.pi / 2)
    for turn in turns:
        # An object symmetric under a half turn (a box) can be put down either way round.
        op = Pose(obj_pose.position, (Rotation.from_euler("z", turn) * obj_pose.rotation).as_quat())
        T_tcp = op.matrix() @ np.linalg.inv(T_tcp_obj)
        tcp = Pose.from_matrix(T_tcp)
        up = np.array([0, 0, approach_height])
        out.append(Placement(object_pose=op, pose=tcp,
                             preplace=Pose(tcp.position + up, tcp.quaternion),
                             retreat=Pose(tcp.position + up, tcp.quaternion),
                             target_id=target_id, support_ratio=ratio))
    return out


def _tcp_yaw(p: Pose) -> tuple[float, bool]:
    """Heading of the TCP's x axis, or of its z axis where that is horizontal (a side grasp:
    True)."""
    R = p.rotation.as_matrix()
    side = abs(float(R[2, 2])) < 0.5
    v = R[:, 2] if side else R[:, 0]
    return math.atan2(v[1], v[0]), side


def _by_wrist_turn(hand: Hand, cands: list[Placement], yaw: float) -> list[Placement]:
    """Wrist well inside its limits first (top-down), then least wrist turn from the grasp
    (a side grasp: least turn of its approach heading, ``yaw``)."""
    def key(c: Placement):
        y, side = _tcp_yaw(c.pose)
        return (0.0 if side else
                -min(wrist_margin(hand, c.pose.position[0], c.pose.position[1], y), 0.8),
                abs(_wrap(y - yaw)))
    return sorted(cands, key=key)
