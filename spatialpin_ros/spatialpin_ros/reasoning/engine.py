"""Spatial question answering: parse, ground, answer with a backend, validate, fall back.

The ``geometric`` backend answers from the 3D priors. The VLM backends (``openai``,
``transformers``) get SpatialPIN-style prompts: the image (optionally with ZeroVLM novel views)
plus the 3D information block, and must reply with one JSON object. A reply that fails
validation, or a model that fails, falls back to the geometric answer, and ``message`` says so.
Nothing a model says is executed: replies are parsed as JSON data only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import Pose, Scene
from spatialpin_ros.reasoning.facts import scene_facts
from spatialpin_ros.reasoning.geometric import Answer, GeometricAnswerer
from spatialpin_ros.reasoning.query import Query, QuestionError, QuestionFailure, parse_question
from spatialpin_ros.reasoning.units import UnitError, convert

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a careful spatial reasoning assistant for a robot. You are given an image of a "
    "tabletop scene and explicit 3D information about the objects in it, measured by the "
    "robot's RGB-D camera. Use the 3D information for every number: compute distances, sizes "
    "and angles from it rather than guessing from the image. Reply with ONE JSON object and "
    "nothing else, with keys: \"answer\" (a short sentence), \"value\" (a number, or null for "
    "questions that have no numeric answer; for yes/no questions 1 for yes and 0 for no), "
    "\"unit\" (\"m\", \"deg\" or \"\"), \"object_ids\" (the ids of the objects you used).")

class ReplyError(SpatialPinError, ValueError):
    """A model's reply is not a valid answer (the message says what is wrong)."""


def user_prompt(q: Query, scene: Scene, ref_scene: Optional[Scene], view_prompt: str) -> str:
    parts = [f"Question: {q.text}", scene_facts(scene)]
    if ref_scene is not None:
        parts += ["The earlier view (reference scene):", scene_facts(ref_scene)]
    if view_prompt:
        parts.append(view_prompt)
    unit = q.unit or "none"
    if q.kind == "free":
        parts.append("This question was not typed by the geometric parser: answer it from the "
                     "image and the 3D information above, or say that it cannot be answered.")
    parts.append(f"Expected unit: {unit}. Reply with the JSON object only.")
    return "\n\n".join(parts)


