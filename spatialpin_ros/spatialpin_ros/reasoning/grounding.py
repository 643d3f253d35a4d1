"""Object mentions in a question: noun phrases matched against what a scene's objects can be
called.

A mention is a determiner, modifiers (colours with their shades and synonyms, size and position
words), a head noun (a shape noun and its synonyms, a generic noun such as "object", or a word
of a scene object's label) and post-modifiers ("that is red", "colored blue", "on the left").
Ids ("obj_3"), the camera ("the camera", "the viewer", "me") and the robot ("the robot's base")
are mentions too. ``find_mentions`` returns them in order with the question's remaining words;
``describe_phrase`` reads one phrase into a typed ``Description`` that ``resolve.py`` matches
against a scene. Only words are read: nothing in a question is evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Optional

from spatialpin_ros.core.colors import PALETTE

# ------------------------------------------------------------------------------ vocabulary
#: colour word (one or two words) -> palette names it may mean, the likeliest first
COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in PALETTE}
COLOR_WORDS.update({
    "grey": ("gray",), "silver": ("gray", "white"), "violet": ("purple",),
    "lilac": ("purple", "pink"), "lavender": ("purple", "pink"), "aqua": ("cyan",),
    "turquoise": ("cyan",), "teal": ("cyan",), "gold": ("yellow", "orange"),
    "golden": ("yellow", "orange"), "rose": ("pink",), "crimson": ("red",),
    "scarlet": ("red",), "maroon": ("red", "purple"), "navy": ("blue",), "lime": ("green",),
    "fuchsia": ("magenta",), "amber": ("orange", "yellow"), "tan": ("orange",),
    "dark": ("black", "gray"), "charcoal": ("black", "gray"),
    "light blue": ("cyan", "blue"), "sky blue": ("cyan", "blue"), "pale blue": ("cyan", "blue"),
    "baby blue": ("cyan", "blue"), "dark blue": ("blue", "purple"), "navy blue": ("blue",),
    "royal blue": ("blue",), "hot pink": ("magenta", "pink"), "light red": ("pink", "red"),
    "dark red": ("red",), "light purple": ("purple", "pink"), "light gray": ("gray", "white"),
    "dark gray": ("gray", "black"), "off white": ("white", "gray"),
    "light green": ("green", "cyan"), "dark pink": ("magenta", "pink"),
    "lemon yellow": ("yellow",), "bright red": ("red",),
})
#: words before a colour that do not change which palette colour it is
COLOR_INTENSIFIERS = {"bright", "light", "dark", "pale", "deep", "vivid", "pastel"}
#: shape noun (singular) -> perceived shapes it may name
NOUNS: dict[str, tuple[str, ...]] = {
    **{n: ("box",) for n in ("block", "cube", "box", "brick", "crate", "cuboid", "carton",
                             "package", "tray", "prism")},
    **{n: ("cylinder",) for n in ("cylinder", "can", "tin", "tube", "bottle", "jar", "puck",
                                  "mug", "cup", "bowl", "plate", "canister", "glass")},
    **{n: ("sphere",) for n in ("ball", "sphere", "marble", "orb", "globe", "bead")},
    "container": ("cylinder", "box"),
}
#: shape adjective -> shapes ("the cylindrical object")
SHAPE_ADJ = {"cubic": ("box",), "rectangular": ("box",), "square": ("box",),
             "boxy": ("box",), "cylindrical": ("cylinder",), "spherical": ("sphere",),
             "round": ("sphere", "cylinder")}
GENERIC = {"object", "thing", "item", "one", "shape", "piece", "toy", "entity"}
PLURAL_GENERIC = {"objects", "things", "items", "ones", "shapes", "pieces", "toys"}
#: words of a scene's labels that are not nouns naming it ("tall blue cylinder", "pink object"):
#: taken as nouns, "a taller object than ..." would read "object" as a third mention
_LABEL_NON_NOUNS = GENERIC | PLURAL_GENERIC | {"tall", "flat", "short", "small", "big", "large"}


def label_nouns(label_words: Iterable[str]) -> set[str]:
    """The words of a scene's labels that can head a mention."""
    return set(label_words) - _LABEL_NON_NOUNS
