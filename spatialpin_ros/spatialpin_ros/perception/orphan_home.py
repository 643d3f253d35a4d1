"""Which piece a leftover patch of foreground belongs to, from the layout in 3D
(:func:`~spatialpin_ros.perception.segmentation._attach_orphans`).

The convexity cuts leave whole concave surfaces in no piece: a bowl's or a cup's inside is
concave everywhere. Such a patch joins the piece it shares the longest boundary without a depth
jump with; but a bowl's inside is seen beyond its front rim, across a depth jump, and the only
jump-free boundary it has may be with a cup standing behind the bowl, touching its far rim. Seen
from above, the inside lies within the bowl: inside the footprint of the bowl's visible outer
wall completed by its hidden back (``part_rules.completed_hull``), and no higher than it. A patch
so lying within a piece it borders (with or without a jump) is that piece's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from spatialpin_ros.core.geometry import grow_convex, inside_convex, quantile, share
from spatialpin_ros.perception.part_rules import across, completed_hull, sight_axes


@dataclass
class OrphanHomeParams:
    """The footprint test (metres)."""

    #: Patches of at least ``min_size`` times the smallest piece (smaller ones go by their
    #: boundary alone: a few pixels' footprint says little); at least ``min_pairs`` boundary
    #: pixel pairs with the piece.
    min_size: float = 4.0
    min_pairs: int = 3
    #: At least ``inside`` of the patch's footprint within the piece's completed footprint grown
    #: by ``grow``; the patch's top (90 %) at most ``above`` over the piece's.
    inside: float = 0.8
    grow: float = 0.01
    above: float = 0.01
    #: The piece's footprint is pushed back by this share of its width across the line of sight.
    back: float = 0.5


def footprint_home(patch: np.ndarray, lab: np.ndarray, candidates: list[int], Q: np.ndarray,
                   p: OrphanHomeParams = OrphanHomeParams()) -> Optional[int]:
    """The first label of ``candidates`` (labels of ``lab`` bordering the patch, best first)
    within whose completed footprint the patch lies, or None. ``patch`` (h, w) bool;
    ``Q`` (h, w, 3): plane-frame points (NaN where missing)."""
    q = Q[patch]
    q = q[np.isfinite(q[:, 2])]
    if len(q) < 4:
        return None
    q = q[:: max(1, len(q) // 300)]
    top = quantile(q[:, 2], 0.9)
    for L in candidates:
        a = Q[lab == L]
        a = a[np.isfinite(a[:, 2])]
        if len(a) < 4 or top > quantile(a[:, 2], 0.9) + p.above:
            continue
        a = a[:: max(1, len(a) // 400)]
        along, cross = sight_axes(a[:, :2])
        lo, hi = across(a[:, :2], cross)
        hull = completed_hull(a[:, :2], along, p.back * (hi - lo))
        if len(hull) >= 3 and share(inside_convex(grow_convex(hull, p.grow), q[:, :2])) >= p.inside:
            return L
    return None
