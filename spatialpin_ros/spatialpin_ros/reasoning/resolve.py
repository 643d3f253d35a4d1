"""Resolve phrases people use for objects ("the red block", "the left cup", "the tallest object",
"obj_3") to the objects of a scene, or say clearly why not."""

from __future__ import annotations

import dataclasses
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


#: shapes a depth camera takes a shape for: a ball's round outline for a cylinder's, a box's
#: corners rounded by depth noise; "other": perception did not say which shape
CONFUSABLE = {"box": ("cylinder", "other"), "cylinder": ("box", "sphere", "other"),
              "sphere": ("cylinder", "other"), "other": ()}


def _widen(shapes, relax: int) -> set:
    """``shapes`` (relax 0), with shape unknown (1), or with the shapes they are taken for (2)."""
    out = set(shapes)
    if relax >= 1:
        out.add("other")
    if relax >= 2:
        out.update(x for s in shapes for x in CONFUSABLE.get(s, ()))
    return out


def _filter(d: Description, objs: list[ObjectPrior], relax: int = 0) -> list[ObjectPrior]:
    """Objects that fit the description's colours, nouns and label words (no ordering);
    ``relax``: shape words also fit objects of unknown (1) or confusable (2) shape."""
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
        cands = [o for o in cands if o.shape in _widen(NOUNS.get(noun, ()), relax) or
                 noun in words_of(o.label)]
    if d.shapes and not d.nouns:
        cands = [o for o in cands if o.shape in _widen(d.shapes, relax)]
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
           notes: Optional[list] = None, exclude: frozenset = frozenset(),
           relax: int = 0) -> tuple[ObjectPrior, Scene]:
    """The one object ``phrase`` refers to in ``scene``, and the scene as the answer should see
    it (``scene`` itself, or with the pieces of a split object taken as one).

    Raises UnknownObject when nothing matches and AmbiguousReference when several do and the
    phrase does not say which (both messages list the scene's objects). Imperfect perception
    is read as a person would, each reading with a note appended to ``notes``:
    * the shape word matches nothing but the colour names exactly one object: that object
      (perceived shapes can be wrong; colours rarely are);
    * the phrase matches several touching objects of one colour: they are taken as the pieces of
      one object (``fragments.py``);
    * a shape word with no colour that fits no object fits objects of unknown shape
      (``NO_SHAPE_RELAX``);
    * an object of unknown shape takes the one shape the phrase names (``_as_asked``).
    ``exclude``: ids the phrase cannot mean; ``relax``: shape words also fit objects of unknown
    (1) or confusable (2) shape (``CONFUSABLE``)."""
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
    objs = [o for o in scene.objects if o.id not in exclude]
    cands = _filter(d, objs, relax)
    if not cands and (d.nouns or d.shapes) and not d.unknown:
        cands = _by_color_only(phrase, d, objs, scene, notes) if d.colors else \
            _unknown_shapes(phrase, d, objs, relax, notes)
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
        return _as_asked(*_merged(phrase, pieces, scene, notes), d, notes)
    return _as_asked(cands[0], scene, d, notes)


def _as_asked(o: ObjectPrior, scene: Scene, d: Description, notes: list
              ) -> tuple[ObjectPrior, Scene]:
    """An object whose shape perception could not tell ("other") takes the one shape the
    phrase names ("the white ball"): volumes, diameters and gaps then use that shape."""
    if o.shape != "other" or len(d.shapes) != 1:
        return o, scene
    shape = next(iter(d.shapes))
    fixed = dataclasses.replace(o, shape=shape, yaw_symmetric=shape != "box")
    notes.append(f"{describe(o)}'s shape was not perceived; taken to be a {shape}, as asked")
    return fixed, scene_with(scene, fixed, [o])


#: how far a shape word with no colour is widened when it fits no object (see ``_widen``)
NO_SHAPE_RELAX = 1


def _unknown_shapes(phrase: str, d: Description, objs: list, relax: int, notes: list) -> list:
    """Objects a shape word without a colour may mean when no object has that shape: those
    whose shape perception could not tell ("the marble on the right" with no sphere seen)."""
    if relax >= NO_SHAPE_RELAX:
        return []
    cands = _filter(d, objs, NO_SHAPE_RELAX)
    if cands:
        notes.append(f"no object was perceived as {' or '.join(sorted(d.nouns or d.shapes))}; "
                     f"'{phrase}' was looked for among objects perceived as "
                     + ", ".join(sorted({o.shape for o in cands})))
    return cands


def _by_color_only(phrase: str, d: Description, objs: list, scene: Scene, notes: list) -> list:
    """Objects of the phrase's colour when its shape word matches none of them: the only one,
    or the touching pieces of one (perceived shapes can be wrong; colours rarely are)."""
    by_color = _filter(Description(colors=d.colors), objs)
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


def ground_all(phrases: list, scene: Scene, viewer: Optional[ViewerFrame] = None,
               notes: Optional[list] = None) -> tuple[list, Scene]:
    """The objects ``phrases`` refer to, in order, and the scene as the answer sees it. Two
    phrases that find the same object are read as two objects (``_apart``)."""
    notes = notes if notes is not None else []
    objs = []
    for p in phrases:
        o, scene = ground(p, scene, viewer, notes)
        objs.append(o)
    if len(objs) == 2 and objs[0].id == objs[1].id:
        objs = _apart(phrases, objs, scene, viewer, notes)
    return objs, scene


def _apart(phrases: list, objs: list, scene: Scene, viewer: Optional[ViewerFrame],
           notes: list) -> list:
    """Two phrases of one question that found the same object: a question about two things
    means two objects. A phrase that picks by position or size among a shape, without a colour
    or id ("the block on the left"), is looked for again without the other phrase's object and
    among objects perceived with a shape taken for that one (``CONFUSABLE``): one of the two
    objects was then perceived with another shape than the asker sees."""
    for i in (1, 0):
        d = describe_phrase(phrases[i].lower(), _label_words(scene))
        if d.colors or not d.ordering or d.object_id or d.unknown:
            continue
        other = objs[1 - i]
        try:
            o, _ = ground(phrases[i], scene, viewer, [], exclude=frozenset({other.id}), relax=2)
        except ReferenceError_:
            continue
        notes.append(f"'{phrases[1 - i]}' is {describe(other)}, so '{phrases[i]}' was taken to "
                     f"be the next candidate, {describe(o)}, perceived as a {o.shape}")
        out = list(objs)
        out[i] = o
        return out
    raise SpatialPinError(f"both phrases refer to the same object, {describe(objs[0])}")