#: size / position / superlative word -> (score key, pick the largest score?)
ORDERING: dict[str, tuple[str, bool]] = {
    "leftmost": ("right", False), "left": ("right", False),
    "rightmost": ("right", True), "right": ("right", True),
    "front": ("away", False), "frontmost": ("away", False), "nearest": ("dist", False),
    "closest": ("dist", False), "near": ("dist", False), "back": ("away", True),
    "rear": ("away", True), "backmost": ("away", True), "farthest": ("dist", True),
    "far": ("dist", True), "tallest": ("height", True), "shortest": ("height", False),
    "highest": ("top", True), "top": ("top", True), "upper": ("top", True),
    "lowest": ("top", False), "bottom": ("top", False), "lower": ("top", False),
    "biggest": ("volume", True), "largest": ("volume", True), "smallest": ("volume", False),
    "tiniest": ("volume", False), "widest": ("width", True), "narrowest": ("width", False),
    "thinnest": ("width", False), "heaviest": ("volume", True), "lightest": ("volume", False),
    "big": ("volume", True), "large": ("volume", True), "small": ("volume", False),
    "little": ("volume", False), "tiny": ("volume", False), "tall": ("height", True),
    "short": ("height", False), "wide": ("width", True), "narrow": ("width", False),
    "long": ("width", True), "huge": ("volume", True), "thin": ("width", False),
}
SUPERLATIVES = {w for w in ORDERING if w.endswith(("most", "est"))}
DETERMINERS = {"the", "a", "an", "that", "this", "these", "those", "any", "all", "some"}
_NOISE = {"colored", "coloured", "color", "shaped", "looking", "sized", "very", "kind", "of",
          "big", "little"}
#: words inside a mention that say nothing about which object it is
_IGNORED = {"which", "that", "is", "are", "in", "on", "at", "the", "s", "'s", "most", "more",
            "table", "scene", "image", "picture", "here", "visible", "there", "located",
            "positioned", "placed", "sitting", "standing", "situated", "painted", "hand", "side",
            "far", "very", "to", "a", "an", "one", "ones"}
CAMERA_RE = (r"(?:the |this |our )?(?:robot s |robot's )?(?:camera|viewer|observer|"
             r"view ?point|sensor|onlooker)|\bme\b|\bus\b|\bmyself\b")
ROBOT_RE = (r"(?:the )?(?:robot s |robot's )?(?:robot(?:ic)? ?(?:base|arm)|robot|base of the "
            r"robot|manipulator|gripper)")
ID_RE = r"\bobj(?:ect)?[ _#]?(?P<num>\d+)\b"
POST_POSITION = re.compile(
    r"^(?:(?:that|which) (?:is |are )?|located |positioned |placed |sitting |standing )?"
    r"(?:(?:farthest|furthest|most) (?:to the )?(?:left|right)\b|(?:on the (?:far |very )?"
    r"(?:left|right)(?: hand side| side)?|at the (?:back|front|left|right)|in the "
    r"(?:back|front|middle))(?! of| side| hand| than| or (?:to |on )?(?:the )?(?:left|right|"
    r"front|back)(?= of\b| side\b| hand\b|\s*$|,)| or behind(?! it\b)| compared| relative|"
    r" with respect)\b)")


class MentionKind(Enum):
    """What a mention refers to."""

    OBJECT = "object"   #: one object of the scene
    GROUP = "group"     #: a set ("red things", "which block ...")
    CAMERA = "camera"   #: the camera / viewer
    ROBOT = "robot"     #: the robot's base (the world origin)


@dataclass
class Description:
    """A phrase read into what it says about an object: palette colour options (each a tuple of
    palette names, likeliest first), shapes, other nouns (label words), ordering words, an id."""

    colors: list[tuple[str, ...]] = field(default_factory=list)
    shapes: set[str] = field(default_factory=set)
    nouns: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    ordering: list[tuple[str, bool]] = field(default_factory=list)
    object_id: Optional[str] = None
    plural: bool = False

    @property
    def empty(self) -> bool:
        return not (self.colors or self.shapes or self.nouns or self.unknown or self.ordering
                    or self.object_id)


