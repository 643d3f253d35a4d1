"""Resolve phrases people use for objects ("the red block", "the left cup", "the tallest object",
"obj_3") to the objects of a scene, or say clearly why not."""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from spatialpin_ros.core.colors import PALETTE
from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import ObjectPrior, Scene
from spatialpin_ros.reasoning.viewer import ViewerFrame


class ReferenceError_(SpatialPinError, LookupError):
    """A phrase names no object, or several, in the scene (the message lists the objects)."""


UnknownObject = ReferenceError_


class AmbiguousReference(ReferenceError_):
    pass


SHAPE_NOUNS = {
    "box": "box", "block": "box", "cube": "box", "brick": "box", "cuboid": "box",
    "cylinder": "cylinder", "can": "cylinder", "tube": "cylinder", "cup": "cylinder",
    "puck": "cylinder", "tin": "cylinder", "jar": "cylinder",
    "ball": "sphere", "sphere": "sphere", "orb": "sphere",
}
GENERIC_NOUNS = {"object", "objects", "thing", "one", "item", "shape", "piece", "it"}
STOP = {"the", "a", "an", "that", "this", "of", "colored", "coloured", "color", "shaped",
        "block's", "s"}
# superlative / positional word -> (score function name, pick max?)
POSITIONAL = {
    "leftmost": ("right", False), "left": ("right", False),
    "rightmost": ("right", True), "right": ("right", True),
    "front": ("away", False), "frontmost": ("away", False), "nearest": ("dist", False),
    "closest": ("dist", False), "near": ("dist", False),
    "back": ("away", True), "rear": ("away", True), "farthest": ("dist", True),
    "far": ("dist", True), "furthest": ("dist", True),
    "tallest": ("height", True), "shortest": ("height", False),
    "highest": ("top", True), "top": ("top", True), "upper": ("top", True),
    "lowest": ("top", False), "bottom": ("top", False), "lower": ("top", False),
    "biggest": ("volume", True), "largest": ("volume", True),
    "smallest": ("volume", False), "tiniest": ("volume", False),
    "widest": ("width", True), "narrowest": ("width", False),
}
SIZE_ADJ = {"big": ("volume", True), "large": ("volume", True), "small": ("volume", False),
            "little": ("volume", False), "tiny": ("volume", False), "tall": ("height", True),
            "short": ("height", False), "wide": ("width", True), "narrow": ("width", False),
            "long": ("width", True)}
COLOR_SYNONYMS = {"grey": "gray", "violet": "purple", "lilac": "purple", "aqua": "cyan",
                  "turquoise": "cyan", "teal": "cyan", "gold": "yellow", "golden": "yellow",
                  "silver": "gray", "rose": "pink", "crimson": "red", "scarlet": "red",
                  "navy": "blue", "lime": "green", "fuchsia": "magenta"}


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


def resolve(phrase: str, scene: Scene, viewer: Optional[ViewerFrame] = None,
            notes: Optional[list] = None) -> ObjectPrior:
    """The one object ``phrase`` refers to in ``scene``.

    Raises UnknownObject when nothing matches and AmbiguousReference when several do and the
    phrase does not say which (both messages list the scene's objects). When the shape word
    matches nothing but the colour names exactly one object, that object is used and a note
    saying so is appended to ``notes`` (perceived shapes can be wrong; colours rarely are)."""
    viewer = viewer or ViewerFrame.from_camera(scene.camera_pose)
    raw = phrase.strip().lower()
    if not scene.objects:
        raise UnknownObject(f"there are no objects in scene {scene.scene_id!r}")
    for o in scene.objects:  # an id or an exact label, with or without "the"
        for cand in (raw, re.sub(r"^(the|a|an) ", "", raw)):
            if cand in (o.id.lower(), o.label.lower(), o.id.lower().replace("_", " ")):
                return o
    words = [w for w in re.findall(r"[a-z0-9_'-]+", raw) if w not in STOP]
    words = [COLOR_SYNONYMS.get(w, w) for w in words]
    colors = {w for w in words if w in PALETTE}
    shapes = {SHAPE_NOUNS[w.rstrip("s")] for w in words if w.rstrip("s") in SHAPE_NOUNS}
    positional = [POSITIONAL[w] for w in words if w in POSITIONAL]
    size_adj = [SIZE_ADJ[w] for w in words if w in SIZE_ADJ]
    used = colors | {w for w in words if w.rstrip("s") in SHAPE_NOUNS} | set(POSITIONAL) | \
        set(SIZE_ADJ) | GENERIC_NOUNS | {"one", "most", "more", "object"}
    other = [w for w in words if w not in used and w not in PALETTE]
    cands = list(scene.objects)
    if colors:
        cands = [o for o in cands if o.color_name in colors]
    if shapes:
        label_match = [o for o in cands if o.shape in shapes or any(
            n in o.label.lower().split() for n, s in SHAPE_NOUNS.items() if s in shapes)]
        if not label_match and colors and len(cands) == 1 and notes is not None:
            notes.append(f"no {' or '.join(sorted(shapes))} is {'/'.join(sorted(colors))}; "
                         f"'{phrase}' was taken to be {describe(cands[0])}, the only "
                         f"{'/'.join(sorted(colors))} object, perceived as a {cands[0].shape}")
        else:
            cands = label_match
    if other:  # names a model may have given ("mug", "laptop"): match words of the labels
        cands = [o for o in cands if all(w in re.findall(r"[a-z0-9]+", o.label.lower())
                                         for w in other)]
    if not cands:
        raise UnknownObject(f"no object matches {phrase!r}; the scene has: {listing(scene)}")
    for key, want_max in positional + size_adj:
        if len(cands) == 1:
            break
        scores = [_score(o, key, viewer) for o in cands]
        best = max(scores) if want_max else min(scores)
        cands = [o for o, s in zip(cands, scores) if s == best]
    if len(cands) > 1:
        raise AmbiguousReference(
            f"{phrase!r} could be any of {', '.join(describe(o) for o in cands)}; say which "
            "(by colour, shape, size or position, or by id)")
    return cands[0]
