"""Where in the geometric pipeline a missed object was lost (benchmarks and tests only).

A true object that no prediction matched is traced through the label images the geometric
backend leaves in ``GeometricBackend.last``: the pieces before selection (``"pieces"``: after the
segmentation and the colour splits) and after it (``"segmentation"``: after the layout rules
joined pieces), and the pieces selection dropped (``"dropped"``). A label *holds* an object when
it has the most of the object's labelled pixels and at least :data:`HOLD_SHARE` of all its
pixels. The stages, in order:

* :attr:`LostAt.NOT_VISIBLE`: fewer than ``min_visible`` pixels of it are in view;
* :attr:`LostAt.NO_PIECE`: no piece holds it before selection (too little of it in the
  foreground, or crumbled into small pieces);
* :attr:`LostAt.MERGED_IN_SEGMENTATION`: the piece that holds it holds another object too;
* :attr:`LostAt.MERGED_BY_LAYOUT`: its own piece was joined to another object's by selection's
  layout rules (nested parts, top faces, overlapping boxes);
* :attr:`LostAt.DROPPED`: selection dropped its piece (the reason is kept);
* :attr:`LostAt.BOX_OFF`: its own piece became an object whose box is too far off to match
  (part of it lies in other pieces, or the hidden part was not completed).

False objects are sorted likewise (:func:`false_object_kind`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: A label holds an object when it has at least this share of the object's pixels.
HOLD_SHARE = 0.3


class LostAt(enum.Enum):
    NOT_VISIBLE = "not visible"
    NO_PIECE = "in no piece"
    MERGED_IN_SEGMENTATION = "merged in the segmentation"
    MERGED_BY_LAYOUT = "merged by the layout rules"
    DROPPED = "dropped by selection"
    BOX_OFF = "own piece, box off"


class FalseKind(enum.Enum):
    PIECE_OF_FOUND = "a piece of a found object"
    ON_MISSED = "on a missed object"
    ON_NOTHING = "on no object"


@dataclass
class Miss:
    """One missed true object: where it was lost, and the dropped piece's reason if any."""

    stage: LostAt
    reason: str = ""


def holder(labels: np.ndarray, mask: np.ndarray) -> int:
    """The label (> 0) of ``labels`` that holds the object of ``mask`` (both (h, w)), or 0."""
    v = labels[mask]
    v = v[v > 0]
    if not len(v):
        return 0
    counts = np.bincount(v)
    best = int(counts.argmax())
    return best if counts[best] >= HOLD_SHARE * max(int(mask.sum()), 1) else 0


def _shared(labels: np.ndarray, label: int, others: Sequence[np.ndarray]) -> bool:
    return any(holder(labels, m) == label for m in others)


def lost_at(mask: np.ndarray, others: Sequence[np.ndarray], pieces: np.ndarray,
            final: np.ndarray, dropped: Sequence[tuple[int, str, int]],
            min_visible: int = 1) -> Miss:
    """Where the missed object of ``mask`` was lost. ``others``: the other true objects'
    masks; ``pieces`` and ``final``: the label images before and after selection; ``dropped``:
    selection's (label, reason, pixels); all masks and images on one (h, w) grid."""
    if int(mask.sum()) < min_visible:
        return Miss(LostAt.NOT_VISIBLE)
    first = holder(pieces, mask)
    if first == 0:
        return Miss(LostAt.NO_PIECE)
    if _shared(pieces, first, others):
        return Miss(LostAt.MERGED_IN_SEGMENTATION)
    last = holder(final, mask)
    if last and _shared(final, last, others):
        return Miss(LostAt.MERGED_BY_LAYOUT)
    reason = next((r for lab, r, _ in dropped if lab == last), None)
    if reason is not None:
        return Miss(LostAt.DROPPED, reason)
    return Miss(LostAt.BOX_OFF)


def false_object_kind(pred_mask: Optional[np.ndarray], truth: Sequence[np.ndarray],
                      found: Sequence[bool]) -> FalseKind:
    """What an unmatched prediction of mask ``pred_mask`` lies on: the true object with most of
    its pixels (at least half), found (``found[j]``) or missed, or none."""
    if pred_mask is None or not pred_mask.any() or not len(truth):
        return FalseKind.ON_NOTHING
    share = np.array([float((pred_mask & m).sum()) for m in truth]) / float(pred_mask.sum())
    j = int(share.argmax())
    if share[j] < 0.5:
        return FalseKind.ON_NOTHING
    return FalseKind.PIECE_OF_FOUND if found[j] else FalseKind.ON_MISSED
