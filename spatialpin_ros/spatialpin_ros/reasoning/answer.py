"""The typed answer every backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Answer:
    """A grounded answer: words, the number and its unit (NaN / "" when not numeric), the ids of
    the objects used, and the 3D facts behind it."""

    success: bool
    answer: str = ""
    value: float = float("nan")
    unit: str = ""
    object_ids: list[str] = field(default_factory=list)
    explanation: str = ""
    message: str = ""
    backend: str = "geometric"
