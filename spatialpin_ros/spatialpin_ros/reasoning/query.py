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

import difflib
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


_SYNONYMS = [(r"[‘’]", "'"), (r"\bgrey\b", "gray"), (r"\bcolour", "color"),
             (r"\bcentre", "center"), (r"\bmetre", "meter"), (r"\bfurther\b", "farther"),
             (r"\bfurthest\b", "farthest"), (r"\bwhat'?s\b", "what is"),
             (r"\bhow'?s\b", "how is"), (r"\bwhere'?s\b", "where is"), (r"\bit's\b", "it is"),
             (r"\bthat'?s\b", "that is"), (r"\bwhich's\b", "which is"), (r"\bi'm\b", "i am"),
             (r"\bi'd\b", "i would"), (r"\bwho'?s\b", "who is"), (r"\bisn'?t\b", "is not"),
             (r"\baren'?t\b", "are not"), (r"\bdoesn'?t\b", "does not"), (r"\s+", " ")]
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
    r",? ?(?:(?:as )?(?:seen|viewed|looking|looked at) (?:from|by|through) (?:the |my |our |this )?"
    r"(?:camera|viewer|observer|lens|here|where (?:i|we) (?:am|are|stand|sit))|"
    r"from (?:the |my |our |your )?(?:viewer|camera|observer|own)?'?s? ?(?:perspective|point of "
    r"view|viewpoint|vantage point|view|position|side(?! of)|angle|seat|location|eyes)|"
    r"from where (?:i|we|you)(?: am| are|'m|'re)? ?(?:standing|sitting|looking|stand|sit|look|am|"
    r"are|see (?:it|them|things))|"
    r"as (?:i|we|you) (?:see|look at|view|face) (?:it|them|this|things|the scene|the table)|"
    r"as the camera sees (?:it|them)|from here|relative to (?:me|us|the viewer)|"
    r"(?P<image>(?:in|on) (?:the|this|my|your) (?:camera )?(?:image|picture|photo|photograph|"
    r"frame|view|screen|shot)))\b,?")


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
_EXISTS_FRAME = re.compile(
    r"\s*(?:(?:is|are) there(?: any| a| an)?|(?:do|can|could) you (?:see|spot|find|detect|notice)|"
    r"(?:do|did) (?:we|i) have|(?:is|are)(?: any| a| an)?)\s+obja(?: (?:there|somewhere))?\s*")


def _superlative_mention(sk: str, objs: list, labels: list[str]):
    """"What is the tallest object (on the table)?", "what is the nearest object to X?": the
    first mention holds the superlative and is the set to search; None when not that form."""
    first = objs[0]
    d = grounding.describe_phrase(first.text, labels)
    frame = re.sub(r"\b(?:on the table|in the scene|here|of them all|anywhere|at all|in view|"
                   r"in sight|visible|present|around)\b", "", sk)
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


#: Plain words never corrected into a name ("rest" is not "red").
_KEEP_WORDS = {"rest", "rests", "bigger", "large", "block", "blocks", "left", "right", "bowl",
               "both", "ball", "tall", "cans", "case", "than", "then", "there", "their", "where",
               "were", "what", "with", "from", "front", "behind", "above", "below", "under",
               "over", "near", "next", "table", "robot", "camera", "close", "closer", "high",
               "higher", "wide", "wider", "long", "longer", "deep", "much", "many", "that",
               "this", "these", "those", "which", "whose", "apart", "away", "far", "farther",
               "further", "tell", "give", "show", "count", "pink", "plate", "place"}


#: Question words worth correcting ("distnce", "hieght", "diamter").
_CUE_WORDS = {"distance", "between", "height", "width", "diameter", "depth", "length",
              "closer", "nearer", "farther", "taller", "shorter", "wider", "thinner", "bigger",
              "smaller", "heavier", "lighter", "behind", "front", "above", "below", "beneath",
              "underneath", "camera", "robot", "centimeters", "centimetres", "millimeters",
              "millimetres", "inches", "meters", "metres", "degrees", "radians", "leftmost",
              "rightmost", "tallest", "shortest", "biggest", "smallest", "closest", "nearest",
              "farthest", "furthest", "widest", "highest", "lowest", "orientation", "angle",
              "horizontal", "vertical", "clearance", "objects"}


#: Words a near miss may be corrected into (the scene's labels are added per question).
_LEXICON = frozenset({w for w in grounding.COLOR_WORDS if " " not in w} | set(grounding.NOUNS)
                     | {n + "s" for n in grounding.NOUNS} | set(grounding.SHAPE_ADJ)
                     | _CUE_WORDS | grounding.GENERIC | grounding.PLURAL_GENERIC)


def respell(t: str, labels: list[str]) -> str:
    """``t`` with words that are near misses (difflib ratio >= 0.8, 4 letters or more, the same
    first letter: "weight" is not "height") of a
    colour, a shape noun or a scene label replaced by it: "yelow cilinder" -> "yellow
    cylinder". Only tried on a question that was not understood as written."""
    lexicon = _LEXICON | set(labels)
    out = []
    for w in t.split(" "):
        if len(w) >= 4 and w.isalpha() and w not in lexicon and w not in _KEEP_WORDS:
            near = difflib.get_close_matches(w, sorted(x for x in lexicon if x[0] == w[0]),
                                             n=1, cutoff=0.8)
            w = near[0] if near else w
        out.append(w)
    return " ".join(out)


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
    found = _typed(t, words, False)
    if found is None:                       # misspelt names and cue words, corrected
        fixed = respell(t, words)
        found = ((fixed != t and _typed(fixed, words, False)) or _typed(t, words, True)
                 or (fixed != t and _typed(fixed, words, True)) or None)
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
