"""Questions in words to typed queries: ground the object mentions first, then classify what is
asked from the remaining words.

A query names what to compute (``kind`` and ``name``), holds the phrases that refer to objects
(``refs``, resolved against a scene later by ``resolve.py``), the set a count or superlative is
over (``group``), and the unit asked for. Parsing reads words only (``grounding.py`` finds the
mentions, ``intent.py`` the meaning): nothing in a question is ever evaluated or executed.

Kinds and names:

* ``relation`` (yes/no): left_of, right_of, above, below, in_front_of, behind, closer_to_camera,
  farther_from_camera, closer_to_robot, farther_from_robot, bigger, smaller, taller, shorter,
  wider, thinner, heavier, lighter (volume), on_top_of, next_to.
* ``choice`` (which of two): the same relation names; the answer is one of the two objects.
* ``side`` (which of two words): left_right, front_behind, above_below.
* ``metric`` (metres, or the unit asked): distance, gap, horizontal_distance,
  vertical_distance, top_difference, height_difference, width, depth, height, length, diameter, size,
  distance_to_camera, distance_to_robot.
* ``angle`` (degrees, or the unit asked): yaw_relative, align_rotation, yaw_to_camera, tilt,
  direction (also as a clock position).
* ``superlative`` (one object of the scene or of ``group``): tallest, shortest, biggest,
  smallest, leftmost, rightmost, frontmost, backmost, highest, lowest, widest, thinnest,
  heaviest, lightest, closest_camera, farthest_camera, closest_robot, farthest_robot,
  closest_to, farthest_to (``refs[0]``).
* ``count`` / ``exists`` over ``group``; ``count_relative``: objects in a relation to
  ``refs[0]``.
* ``two_view``: camera_translation (m), camera_rotation (deg), object_displacement (m),
  object_rotation (deg).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.reasoning import grounding, intent
from spatialpin_ros.reasoning.grounding import MentionKind
from spatialpin_ros.reasoning.units import BASE, UNITS, Quantity, find_unit

MAX_QUESTION_CHARS = 500


class QuestionFailure(Enum):
    """Why a question got no typed query."""

    EMPTY = "empty"        #: nothing asked
    TOO_LONG = "too_long"  #: past MAX_QUESTION_CHARS
    UNTYPED = "untyped"    #: the words say nothing this package computes


class QuestionError(SpatialPinError, ValueError):
    """A question is empty, too long, or not one this package understands."""

    def __init__(self, message: str, reason: QuestionFailure = QuestionFailure.UNTYPED):
        super().__init__(message)
        self.reason = reason


LENGTH_NAMES = {"distance", "gap", "horizontal_distance", "vertical_distance", "top_difference",
                "height_difference",
                "width", "depth", "height", "length", "diameter", "size", "distance_to_camera",
                "distance_to_robot", "camera_translation", "object_displacement"}
ANGLE_NAMES = {"yaw_relative", "align_rotation", "yaw_to_camera", "tilt", "direction",
               "camera_rotation", "object_rotation"}


@dataclass
class Query:
    kind: str
    name: str
    refs: list[str] = field(default_factory=list)
    text: str = ""
    #: the unit the question asked for ("cm", "in", "rad"), "" for the default
    asked_unit: str = ""
    #: the set a count or superlative is over ("red blocks"; "" = every object)
    group: str = ""
    #: "viewer", "image" or "" when the question named its frame ("from my perspective")
    perspective: str = ""

    @property
    def quantity(self) -> Optional[Quantity]:
        if self.name in LENGTH_NAMES:
            return Quantity.LENGTH
        if self.name in ANGLE_NAMES:
            return Quantity.ANGLE
        return None

    @property
    def unit(self) -> str:
        """The unit of the answer's value: the one asked for, else metres or degrees."""
        q = self.quantity
        if q is None:
            return ""
        if self.asked_unit and UNITS[self.asked_unit].quantity == q:
            return self.asked_unit
        return BASE[q]


_SYNONYMS = [(r"\bgrey\b", "gray"), (r"\bcolour", "color"), (r"\bcentre", "center"),
             (r"\bmetre", "meter"), (r"\bfurther\b", "farther"), (r"\bfurthest\b", "farthest"),
             (r"\bwhat's\b", "what is"), (r"\bhow's\b", "how is"), (r"\bwhere's\b", "where is"),
             (r"\bit's\b", "it is"), (r"\bthat's\b", "that is"), (r"\bwhich's\b", "which is"),
             (r"\bi'm\b", "i am"), (r"\bi'd\b", "i would"), (r"\bwho's\b", "who is"),
             (r"\bisn't\b", "is not"), (r"\baren't\b", "are not"), (r"\bdoesn't\b", "does not"),
             (r"[‘’]", "'"), (r"\s+", " ")]
# lead-ins and tags that carry no meaning for the geometry
_POLITE = re.compile(
    r"^(?:(?:please|hey|hi|ok|okay|so|robot|quick question|question|now|then|and|also|well|"
    r"yes|excuse me|sorry)[,:]? )+|"
    r"^(?:am i right (?:that|in thinking that)|is it true that|would you say(?: that)?|"
    r"do you think(?: that)?|i wonder(?: if| whether)?|i would like to know(?: if| whether)?|"
    r"i want to know(?: if| whether)?) ")
_TAGS = re.compile(r"(?:, ?(?:right|correct|yes or no|true or false|isn't it|is it not|no))+"
                   r"\s*$|,? (?:please|thanks|thank you)\s*$")