@dataclass
class Mention:
    """A span of the normalised question (word indices) that refers to something."""

    kind: MentionKind
    start: int
    end: int
    text: str


def words_of(text: str) -> list[str]:
    """Lower-case words: letters, digits, "_" and "'" inside a word ("o'clock", "obj_3")."""
    return re.findall(r"[a-z0-9_°]+(?:'[a-z]+)?", text.lower().replace("-", " "))


def singular(word: str) -> str:
    if word in NOUNS or len(word) < 4:
        return word
    for suf, rep in (("ies", "y"), ("xes", "x"), ("ses", "s"), ("s", "")):
        if word.endswith(suf) and word[: -len(suf)] + rep in NOUNS | {"object": 0}.keys():
            return word[: -len(suf)] + rep
    if word.endswith("s") and word[:-1] in GENERIC:
        return word[:-1]
    return word


def _color_at(ws: list[str], i: int) -> tuple[int, Optional[tuple[str, ...]]]:
    """(words used, palette options) for a colour starting at word i, or (0, None)."""
    if i + 1 < len(ws) and f"{ws[i]} {ws[i + 1]}" in COLOR_WORDS:
        return 2, COLOR_WORDS[f"{ws[i]} {ws[i + 1]}"]
    if i + 1 < len(ws) and ws[i] in COLOR_INTENSIFIERS and ws[i + 1] in COLOR_WORDS:
        return 2, COLOR_WORDS[ws[i + 1]]
    if ws[i] in COLOR_WORDS and ws[i] != "dark":
        return 1, COLOR_WORDS[ws[i]]
    if ws[i] == "dark" and (i + 1 >= len(ws) or singular(ws[i + 1]) in NOUNS or
                            ws[i + 1] in GENERIC | PLURAL_GENERIC | _NOISE | SHAPE_ADJ.keys()):
        return 1, COLOR_WORDS["dark"]
    return 0, None


def describe_phrase(phrase: str, label_words: Iterable[str] = ()) -> Description:
    """What a phrase says about an object ("the light blue box that is on the left")."""
    d = Description()
    text = phrase.lower()
    m = re.search(ID_RE, text)
    if m:
        d.object_id = f"obj_{m.group('num')}"
        text = text[:m.start()] + text[m.end():]
    pm = re.search(r"\b(?:on|at|in) the (?:far |very )?(left|right|back|front)\b|\b(?:farthest|"
                   r"furthest|most) (?:to the )?(left|right)\b", text)
    if pm:
        d.ordering.append(ORDERING[pm.group(1) or pm.group(2)])
        text = text[:pm.start()] + text[pm.end():]
    labels = label_nouns(label_words)
    ws = words_of(text)
    i = 0
    while i < len(ws):
        n, col = _color_at(ws, i)
        if col:
            d.colors.append(col)
            i += n
            continue
        w = ws[i]
        s = singular(w)
        if s in NOUNS:
            d.shapes.update(NOUNS[s])
            d.nouns.append(s)
            d.plural |= s != w
        elif w in SHAPE_ADJ:
            d.shapes.update(SHAPE_ADJ[w])
        elif w in ORDERING and w not in ("big", "little"):
            d.ordering.append(ORDERING[w])
        elif w in PLURAL_GENERIC:
            d.plural = True
        elif w in labels or s in labels:
            d.nouns.append(s if s in labels else w)
        elif w not in GENERIC and w not in DETERMINERS and w not in _NOISE and \
                w not in _IGNORED:
            d.unknown.append(w)
        i += 1
    return d


