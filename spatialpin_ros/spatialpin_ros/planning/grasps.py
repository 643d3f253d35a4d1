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
commanded ``squeeze`` metres inside the object's half-width so that they press on it.

Placement on a target (stacking): the object is centred over the target's top, its bottom
``clearance`` above it, turned so that its sides line up with a box target's sides (the
candidate turns differ by 90 degrees). Support rule: the target must have a flat top (a box,
cylinder or an "other" shape taken as its box, not a sphere) and at the chosen placement the
target's top must cover at least ``min_support`` (60 %) of the object's footprint; the object's
centre then lies over the target's centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.planning.robot import FINGER_OPEN, FINGERTIP_BELOW_TCP, top_down_pose

#: Widest object side the gripper takes (metres): its 0.08 m opening less 4 mm on each side.
MAX_GRASP_WIDTH = 0.072


class Infeasible(Exception):
    """A task that cannot be done as asked; ``code`` is a short machine-readable reason
    (``too_wide``, ``target_too_small``, ``no_flat_top``, ``unreachable``, ...)."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Grasp:
    """A top-down grasp of ``object_id``: TCP ``pose`` at the grasp, ``pregrasp`` above it,
    ``yaw`` of the TCP x axis, object ``width`` across the closing direction (m), the finger
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


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


#: Panda joint 7 limit (rad) and its value at home, where the TCP heading is 0.
_Q7_LIMIT = 2.9671
_Q7_HOME = 0.785


def wrist_margin(x: float, y: float, yaw: float) -> float:
    """Predicted distance (rad) of joint 7 from its nearer limit for a top-down TCP with
    heading ``yaw`` above (x, y): joint 7 is about 0.785 + atan2(y, x) - yaw (within ~0.1
    rad). Grasps and placements with little margin make IK and straight moves fail."""
    q7 = _Q7_HOME + math.atan2(y, x) - yaw
    return max(min(q + _Q7_LIMIT, _Q7_LIMIT - q) for q in (q7 - 2 * math.pi, q7, q7 + 2 * math.pi))


def _yaw_of(prior: ObjectPrior) -> float:
    return prior.pose.yaw()


def top_z(prior: ObjectPrior) -> float:
    """Height of the object's top (its box's highest corner)."""
    return float(prior.corners()[:, 2].max())


def bottom_z(prior: ObjectPrior) -> float:
    return float(prior.corners()[:, 2].min())


def footprint(prior: ObjectPrior, yaw: Optional[float] = None,
              xy: Optional[Sequence[float]] = None) -> np.ndarray:
    """Convex footprint (K, 2) of the object, turned to ``yaw`` and moved to ``xy`` if given."""
    yaw = _yaw_of(prior) if yaw is None else yaw
    cx, cy = (prior.center[:2] if xy is None else xy)
    if prior.shape in ("cylinder", "sphere"):
        r = max(prior.size[:2]) / 2
        a = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        local = np.stack([np.cos(a), np.sin(a)], 1) * r
    else:
        hx, hy = prior.size[0] / 2, prior.size[1] / 2
        local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    c, s = math.cos(yaw), math.sin(yaw)
    return local @ np.array([[c, s], [-s, c]]) + [cx, cy]


def polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _ccw(p: np.ndarray) -> np.ndarray:
    x, y = p[:, 0], p[:, 1]
    signed = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return p if signed > 0 else p[::-1]


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of two convex polygons (Sutherland-Hodgman); (K, 2), possibly empty."""
    out = _ccw(np.asarray(subject, dtype=float))
    clip = _ccw(np.asarray(clip, dtype=float))
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        if len(out) == 0:
            break
        inp, out = out, []
        e = b - a

        def inside(p):
            return e[0] * (p[1] - a[1]) - e[1] * (p[0] - a[0]) >= -1e-12

        for j in range(len(inp)):
            p, q = inp[j], inp[(j + 1) % len(inp)]
            ip, iq = inside(p), inside(q)
            if ip:
                out.append(p)
            if ip != iq:
                d = q - p
                den = e[0] * d[1] - e[1] * d[0]
                if abs(den) > 1e-15:
                    t = (e[1] * (p[0] - a[0]) - e[0] * (p[1] - a[1])) / den
                    out.append(p + t * d)
        out = np.array(out) if out else np.zeros((0, 2))
    return np.asarray(out).reshape(-1, 2)


def support_ratio(obj: ObjectPrior, obj_yaw: float, target: ObjectPrior) -> float:
    """Share of the object's footprint (turned to ``obj_yaw``, centred on the target) that the
    target's top covers."""
    fo = footprint(obj, obj_yaw, target.center[:2])
    ft = footprint(target)
    inter = clip_polygon(fo, ft)
    area = polygon_area(fo)
    return polygon_area(inter) / area if len(inter) >= 3 and area > 0 else 0.0


