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
from spatialpin_ros.reasoning.query import Query, QuestionError, parse_question

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a careful spatial reasoning assistant for a robot. You are given an image of a "
    "tabletop scene and explicit 3D information about the objects in it, measured by the "
    "robot's RGB-D camera. Use the 3D information for every number: compute distances, sizes "
    "and angles from it rather than guessing from the image. Reply with ONE JSON object and "
    "nothing else, with keys: \"answer\" (a short sentence), \"value\" (a number, or null for "
    "questions that have no numeric answer; for yes/no questions 1 for yes and 0 for no), "
    "\"unit\" (\"m\", \"deg\" or \"\"), \"object_ids\" (the ids of the objects you used).")

UNIT_SCALE = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
              "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "mm": 0.001,
              "deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
              "rad": 180.0 / math.pi, "radians": 180.0 / math.pi, "": 1.0}


class ReplyError(SpatialPinError, ValueError):
    """A model's reply is not a valid answer (the message says what is wrong)."""


def user_prompt(q: Query, scene: Scene, ref_scene: Optional[Scene], view_prompt: str) -> str:
    parts = [f"Question: {q.text}", scene_facts(scene)]
    if ref_scene is not None:
        parts += ["The earlier view (reference scene):", scene_facts(ref_scene)]
    if view_prompt:
        parts.append(view_prompt)
    unit = q.unit or "none"
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
    numeric = q.kind in ("metric", "angle", "two_view") and q.name != "size"
    if q.kind == "relation":
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
        if unit not in UNIT_SCALE:
            raise ReplyError(f"unknown unit {unit!r}")
        value = float(value) * UNIT_SCALE[unit]
        if value < 0:
            raise ReplyError("a distance or angle cannot be negative")
        return Answer(True, answer, value, q.unit, ids)
    if not answer:
        raise ReplyError("the reply's answer is empty")
    return Answer(True, answer, float("nan"), "", ids)


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
            return Answer(False, message="no scene yet: nothing has been perceived", backend=backend)
        try:
            q = parse_question(question)
        except QuestionError as e:
            return Answer(False, message=str(e), backend=backend)
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
