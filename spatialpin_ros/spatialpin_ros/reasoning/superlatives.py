"""Superlatives ("which object is the tallest / closest to the robot?") and counts ("how many
red blocks are there?") over a scene or a subset of it, from the 3D priors."""

from __future__ import annotations

import re
from typing import Callable, Optional

import numpy as np

from spatialpin_ros.core.types import ObjectPrior, Scene
from spatialpin_ros.reasoning.answer import Answer
from spatialpin_ros.reasoning.measures import (ROBOT_BASE, distance_to, object_dims,
                                               relation_holds, top, volume)
from spatialpin_ros.reasoning.query import Query
from spatialpin_ros.reasoning.resolve import describe, ground, select
from spatialpin_ros.reasoning.viewer import ViewerFrame

Score = Callable[[ObjectPrior, ViewerFrame, Optional[ObjectPrior]], float]
#: superlative -> (score, pick the largest?, words for the answer)
SUPERLATIVES: dict[str, tuple[Score, bool, str]] = {
    "tallest": (lambda o, v, a: float(o.size[2]), True, "the tallest"),
    "shortest": (lambda o, v, a: float(o.size[2]), False, "the shortest"),
    "biggest": (lambda o, v, a: volume(o), True, "the biggest"),
    "smallest": (lambda o, v, a: volume(o), False, "the smallest"),
    "heaviest": (lambda o, v, a: volume(o), True, "the heaviest-looking (largest volume)"),
    "lightest": (lambda o, v, a: volume(o), False, "the lightest-looking (smallest volume)"),
    "widest": (lambda o, v, a: object_dims(o, v)[0], True, "the widest"),
    "thinnest": (lambda o, v, a: object_dims(o, v)[0], False, "the thinnest"),
    "highest": (lambda o, v, a: top(o), True, "the highest"),
    "lowest": (lambda o, v, a: top(o), False, "the lowest"),
    "leftmost": (lambda o, v, a: float(o.center @ v.right), False, "the leftmost"),
    "rightmost": (lambda o, v, a: float(o.center @ v.right), True, "the rightmost"),
    "frontmost": (lambda o, v, a: float(o.center @ v.away), False, "the frontmost"),
    "backmost": (lambda o, v, a: float(o.center @ v.away), True, "the farthest back"),
    "closest_camera": (lambda o, v, a: distance_to(o, v.eye), False,
                       "the closest to the camera"),
    "farthest_camera": (lambda o, v, a: distance_to(o, v.eye), True,
                        "the farthest from the camera"),
    "closest_robot": (lambda o, v, a: distance_to(o, ROBOT_BASE), False,
                      "the closest to the robot's base"),
    "farthest_robot": (lambda o, v, a: distance_to(o, ROBOT_BASE), True,
                       "the farthest from the robot's base"),
    "closest_to": (lambda o, v, a: distance_to(o, a.center), False, "the closest to"),
    "farthest_to": (lambda o, v, a: distance_to(o, a.center), True, "the farthest from"),
}


def _subset(q: Query, scene: Scene) -> list[ObjectPrior]:
    return select(q.group, scene) if q.group else list(scene.objects)


def answer_superlative(q: Query, scene: Scene, viewer: ViewerFrame) -> Answer:
    score, want_max, words = SUPERLATIVES[q.name]
    notes: list[str] = []
    anchor = None
    if q.refs:
        anchor, scene = ground(q.refs[0], scene, viewer, notes)
    cands = [o for o in _subset(q, scene) if anchor is None or o.id != anchor.id]
    if not cands:
        what = q.group or "object"
        return Answer(False, message=f"no {what} in the scene to choose from; the scene has: "
                      + ", ".join(describe(o) for o in scene.objects))
    scores = np.array([score(o, viewer, anchor) for o in cands])
    best = cands[int(np.argmax(scores) if want_max else np.argmin(scores))]
    of = f" {describe(anchor)}" if anchor is not None else ""
    among = f" among {len(cands)} ({q.group})" if q.group else f" of {len(cands)} objects"
    facts = "; ".join(f"{o.id}: {s:.3f}" for o, s in zip(cands, scores))
    ids = [best.id] + ([anchor.id] if anchor is not None else [])
    return Answer(True, f"{best.label} ({best.id}) is {words}{of}{among}.", object_ids=ids,
                  explanation=f"{q.name} scores: {facts}", message="; ".join(notes))


def answer_count(q: Query, scene: Scene, viewer: ViewerFrame) -> Answer:
    """count / exists over ``q.group``; count_relative: the objects that are ``q.name``
    relative to ``refs[0]``."""
    if q.kind == "count_relative":
        notes: list[str] = []
        anchor, scene = ground(q.refs[0], scene, viewer, notes)
        hits = [o for o in scene.objects if o.id != anchor.id
                and relation_holds(q.name, o, anchor, viewer)[0]]
        rel = q.name.replace("_", " ")
        return Answer(True, f"{len(hits)} object{'s' if len(hits) != 1 else ''} "
                      f"{'is' if len(hits) == 1 else 'are'} {rel} {anchor.label} ({anchor.id})"
                      + (f": {', '.join(describe(o) for o in hits)}." if hits else "."),
                      float(len(hits)), "", [o.id for o in hits] + [anchor.id],
                      f"{len(scene.objects) - 1} other objects checked", "; ".join(notes))
    hits = _subset(q, scene)
    what = re.sub(r"^(?:the|any|a|an|some|all|these|those)\s+", "", q.group) or "objects"
    listed = f": {', '.join(describe(o) for o in hits)}" if hits else ""
    if q.kind == "exists":
        return Answer(True, ("Yes" if hits else "No") + f", there {'are' if hits else 'are no'} "
                      f"{what}{listed}.", 1.0 if hits else 0.0, "", [o.id for o in hits])
    return Answer(True, f"There {'is' if len(hits) == 1 else 'are'} {len(hits)} {what}{listed}.",
                  float(len(hits)), "", [o.id for o in hits],
                  f"{len(scene.objects)} objects in the scene")
