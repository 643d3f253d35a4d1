"""Questions about a scene of priors that task planning asks (ROS-free): what an object
stands on, what rests on it or inside it, which pieces are phantoms, and which neighbours may be
moved out of the way (``blockers``)."""

from __future__ import annotations

from typing import Optional, Sequence

from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, bottom_z, clip_polygon, footprint,
                                          grasp_width, point_polygon_distance, polygon_area,
                                          polygon_gap, top_z)
from spatialpin_ros.core.task_kinds import phantom_reason
from spatialpin_ros.core.types import ObjectPrior, Scene


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