# ------------------------------------------------------------------------------ mentions
def _np_end(ws: list[str], i: int, labels: set[str], allow_unknown: bool,
            after_wh: bool = False) -> tuple[int, bool]:
    """End index of a noun phrase starting at word i (i itself when none) and whether it has a
    head noun. A phrase is [determiner] modifiers* head [post-modifiers]."""
    j = i
    if j < len(ws) and ws[j] in DETERMINERS:
        j += 1
    has_color = has_mod = False
    while j < len(ws):
        n, col = _color_at(ws, j)
        if col:
            has_color, j = True, j + n
        elif ws[j] in ORDERING or ws[j] in SHAPE_ADJ or ws[j] in _NOISE - {"of"}:
            has_mod, j = True, j + 1
        else:
            break
    head = False
    if j < len(ws) and not (singular(ws[j]) in NOUNS or ws[j] in labels) and has_color and \
            _maybe_noun(ws[j]):
        return _post_modifiers(ws, j + 1), True  # "the purple unicorn": an unknown noun
    if j < len(ws):
        w, s = ws[j], singular(ws[j])
        if (s in NOUNS and (j > i or after_wh or w not in _VERB_LIKE)) or w in SHAPE_ADJ or \
                s in labels or w in labels or \
                (w in GENERIC | PLURAL_GENERIC and (has_color or has_mod or j > i)) or \
                (w in PLURAL_GENERIC and after_wh) or \
                (allow_unknown and j > i and _maybe_noun(w)):
            head, j = True, j + 1
            if j < len(ws) and singular(ws[j]) in NOUNS and ws[j] not in _VERB_LIKE:
                j += 1  # "cylindrical object", "toy block"
    if not head and not has_color:
        return i, False
    return _post_modifiers(ws, j), head


#: nouns that are also common verbs: a noun only after a determiner or a modifier
_VERB_LIKE = {"can", "glass", "block", "box", "cup", "plate", "tin"}
_NOT_OBJECTS = {
    "camera", "viewer", "robot", "table", "image", "picture", "scene", "distance", "gap",
    "space", "room", "height", "width", "depth", "length", "size", "diameter", "center",
    "centers", "top", "tops", "bottom", "left", "right", "front", "back", "side", "angle",
    "orientation", "orientations", "rotation", "direction", "number", "total", "two", "views",
    "view", "images", "frames", "other", "surfaces", "surface", "edges", "base", "clock",
    "position", "way", "clearance", "difference", "meaning", "weather", "time", "relative",
    "same", "middle", "ground", "floor", "one", "most", "end", "edge", "dimensions", "axis",
    "line", "plane", "units", "life", "pictures", "photo", "photos", "frame", "shot", "shots",
    "snapshot", "snapshots", "viewpoint", "viewpoints", "first", "second", "earlier",
}


#: words that follow a colour without being a noun ("the red is left of ...", "red and blue")
_NOT_NOUNS = {
    "is", "are", "was", "were", "be", "and", "or", "than", "to", "of", "on", "in", "at", "from",
    "with", "by", "for", "as", "into", "onto", "over", "under", "above", "below", "behind",
    "beside", "near", "next", "left", "right", "front", "back", "top", "bottom", "up", "down",
    "look", "looks", "seem", "seems", "appear", "appears", "sit", "sits", "stand", "stands",
    "rest", "rests", "lie", "lies", "touch", "touches", "put", "that", "which", "who", "there",
    "here", "more", "less", "most", "very", "come", "comes", "have", "has", "had", "do", "does",
    "did", "would", "could", "can", "will", "should", "may", "might", "must", "weigh", "weighs",
    "need", "needs", "turn", "rotate", "ahead", "adjacent", "if", "when", "how", "what", "where",
    "why", "it", "its", "this", "these", "those", "not", "so", "too", "one", "ones", "object",
    "objects", "thing", "things", "item", "items", "away", "apart", "across", "horizontally",
    "vertically", "directly", "right", "tall", "wide", "deep", "high", "long", "big", "small",
}


def _maybe_noun(w: str) -> bool:
    """Whether an unknown word can be an object's noun ("unicorn", "laptop")."""
    return w.isalpha() and len(w) > 2 and w not in _NOT_NOUNS and w not in _NOT_OBJECTS and \
        w not in DETERMINERS and w not in ORDERING and w not in COLOR_WORDS and \
        not w.endswith(("er", "ly", "ed", "ing", "est"))


