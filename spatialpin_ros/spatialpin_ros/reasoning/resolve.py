"""Resolve phrases people use for objects ("the red block", "the left cup", "the tallest object",
"obj_3") to the objects of a scene, or say clearly why not."""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import ObjectPrior, Scene
from spatialpin_ros.reasoning.fragments import merge_pieces, pieces_of_one, scene_with
from spatialpin_ros.reasoning.grounding import (COLOR_WORDS, NOUNS, ORDERING, Description,
                                                describe_phrase, words_of)
from spatialpin_ros.reasoning.viewer import ViewerFrame


class ReferenceError_(SpatialPinError, LookupError):
    """A phrase names no object, or several, in the scene (the message lists the objects)."""


UnknownObject = ReferenceError_


class AmbiguousReference(ReferenceError_):
    pass


#: kept for callers of the earlier API: noun -> shape
SHAPE_NOUNS = {n: shapes[0] for n, shapes in NOUNS.items()}
POSITIONAL = ORDERING
COLOR_SYNONYMS = {w: opts[0] for w, opts in COLOR_WORDS.items() if " " not in w and w != "dark"}


def describe(o: ObjectPrior) -> str:
    return f"{o.id} ({o.label})"


def listing(scene: Scene) -> str:
    return ", ".join(describe(o) for o in scene.objects) or "no objects"


def _score(o: ObjectPrior, key: str, viewer: ViewerFrame) -> float:
    if key == "right":
        return float(o.center @ viewer.right)
    if key == "away":
        return float(o.center @ viewer.away)
    if key == "dist":
        return float(np.linalg.norm(o.center - viewer.eye))
    if key == "height":
        return float(o.size[2])
    if key == "top":
        return float(o.center[2] + o.size[2] / 2)
    if key == "width":
        return float(max(o.size[0], o.size[1]))
    from spatialpin_ros.reasoning.geometric import volume
    return volume(o)


def _label_words(scene: Scene) -> set[str]:
    return {w for o in scene.objects for w in words_of(o.label)}


def _filter(d: Description, objs: list[ObjectPrior]) -> list[ObjectPrior]:
    """Objects that fit the description's colours, nouns and label words (no ordering)."""
    cands = list(objs)
    for options in d.colors:  # "light blue": cyan if there is one, else blue
        for c in options:
            hit = [o for o in cands if o.color_name == c]
            if hit:
                cands = hit
                break
        else:
            return []
    for noun in d.nouns:
        cands = [o for o in cands if o.shape in NOUNS.get(noun, ()) or
                 noun in words_of(o.label)]
    if d.shapes and not d.nouns:
        cands = [o for o in cands if o.shape in d.shapes]
    for w in d.unknown:  # names a model may have given ("laptop"): words of the labels
        cands = [o for o in cands if w in words_of(o.label)]
    return cands


def select(phrase: str, scene: Scene) -> list[ObjectPrior]:
    """Every object of ``scene`` a set phrase names ("red blocks", "things", "cylinders");
    UnknownObject when the phrase has words no object's description or label has."""
    d = describe_phrase(phrase, _label_words(scene))
    return _filter(d, list(scene.objects))


def resolve(phrase: str, scene: Scene, viewer: Optional[ViewerFrame] = None,
            notes: Optional[list] = None) -> ObjectPrior:
    """The one object ``phrase`` refers to in ``scene`` (see ``ground``)."""
    return ground(phrase, scene, viewer, notes)[0]


def ground(phrase: str, scene: Scene, viewer: Optional[ViewerFrame] = None,
           notes: Optional[list] = None) -> tuple[ObjectPrior, Scene]:
    """The one object ``phrase`` refers to in ``scene``, and the scene as the answer should see
    it (``scene`` itself, or with the pieces of a split object taken as one).

    Raises UnknownObject when nothing matches and AmbiguousReference when several do and the
    phrase does not say which (both messages list the scene's objects). Two readings of
    imperfect perception are made, each with a note appended to ``notes``:
    * the shape word matches nothing but the colour names exactly one object: that object
      (perceived shapes can be wrong; colours rarely are);
    * the phrase matches several touching objects of one colour: they are taken as the pieces of
      one object (``fragments.py``)."""
    viewer = viewer or ViewerFrame.from_camera(scene.camera_pose)
    notes = notes if notes is not None else []
    raw = phrase.strip().lower()
    if not scene.objects:
        raise UnknownObject(f"there are no objects in scene {scene.scene_id!r}")
    for cand in (raw, re.sub(r"^(the|a|an) ", "", raw)):  # an id, or a label only one has
        exact = [o for o in scene.objects
                 if cand in (o.id.lower(), o.label.lower(), o.id.lower().replace("_", " "))]
        if len(exact) == 1:
            return exact[0], scene
    d = describe_phrase(raw, _label_words(scene))
    if d.object_id is not None:
        hit = [o for o in scene.objects if o.id == d.object_id]
        if hit:
            return hit[0], scene
        raise UnknownObject(f"no object has id {d.object_id}; the scene has: {listing(scene)}")
    if d.empty:
        raise UnknownObject(f"{phrase!r} names no object; the scene has: {listing(scene)}")
    cands = _filter(d, list(scene.objects))
    if not cands and d.colors and (d.nouns or d.shapes) and not d.unknown:
        cands = _by_color_only(phrase, d, scene, notes)
    if not cands:
        raise UnknownObject(f"no object matches {phrase!r}; the scene has: {listing(scene)}")
    for key, want_max in d.ordering:
        if len(cands) == 1:
            break
        scores = [_score(o, key, viewer) for o in cands]
        best = max(scores) if want_max else min(scores)
        cands = [o for o, sc in zip(cands, scores) if sc == best]
    if len(cands) > 1:
        pieces = pieces_of_one(cands, scene)
        if pieces is None:
            raise AmbiguousReference(
                f"{phrase!r} could be any of {', '.join(describe(o) for o in cands)}; say which "
                "(by colour, shape, size or position, or by id)")
        return _merged(phrase, pieces, scene, notes)
    return cands[0], scene


def _by_color_only(phrase: str, d: Description, scene: Scene, notes: list) -> list:
    """Objects of the phrase's colour when its shape word matches none of them: the only one,
    or the touching pieces of one (perceived shapes can be wrong; colours rarely are)."""
    by_color = _filter(Description(colors=d.colors), list(scene.objects))
    if len(by_color) != 1 and pieces_of_one(by_color, scene) is None:
        return []
    c = by_color[0]
    what = "the only" if len(by_color) == 1 else "pieces of the one"
    notes.append(f"no {' or '.join(sorted(d.nouns or d.shapes))} is {c.color_name}; "
                 f"'{phrase}' was taken to be {what} {c.color_name} object, "
                 + ", ".join(f"{describe(o)} perceived as a {o.shape}" for o in by_color))
    return by_color


def _merged(phrase: str, pieces: list, scene: Scene, notes: list) -> tuple[ObjectPrior, Scene]:
    m = merge_pieces(pieces)
    notes.append(f"'{phrase}' matches {len(pieces)} touching {m.color_name} objects ("
                 + ", ".join(o.id for o in pieces) + "), taken as the pieces of one object, "
                 f"{m.id}: {np.round(m.size, 3).tolist()} m")
    return m, scene_with(scene, m, pieces)
