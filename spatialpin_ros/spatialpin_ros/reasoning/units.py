"""Units a question may ask for, and conversions between them (a small typed table: lengths to
metres, angles to degrees).

``find_unit`` takes the unit out of a question ("... in centimeters?", "how many inches ...")
and ``convert`` changes a value from one unit to another of the same quantity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from spatialpin_ros.core.errors import SpatialPinError


class Quantity(Enum):
    """What a unit measures."""

    LENGTH = "length"  #: base unit metres
    ANGLE = "angle"    #: base unit degrees


@dataclass(frozen=True)
class Unit:
    """One unit: its symbol (as the response's ``unit``), quantity, size in the base unit
    (metres or degrees), name for answers, and the words people write for it."""

    symbol: str
    quantity: Quantity
    to_base: float
    name: str
    words: tuple[str, ...]


UNITS: dict[str, Unit] = {u.symbol: u for u in (
    Unit("m", Quantity.LENGTH, 1.0, "m", ("meters", "meter", "metres", "metre", "m")),
    Unit("cm", Quantity.LENGTH, 0.01, "cm", ("centimeters", "centimeter", "centimetres",
                                             "centimetre", "cms", "cm")),
    Unit("mm", Quantity.LENGTH, 0.001, "mm", ("millimeters", "millimeter", "millimetres",
                                              "millimetre", "mm")),
    Unit("in", Quantity.LENGTH, 0.0254, "in", ("inches", "inch")),
    Unit("ft", Quantity.LENGTH, 0.3048, "ft", ("feet", "foot", "ft")),
    Unit("deg", Quantity.ANGLE, 1.0, "deg", ("degrees", "degree", "deg", "°")),
    Unit("rad", Quantity.ANGLE, 180.0 / math.pi, "rad", ("radians", "radian", "rad")),
)}
BASE = {Quantity.LENGTH: "m", Quantity.ANGLE: "deg"}
#: every word -> unit symbol ("inches" -> "in")
WORDS: dict[str, str] = {w: u.symbol for u in UNITS.values() for w in u.words}
_WORD_RE = "|".join(sorted((re.escape(w) for w in WORDS), key=len, reverse=True))
# "in cm", ", in inches", "(in feet)", "(mm)", "expressed in metres", "using centimeters" at
# the end of a question, or before a trailing "please" / "from ..." clause
_SUFFIX = re.compile(rf"[\s,;:]*\(?\s*(?:(?:expressed |measured |answer |given )?(?:in|using) |"
                     rf"in units of )?(?P<u>{_WORD_RE})\s*\)?(?=\s*(?:please)?\s*[?.!]*\s*$)")
_IN_UNIT = re.compile(rf"[\s,]*\b(?:in|using) (?P<u>{_WORD_RE})\b")
_HOW_MANY = re.compile(rf"\bhow many (?P<u>{_WORD_RE})\b")


class UnitError(SpatialPinError, ValueError):
    """A conversion between units of different quantities, or an unknown unit."""


def unit(symbol_or_word: str) -> Unit:
    """The unit for a symbol or a word ("cm", "inches", "°"); UnitError when unknown."""
    key = symbol_or_word.strip().lower()
    sym = key if key in UNITS else WORDS.get(key)
    if sym is None:
        raise UnitError(f"unknown unit {symbol_or_word!r}; known: {', '.join(UNITS)}")
    return UNITS[sym]


def convert(value: float, src: str, dst: str) -> float:
    """``value`` in unit ``src`` expressed in unit ``dst`` (both symbols or words)."""
    a, b = unit(src), unit(dst)
    if a.quantity != b.quantity:
        raise UnitError(f"cannot convert {a.quantity.value} ({a.symbol}) to "
                        f"{b.quantity.value} ({b.symbol})")
    return value * a.to_base / b.to_base


def find_unit(text: str) -> tuple[Optional[Unit], str]:
    """The unit a normalised question asks for and the question without it.

    "how far is a from b in centimeters" -> (cm, "how far is a from b"); "how many inches
    apart are a and b" -> (in, "how far apart are a and b") is NOT done: the "how many" form
    keeps its shape with the unit word replaced by "units" ("how many units apart ...")."""
    m = _HOW_MANY.search(text)
    if m:
        return UNITS[WORDS[m.group("u")]], text[:m.start("u")] + "units" + text[m.end("u"):]
    m = _SUFFIX.search(text)
    if m and (m.group(0).strip(" ,;:(").startswith(("in", "using", "expressed", "measured",
                                                    "answer", "given")) or "(" in m.group(0)):
        return UNITS[WORDS[m.group("u")]], (text[:m.start()] + text[m.end():]).strip()
    m = _IN_UNIT.search(text)
    if m:
        return UNITS[WORDS[m.group("u")]], (text[:m.start()] + text[m.end():]).strip()
    return None, text


def format_value(value: float, symbol: str) -> str:
    """A value with its unit for an answer: 3 decimals in metres, feet and radians, 1 in
    centimetres, inches and degrees, 0 in millimetres."""
    digits = {"m": 3, "ft": 3, "rad": 3, "cm": 1, "in": 1, "deg": 1, "mm": 0}.get(symbol, 3)
    return f"{value:.{digits}f} {symbol}"
