"""What a question asks, read from its words once the object mentions are taken out.

The input is a *skeleton*: the normalised question with each mention replaced by a role word
(``obja``, ``objb`` for objects in order, ``camera``, ``robot``, ``group``). Cues are words and
short word sequences, looked for anywhere in the skeleton, so the same meaning is found in a
question, an imperative or a polite request. ``classify`` returns an ``Intent`` or None when the
words say nothing this package can answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Intent:
    """A typed reading: query kind and name, and the order of the object mentions to use as
    references (indices into the object mentions)."""

    kind: str
    name: str
    order: tuple[int, ...] = ()


def _has(sk: str, rx: str) -> bool:
    return re.search(rx, sk) is not None


LEFT = r"\bleft(?:most|ward|wards)?\b"
RIGHT = (r"\b(?:to|on|at|toward|towards) the (?:far )?right\b|\bright(?: hand)? side\b|"
         r"\bright of\b|\b(?:further|farther|more) (?:to the )?right\b|\brightmost\b|"
         r"\bright (?:or|and)\b|\bright$|\bright than\b")
# relation cues, most specific first: (relation name, pattern)
REL_CUES: list[tuple[str, str]] = [
    ("closer_to_camera", r"\bdistance\b.*\bcamera\b.*\b(?:shorter|smaller|less)\b"),
    ("farther_from_camera", r"\bdistance\b.*\bcamera\b.*\b(?:longer|greater|larger|more)\b"),
    ("above", r"\bat a (?:higher|greater) (?:height|position|level)\b|\bhigher position\b"),
    ("below", r"\bat a (?:lower|smaller) (?:height|position|level)\b|\blower position\b"),
    ("wider", r"\b(?:wider|broader|fatter|thicker)\b|\bmore (?:wide|broad)\b|\bwidth\b.*\b(?:larger|greater|bigger|"
              r"more)\b|\b(?:greater|larger|bigger) width\b"),
    ("thinner", r"\b(?:thinner|narrower|slimmer|skinnier)\b|\bless (?:wide|broad)\b|\bwidth\b.*\b(?:less|"
                r"smaller)\b|\bsmaller width\b"),
    ("shorter", r"\bshorter\b|\bless tall\b|\bnot as tall\b|\bheight\b.*\b(?:less|smaller|"
                r"lower)\b|\b(?:smaller|lower) height\b|\blower in height\b"),
    ("taller", r"\btaller\b|\bmore tall\b|\bheight\b.*\b(?:greater|larger|bigger|more)\b|\b(?:greater|"
               r"larger|bigger) height\b|\bhigher in height\b"),
    ("heavier", r"\bheavier\b|\bweighs? more\b|\bmore weight\b"),
    ("lighter", r"\blighter\b|\bweighs? less\b"),
    ("closer_to_robot", r"\b(?:closer|nearer|closest|nearest)\b.*\brobot\b|\brobot\b.*\b(?:closer|"
                        r"nearer|closest|nearest)\b|\brobot\b.*\breach\b.*\bbefore\b"),
    ("farther_from_robot", r"\b(?:farther|further|more distant|farthest)\b.*\brobot\b|\brobot\b.*"
                           r"\b(?:farther|further|more distant)\b"),
    ("closer_to_camera", r"\b(?:closer|nearer|closest|nearest)\b.*\bcamera\b|\bcamera\b.*"
                         r"\b(?:closer|nearer)\b"),
    ("farther_from_camera", r"\b(?:farther|further|more distant|farthest|furthest)\b.*\bcamera\b|"
                            r"\bcamera\b.*\b(?:farther|further|more distant)\b"),
    ("bigger", r"\b(?:bigger|larger|bulkier)\b|\bmore (?:big|large|bulky)\b|\b(?:greater|larger|more) (?:size|volume)\b|"
               r"\bmore space\b"),
    ("smaller", r"\b(?:smaller|tinier)\b|\bless (?:big|large|bulky)\b|\b(?:less|smaller) volume\b|\bless space\b|"
                r"\bless bulky\b|\bmore compact\b"),
    ("left_of", LEFT),
    ("right_of", RIGHT),
    ("in_front_of", r"\bin front\b|\bfront\b|\bahead\b|\bbefore\b|\bforward\b"),
    ("behind", r"\bbehind\b|\bin back\b|\bback\b"),
    ("closer_to_camera", r"\b(?:closer|nearer)\b(?: (?:to )?\w+)? than\b"),
    ("farther_from_camera", r"\b(?:farther|further|more distant)\b(?: away)?(?: \w+)? than\b"),
    ("on_top_of", r"\bon top\b|\bstacked\b|\b(?:rest|rests|resting|sit|sits|sitting|placed|put|"
                  r"lying|lies|lie|piled|set) on\b|\bsupported by\b"),
    ("above", r"\babove\b|\bover\b|\bhigher\b|\belevated\b|\bup(?:per)?\b"),
    ("below", r"\bbelow\b|\bunder(?:neath)?\b|\bbeneath\b|\blower\b|\bunderneath\b"),
    ("next_to", r"\bnext to\b|\bbeside\b|\btouch(?:ing|es)?\b|\badjacent\b|\bin contact\b|"
                r"\bclose to\b|\bnear\b|\bnext\b|\bby the side of\b"),
    ("on_top_of", r"\bon\b"),
]
SIDE_CUES = [
    ("left_right", r"\bleft\b.{0,20}\bor\b.{0,25}\bright\b|\bright\b.{0,20}\bor\b.{0,20}\bleft\b|"
                   r"\bwhich side\b"),
    ("front_behind", r"\bfront\b.{0,25}\bor\b.{0,15}\b(?:behind|back)\b|\b(?:behind|back)\b.{0,15}"
                     r"\bor\b.{0,15}\bfront\b"),
    ("above_below", r"\b(?:above|higher)\b.{0,15}\bor\b.{0,15}\b(?:below|lower|under)\b|"
                    r"\b(?:below|lower|under)\b.{0,15}\bor\b.{0,15}\b(?:above|higher)\b"),
]
SUP_CUES = [
    ("leftmost", r"\bleftmost\b|\b(?:farthest|furthest|most) (?:to the )?left\b|\bfar left\b|"
                 r"\bon the left\b|\bmost leftward\b"),
    ("rightmost", r"\brightmost\b|\b(?:farthest|furthest|most) (?:to the )?right\b|\bfar right\b|"
                  r"\bon the right\b"),
    ("frontmost", r"\bfrontmost\b|\b(?:closest|nearest) to the front\b|\bvery front\b|"
                  r"\bin (?:the )?front\b|\b(?:farthest|furthest) forward\b"),
    ("backmost", r"\bbackmost\b|\b(?:farthest|furthest|most) back\b|\bat the (?:very )?back\b|"
                 r"\bin the back\b|\brearmost\b"),
    ("closest_robot", r"\b(?:closest|nearest)\b.*\brobot\b|\brobot\b.*\b(?:closest|nearest)\b"),
    ("farthest_robot", r"\b(?:farthest|furthest|most distant)\b.*\brobot\b|\brobot\b.*"
                       r"\b(?:farthest|furthest|most distant)\b"),
    ("closest_to", r"\b(?:closest|nearest)\b.*\bobja\b"),
    ("farthest_to", r"\b(?:farthest|furthest|most distant)\b.*\bobja\b"),
    ("closest_camera", r"\b(?:closest|nearest)\b"),
    ("farthest_camera", r"\b(?:farthest|furthest|most distant)\b"),
    ("tallest", r"\btallest\b"), ("shortest", r"\bshortest\b"),
    ("highest", r"\bhighest\b|\btopmost\b|\buppermost\b"),
    ("lowest", r"\blowest\b|\bbottommost\b"),
    ("biggest", r"\bbiggest\b|\blargest\b|\bmost (?:space|volume|room)\b|\bbulkiest\b"),
    ("smallest", r"\bsmallest\b|\btiniest\b|\bleast (?:space|volume)\b"),
    ("widest", r"\bwidest\b|\bbroadest\b|\bthickest\b"),
    ("thinnest", r"\bthinnest\b|\bnarrowest\b|\bslimmest\b"),
    ("heaviest", r"\bheaviest\b"), ("lightest", r"\blightest\b"),
]
MEASURE = (r"\bhow (?:far|tall|high|wide|broad|deep|long|big|large|thick|distant|close|much|"
           r"many)\b|\b(?:distance|gap|height|width|depth|length|diameter|clearance|"
           r"dimensions|apart|separat\w*)\b|\bwhat (?:is |are )?(?:the )?(?:\w+ )?(?:size|space|"
           r"room|difference)\b|\b(?:measure|estimate)\b|\bwhat height\b|\bacross\b")
#: Verbs of one top reaching past another ("rise above", "stick up over").
RISE = r"\b(?:rises?|rising|sticks? (?:up|out)|sticking (?:up|out)|towers?|towering|protrudes?|extends?|reach(?:es)?|stands?|comes? up)\b"
ANGLE = r"\bangle\b|\brotat\w*|\bturn\w*|\borientations?\b|\byaw\b|\bfacing\b|\bdegrees\b"
TWO_VIEW_MOVE = (r"\b(?:did|has|have|was) .*\b(?:move|moved|shift|shifted|travel|travell?ed|"
                 r"displaced|translated?)\b|\b(?:translation|displacement|movement) of\b")
TWO_VIEW_TURN = (r"\b(?:did|has|was) .*\b(?:rotate|rotated|turn|turned|spin|spun|pan|panned)\b|"
                 r"\bview(?:ing)? ?(?:angle|direction|point)? (?:change|changed)\b|"
                 r"\b(?:rotation|angular change) of (?:the )?camera\b")
#: The question is about a change between two views ("between the pictures", "since the first
#: image"): then plain nouns of motion and rotation are enough.
TWO_VIEWS = (r"\bbetween (?:the |these |both )?(?:two |2 )?(?:first and (?:the )?second )?(?:views|"
             r"pictures|images|frames|photos|shots|snapshots)\b|\bsince the (?:first|earlier|"
             r"previous|last|other) (?:view|picture|image|frame|photo|shot)\b|\bfrom the first "
             r"(?:view|picture|image|frame) to the second\b")
TURN_NOUNS = (r"\brotat\w*|\bturn\w*|\bspin\w*|\bspun\b|\bpann?\w*|\borientation\b|"
              r"\bheading\b|\byaw\b|\bdirection (?:change|changed)\b|\bdirection\b.*\bchange")
MOVE_NOUNS = (r"\bmov\w*|\bshift\w*|\bdisplace\w*|\btravel\w*|\btranslat\w*|\bposition "
              r"change")


def relation_cue(sk: str) -> Optional[str]:
    for name, rx in REL_CUES:
        if _has(sk, rx):
            return name
    return None


def classify(sk: str, n_obj: int, group: bool = False) -> Optional[Intent]:
    """The intent of skeleton ``sk`` with ``n_obj`` object mentions (and a group mention when
    ``group``); None when not understood."""
    for step in (_two_view, _count, _side, _direction, _angle, _metric, _superlative, _choice,
                 _relation):
        it = step(sk, n_obj, group)
        if it is not None:
            return it
    return None


def _two_view(sk, n, group):
    if _has(sk, r"\b(?:should|must|need|needs|would|to align|to match|line up)\b"):
        return None
    cam = _has(sk, r"\bcamera\b|\bviewpoints?\b|\bcamera positions\b|\bview\b|"
                   r"\bviewing (?:direction|angle|position)\b")
    two = _has(sk, TWO_VIEWS)
    if two and _has(sk, TURN_NOUNS):
        if n == 1:
            return Intent("two_view", "object_rotation", (0,))
        if n == 0 and cam:
            return Intent("two_view", "camera_rotation")
    if _has(sk, TWO_VIEW_MOVE) or _has(sk, r"\bhow far apart are the (?:two )?camera") or (
            two and _has(sk, MOVE_NOUNS)):
        if n == 1:
            return Intent("two_view", "object_displacement", (0,))
        if n == 0 and cam:
            return Intent("two_view", "camera_translation")
    if _has(sk, TWO_VIEW_TURN):
        if n == 1:
            return Intent("two_view", "object_rotation", (0,))
        if n == 0 and cam:
            return Intent("two_view", "camera_rotation")
    return None


def _count(sk, n, group):
    if _has(sk, r"\bhow many\b(?! units)|\bcount\b|\bnumber of\b"):
        if n == 1:
            rel = relation_cue(sk.replace("obja", ""))
            if rel and rel != "on_top_of" or _has(sk, r"\bon (?:top of )?obja\b"):
                return Intent("count_relative", rel or "on_top_of", (0,))
            return None
        return Intent("count", "count") if n == 0 else None
    if n == 0 and _has(sk, r"\b(?:are|is) there (?:any |a |an )?group\b|\b(?:see|spot|find|"
                           r"have) (?:any )?group\b|\bare (?:any )?group\b|\bat least one\b"):
        return Intent("exists", "exists")
    return None


def _side(sk, n, group):
    if n != 2:
        return None
    for name, rx in SIDE_CUES:
        if _has(sk, rx):
            swap = _has(sk, r"\bside of obja (?:is|are) objb\b")
            return Intent("side", name, (1, 0) if swap else (0, 1))
    return None


def _direction(sk, n, group):
    if n != 2 or not _has(sk, r"\bwhere\b|\bdirection\b|\bwhich way\b|\bo'clock\b|\bclock\b|"
                               r"\bbearing\b|\bheading\b"):
        return None
    m = re.search(r"\b(?:at|from|relative to|with respect to|compared to|standing at|seen from)"
                  r" (obj[ab])\b", sk)
    anchor = 0 if m is None or m.group(1) == "obja" else 1
    return Intent("angle", "direction", (anchor, 1 - anchor))


def _angle(sk, n, group):
    if _has(sk, r"\btilt\w*|\btipped\b|\bleaning\b|\binclin\w*") and n == 1:
        return Intent("angle", "tilt", (0,))
    if n == 2 and _has(sk, r"\balign\w*|\bline up\b|\blines up\b|\bparallel\b|\bmatch\b") and \
            _has(sk, ANGLE + r"|\bhow (?:much|far|many)\b"):
        return Intent("angle", "align_rotation", (0, 1))
    if not _has(sk, ANGLE):
        return None
    if n == 1 and _has(sk, r"\bcamera\b|\bline of sight\b|\bimage plane\b"):
        return Intent("angle", "yaw_to_camera", (0,))
    if n == 2:
        return Intent("angle", "yaw_relative", (0, 1))
    return None


def _metric(sk, n, group):
    if not _has(sk, MEASURE) or _has(sk, r"\bwhich\b") and not _has(sk, r"\bhow\b"):
        return None
    if _has(sk, r"\bthan\b") and not _has(sk, r"\bhow\b|\bwhat\b|\bmeasure\b|\bestimate\b"):
        return None  # "is the width of A larger than ...": a comparison, not a measurement
    if n == 2:
        if _has(sk, r"\btops?\b") and _has(sk, r"\bhigher\b|\blower\b|\bheight\b|\bvertical\w*|"
                                          r"\babove\b|\bover\b|\bbelow\b|\bunder\b") or _has(
                sk, RISE + r".*\b(?:above|over|past|beyond)\b|\bhow much (?:higher|lower)\b.*"
                r"\breach(?:es)?\b"):
            return Intent("metric", "top_difference", (0, 1))
        if _has(sk, r"\bhow much (?:taller|shorter)\b|\bdifference in (?:their )?heights\b"):
            return Intent("metric", "height_difference", (0, 1))
        for name, rx in (
                ("horizontal_distance", r"\bhorizontal\w*|\b(?:along|on|across) the table\b|"
                                        r"\b(?:ignor\w*|disregard\w*|not counting|without|leav\w+"
                                        r" out|set\w* aside|forget\w*|discount\w*) (?:the |their |"
                                        r"any )?(?:height|vertical\w*|elevation|altitude|z)\b|"
                                        r"\b(?:from|seen from) above\b|\btop view\b|\bbird ?s"
                                        r" eye\b|\bplan view\b|\bfloor plan\b|\bprojected\b|"
                                        r"\bflat on the table\b|\bin 2d\b"),
                ("vertical_distance", r"\bvertical\w*|\bheight difference\b|\bdifference in "
                                      r"height\b|\bhigher\b|\blower\b"),
                ("gap", r"\bgap\b|\bspace\b|\broom\b|\bclearance\b|\bsurfaces?\b|\bedges?\b|"
                        r"\bshortest\b|\bminimum\b|\bclosest points\b|\bhow close\b"),
                ("distance", r"\bfar\b|\bdistance\b|\bapart\b|\bunits\b|\bseparat\w*|\baway\b")):
            if _has(sk, rx):
                return Intent("metric", name, (0, 1))
        return None
    if n != 1:
        return None
    if _has(sk, r"\brobot\b") and _has(sk, r"\bfar\b|\bdistance\b|\breach\b|\baway\b|\bunits\b"):
        return Intent("metric", "distance_to_robot", (0,))
    if _has(sk, r"\bcamera\b") and _has(sk, r"\bfar\b|\bdistance\b|\baway\b|\bdistant\b|"
                                             r"\bunits\b"):
        return Intent("metric", "distance_to_camera", (0,))
    for name, rx in (("diameter", r"\bdiameter\b|\bacross\b"),
                     ("size", r"\bdimensions\b|\bsize\b|\bhow (?:big|large)\b"),
                     ("height", r"\btall\b|\bheight\b|\bhigh\b"),
                     ("width", r"\bwide\b|\bwidth\b|\bbroad\b"),
                     ("depth", r"\bdeep\b|\bdepth\b|\bextends? back\b|\bfar back\b|\bthick\b"),
                     ("length", r"\blong\b|\blength\b"),
                     ("distance_to_camera", r"\bhow (?:far|distant)\b|\baway\b")):
        if _has(sk, rx):
            return Intent("metric", name, (0,))
    return None


def _superlative(sk, n, group):
    if n > 1 or _has(sk, r"\bobja or\b|\bor obja\b"):
        return None
    for name, rx in SUP_CUES:
        if _has(sk, rx):
            if name in ("closest_to", "farthest_to"):
                return Intent("superlative", name, (0,)) if n == 1 else None
            if n == 1:
                return None
            return Intent("superlative", name)
    return None


def _choice(sk, n, group):
    if n != 2 or not _has(sk, r"\b(?:which|who|what)\b|\bobja or objb\b"):
        return None
    rel = relation_cue(sk.replace("obja or objb", " "))
    if rel is None and _has(sk, r"\b(?:closest|nearest)\b"):
        rel = "closer_to_camera"
    if rel is None and _has(sk, r"\b(?:farthest|furthest)\b"):
        rel = "farther_from_camera"
    return None if rel is None else Intent("choice", rel, (0, 1))


def _relation(sk, n, group):
    if n != 2:
        return None
    rel = relation_cue(sk)
    return None if rel is None else Intent("relation", rel, (0, 1))
