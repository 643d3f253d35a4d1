"""Questions in words to typed queries.

A query names what to compute (``kind`` and ``name``) and holds the phrases that refer to
objects (``refs``), resolved against a scene later (``resolve.py``). Parsing is by patterns over
normalised text: nothing in a question is ever evaluated or executed.

Kinds and names:

* ``relation`` (yes/no): left_of, right_of, above, below, in_front_of, behind, closer_to_camera,
  farther_from_camera, bigger, smaller, taller, shorter, on_top_of, next_to.
* ``choice`` (which of two): the same relation names; the answer is one of the two objects.
* ``metric`` (metres): distance, gap, horizontal_distance, vertical_distance, width, depth,
  height, length, size, distance_to_camera.
* ``angle`` (degrees): yaw_relative, align_rotation, yaw_to_camera, tilt, direction.
* ``two_view``: camera_translation (m), camera_rotation (deg), object_displacement (m),
  object_rotation (deg).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spatialpin_ros.core.errors import SpatialPinError

MAX_QUESTION_CHARS = 500


class QuestionError(SpatialPinError, ValueError):
    """A question is empty, too long, or not one this package understands."""


@dataclass
class Query:
    kind: str
    name: str
    refs: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def unit(self) -> str:
        if self.kind == "metric" or self.name in ("camera_translation", "object_displacement"):
            return "m"
        if self.kind == "angle" or self.name in ("camera_rotation", "object_rotation"):
            return "deg"
        return ""


A = r"(?P<a>.+?)"
B = r"(?P<b>.+?)"
CAM = r"(?:the )?(?:camera|viewer|observer|view ?point|sensor|robot'?s? camera|me|us)"
BE = r"(?:is|are|was|were|does|do)"


def _p(pattern: str) -> re.Pattern:
    return re.compile("^" + pattern + "$")


# (pattern, kind, name). Order matters: more specific first.
_RULES: list[tuple[re.Pattern, str, str]] = []


def _rule(kind: str, name: str, *patterns: str) -> None:
    for p in patterns:
        _RULES.append((_p(p), kind, name))


# -- two views ---------------------------------------------------------------------------------
_BETWEEN = r"(?: between (?:the )?(?:two |2 )?(?:views|images|frames|scenes|shots|pictures))?"
_rule("two_view", "camera_rotation",
      rf"(?:by )?(?:what|which|how (?:large|big) an?) angle (?:did|has) {CAM} (?:rotate|rotated|turn|turned|pan|panned)(?: by)?{_BETWEEN}",
      rf"how (?:much|many degrees|far) (?:did|has) {CAM} (?:rotate|rotated|turn|turned)(?: by)?{_BETWEEN}",
      rf"what is the (?:rotation|angular change|change in (?:viewing )?angle) of {CAM}{_BETWEEN}",
      rf"how (?:much|many degrees) (?:did|has) the (?:view(?:ing)? ?(?:angle|direction)|viewpoint) (?:change|changed){_BETWEEN}")
_rule("two_view", "camera_translation",
      rf"how (?:far|much) (?:did|has) {CAM} (?:move|moved|travel|travelled|traveled|shift|shifted|translate|translated){_BETWEEN}",
      rf"what (?:distance|is the distance) (?:did|has) {CAM} (?:move|moved|travel(?:l?ed)?){_BETWEEN}",
      rf"what is the (?:translation|displacement|movement) of {CAM}{_BETWEEN}",
      r"how far apart are the (?:two )?(?:camera positions|viewpoints|cameras)")
_rule("two_view", "object_rotation",
      rf"how (?:much|many degrees|far) (?:did|has) {A} (?:rotate|rotated|turn|turned|spin|spun)(?: by)?{_BETWEEN}",
      rf"(?:by )?(?:what|which) angle (?:did|has|was) {A} (?:rotate|rotated|turn|turned)(?: by)?{_BETWEEN}")
_rule("two_view", "object_displacement",
      rf"how (?:far|much) (?:did|has|was) {A} (?:move|moved|been moved|shift|shifted|travel|travelled|traveled|displaced|been displaced)(?: by)?{_BETWEEN}",
      rf"(?:by )?how much (?:did|has|was) {A} (?:move|moved|been moved|shifted)(?: by)?{_BETWEEN}",
      rf"what (?:distance|is the distance) (?:did|has) {A} (?:move|moved){_BETWEEN}",
      rf"what is the (?:displacement|movement) of {A}{_BETWEEN}")

# -- angles ------------------------------------------------------------------------------------
_rule("angle", "align_rotation",
      rf"(?:by )?how (?:much|many degrees|far) (?:should|must|would|do|does|need|needs)(?: i| we| one| you| it| the robot)?(?: need)?(?: to)? (?:rotate|turn) {A} (?:to|so (?:that )?it|so as to) (?:align|line up|be aligned|be parallel|match)(?: it)? with {B}",
      rf"(?:by )?(?:what|which) angle (?:should|must|would|do|does) {A} (?:be |need to be )?(?:rotated|turned|rotate|turn) to (?:align|line up|be aligned|match) with {B}",
      rf"what rotation (?:would |will )?(?:align|aligns|lines up) {A} with {B}",
      rf"how (?:much|far) (?:should|must|do) (?:i|we|you) (?:rotate|turn) {A} to match (?:the orientation of )?{B}")
_rule("angle", "direction",
      rf"(?:in )?(?:which|what) direction {BE} {B} (?:from|relative to|with respect to) {A}",
      rf"which way {BE} {B} (?:from|relative to) {A}",
      rf"where {BE} {B} (?:relative to|with respect to|compared to) {A}",
      rf"what is the direction (?:from {A} to {B})")
_rule("angle", "yaw_to_camera",
      rf"what is the angle between {A} and (?:the )?(?:camera|viewer|viewing direction|line of sight|image plane)",
      rf"(?:at )?what angle (?:is|does) {A} (?:turned |rotated |facing |face )?(?:relative to|with respect to|toward|towards|to) (?:the )?(?:camera|viewer|viewing direction|line of sight)",
      rf"how (?:much|many degrees|far) is {A} (?:rotated|turned|angled) (?:relative to|with respect to|away from) (?:the )?(?:camera|viewer|viewing direction|line of sight)",
      rf"what is the (?:yaw|orientation|rotation) of {A} (?:relative to|with respect to) (?:the )?(?:camera|viewer|viewing direction)")
_rule("angle", "tilt",
      rf"how (?:much|many degrees|far) is {A} (?:tilted|tipped|leaning|inclined)(?: relative to the (?:ground|table|floor))?",
      rf"what is the (?:tilt|inclination) (?:angle )?of {A}(?: relative to the (?:ground|table|floor))?",
      rf"what is the angle between {A} and the (?:ground|table|floor|support(?:ing)? (?:plane|surface))")
_rule("angle", "yaw_relative",
      rf"what is the angle between (?:the orientations? of )?{A} and {B}",
      rf"(?:at )?what angle is {A} (?:relative to|with respect to|compared to|to) {B}",
      rf"how (?:much|many degrees|far) is {A} (?:rotated|turned) (?:relative to|with respect to|compared to|from) {B}",
      rf"what is the (?:relative )?(?:yaw|rotation|orientation difference) (?:of|between) {A} (?:relative to|and|with respect to) {B}",
      rf"how (?:different|far apart) are the orientations of {A} and {B}")

# -- metric ------------------------------------------------------------------------------------
_rule("metric", "distance_to_camera",
      rf"how far (?:away )?{BE} {A} from {CAM}",
      rf"what is the distance (?:between|from) {A} (?:and|to) {CAM}",
      rf"what is the distance (?:between|from) {CAM} (?:and|to) {A}",
      rf"how far (?:away )?from {CAM} {BE} {A}")
_rule("metric", "gap",
      rf"(?:what is|how (?:big|large|wide) is) the (?:gap|space|clearance|free space|empty space) between {A} and {B}",
      rf"how much (?:space|room|clearance|of a gap) is there between {A} and {B}",
      rf"how far apart are the (?:surfaces|edges|sides|closest points) of {A} and {B}",
      rf"what is the (?:surface(?:-to-surface)?|edge(?:-to-edge)?|closest|minimum|shortest) distance between {A} and {B}")
_rule("metric", "horizontal_distance",
      rf"what is the horizontal distance between {A} and {B}",
      rf"how far apart (?:are|is) {A} and {B} horizontally",
      rf"how far {BE} {A} from {B} horizontally",
      rf"what is the distance between {A} and {B} (?:along|on|in) the (?:table|ground|horizontal plane)")
_rule("metric", "vertical_distance",
      rf"what is the vertical distance between {A} and {B}",
      rf"how far apart (?:are|is) {A} and {B} vertically",
      rf"how much (?:higher|lower|taller|higher up|lower down) is (?:the (?:center|centre) of )?{A} than {B}",
      rf"what is the height difference between {A} and {B}")
_rule("metric", "distance",
      rf"how far (?:away )?{BE} {A} from {B}",
      rf"how far apart are {A} and {B}",
      rf"how far {BE} {A} (?:away )?(?:to|from) {B}",
      rf"what is the (?:center(?:-to-center)? |centre(?:-to-centre)? )?distance (?:between|from) {A} (?:and|to) {B}",
      rf"(?:give me |tell me )?the distance (?:between|from) {A} (?:and|to) {B}",
      rf"how (?:far|much distance) is there between {A} and {B}",
      rf"how many (?:meters|metres|centimeters|centimetres|cm|m) (?:apart are|is|are) {A} (?:and|from) {B}(?: apart)?")
# Only after every two-object form: "how far away is A" means from the camera.
_rule("metric", "distance_to_camera", rf"how far (?:away )?{BE} {A}(?: away)?")
_DIM = {"wide": "width", "width": "width", "broad": "width", "deep": "depth", "depth": "depth",
        "thick": "depth", "tall": "height", "high": "height", "height": "height", "long": "length",
        "length": "length", "big": "size", "large": "size", "size": "size",
        "dimensions": "size"}
for _w, _n in _DIM.items():
    if _w in ("width", "depth", "height", "length", "size", "dimensions"):
        _rule("metric", _n, rf"what (?:is|are) the {_w} of {A}", rf"what is {A}'s {_w}",
              rf"(?:tell me |give me )?the {_w} of {A}", rf"how (?:much|great) is the {_w} of {A}")
    else:
        _rule("metric", _n, rf"how {_w} {BE} {A}")

# -- relations and choices ---------------------------------------------------------------------
_REL_WORDS: list[tuple[str, str]] = [
    ("left_of", r"(?:to the |on the |at the )?left (?:of|from|side of)|left of"),
    ("right_of", r"(?:to the |on the |at the )?right (?:of|from|side of)|right of"),
    ("on_top_of", r"on top of|on|stacked on(?: top of)?|resting on|sitting on|lying on|placed on|standing on"),
    ("above", r"above|over|higher than|higher up than"),
    ("below", r"below|under|underneath|beneath|lower than|lower down than"),
    ("in_front_of", r"in front of|before|ahead of|closer to the front than"),
    ("behind", r"behind|in back of|at the back of|farther back than|further back than"),
    ("closer_to_camera", rf"closer to {CAM} than|nearer to {CAM} than|closer than"),
    ("farther_from_camera", rf"(?:farther|further) (?:away )?from {CAM} than|(?:farther|further) away than"),
    ("bigger", r"bigger than|larger than|greater than"),
    ("smaller", r"smaller than|tinier than"),
    ("taller", r"taller than"),
    ("shorter", r"shorter than|less tall than"),
    ("next_to", r"next to|beside|adjacent to|touching|close to|near|by the side of"),
]
for _name, _words in _REL_WORDS:
    _rule("relation", _name,
          rf"(?:is|are|was) {A} (?:located |placed |positioned |situated |standing |sitting )?(?:{_words}) {B}",
          rf"(?:does|do) {A} (?:sit|stand|lie|rest|appear|lie) (?:{_words}) {B}")

_CHOICE: list[tuple[str, str]] = [
    ("bigger", r"bigger|larger|the biggest|the largest"),
    ("smaller", r"smaller|the smallest"),
    ("taller", r"taller|the tallest"),
    ("shorter", r"shorter|the shortest"),
    ("closer_to_camera", rf"closer(?: to {CAM})?|nearer(?: to {CAM})?"),
    ("farther_from_camera", rf"(?:farther|further)(?: (?:away )?from {CAM})?|(?:farther|further) away"),
    ("left_of", r"(?:further|farther|more) (?:to the )?left|on the left|leftmost"),
    ("right_of", r"(?:further|farther|more) (?:to the )?right|on the right|rightmost"),
    ("above", r"higher(?: up)?|the highest"),
    ("below", r"lower(?: down)?|the lowest"),
]
for _name, _words in _CHOICE:
    _rule("choice", _name,
          rf"which (?:one |object |of (?:them|the two) |of these )?(?:is )?(?:{_words}),? {A} or {B}",
          rf"which is (?:{_words}): {A} or {B}",
          rf"(?:is )?{A} or {B}(?:,)? which (?:one )?is (?:{_words})")

_SYNONYMS = [(r"\bgrey\b", "gray"), (r"\bcolour", "color"), (r"\bcentre\b", "center"),
             (r"\bfurther\b", "farther"), (r"\bwhat's\b", "what is"), (r"\bhow's\b", "how is"),
             (r"\bwhere's\b", "where is"), (r"\bit's\b", "it is"), (r"\s+", " ")]


def normalise(text: str) -> str:
    t = text.strip().lower()
    t = re.sub(r"[\"“”`]", "", t)
    for pat, rep in _SYNONYMS:
        t = re.sub(pat, rep, t)
    t = re.sub(r"^(?:please |hey |robot,? |can you tell me |could you tell me |tell me |by )+", "",
               t)
    t = re.sub(r"\s*(?:please)?\s*[?.!]*\s*$", "", t)
    t = re.sub(r"\s*\((?:in )?(?:meters|metres|m|cm|degrees|deg)\)$", "", t)
    t = re.sub(r",? in (?:meters|metres|degrees|cm|centimeters|centimetres)$", "", t)
    return t.strip()


def parse_question(text: str) -> Query:
    """A typed query from a question in English; QuestionError when empty, too long or not
    understood (the message lists what can be asked)."""
    if not isinstance(text, str) or not text.strip():
        raise QuestionError("the question is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(text)} characters long; the limit is "
                            f"{MAX_QUESTION_CHARS}")
    t = normalise(text)
    for pattern, kind, name in _RULES:
        m = pattern.match(t)
        if m:
            refs = [m.group(g).strip(" ,") for g in ("a", "b") if g in m.groupdict()]
            if any(not r for r in refs):
                continue
            return Query(kind=kind, name=name, refs=refs, text=text.strip())
    raise QuestionError(
        "question not understood. Ask about relations (is A left of / above / in front of / "
        "bigger than / on top of / next to B?), distances and sizes (how far is A from B? how "
        "tall is A? how far is A from the camera?), angles (what is the angle between A and B? "
        "how much must A rotate to align with B?), or two views (how far did the camera / A "
        "move?)")
