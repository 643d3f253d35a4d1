"""Objects mostly hidden behind others: the visible strip of an object standing behind another
is foreground that the convexity segmentation leaves unlabelled (its pieces were all below the
size limit, and too far in depth to join the object in front). Such a strip becomes a piece of
its own when it is clearly another thing: it lies behind the pieces it borders across a depth
jump along most of the shared boundary, and its colour differs from theirs.

Strips joined smoothly to their neighbours (cut lines, a box's top face cut off at its edge) or
of the neighbour's own colour (a fragment of the same object) stay out. This runs after the
colour split, on the working grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spatialpin_ros.perception.colour_split import colour_features


@dataclass
class OccludedParams:
    """Recovery of hidden objects' strips. ``recover_hidden`` False leaves them unlabelled."""

    recover_hidden: bool = True
    #: Smallest strip (square metres at its depth).
    hidden_min_area: float = 1.5e-4
    #: Depth step (metres, + ``hidden_jump_rel`` x depth) behind the neighbour that counts as a
    #: jump...
    hidden_jump_abs: float = 0.015
    hidden_jump_rel: float = 0.01
    #: ...along at least this share of the boundary shared with labelled pieces.
    hidden_min_behind: float = 0.5
    #: Colour difference from the bordering pieces (colour_split's units, lightness weighted
    #: by ``hidden_lightness_weight``).
    hidden_min_contrast: float = 25.0
    hidden_lightness_weight: float = 0.2


def _shared_boundary(sub: np.ndarray, L: np.ndarray, Z: np.ndarray, jump: np.ndarray
                     ) -> tuple[int, int, np.ndarray]:
    """Pixel pairs between the strip ``sub`` and labelled pixels of ``L`` with depth on both
    sides (``Z`` metres, 0 where missing): (pairs, pairs where the strip is more than ``jump``
    metres behind, the neighbouring labels of all bordering pairs). A pair with missing depth on
    either side says nothing about which is in front."""
    shared, behind, labs = 0, 0, []
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        for u, v in ((a, b), (b, a)):
            edge = sub[u] & (L[v] > 0)
            known = edge & (Z[u] > 0) & (Z[v] > 0)
            shared += int(known.sum())
            behind += int((known & (Z[u] - Z[v] > jump[u])).sum())
            labs.append(L[v][edge])
    return shared, behind, np.concatenate(labs)


def _label_colours(rgb: np.ndarray, labels: np.ndarray, w: float) -> np.ndarray:
    """(L, 3) mean colour features of each label's pixels (row 0 unused)."""
    sel = labels > 0
    f = colour_features(rgb[sel], w)
    lab = labels[sel]
    n = int(labels.max()) + 1
    cnt = np.maximum(np.bincount(lab, minlength=n), 1)
    return np.stack([np.bincount(lab, weights=f[:, k], minlength=n) / cnt for k in range(3)],
                    axis=1)


def _distinct(mine: np.ndarray, colours: np.ndarray, nb: np.ndarray,
              p: OccludedParams) -> bool:
    """The strip's colour ``mine`` (3,) differs from that of every piece it borders (a strip of
    the same colour as one of them may be that object's own face)."""
    ids, counts = np.unique(nb, return_counts=True)
    for L in ids[counts >= 2]:
        if np.linalg.norm(mine - colours[L]) < p.hidden_min_contrast:
            return False
    return True


def recover_occluded(labels: np.ndarray, foreground: np.ndarray, z: np.ndarray,
                     rgb: np.ndarray, px: float, p: OccludedParams) -> np.ndarray:
    """``labels`` (h, w) int32 pieces (0 = none), ``foreground`` (h, w) bool, ``z`` (h, w) depth
    (metres, NaN or 0 where missing), ``rgb`` (h, w, 3) uint8, all on the working grid; ``px``
    metres per working pixel at the objects. Returns the labels with hidden strips added."""
    if not p.recover_hidden or labels.max() == 0:
        return labels
    rest = (foreground & (labels == 0)).view(np.uint8)
    rest = cv2.morphologyEx(rest, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    m, comp, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=4)
    if m <= 1:
        return labels
    out = labels.copy()
    nxt = int(labels.max()) + 1
    h, w = labels.shape
    zz = np.nan_to_num(z, nan=0.0)
    min_px = max(4.0, p.hidden_min_area / (px * px))
    colours = None                      # each piece's mean colour, when first needed
    for i in range(1, m):
        if stats[i, cv2.CC_STAT_AREA] < min_px:
            continue
        x, y, ww, hh = stats[i, :4]
        win = (slice(max(y - 1, 0), min(y + hh + 1, h)), slice(max(x - 1, 0), min(x + ww + 1, w)))
        sub, L, Z = comp[win] == i, labels[win], zz[win]
        shared, behind, nb = _shared_boundary(sub, L, Z, p.hidden_jump_abs + p.hidden_jump_rel * Z)
        if not shared or behind < p.hidden_min_behind * shared:
            continue
        if colours is None:
            colours = _label_colours(rgb, labels, p.hidden_lightness_weight)
        mine = colour_features(rgb[win][sub], p.hidden_lightness_weight).mean(axis=0)
        if _distinct(mine, colours, nb, p):
            out[win][sub] = nxt
            nxt += 1
    return out
