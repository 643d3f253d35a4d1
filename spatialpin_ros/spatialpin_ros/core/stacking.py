"""The rules for what the gripper can take and what can stand on what, in one place: the task
proposer (``reasoning.tasks``) and the planner (``planning``) both use them, so a proposal is
refused for the same reasons the planner would refuse it (ROS-free, no simulator).

Geometry: world frame (z up, metres); an object's footprint is its box seen from above (a
circle for cylinders and spheres).

* Gripper: the Franka Hand opens 0.08 m; ``MAX_GRASP_WIDTH`` keeps 4 mm on each side. A box is
  graspable across its narrower horizontal side, a cylinder or sphere across its diameter.
* Support: the target needs a level, flat top (a box or cylinder, tilted at most 10 degrees),
  with the object centred on it, must carry at least ``MIN_SUPPORT`` of the object's footprint.
  Where perception saw the target's top face (``ObjectPrior.top_face``, ``core.top_face``),
  that top must be flat and solid (not a rim, a hollow or an uneven top: ``no_flat_top``), and
  only the part of the footprint inside its outline carries (``support_area``): a bottle's
  cap or a toy's knob is no base, whatever its fitted box says.
  Yaws tried: the target's sides and their quarter turns (a cylinder or sphere keeps its own).
* Stability: the stacked object must not tip easily. With its centre of mass over the target's
  centre and a placement error of ``PLACEMENT_ERROR``, the tilt it survives,
  ``atan(distance from the centre of mass to the edge of the supported area / height of the
  centre of mass)``, must be at least ``MIN_TIP_ANGLE``. The supported area is the object's
  footprint within the target's ``support_area``. A 4.8 cm wide, 8.5 cm tall box on a
  wider top survives 24 degrees; a 3.7 cm wide, 12 cm tall one only 13 degrees.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.plan_status import PlanFailure
from spatialpin_ros.core.types import ObjectPrior

#: Widest object side the gripper takes (metres): its 0.08 m opening less 4 mm on each side.
MAX_GRASP_WIDTH = 0.072
#: Share of the object's footprint the target's top must carry.
MIN_SUPPORT = 0.6
#: Smallest tilt (radians) a stacked object must survive without tipping.
MIN_TIP_ANGLE = math.radians(15.0)
#: How far (metres) a placement may end from where it was aimed, for the stability rule.
PLACEMENT_ERROR = 0.005


#: A task that cannot be done as asked: the one failure type, ``core.plan_status.PlanFailure``
#: (``status`` a PlanStatus: too_wide, target_too_small, no_flat_top, unstable, unreachable,
#: ...). The name stays for the modules that catch it.
Infeasible = PlanFailure


def wrap(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def yaw_of(prior: ObjectPrior) -> float:
    return prior.pose.yaw()


def top_z(prior: ObjectPrior) -> float:
    """Height of the object's top (its box's highest corner)."""
    return float(prior.corners()[:, 2].max())


def bottom_z(prior: ObjectPrior) -> float:
    return float(prior.corners()[:, 2].min())


def footprint(prior: ObjectPrior, yaw: Optional[float] = None,
              xy: Optional[Sequence[float]] = None) -> np.ndarray:
    """Convex footprint (K, 2) of the object, turned to ``yaw`` and moved to ``xy`` if given."""
    yaw = yaw_of(prior) if yaw is None else yaw
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


def _edge_distance(point: np.ndarray, poly: np.ndarray) -> float:
    """Distance from a point inside a convex polygon to its boundary (0 when outside)."""
    poly = _ccw(poly)
    best = math.inf
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        e = b - a
        n = float(np.hypot(*e))
        if n < 1e-12:
            continue
        signed = (e[0] * (point[1] - a[1]) - e[1] * (point[0] - a[0])) / n
        best = min(best, signed)
    return max(0.0, best)


def grasp_width(prior: ObjectPrior) -> float:
    """How far the gripper must open (m): a box's narrower side, a round object's diameter."""
    if prior.shape in ("cylinder", "sphere"):
        return float(max(prior.size[:2]))
    return float(min(prior.size[:2]))


def check_graspable(prior: ObjectPrior, max_width: float = MAX_GRASP_WIDTH) -> None:
    """Raises Infeasible("too_wide") when the gripper cannot open around the object."""
    w = grasp_width(prior)
    if w > max_width:
        raise Infeasible("too_wide", f"object too wide for the gripper: {prior.id!r} is "
                         f"{100 * w:.1f} cm across at its narrowest (the gripper takes at most "
                         f"{100 * max_width:.1f} cm)")


def support_area(target: ObjectPrior) -> np.ndarray:
    """The polygon (K, 2) of the target's top that carries what stands on it: its footprint,
    within the outline of its perceived top face where it has one (empty when they do not
    overlap)."""
    ft = footprint(target)
    top = target.top_face
    if top is None or len(top.polygon) < 3:
        return ft if top is None else np.zeros((0, 2))
    return clip_polygon(ft, top.outline_at(target.center[:2], yaw_of(target)))


def polygon_centroid(p: np.ndarray) -> Optional[np.ndarray]:
    """Area centroid (2,) of a simple polygon (K, 2); None when it has no area."""
    p = np.asarray(p, dtype=float).reshape(-1, 2)
    if len(p) < 3:
        return None
    x, y = p[:, 0], p[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = float(cross.sum()) / 2
    if abs(a) < 1e-8:
        return None
    return np.array([float(((x + xn) * cross).sum()), float(((y + yn) * cross).sum())]) / (6 * a)


def support_centre(target: ObjectPrior) -> np.ndarray:
    """Where (x, y) to centre what stands on the target: the centroid of its ``support_area``
    (the seen flat top within its box), else its box's centre. A box grown over a strip of
    something lower beside or behind the target (a neighbour's top edge taken into its mask)
    moves the box's centre, but not the top that was seen at the top height."""
    c = polygon_centroid(support_area(target)) if target.top_face is not None else None
    return np.asarray(target.center[:2], dtype=float) if c is None else c


def check_top_face(target: ObjectPrior) -> None:
    """Raises Infeasible("no_flat_top") when the target's perceived top is not flat and solid
    (a rim around a hollow, an uneven top) or has no area; nothing when it has no top face."""
    top = target.top_face
    if top is None:
        return
    if not top.supports():
        raise Infeasible("no_flat_top", (
            f"target {target.id!r} has no flat solid top: only {100 * top.solid:.0f} % of its "
            "top's outline is seen at its top height (a rim, a hollow or an uneven top)"))
    if len(support_area(target)) < 3:
        raise Infeasible("no_flat_top", f"target {target.id!r}: its flat top is a line or a "
                         "point, nothing can stand on it")


def support_ratio(obj: ObjectPrior, obj_yaw: float, target: ObjectPrior,
                  xy: Optional[Sequence[float]] = None) -> float:
    """Share of the object's footprint (turned to ``obj_yaw``, its centre at ``xy``, by default
    the target's ``support_centre``) that the target's top (``support_area``) covers."""
    fo = footprint(obj, obj_yaw, support_centre(target) if xy is None else xy)
    ft = support_area(target)
    if len(ft) < 3:
        return 0.0
    inter = clip_polygon(fo, ft)
    area = polygon_area(fo)
    return polygon_area(inter) / area if len(inter) >= 3 and area > 0 else 0.0


def tip_angle(obj: ObjectPrior, obj_yaw: float, target: ObjectPrior,
              xy: Optional[Sequence[float]] = None,
              placement_error: float = PLACEMENT_ERROR) -> float:
    """Tilt (radians) the object survives standing on the target at ``obj_yaw`` with its centre
    at ``xy`` (default: the target's ``support_centre``): its centre of mass is ``height / 2``
    above the target's top and ``placement_error`` less than the distance to the supported
    area's edge from it."""
    xy = np.asarray(support_centre(target) if xy is None else xy, dtype=float)
    ft = support_area(target)
    if len(ft) < 3:
        return 0.0
    inter = clip_polygon(footprint(obj, obj_yaw, xy), ft)
    if len(inter) < 3:
        return 0.0
    d = _edge_distance(xy, inter) - placement_error
    return math.atan2(max(d, 0.0), max(float(obj.size[2]) / 2, 1e-6))


def check_support(obj: ObjectPrior, target: ObjectPrior, min_support: float = MIN_SUPPORT,
                  min_tip_angle: float = MIN_TIP_ANGLE) -> tuple[float, list[float]]:
    """(best support ratio, object yaws that are supported and stable) for putting
    ``obj`` on ``target``; raises Infeasible("no_flat_top" / "target_too_small" / "unstable")."""
    if target.shape in ("sphere", "other"):
        raise Infeasible("no_flat_top", f"target {target.id!r} is a "
                         f"{'sphere' if target.shape == 'sphere' else 'irregular object'}: "
                         "no flat top to stack on")
    tilt = target.pose.rotation.as_matrix()[:, 2]
    if abs(tilt[2]) < math.cos(math.radians(10)):
        raise Infeasible("no_flat_top", f"target {target.id!r} is tilted: no level top")
    check_top_face(target)
    if obj.shape == "sphere":
        raise Infeasible("unstable", f"{obj.id!r} is a ball and would roll off")
    yaw_t = yaw_of(target)
    yaws = [wrap(yaw_t + k * math.pi / 2) for k in range(4)]
    if obj.shape == "cylinder":
        yaws = [wrap(yaw_of(obj))]
    ratios = [(support_ratio(obj, y, target), y) for y in yaws]
    best = max(r for r, _ in ratios)
    ok = [y for r, y in ratios if r >= min_support - 1e-9]
    if not ok:
        raise Infeasible("target_too_small", (
            f"target too small: the top of {target.id!r} ({100 * target.size[0]:.1f} x "
            f"{100 * target.size[1]:.1f} cm) would carry only {100 * best:.0f} % of "
            f"{obj.id!r}'s footprint ({100 * obj.size[0]:.1f} x {100 * obj.size[1]:.1f} cm); "
            f"at least {100 * min_support:.0f} % is needed"))
    tips = [(tip_angle(obj, y, target), y) for y in ok]
    stable = [y for a, y in tips if a >= min_tip_angle - 1e-9]
    if not stable:
        best_tip = max(a for a, _ in tips)
        raise Infeasible("unstable", (
            f"unstable: {obj.id!r} ({100 * obj.size[2]:.1f} cm tall) would tip over on "
            f"{target.id!r}: it would survive a tilt of only {math.degrees(best_tip):.0f} "
            f"degrees (at least {math.degrees(min_tip_angle):.0f} are needed)"))
    return best, stable


def stable_at(obj: ObjectPrior, obj_yaw: float, target: ObjectPrior, xy: Sequence[float],
              min_support: float = MIN_SUPPORT, min_tip_angle: float = MIN_TIP_ANGLE) -> bool:
    """Whether the object, turned to ``obj_yaw`` with its centre at ``xy``, is supported and
    stable on the target (the rules of ``check_support`` at an off-centre spot)."""
    return (support_ratio(obj, obj_yaw, target, xy) >= min_support - 1e-9
            and tip_angle(obj, obj_yaw, target, xy) >= min_tip_angle - 1e-9)


def polygon_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two convex polygons (0 when they overlap)."""
    inter = clip_polygon(a, b)
    if len(inter) >= 3 and polygon_area(inter) > 1e-10:
        return 0.0
    best = math.inf
    for P, Q in ((a, b), (b, a)):
        for p in P:
            for i in range(len(Q)):
                q0, q1 = Q[i], Q[(i + 1) % len(Q)]
                d = q1 - q0
                t = float(np.clip(np.dot(p - q0, d) / max(float(np.dot(d, d)), 1e-12), 0, 1))
                best = min(best, float(np.linalg.norm(p - (q0 + t * d))))
    return best


def penetration(a: np.ndarray, b: np.ndarray) -> float:
    """How deep (m) two convex polygons reach into each other: the least overlap of their
    projections over the edge normals of both (separating axes); 0 when they are apart."""
    best = math.inf
    for poly in (a, b):
        e = np.roll(poly, -1, axis=0) - poly
        n = np.stack([-e[:, 1], e[:, 0]], 1)
        n = n[np.linalg.norm(n, axis=1) > 1e-12]
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        pa, pb = a @ n.T, b @ n.T                                  # (K, M) projections
        over = np.minimum(pa.max(0), pb.max(0)) - np.maximum(pa.min(0), pb.min(0))
        best = min(best, float(over.min()))
    return max(best, 0.0)


def point_polygon_distance(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance (N,) from each of ``points`` (N, 2) to a convex polygon (0 inside it)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    poly = _ccw(np.asarray(poly, dtype=float))
    a = poly
    b = np.roll(poly, -1, axis=0)
    e = b - a                                                   # (K, 2)
    rel = pts[:, None, :] - a[None]                             # (N, K, 2)
    t = np.clip((rel * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(rel - t[..., None] * e[None], axis=-1).min(axis=1)
    inside = np.all(e[None, :, 0] * rel[..., 1] - e[None, :, 1] * rel[..., 0] >= 0, axis=1)
    return np.where(inside, 0.0, d)


#: Table area searched for free spots (world x and y ranges, metres), within the arm's reach.
FREE_AREA = ((0.35, 0.70), (-0.30, 0.30))


def free_spot(objects: Sequence[ObjectPrior], prior: ObjectPrior, margin: float = 0.02, min_move: float = 0.08, step: float = 0.02,
              keep_away: Sequence[ObjectPrior] = (), keep_away_margin: float = 0.10,
              area: tuple[tuple[float, float], tuple[float, float]] = FREE_AREA,
              accept: Optional[Callable[[np.ndarray], bool]] = None, max_tries: int = 8
              ) -> Optional[np.ndarray]:
    """A free place (x, y) on the table for ``prior``, nearest its current place but at least
    ``min_move`` from it: a disc around the object (its half diagonal plus ``margin``) keeps clear
    of every other object's footprint, and of those in ``keep_away`` by ``keep_away_margin``
    (room for the hand next to them). With ``accept`` (e.g. the arm reaches it), the nearest of
    the free places it accepts, asking it about the ``max_tries`` nearest at most, 4 cm apart
    at least. None when the table has no such place."""
    r = 0.5 * float(np.hypot(prior.size[0], prior.size[1]))
    xs = np.arange(area[0][0], area[0][1], step)
    ys = np.arange(area[1][0], area[1][1] + 1e-9, step)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    ok = np.linalg.norm(grid - prior.center[:2], axis=1) > min_move
    away = {o.id for o in keep_away}
    for o in objects:
        if o.id == prior.id:
            continue
        need = r + (keep_away_margin if o.id in away else margin)
        ok &= point_polygon_distance(grid, footprint(o)) >= need
    if not ok.any():
        return None
    cands = grid[ok]
    order = np.argsort(np.linalg.norm(cands - prior.center[:2], axis=1), kind="stable")
    if accept is None:
        return cands[int(order[0])]
    asked: list[np.ndarray] = []
    for i in order:
        c = cands[int(i)]
        if any(np.linalg.norm(c - a) < 0.04 for a in asked):
            continue
        if accept(c):
            return c
        asked.append(c)
        if len(asked) >= max_tries:
            break
    return None
