"""Questions about a scene of priors that task planning asks (ROS-free): what an object
stands on, what rests on it or inside it, which pieces are phantoms, which may be a piece of
one object with a neighbour (``fragment_of``), and which neighbours may be
moved out of the way (``blockers``), and how neighbours whose perceived boxes reach into the
grasped object's give way (``yield_to``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, bottom_z, clip_polygon, footprint,
                                          grasp_width, point_polygon_distance, polygon_area,
                                          polygon_gap, top_z)
from spatialpin_ros.core.task_kinds import phantom_reason
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene

#: The most (m) a neighbour's box gives way to the grasped object's (``yield_to``), and the
#: least share of its extent it keeps: a larger overlap is not a strip taken in by mistake.
MAX_YIELD = 0.03
MIN_KEPT = 0.6
#: How far (m) a neighbour that gave way still reaches into the object's box: perceived boxes
#: of touching objects overlap by a few millimetres, and the planner lets the held object and
#: the closed fingers rise from such a neighbour (``planning.choice``).
TOUCH = 0.003
#: Neighbours that may be pieces of one object (``fragment_of``): mean colours within
#: ``FRAGMENT_COLOUR`` (distance in RGB, 0..255 a channel), and footprints at most
#: ``FRAGMENT_GAP`` (m) apart with tops within ``FRAGMENT_TOP`` (m) of each other...
FRAGMENT_GAP = 0.005
FRAGMENT_TOP = 0.005
FRAGMENT_COLOUR = 80.0
#: ... or resting on it: its bottom within ``FRAGMENT_REST`` (m) of the other's top.
FRAGMENT_REST = 0.02


def supporting_object(prior: ObjectPrior, scene: Scene, table_z: float) -> Optional[str]:
    """The object the prior stands on (its top within 2 cm of the prior's bottom, footprints
    overlapping), or None for the table."""
    b = bottom_z(prior)
    if b < table_z + 0.015:
        return None
    fp = footprint(prior)
    best, best_area = None, 0.0
    for o in scene.objects:
        if o.id == prior.id or abs(top_z(o) - b) > 0.02:
            continue
        inter = clip_polygon(fp, footprint(o))
        area = polygon_area(inter) if len(inter) >= 3 else 0.0
        if area > best_area:
            best, best_area = o.id, area
    return best


def object_on_top(prior: ObjectPrior, scene: Scene) -> Optional[str]:
    """An object resting on top of ``prior`` (None when its top is clear)."""
    t = top_z(prior)
    fp = footprint(prior)
    for o in scene.objects:
        if o.id == prior.id:
            continue
        if abs(bottom_z(o) - t) < 0.02:
            inter = clip_polygon(footprint(o), fp)
            if len(inter) >= 3 and polygon_area(inter) > 1e-5:
                return o.id
    return None


def without_phantoms(scene: Scene, keep: Sequence[Optional[str]] = ()) -> Scene:
    """The scene without phantom pieces (``core.task_kinds.phantom_reason``), except ``keep``."""
    objs = [o for o in scene.objects
            if o.id in keep or phantom_reason(o, scene.objects) is None]
    return scene if len(objs) == len(scene.objects) else scene.replace(objects=objs)


def object_inside(container: ObjectPrior, scene: Scene) -> Optional[str]:
    """An object standing in or on a container (its centre over the container's footprint, its
    bottom between the inner bottom and 2 cm above the rim), or None."""
    fp = footprint(container)
    lo = top_z(container) - float(container.inner_depth) - 0.02
    for o in scene.objects:
        if o.id == container.id:
            continue
        if (point_polygon_distance(o.center[None, :2], fp)[0] == 0.0
                and lo <= bottom_z(o) <= top_z(container) + 0.02):
            return o.id
    return None


def fragment_of(prior: ObjectPrior, scene: Scene, resting: bool = True) -> Optional[str]:
    """A neighbour that ``prior`` may be one piece of together with (None when none): one of
    the same colour (``FRAGMENT_COLOUR``) that touches it (``FRAGMENT_GAP``) with its top at
    the same height (``FRAGMENT_TOP``), or that it rests on (its bottom at the other's top,
    within ``FRAGMENT_REST``, their footprints overlapping); or, whatever the colour, a ball or
    an irregular object (not a container) that it rests on: nothing stands on one on its own
    (``core.stacking.check_support``), so a piece seen there is part of it or propped by it.
    The surface runs on across the boundary between them in one colour: from one view nothing
    tells two objects from one object that segmentation cut (a tray's walls, a plate's or a
    jenga block's halves, a bottle's neck above its shoulder), so where the object ends is not
    known. Grasping such a piece lifts whatever it belongs to, and a placement centred on it is
    off the whole's centre. ``resting``: False leaves out the pieces it rests on (a target:
    the top piece of an object cut across carries what is stacked on it at the whole's top,
    over its middle)."""
    fp, top, bottom = footprint(prior), top_z(prior), bottom_z(prior)
    for o in scene.objects:
        if o.id == prior.id:
            continue
        gap = polygon_gap(fp, footprint(o))
        rests = (resting and abs(bottom - top_z(o)) <= FRAGMENT_REST
                 and bottom > bottom_z(o) + FRAGMENT_REST and gap == 0.0)
        if rests and o.shape in ("sphere", "other") and not o.container:
            return o.id       # nothing stands on a ball or an irregular top on its own
        if (prior.rgb is None or o.rgb is None or float(np.linalg.norm(
                np.subtract(prior.rgb, o.rgb, dtype=float))) > FRAGMENT_COLOUR):
            continue
        if rests or (abs(top_z(o) - top) <= FRAGMENT_TOP and gap <= FRAGMENT_GAP):
            return o.id
    return None


def blockers(scene: Scene, object_id: str, target_id: Optional[str] = None,
             near: float = 0.03, near_tall: float = 0.08,
             max_width: float = MAX_GRASP_WIDTH) -> list[ObjectPrior]:
    """Objects that may stand in the hand's way at the object or the target and could be moved
    away: within ``near`` of either footprint (``near_tall`` when the neighbour's top is 2 cm or
    more above that object's: the hand reaches about 10 cm out along the fingers' closing
    direction), carrying nothing and narrow enough to grasp (``max_width``, m); the tallest
    first (a tall neighbour blocks the hand), then the nearest. The target itself comes last,
    when it stands next to the object (it can be stacked on where it is put)."""
    obj = scene.get(object_id)
    keys = [obj] + ([scene.get(target_id)] if target_id else [])
    out = []
    for o in scene.objects:
        if o.id == object_id or grasp_width(o) > max_width or object_on_top(o, scene):
            continue
        if o.id == target_id:
            gap = polygon_gap(footprint(o), footprint(obj))
            if gap < near:
                out.append((1, 0.0, gap, o))
            continue
        reach = [(polygon_gap(footprint(o), footprint(k)),
                  near_tall if top_z(o) > top_z(k) + 0.02 else near) for k in keys]
        if any(g < r for g, r in reach):
            out.append((0, -round(top_z(o), 2), min(g for g, _ in reach), o))
    return [t[-1] for t in sorted(out, key=lambda t: t[:3])]


def _cut_box(n: ObjectPrior, poly: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The least cut of box ``n``'s footprint, across one of its own axes from one side, that
    leaves it reaching only ``TOUCH`` into the convex polygon ``poly``: (new centre (2,), new
    extents (2,)) or None where that cut is larger than ``MAX_YIELD`` or leaves less than ``MIN_KEPT``."""
    yaw = n.pose.yaw()
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    loc = (poly - n.center[:2]) @ axes.T                 # the polygon in the box's axes
    best = None
    for k in range(2):
        h = float(n.size[k]) / 2
        lo, hi = float(loc[:, k].min()), float(loc[:, k].max())
        # from the + or - side, still reaching TOUCH into the polygon
        for cut, new in ((h - lo - TOUCH, (-h, lo + TOUCH)),
                         (hi + h - TOUCH, (hi - TOUCH, h))):
            if best is None or cut < best[0]:
                best = (cut, k, new)
    cut, k, (a, b) = best
    if cut <= 0.0 or cut > MAX_YIELD or b - a < MIN_KEPT * float(n.size[k]):
        return None
    centre = np.zeros(2)
    centre[k] = (a + b) / 2
    size = np.asarray(n.size[:2], dtype=float).copy()
    size[k] = b - a
    return n.center[:2] + centre @ axes, size


