"""Dark depth holes that belong to an object.

Active stereo and time-of-flight cameras return no depth on dark, light-absorbing surfaces: a
black cap, a black handle, a dark label. Segmentation, which works on depth, leaves such a hole
out of the object it is part of, so the object's pixel mask misses it. A hole that is dark in
the colour image, touches exactly one object and no other, and is not larger than that object
is that object's surface, and joins its mask. Holes the colour of the table (the shadows an
active camera's projector casts beside objects, or depth lost at grazing angles) stay out.

Only the masks change: the hole has no depth, so it adds no point to the object's 3D shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spatialpin_ros.perception.surface_ops import patch_borders


@dataclass
class DepthHoleParams:
    """When a depth hole joins the object it touches."""

    #: Dark: the hole's mean brightness is below this share of the frame's median brightness.
    hole_dark: float = 0.45
    #: Largest hole, as a share of the object's own working pixels.
    hole_max_share: float = 1.0
    #: Smallest hole (working pixels); smaller ones are left to the mask margin.
    hole_min_pixels: int = 2


def claim_dark_holes(labels: np.ndarray, has_depth: np.ndarray, lum: np.ndarray,
                     p: DepthHoleParams) -> np.ndarray:
    """``labels`` (h, w) int (0 = nobody) with every qualifying dark hole given to the one
    object it touches. ``has_depth`` (h, w) bool; ``lum`` (h, w) brightness (any scale)."""
    hole = ~has_depth & (labels == 0)
    if not hole.any() or labels.max() == 0:
        return labels
    n, comp = cv2.connectedComponents(hole.astype(np.uint8), connectivity=4)
    key, nb = patch_borders(comp, hole, labels)
    L = int(labels.max()) + 1              # the (hole, object) pairs, sorted, as one number
    pairs = np.unique(key[nb > 0].astype(np.int64) * L + nb[nb > 0])
    if len(pairs) == 0:
        return labels
    hole_of, object_of = np.divmod(pairs, L)
    touching = np.bincount(hole_of, minlength=n)
    owner = np.zeros(n, dtype=labels.dtype)
    owner[hole_of] = object_of
    area = np.bincount(comp.ravel(), minlength=n)
    mean_lum = np.bincount(comp.ravel(), weights=lum.ravel().astype(np.float64),
                           minlength=n) / np.maximum(area, 1)
    obj_area = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    dark = mean_lum < p.hole_dark * float(np.median(lum))
    ok = ((touching == 1) & dark & (area >= p.hole_min_pixels)
          & (area <= p.hole_max_share * obj_area[owner]))
    ok[0] = False
    if not ok.any():
        return labels
    give = np.where(ok, owner, 0)[comp]
    return np.where(give > 0, give, labels)