def _post_modifiers(ws: list[str], j: int) -> int:
    """Past "that is red", "colored blue", "which is a cube", "on the left" after a head."""
    while j < len(ws):
        rest = " ".join(ws[j:])
        m = re.match(r"(?:that|which) (?:is|are|'s) (?:a |an )?", rest)
        k = j + len(m.group(0).split()) if m else j
        if m and k < len(ws):
            n, col = _color_at(ws, k)
            if not col and ws[k] == "dark":
                n, col = 1, COLOR_WORDS["dark"]
            if col:
                j = k + n
                if j < len(ws) and ws[j] in ("colored", "coloured"):
                    j += 1
                elif j + 1 < len(ws) and ws[j] == "in" and ws[j + 1] == "color":
                    j += 2
                continue
            if singular(ws[k]) in NOUNS or ws[k] in SHAPE_ADJ:
                j = k + 1
                continue
            if ws[k] in ORDERING and ws[k] not in ("right", "left") and \
                    (k + 1 >= len(ws) or ws[k + 1] in ("and", "or", "is", "than")):
                j = k + 1
                continue
        m = re.match(r"(?:colored|coloured|painted|in) (\w+(?: \w+)?)", rest)
        if m:
            n, col = _color_at(ws, j + 1)
            if not col and ws[j + 1] == "dark":
                n, col = 1, COLOR_WORDS["dark"]
            if col:
                j = j + 1 + n
                continue
        m = POST_POSITION.match(rest)
        if m:
            j += len(m.group(0).split())
            continue
        break
    return j


def find_mentions(text: str, label_words: Iterable[str] = (),
                  allow_unknown: bool = False) -> list[Mention]:
    """Mentions in a normalised question, in order. ``label_words``: words of the scene's object
    labels (nouns a perception model gave, such as "mug"); ``allow_unknown``: also take a
    determiner + an unknown noun ("the laptop") as an object mention."""
    ws = words_of(text)
    labels = label_nouns(label_words)
    out: list[Mention] = []
    joined = " ".join(ws)
    spans = []
    for kind, rx in ((MentionKind.CAMERA, CAMERA_RE), (MentionKind.ROBOT, ROBOT_RE)):
        for m in re.finditer(rf"\b(?:{rx})\b", joined):
            spans.append((kind, _word_index(joined, m.start()), _word_index(joined, m.end())))
    for m in re.finditer(ID_RE, joined):
        spans.append((MentionKind.OBJECT, _word_index(joined, m.start()),
                      _word_index(joined, m.end())))
    taken = set()
    for kind, s, e in spans:
        if not taken & set(range(s, e)):
            out.append(Mention(kind, s, e, " ".join(ws[s:e])))
            taken |= set(range(s, e))
    i = 0
    while i < len(ws):
        if i in taken:
            i += 1
            continue
        after_wh = i > 0 and ws[i - 1] in ("which", "what", "many", "any", "the", "there")
        j, head = _np_end(ws, i, labels, allow_unknown, after_wh)
        if j > i and not taken & set(range(i, j)):
            phrase = " ".join(ws[i:j])
            d = describe_phrase(phrase, labels)
            wh = i > 0 and ws[i - 1] in ("which", "what", "many") and ws[i] not in DETERMINERS
            kind = MentionKind.GROUP if d.plural or wh else MentionKind.OBJECT
            out.append(Mention(kind, i, j, phrase))
            taken |= set(range(i, j))
            i = j
        else:
            i += 1
    out.sort(key=lambda m: m.start)
    return out


def _word_index(joined: str, pos: int) -> int:
    return len(joined[:pos].split())


def skeleton(text: str, mentions: list[Mention]) -> str:
    """The question with each mention replaced by a role word: obja, objb, ... for objects,
    camera, robot, group."""
    ws = words_of(text)
    out, k, i = [], 0, 0
    starts = {m.start: m for m in mentions}
    while i < len(ws):
        m = starts.get(i)
        if m is None:
            out.append(ws[i])
            i += 1
            continue
        if m.kind is MentionKind.OBJECT:
            out.append("obj" + "abcdefgh"[min(k, 7)])
            k += 1
        else:
            out.append(m.kind.value)
        i = m.end
    return " ".join(out)