def parse_reply(text: str, q: Query, scene: Scene) -> Answer:
    """Validate a model's reply against the query; ReplyError with the reason otherwise."""
    start = text.find("{")
    if start < 0:
        raise ReplyError("the reply holds no JSON object")
    try:  # the first JSON object in the reply; anything after it is ignored
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise ReplyError(f"the reply's JSON does not parse: {e.msg}") from None
    if not isinstance(data, dict):
        raise ReplyError("the reply's JSON is not an object")
    answer = str(data.get("answer", "")).strip()[:1000]
    value = data.get("value")
    unit = str(data.get("unit", "") or "").strip().lower()
    ids = data.get("object_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ReplyError("object_ids is not a list of strings")
    known = {o.id for o in scene.objects}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ReplyError(f"the reply names objects that are not in the scene: {unknown}")
    numeric = q.kind in ("metric", "angle", "two_view", "count", "count_relative") and \
        q.name != "size"
    if q.kind in ("relation", "exists"):
        if isinstance(value, bool):
            value = float(value)
        if value not in (0, 1, 0.0, 1.0):
            lead = answer.lower().split()[:1]
            if lead in (["yes"], ["yes,"], ["yes."]):
                value = 1.0
            elif lead in (["no"], ["no,"], ["no."]):
                value = 0.0
            else:
                raise ReplyError("a yes/no question got neither yes nor no")
        return Answer(True, answer or ("Yes" if value else "No"), float(value), "", ids)
    if numeric:
        if isinstance(value, str):
            mm = re.search(r"-?\d+(?:\.\d+)?", value)
            value = float(mm.group(0)) if mm else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not math.isfinite(float(value)):
            raise ReplyError("the reply has no number")
        try:
            value = convert(float(value), unit or q.unit, q.unit) if q.unit else float(value)
        except UnitError as e:
            raise ReplyError(f"unit {unit!r}: {e}") from None
        if value < 0:
            raise ReplyError("a distance or angle cannot be negative")
        return Answer(True, answer, value, q.unit, ids)
    if not answer:
        raise ReplyError("the reply's answer is empty")
    return Answer(True, answer, float("nan"), "", ids)


def _noun(o) -> str:
    return {"box": "block", "cylinder": "cylinder", "sphere": "ball"}.get(o.shape, "object")


def refusal_message(scene: Scene) -> str:
    """Why an untyped question is refused, and what can be asked, with examples built from the
    scene's own objects."""
    objs = list(scene.objects)
    name = lambda o: f"the {o.color_name} {_noun(o)}" if o.color_name else f"{o.id}"  # noqa: E731
    if not objs:
        return "question not understood, and the scene has no objects to ask about"
    a = name(objs[0])
    b = name(objs[1]) if len(objs) > 1 else "the camera"
    kinds = [
        f"relations (\"Is {a} to the left of {b}?\", also above / in front of / behind / "
        "bigger / taller / wider / on top of / next to)",
        f"which of two (\"Which is closer to the camera, {a} or {b}?\")",
        f"distances and sizes, in the unit you name (\"How far is {a} from {b} in "
        f"centimeters?\", \"How tall is {a}?\", \"How far is {a} from the robot?\")",
        f"angles and directions (\"If you are at {a}, where is {b}?\")",
        "superlatives (\"Which object is the tallest?\", \"Which is closest to the robot?\")",
        f"counts (\"How many {_noun(objs[0])}s are there?\")",
        "two views (\"How far did the camera move?\")"]
    return ("question not understood: it asks nothing this package computes from the 3D "
            "scene. It can answer " + "; ".join(kinds))


class SpatialQA:
    """Answers questions about scenes with a chosen backend.

    ``vlms``: name -> VLM client (``spatialpin_ros.vlm``) for the VLM backends. ``views``:
    ZeroVLM novel views added to VLM prompts: "none", "single" (one view, default "left") or
    "multi" (original + left + right + top, stitched)."""

    def __init__(self, vlms: Optional[dict] = None, views: str = "none",
                 view_names: Sequence[str] = ("left",), max_tokens: int = 256):
        if views not in ("none", "single", "multi"):
            raise ValueError(f"views must be none, single or multi, got {views!r}")
        self.geometric = GeometricAnswerer()
        self.vlms = vlms if vlms is not None else {}  # may be lazy (made on first use)
        self.views = views
        self.view_names = list(view_names)
        self.max_tokens = max_tokens

    @property
    def backends(self) -> list[str]:
        return ["geometric", *self.vlms]

    def ask(self, question: str, scene: Optional[Scene], ref_scene: Optional[Scene] = None,
            backend: str = "geometric", image: Optional[np.ndarray] = None,
            cloud: Optional[tuple[np.ndarray, np.ndarray]] = None,
            camera_motion: Optional[Pose] = None) -> Answer:
        """Answer ``question`` about ``scene`` (and ``ref_scene``, the earlier of two views).

        Never raises for bad input: failures come back as ``Answer(success=False, message=...)``.
        ``image``: the scene's colour image (H, W, 3) uint8 for VLM backends; ``cloud``: (points,
        colours) in the world frame, for ZeroVLM views."""
        backend = backend or "geometric"
        if backend not in self.backends:
            return Answer(False, message=f"unknown backend {backend!r}; available: "
                          f"{', '.join(self.backends)}", backend=backend)
        if scene is None:
            return Answer(False, message="no scene yet: nothing has been perceived",
                          backend=backend)
        try:
            q = parse_question(question, [o.label for o in scene.objects])
        except QuestionError as e:
            if e.reason is not QuestionFailure.UNTYPED:
                return Answer(False, message=str(e), backend=backend)
            return self._untyped(question, scene, ref_scene, backend, image, cloud)
        try:
            geo = self.geometric.answer(q, scene, ref_scene, camera_motion)
        except (SpatialPinError, LookupError, ValueError) as e:
            return Answer(False, message=str(e), backend=backend)
        if backend == "geometric":
            return geo
        try:
            ans = self._ask_vlm(backend, q, scene, ref_scene, image, cloud)
        except SpatialPinError as e:
            log.warning("%s backend failed, answering geometrically: %s", backend, e)
            geo.message = f"{backend} backend failed ({e}); answered by the geometric backend"
            geo.backend = "geometric (fallback)"
            return geo
        ans.explanation = geo.explanation
        ans.backend = backend
        if not ans.object_ids:
            ans.object_ids = geo.object_ids
        return ans

    def _untyped(self, question, scene, ref_scene, backend, image, cloud) -> Answer:
        """A question the parser cannot type: refused with what can be asked (examples from the
        scene's own objects), or, with a VLM backend, handed to the model with the 3D block."""
        refusal = refusal_message(scene)
        if backend == "geometric":
            return Answer(False, message=refusal, backend=backend)
        q = Query(kind="free", name="free", text=question.strip())
        try:
            ans = self._ask_vlm(backend, q, scene, ref_scene, image, cloud)
        except SpatialPinError as e:
            log.warning("%s backend failed on an untyped question: %s", backend, e)
            return Answer(False, message=f"{refusal}. The {backend} backend was asked too and "
                          f"failed: {e}", backend=backend)
        ans.backend = backend
        ans.message = (f"the geometric parser could not type this question, so it went to the "
                       f"{backend} backend with SpatialPIN's 3D information block; the answer "
                       "is the model's, not checked against the geometry")
        return ans

    def _ask_vlm(self, backend, q, scene, ref_scene, image, cloud) -> Answer:
        images, view_prompt = [], ""
        if image is not None:
            images.append(image)
            if self.views != "none" and cloud is not None:
                from spatialpin_ros.reasoning.views import zerovlm_views
                names = self.view_names if self.views == "single" else ["left", "right", "top"]
                extra, view_prompt = zerovlm_views(scene, cloud, image, names,
                                                   stitch_views=self.views == "multi")
                images = extra if self.views == "multi" else images + extra
        reply = self.vlms[backend].generate(SYSTEM_PROMPT,
                                            user_prompt(q, scene, ref_scene, view_prompt),
                                            images, max_tokens=self.max_tokens)
        try:
            return parse_reply(reply.text, q, scene)
        except ReplyError as e:
            raise ReplyError(f"invalid reply ({e}): {reply.text[:200]!r}") from None