def _cut_circle(n: ObjectPrior, poly: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The largest circle within round ``n``'s footprint that reaches only ``TOUCH`` into the
    convex polygon ``poly``: its near side moved back by the overlap, the far side kept. None where ``n``'s
    centre lies in ``poly`` or the cut exceeds ``MAX_YIELD`` or leaves less than ``MIN_KEPT``."""
    c = np.asarray(n.center[:2], dtype=float)
    r = float(max(n.size[:2])) / 2
    d = float(point_polygon_distance(c[None], poly)[0])
    cut = r - d - TOUCH
    if d <= 0.0 or cut <= 0.0 or cut > MAX_YIELD or 2 * r - cut < MIN_KEPT * 2 * r:
        return None
    # the nearest point of the polygon to the centre: the direction away from it
    e = np.concatenate([poly, poly[:1]])
    t = np.clip(np.einsum("ij,ij->i", c - e[:-1], e[1:] - e[:-1])
                / np.maximum(np.einsum("ij,ij->i", e[1:] - e[:-1], e[1:] - e[:-1]), 1e-12), 0, 1)
    q = e[:-1] + t[:, None] * (e[1:] - e[:-1])
    near = q[int(np.argmin(np.linalg.norm(q - c, axis=1)))]
    u = (c - near) / max(float(np.linalg.norm(c - near)), 1e-9)
    return c + u * cut / 2, np.full(2, 2 * r - cut)


def yield_to(obj: ObjectPrior, scene: Scene, min_overlap: float = 1e-5) -> Scene:
    """The scene with each neighbour standing beside ``obj`` (their heights overlapping by 1 cm
    or more) whose perceived footprint reaches into ``obj``'s cut back to touch it only
    (``TOUCH``). Two solid
    objects cannot interpenetrate: such an overlap is a strip of one taken into the other's
    outline (a neighbour's box that took in the grasped object's top edge would otherwise
    block every finger pose). A neighbour's box is cut across one of its axes (``_cut_box``),
    a cylinder's circle shrunk from its near side (``_cut_circle``); the overlap must be small
    (``MAX_YIELD``, ``MIN_KEPT``), else the neighbour stays as perceived. Spheres stay; a
    neighbour's seen top keeps its place."""
    fo = footprint(obj)
    out, changed = [], False
    for n in scene.objects:
        new = None
        if (n.id != obj.id and n.shape != "sphere"
                and min(top_z(n), top_z(obj)) - max(bottom_z(n), bottom_z(obj)) >= 0.01):
            inter = clip_polygon(footprint(n), fo)
            if len(inter) >= 3 and polygon_area(inter) > min_overlap:
                new = (_cut_circle if n.shape == "cylinder" else _cut_box)(n, fo)
        if new is None:
            out.append(n)
            continue
        centre, size = new
        yaw = n.pose.yaw()
        top = n.top_face
        if top is not None:
            world = top.outline_at(n.center[:2], yaw)
            top = dataclasses.replace(top, polygon=world).about(centre, yaw)
        out.append(dataclasses.replace(
            n, pose=Pose(np.array([centre[0], centre[1], n.center[2]]), n.pose.quaternion),
            size=np.array([size[0], size[1], n.size[2]]), top_face=top))
        changed = True
    return scene.replace(objects=out) if changed else scene