_PERSPECTIVE = re.compile(
    r",? ?(?:(?:as )?(?:seen|viewed) (?:from|by) (?:the |my )?(?:camera|viewer|here)|"
    r"from (?:the )?(?:viewer|camera|observer)'?s? (?:perspective|point of view|viewpoint|view)|"
    r"from (?:my|our|your) (?:perspective|point of view|viewpoint|view|position)|"
    r"from where (?:i am|i'm|we are|you are) (?:standing|sitting|looking)|"
    r"from (?:the )?camera (?:perspective|point of view|view)|"
    r"as the camera sees (?:it|them)|from here|"
    r"(?P<image>in (?:the|this) (?:image|picture|photo|photograph|frame|view)))\b,?")


def normalise(text: str) -> tuple[str, str]:
    """(lower-case question without punctuation noise, lead-ins, tags and frame phrases, the
    frame named: "viewer", "image" or "")."""
    t = text.strip().lower()
    t = re.sub(r"[\"“”`]", "", t)
    for pat, rep in _SYNONYMS:
        t = re.sub(pat, rep, t)
    t = re.sub(r"\s*[?.!]+\s*$", "", t).strip()
    t = re.sub(r"\?\s*", " ", t)
    for _ in range(3):
        t = _TAGS.sub("", t).strip()
        t = _POLITE.sub("", t).strip()
    t = re.sub(r"\b(tell|give|show|let) (?:me|us)\b", r"\1", t)
    perspective = ""
    for m in _PERSPECTIVE.finditer(t):
        perspective = "image" if m.group("image") else "viewer"
    t = _PERSPECTIVE.sub(" ", t)
    t = re.sub(r"\s+", " ", t).strip(" ,;:")
    return t, perspective


def _typed(t: str, labels: list[str], allow_unknown: bool):
    """(intent, object mention texts, group text) for normalised text ``t``, or None."""
    ms = grounding.find_mentions(t, labels, allow_unknown)
    objs = [m for m in ms if m.kind is MentionKind.OBJECT]
    groups = [m for m in ms if m.kind is MentionKind.GROUP]
    sk = grounding.skeleton(t, ms)
    it = intent.classify(sk, len(objs), bool(groups))
    if it is None and objs:
        found = _superlative_mention(sk, objs, labels)
        if found is not None:
            return found
    if it is None:
        return None
    refs = [objs[i].text for i in it.order]
    return it, refs, groups[0].text if groups else ""

_PLAIN_FRAME = re.compile(
    r"\s*(?:(?:which|what|who)(?: one| object| thing| item)?(?: is| are)?|(?:point out|show|find|"
    r"identify|name|tell|give)(?: which is| what is)?)\s+obja(?: (?:to|from) (?:camera|robot|"
    r"objb))?\s*")
_EXISTS_FRAME = re.compile(r"\s*(?:(?:is|are) there|(?:do|can) you see|do we have)\s+obja\s*")


def _superlative_mention(sk: str, objs: list, labels: list[str]):
    """"What is the tallest object (on the table)?", "what is the nearest object to X?": the
    first mention holds the superlative and is the set to search; None when not that form."""
    first = objs[0]
    d = grounding.describe_phrase(first.text, labels)
    frame = re.sub(r"\b(?:on the table|in the scene|here|of them all)\b", "", sk)
    if len(objs) == 1 and _EXISTS_FRAME.fullmatch(frame):  # "is there a red ball?"
        return intent.Intent("exists", "exists"), [], first.text
    frame = re.sub(r"\bthere\b", "", frame)
    if not _PLAIN_FRAME.fullmatch(frame) or not (d.plural or any(
            w in grounding.SUPERLATIVES for w in grounding.words_of(first.text))):
        return None
    sk2 = sk.replace("obja", first.text, 1).replace("objb", "obja")
    it = intent.classify(sk2, len(objs) - 1, True)
    if it is None or it.kind not in ("superlative", "count", "exists"):
        return None
    return it, [objs[1 + i].text for i in it.order], first.text


def parse_question(text: str, labels: Optional[list[str]] = None) -> Query:
    """A typed query from a question in English; QuestionError (with ``reason``) when empty, too
    long or not understood. ``labels``: words of the scene's object labels, so nouns a
    perception model gave ("mug", "laptop") are read as object mentions."""
    if not isinstance(text, str) or not text.strip():
        raise QuestionError("the question is empty", QuestionFailure.EMPTY)
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(text)} characters long; the limit is "
                            f"{MAX_QUESTION_CHARS}", QuestionFailure.TOO_LONG)
    t, perspective = normalise(text)
    unit, t = find_unit(t)
    words = sorted({w for lab in labels or [] for w in grounding.words_of(lab)})
    found = _typed(t, words, False) or _typed(t, words, True)
    if found is None:
        raise QuestionError(UNTYPED_MESSAGE)
    it, refs, group = found
    return Query(kind=it.kind, name=it.name, refs=refs, text=text.strip(),
                 asked_unit=unit.symbol if unit else "", group=group, perspective=perspective)


UNTYPED_MESSAGE = (
    "question not understood. Ask about relations (is A left of / above / in front of / "
    "bigger than / taller than / wider than / on top of / next to B?), which of two (which is "
    "closer to the camera, A or B?), distances and sizes (how far is A from B in cm? how tall "
    "is A? how far is A from the robot?), angles and directions (what is the angle between A "
    "and B? if you are at A, where is B?), superlatives (which object is the tallest?), counts "
    "(how many red blocks are there?), or two views (how far did the camera / A move?)")
