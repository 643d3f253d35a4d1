"""Pieces of one object: same-coloured perceived objects that touch, read as one when a phrase
names one thing.

A depth camera's noise, a shadow line or a highlight can split one object into two or three
boxes of the same colour that touch or overlap ("the gray can" perceived as a gray box standing
on a flat gray box). A person asked about "the gray can" who sees one gray thing made of pieces
takes the pieces together. ``merge_pieces`` does that, and only that: the pieces must all have
the same colour and form one cluster of boxes that touch (surface gap at most ``TOUCH_M``).
Objects that stand apart stay apart, so a phrase that names one of several separate objects is
still ambiguous. The answer's message says which objects were taken together.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.reasoning.measures import surface_gap

#: pieces whose boxes are at most this far apart touch (depth noise is about a centimetre)
TOUCH_M = 0.01


def _as_box(o: ObjectPrior) -> ObjectPrior:
    return o if o.shape in ("box", "other") else dataclasses.replace(o, shape="box")


def one_cluster(objs: Sequence[ObjectPrior], touch_m: float = TOUCH_M) -> bool:
    """Whether ``objs`` (two or more) are connected by boxes that touch or overlap."""
    if len(objs) < 2:
        return False
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j in range(len(objs)):
            if j not in seen and surface_gap(_as_box(objs[i]), _as_box(objs[j])) <= touch_m:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(objs)


def merge_pieces(objs: Sequence[ObjectPrior]) -> ObjectPrior:
    """One object from its pieces: their boxes' union, in the frame of the piece with the most
    points (its shape and yaw); its id is the piece nearest the union's centre."""
    main = max(objs, key=lambda o: o.num_points)
    yaw = main.pose.yaw() if main.shape == "box" else 0.0
    frame = Pose.from_yaw(main.center, yaw)
    pts = frame.inverse().transform_points(np.concatenate([o.corners() for o in objs]))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = hi - lo
    if main.shape in ("cylinder", "sphere"):
        size[0] = size[1] = max(size[0], size[1])
    center = frame.transform_points(((lo + hi) / 2)[None])[0]
    rep = min(objs, key=lambda o: float(np.linalg.norm(o.center - center)))
    return dataclasses.replace(
        rep, pose=Pose.from_yaw(center, yaw), size=size, shape=main.shape,
        num_points=sum(o.num_points for o in objs), mask=None, top_face=None,
        axis_names=list(main.axis_names), yaw_symmetric=main.yaw_symmetric)


def pieces_of_one(cands: Sequence[ObjectPrior], scene: Scene) -> Optional[list[ObjectPrior]]:
    """The pieces of one object that ``cands`` (two or more a phrase matches) are, or None.

    The candidates must share one colour and touch; the other objects of that colour touching
    them are pieces too (a can split into a cylinder and a flat box)."""
    colors = {o.color_name for o in cands}
    if len(cands) < 2 or len(colors) != 1 or not next(iter(colors)):
        return None
    if not one_cluster(cands):
        return None
    color = next(iter(colors))
    group = list(cands)
    grown = True
    while grown:
        grown = False
        for o in scene.objects:
            if o.color_name == color and all(o.id != g.id for g in group) and \
                    any(surface_gap(_as_box(o), _as_box(g)) <= TOUCH_M for g in group):
                group.append(o)
                grown = True
    return group


def scene_with(scene: Scene, merged: ObjectPrior, pieces: Sequence[ObjectPrior]) -> Scene:
    """``scene`` with ``pieces`` replaced by ``merged`` (at the first piece's place)."""
    ids = {p.id for p in pieces}
    out, placed = [], False
    for o in scene.objects:
        if o.id in ids:
            if not placed:
                out.append(merged)
                placed = True
        else:
            out.append(o)
    return scene.replace(objects=out)
