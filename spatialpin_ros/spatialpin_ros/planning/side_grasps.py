"""Side grasps of tall objects (ROS-free): the fallback where no steady top-down grasp exists
(``pick_place._grasps``): a bottle whose only top-down grasp that fits is its neck (it would
pivot about the two contacts), or a tall object too wide at the top but narrow enough lower
down.

The TCP comes in horizontally: its z axis (out of the gripper) horizontal and pointing at the
object's vertical axis from the robot's side (the bearing from the arm's shoulder, then
``headings`` turned from it), its y axis (the closing direction) horizontal and across the
object, its x axis vertical (either way up: both are candidates). The TCP stands at the middle
of what the fingers close on, at a height from the object's centre of mass (its box's centre)
up to its top less half a finger's width and ``top_margin``, and never lower than half a
finger's width plus ``table_clearance`` above the surface it stands on. What the fingers close
on is the object's width across at that height, over the fingers' width: from its perceived
points with the hidden back completed (``antipodal.surface``), else from its perceived box or
cylinder; it must fit within ``max_width`` (the gripper's opening less a margin each side).

Order: a box's faces first (closing across the box, least turn from the bearing first), then
the least turn from the bearing, then the lowest height (nearest the centre of mass:
the steadiest), then the x axis down before up; ``per_heading`` heights of each heading, and
``keep`` candidates in all. The pre-grasp backs off horizontally along the approach
(``approach_height``); the lift goes straight up. Collisions with the table and the neighbours
are checked where the grasp is chosen (``planning.choice``); so is the hand (its links but the
fingers) against the object's perceived box, except where it was found clear of the object's
completed points (``Grasp.hand_clear``: each hand link's bounds in the TCP frame, measured
once per robot, ``hand_boxes``): an object too wide at the top is held lower down only so,
its box being as wide as its top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pybullet as pb
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.stacking import bottom_z, top_z, wrap
from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.planning.antipodal import closing_target, surface
from spatialpin_ros.planning.grasps import Grasp, Hand


@dataclass(frozen=True)
class SideConfig:
    """Settings of ``side_grasps`` (metres, radians): approach ``headings`` relative to the
    bearing from the shoulder; heights every ``height_step``; ``top_margin`` below the top for
    the fingers' upper edge; ``table_clearance`` of the fingers' lower edge above the support;
    ``min_points`` in a layer measured from points; ``per_heading`` heights per heading and
    ``keep`` candidates in all."""

    headings: tuple[float, ...] = (0.0, math.radians(25), -math.radians(25),
                                   math.radians(50), -math.radians(50))
    height_step: float = 0.01
    top_margin: float = 0.005
    table_clearance: float = 0.03
    min_points: int = 6
    per_heading: int = 2
    keep: int = 16


def side_rotation(heading: float, x_up: bool = False) -> Rotation:
    """TCP orientation of a side grasp approaching along world heading ``heading`` (rad): z
    horizontal along it, y (closing) horizontal across it, x down (or up with ``x_up``)."""
    z = np.array([math.cos(heading), math.sin(heading), 0.0])
    y = np.array([-math.sin(heading), math.cos(heading), 0.0]) * (-1.0 if x_up else 1.0)
    return Rotation.from_matrix(np.column_stack([np.cross(y, z), y, z]))


def side_pose(position: Sequence[float], heading: float, x_up: bool = False) -> Pose:
    return Pose(position, side_rotation(heading, x_up).as_quat())


def width_at(prior: ObjectPrior, pts: Optional[np.ndarray], heading: float, z: float,
             half: float, min_points: int = 6) -> Optional[tuple[float, np.ndarray]]:
    """(width across, the middle's xy) of the object between heights ``z - half`` and
    ``z + half`` across the closing direction of a side grasp along ``heading``: from its
    completed points ``pts`` (robust: 2nd to 98th percentile), or from its box or cylinder
    when ``pts`` is None; None where too few points or outside the box."""
    a = np.array([math.cos(heading), math.sin(heading)])
    c = np.array([-a[1], a[0]])
    centre = np.asarray(prior.center[:2], dtype=float)
    if pts is not None:
        sel = np.abs(pts[:, 2] - z) <= half
        if np.count_nonzero(sel) < min_points:
            return None
        d = pts[sel, :2] - centre
        lo, hi = np.percentile(d @ c, [2, 98])
        mid_a = float(np.mean(np.percentile(d @ a, [2, 98])))
        return float(hi - lo), centre + c * float(lo + hi) / 2 + a * mid_a
    if not bottom_z(prior) <= z <= top_z(prior):
        return None
    if prior.shape in ("cylinder", "sphere"):
        return float(max(prior.size[:2])), centre
    R = prior.pose.rotation.as_matrix()[:2, :2]
    half_w = np.abs(c @ R) @ (np.asarray(prior.size[:2], dtype=float) / 2)
    return float(2 * half_w), centre


Box = tuple[np.ndarray, np.ndarray]


def hand_boxes(robot) -> tuple[Box, ...]:
    """The hand's links but the fingers (``gripper.hand_links``), each as its axis-aligned
    bounds (lo, hi) in the TCP frame with the fingers open; measured once per ``RobotModel``
    (its base moved for a moment so that the TCP frame is the world's)."""
    cached = getattr(robot, "_side_hand_boxes", None)
    if cached is not None:
        return cached
    c, body = robot.client, robot.body
    pos0, orn0 = pb.getBasePositionAndOrientation(body, physicsClientId=c)
    robot.set_config(robot.home, robot.finger_open)
    base = Pose.from_matrix(np.linalg.inv(robot.tcp_matrix()) @ Pose(pos0, orn0).matrix())
    try:
        pb.resetBasePositionAndOrientation(body, base.position.tolist(),
                                           base.quaternion.tolist(), physicsClientId=c)
        pb.performCollisionDetection(physicsClientId=c)
        out = tuple(tuple(np.array(v) for v in pb.getAABB(body, robot.link_index[name],
                                                             physicsClientId=c))
                    for name in robot.description.gripper.hand_links)
    finally:
        pb.resetBasePositionAndOrientation(body, pos0, orn0, physicsClientId=c)
        robot.set_config(robot.home)
    robot._side_hand_boxes = out
    return out


def hand_clear(pts: Optional[np.ndarray], pose: Pose, boxes: Sequence[Box],
               margin: float = 0.003) -> bool:
    """Whether no point of ``pts`` (world) lies within ``margin`` of a hand box (``hand_boxes``)
    with the TCP at ``pose``; False without points or boxes."""
    if pts is None or not boxes:
        return False
    local = pose.inverse().transform_points(pts)
    return not any(np.any(np.all((local >= lo - margin) & (local <= hi + margin), axis=1))
                   for lo, hi in boxes)


def side_grasps(hand: Hand, prior: ObjectPrior, points: Optional[np.ndarray],
                support_z: float, base_xy: Sequence[float], max_width: float = 0.072,
                approach_height: float = 0.10, lift_height: float = 0.10,
                squeeze: float = 0.005, preshape_margin: float = 0.015,
                boxes: Sequence[Box] = (),
                config: SideConfig = SideConfig()) -> tuple[list[Grasp], str]:
    """Side grasps of ``prior`` (kind "side"), best first, and why there are none (words;
    "" when there are some). ``points``: its perceived points (M, 3), or None (its box).
    ``base_xy``: where the arm stands (the approach comes from there). ``boxes``: the hand's
    (``hand_boxes``), checked against the points. See the module doc."""
    cfg = config
    pts = None
    if points is not None and len(points) >= cfg.min_points:
        pts = surface(prior, points)[1]
    half = hand.finger_width / 2
    z_lo = max(float(prior.center[2]), support_z + half + cfg.table_clearance)
    z_hi = top_z(prior) - half - cfg.top_margin
    if z_hi < z_lo:
        return [], (f"{100 * (top_z(prior) - support_z):.1f} cm tall: too short to hold from "
                    "the side above its centre of mass, clear of the table")
    heights = np.arange(z_lo, z_hi + 1e-9, cfg.height_step)
    bearing = math.atan2(*(np.asarray(prior.center[:2]) - np.asarray(base_xy)[:2])[::-1])
    out: list[Grasp] = []
    narrowest = math.inf
    for heading in _headings(prior, bearing, cfg.headings):
        fits = 0
        for z in heights:
            m = width_at(prior, pts, heading, float(z), half, cfg.min_points)
            if m is None:
                continue
            width, xy = m
            narrowest = min(narrowest, width)
            if width > max_width:
                continue
            target = closing_target(width, squeeze) if pts is not None else max(
                0.0, width / 2 - squeeze)
            for x_up in (False, True):
                g = _grasp(hand, prior, np.array([xy[0], xy[1], z]), heading, x_up, width,
                           target, approach_height, lift_height, preshape_margin)
                g.hand_clear = hand_clear(pts, g.pose, boxes)
                out.append(g)
            fits += 1
            if fits >= cfg.per_heading:
                break
    if not out:
        return [], (f"{100 * narrowest:.1f} cm across at its narrowest from the side between "
                    f"its centre of mass and its top: wider than {100 * max_width:.1f} cm"
                    if math.isfinite(narrowest) else "too few points to measure it")
    return out[:cfg.keep], ""


def _headings(prior: ObjectPrior, bearing: float, turns: Sequence[float]) -> list[float]:
    """Approach headings: a box's face normals within the widest turn from the bearing (the
    fingers close across a face), least turn first; then the bearing turned by ``turns``."""
    out: list[float] = []
    if prior.shape == "box":
        faces = [wrap(prior.pose.yaw() + k * math.pi / 2) for k in range(4)]
        out = sorted((h for h in faces if abs(wrap(h - bearing)) <= max(map(abs, turns))),
                     key=lambda h: abs(wrap(h - bearing)))
    for t in turns:
        h = wrap(bearing + t)
        if all(abs(wrap(h - o)) > math.radians(5) for o in out):
            out.append(h)
    return out


def _grasp(hand: Hand, prior: ObjectPrior, pos: np.ndarray, heading: float, x_up: bool,
           width: float, target: float, approach_height: float, lift_height: float,
           preshape_margin: float) -> Grasp:
    rot = side_rotation(heading, x_up)
    back = -rot.as_matrix()[:, 2] * approach_height
    quat = rot.as_quat()
    return Grasp(object_id=prior.id, pose=Pose(pos, quat), pregrasp=Pose(pos + back, quat),
                 lift=Pose(pos + [0.0, 0.0, lift_height], quat), yaw=heading, width=width,
                 preshape=min(hand.finger_open, width / 2 + preshape_margin),
                 finger_target=target, depth=float(top_z(prior) - pos[2]), kind="side",
                 pinch=target <= 0.0)