def grasp_candidates(prior: ObjectPrior, support_z: float = 0.0, current_yaw: float = 0.0,
                     max_width: float = MAX_GRASP_WIDTH, depth: float = 0.025,
                     approach_height: float = 0.10, lift_height: float = 0.10,
                     squeeze: float = 0.005, preshape_margin: float = 0.015,
                     fingertip_clearance: float = 0.006) -> list[Grasp]:
    """Top-down grasps of ``prior``, best first. Raises Infeasible("too_wide") when every side
    is wider than ``max_width``, ("no_shape") for a degenerate prior."""
    size = np.asarray(prior.size, dtype=float)
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise Infeasible("no_shape", f"object {prior.id!r} has no usable size {size.tolist()}")
    yaw_o = _yaw_of(prior)
    options: list[tuple[float, float]] = []  # (closing-direction angle, width)
    if prior.shape in ("cylinder", "sphere"):
        d = float(max(size[:2]))
        if d > max_width:
            raise Infeasible("too_wide", f"object too wide for the gripper: {prior.id!r} is "
                             f"{100 * d:.1f} cm across (the gripper takes at most "
                             f"{100 * max_width:.1f} cm)")
        base = current_yaw + math.pi / 2  # closing direction that keeps the wrist where it is
        for k in (0, 1, -1, 2, -2, 3, -3, 4):
            options.append((base + k * math.pi / 8, d))
    else:
        sides = sorted([(float(size[0]), yaw_o), (float(size[1]), yaw_o + math.pi / 2)])
        for w, ang in sides:
            if w <= max_width:
                options.append((ang, w))
        if not options:
            raise Infeasible("too_wide", f"object too wide for the gripper: {prior.id!r} is "
                             f"{100 * sides[0][0]:.1f} x {100 * sides[1][0]:.1f} cm (the gripper "
                             f"takes at most {100 * max_width:.1f} cm)")
    top = top_z(prior)
    if prior.shape == "sphere":
        tcp_z = float(prior.center[2])
    else:
        tcp_z = top - min(depth, 0.75 * size[2])
    tcp_z = max(tcp_z, support_z + FINGERTIP_BELOW_TCP + fingertip_clearance)
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
                preshape=min(FINGER_OPEN, w / 2 + preshape_margin),
                finger_target=max(0.0, w / 2 - squeeze), depth=top - tcp_z))
    # Narrower first (stable, more room for the fingers), then a wrist well inside its
    # limits, then least wrist turn.
    x, y = float(prior.center[0]), float(prior.center[1])
    out.sort(key=lambda g: (round(g.width, 3) if prior.shape != "cylinder" and
                            prior.shape != "sphere" else 0.0,
                            -min(wrist_margin(x, y, g.yaw), 0.8),
                            abs(_wrap(g.yaw - current_yaw))))
    return out


def check_support(obj: ObjectPrior, target: ObjectPrior,
                  min_support: float = 0.6) -> tuple[float, list[float]]:
    """(best support ratio, object yaws that reach ``min_support``, best first) for putting
    ``obj`` on ``target``; raises Infeasible("no_flat_top" / "target_too_small")."""
    if target.shape == "sphere":
        raise Infeasible("no_flat_top", f"target {target.id!r} is a sphere: no flat top to "
                         "stack on")
    tilt = target.pose.rotation.as_matrix()[:, 2]
    if target.shape != "sphere" and abs(tilt[2]) < math.cos(math.radians(10)):
        raise Infeasible("no_flat_top", f"target {target.id!r} is tilted: no level top")
    yaw_t = _yaw_of(target)
    yaws = [_wrap(yaw_t + k * math.pi / 2) for k in range(4)]
    if obj.shape in ("cylinder", "sphere"):
        yaws = [_wrap(_yaw_of(obj))]
    ratios = [(support_ratio(obj, y, target), y) for y in yaws]
    best = max(r for r, _ in ratios)
    ok = [y for r, y in ratios if r >= min_support - 1e-9]
    if not ok:
        raise Infeasible("target_too_small", (
            f"target too small: the top of {target.id!r} ({100 * target.size[0]:.1f} x "
            f"{100 * target.size[1]:.1f} cm) would carry only {100 * best:.0f} % of "
            f"{obj.id!r}'s footprint ({100 * obj.size[0]:.1f} x {100 * obj.size[1]:.1f} cm); "
            f"at least {100 * min_support:.0f} % is needed"))
    return best, ok


def placements_on(obj: ObjectPrior, grasp: Grasp, target: ObjectPrior,
                  clearance: float = 0.005, approach_height: float = 0.10,
                  min_support: float = 0.6) -> list[Placement]:
    """Placements of ``obj`` (held with ``grasp``) on top of ``target``, least wrist turn
    first. Raises Infeasible when the target cannot support the object."""
    best, yaws = check_support(obj, target, min_support)
    z = top_z(target) + clearance + (float(obj.center[2]) - bottom_z(obj))
    xy = target.center[:2]
    cands = []
    for yaw in yaws:
        cands += _placements(obj, grasp, Pose.from_yaw([xy[0], xy[1], z], yaw), approach_height,
                             target.id, support_ratio(obj, yaw, target))
    return _by_wrist_turn(cands, grasp.yaw)


def placements_at(obj: ObjectPrior, grasp: Grasp, place: Pose, clearance: float = 0.005,
                  approach_height: float = 0.10) -> list[Placement]:
    """Placements of ``obj`` to rest with its centre at ``place`` (at its yaw, or a half turn
    from it; any yaw for cylinders and spheres), let go ``clearance`` above it."""
    pos = place.position + [0.0, 0.0, clearance]
    cands = _placements(obj, grasp, Pose.from_yaw(pos, place.yaw()), approach_height,
                        None, float("nan"))
    return _by_wrist_turn(cands, grasp.yaw)


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


def _tcp_yaw(p: Pose) -> float:
    x = p.rotation.as_matrix()[:, 0]
    return math.atan2(x[1], x[0])


def _by_wrist_turn(cands: list[Placement], yaw: float) -> list[Placement]:
    """Wrist well inside its limits first, then least wrist turn from the grasp."""
    def key(c: Placement):
        y = _tcp_yaw(c.pose)
        return (-min(wrist_margin(c.pose.position[0], c.pose.position[1], y), 0.8),
                abs(_wrap(y - yaw)))
    return sorted(cands, key=key)
