"""A piece is one surface: its pixels hang together without a depth jump.

Where the segmentation's later steps (absorbing cut bands into the nearest piece, re-joining
colour regions) give a piece a few pixels that lie across a depth jump from the rest of it (the
far edge of the block in front of it, a strip of the object behind it), those pixels are another
surface seen beside it in the image, not part of it. Taken as its own, they make the object
taller and wider than it is (the top of the block in front becomes its top) and move its
centre toward its neighbour. This step gives them back: each piece keeps its largest part
whose neighbouring pixels are all within the depth-jump threshold of each other; the smaller
parts that border it across a jump (together under ``max_share`` of the piece) and differ
from it in colour lose their label. A part that does not touch it in the image (the same
object seen on both sides of a thing in front of it, joined by colour) stays, and so does a
part of the piece's own colour (a bowl's near rim in front of its own inside).
Pixels without depth are not judged and stay. Runs on the working grid after the colour
steps, before hidden strips are recovered (a strip given back may become a piece of its own
there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from spatialpin_ros.perception.colour_split import colour_features
from spatialpin_ros.perception.surface_ops import NEIGHBOUR_PAIRS


@dataclass
class JumpCleanParams:
    """``enabled`` False keeps pieces as the segmentation made them. A piece's parts across
    a depth jump from its largest part lose their label when they hold under ``max_share`` of
    its pixels with depth (a larger part is not a stray: the piece stays whole)."""

    enabled: bool = True
    max_share: float = 0.25
    #: With colours, a part is given back only when its mean colour differs from its piece's
    #: largest part by at least this much (colour_split's units, lightness weighted by
    #: ``lightness_weight``): a bowl's or a tray's near rim, in front of its own floor, is
    #: the object's own colour and stays.
    min_contrast: float = 25.0
    lightness_weight: float = 0.2


def jump_free_parts(labels: np.ndarray, z: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(h, w) int: the part of each labelled pixel with depth (-1 elsewhere): 4-connected
    pixels of one label whose depths ``z`` (metres, 0 where missing) differ by less than
    ``thr`` (metres, the larger of the two pixels') are in one part."""
    ok = (labels > 0) & (z > 0)
    m = int(ok.sum())
    idx = np.cumsum(ok.ravel()).reshape(ok.shape) - 1     # a node for each judged pixel
    ea, eb = [], []
    for a, b in NEIGHBOUR_PAIRS:
        link = ok[a] & ok[b] & (labels[a] == labels[b]) & (
            np.abs(z[a] - z[b]) < np.maximum(thr[a], thr[b]))
        ea.append(idx[a][link])
        eb.append(idx[b][link])
    ea, eb = np.concatenate(ea), np.concatenate(eb)
    graph = coo_matrix((np.ones(len(ea), np.int8), (ea, eb)), shape=(m, m))
    _, part = connected_components(graph, directed=False)
    out = np.full(ok.shape, -1, np.int64)
    out[ok] = part
    return out


def _torn_labels(labels: np.ndarray, z: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """The labels with a depth jump between two of their own 4-neighbouring pixels."""
    torn = []
    for a, b in NEIGHBOUR_PAIRS:
        la = labels[a]
        jump = (la > 0) & (la == labels[b]) & (z[a] > 0) & (z[b] > 0) & (
            np.abs(z[a] - z[b]) >= np.maximum(thr[a], thr[b]))
        torn.append(la[jump])
    return np.unique(np.concatenate(torn))


def _borders(part: np.ndarray, uniq: np.ndarray, main_of: np.ndarray) -> np.ndarray:
    """For each part (``uniq``, sorted part ids of ``part``), whether it touches its piece's
    largest part (index ``main_of`` into ``uniq``) in the image: an occluding edge between
    them. A part seen apart from it (the same object on both sides of a thing in front of it,
    joined by colour) does not."""
    touch = np.zeros(len(uniq), dtype=bool)
    for a, b in NEIGHBOUR_PAIRS:
        pa, pb = part[a], part[b]
        sel = (pa >= 0) & (pb >= 0) & (pa != pb)
        ia, ib = np.searchsorted(uniq, pa[sel]), np.searchsorted(uniq, pb[sel])
        touch[ia[main_of[ia] == ib]] = True
        touch[ib[main_of[ib] == ia]] = True
    return touch


def _unlike(rgb: np.ndarray, sel: np.ndarray, inv: np.ndarray,
            main_of: np.ndarray, p: JumpCleanParams) -> np.ndarray:
    """For each part, whether its mean colour differs from its piece's largest part's by
    ``min_contrast`` (``rgb`` (h, w, 3) uint8; ``sel`` the pixels with a
    part, ``inv`` their part index)."""
    f = colour_features(rgb[sel], p.lightness_weight)
    cnt = np.maximum(np.bincount(inv), 1)
    mean = np.stack([np.bincount(inv, weights=f[:, k]) / cnt for k in range(3)], axis=1)
    return np.linalg.norm(mean - mean[main_of], axis=1) >= p.min_contrast


def drop_across_jumps(labels: np.ndarray, z: np.ndarray, jump_abs: float, jump_rel: float,
                      p: JumpCleanParams, rgb: Optional[np.ndarray] = None) -> np.ndarray:
    """``labels`` (h, w) int32 pieces (0 = none) on the working grid, ``z`` (h, w) depth
    (metres, NaN or 0 where missing); a jump between neighbours is a depth step above
    ``jump_abs`` + ``jump_rel`` x depth (metres; the segmentation's, at the working grid's
    stride); ``rgb`` (h, w, 3) uint8, the grid's colours (None: colour is not asked). Returns
    the labels with each piece's parts across a depth jump from its largest part unlabelled
    (module docstring)."""
    if not p.enabled or labels.max() == 0:
        return labels
    zz = np.nan_to_num(z, nan=0.0)
    thr = jump_abs + jump_rel * zz
    torn = _torn_labels(labels, zz, thr)          # only these can have a part across a jump
    if len(torn) == 0:
        return labels
    mine = np.isin(labels, torn)
    rows, cols = np.nonzero(mine.any(axis=1))[0], np.nonzero(mine.any(axis=0))[0]
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    lab = np.where(mine[box], labels[box], 0)
    part = jump_free_parts(lab, zz[box], thr[box])
    sel = part >= 0
    pl, pp = lab[sel], part[sel]
    cnt = np.bincount(pp)              # np.unique(pp, return_inverse, return_counts), unsorted
    uniq = np.flatnonzero(cnt)         # (the parts are small ids: no sort needed)
    inv, cnt = (np.cumsum(cnt > 0) - 1)[pp], cnt[uniq]
    owner = np.zeros(len(uniq), np.int64)
    owner[inv] = pl
    n = int(lab.max()) + 1
    total = np.bincount(owner, weights=cnt, minlength=n)
    biggest = np.zeros(n)
    np.maximum.at(biggest, owner, cnt)
    main = np.full(n, -1, np.int64)                       # each piece's largest part
    order = np.argsort(cnt, kind="stable")
    main[owner[order]] = order
    stray = (np.arange(len(uniq)) != main[owner]) & (cnt < biggest[owner])
    stray &= (total[owner] - biggest[owner]) < p.max_share * total[owner]
    stray &= _borders(part, uniq, main[owner])
    if rgb is not None and stray.any():
        stray &= _unlike(rgb[box], sel, inv, main[owner], p)
    if not stray.any():
        return labels
    out = labels.copy()
    sub = out[box]
    drop = np.zeros(lab.shape, dtype=bool)
    drop[sel] = stray[inv]
    sub[drop] = 0
    return out
