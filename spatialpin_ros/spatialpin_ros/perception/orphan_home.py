"""Which piece a leftover patch of foreground belongs to (:func:`attach_orphans`, a step of
:func:`~spatialpin_ros.perception.segmentation.segment_surfaces`), from the layout in 3D.

The convexity cuts leave whole concave surfaces in no piece: a bowl's or a cup's inside is
concave everywhere. Such a patch joins the piece it shares the longest boundary without a depth
jump with; but a bowl's inside is seen beyond its front rim, across a depth jump, and the only
jump-free boundary it has may be with a cup standing behind the bowl, touching its far rim. Seen
from above, the inside lies within the bowl: inside the footprint of the bowl's visible outer
wall completed by its hidden back (``part_rules.completed_hull``), and no higher than it. A patch
so lying within a piece it borders (with or without a jump) is that piece's, when the piece is
open at the top (its top band thin, ``rims.thin_top``: a rim, a wall): beyond a solid top (a
can's, a box's) there is no inside to see, and what lies there is something behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import cv2
import numpy as np

from spatialpin_ros.core.geometry import grow_convex, inside_convex, quantile, share
from spatialpin_ros.perception.part_rules import across, completed_hull, sight_axes
from spatialpin_ros.perception.rims import thin_top


@dataclass
class OrphanHomeParams:
    """The footprint test (metres)."""

    #: Patches of at least ``min_size`` times the smallest piece (smaller ones go by their
    #: boundary alone: a few pixels' footprint says little); at least ``min_pairs`` boundary
    #: pixel pairs with the piece.
    min_size: float = 4.0
    min_pairs: int = 3
    #: The pieces it borders most, at most this many, are tried (a bound on the cost).
    max_candidates: int = 2
    #: At least ``inside`` of the patch's footprint within the piece's completed footprint grown
    #: by ``grow``; the patch's top (90 %) at most ``above`` over the piece's.
    inside: float = 0.8
    grow: float = 0.01
    above: float = 0.01
    #: The piece's footprint is pushed back by this share of its width across the line of sight.
    back: float = 0.5
    #: A patch of at least ``own`` times the smallest piece that borders no piece without a
    #: depth jump and lies within none becomes a piece of its own: the visible band of an object
    #: behind another, which the bridge-breaking erosion crumbled into fragments too small to
    #: keep. 0: such patches stay out.
    own: float = 4.0
    #: A patch of at least ``min_size`` times the smallest piece with at least this share of its
    #: pixels on concave folds, ``dish_width`` wide or wider, is a dish: a concave surface, a
    #: bowl's or a cup's inside. Beyond its far rim it borders whatever stands behind the bowl
    #: without a depth jump (a bottle, a cup), so it joins the neighbour of its longest
    #: boundary only when that neighbour's top stands no more than ``rim_above`` over its own
    #: (its rim); else, unless the footprint test (completed toward the camera for a dish)
    #: finds its wall, it is a piece of its own, and the layout rules
    #: (``pieces.merge_nested``) may join it to its rim later. 0: off.
    dish: float = 0.0
    #: A concave patch is completed toward the camera by this share of its width (its near
    #: side, hidden behind the front rim, reaches as far as the dish is wide), and its wall's
    #: top may stand up to ``rim_above`` over the patch's top (90 %: the rim is the highest of
    #: a dish).
    dish_back: float = 1.0
    rim_above: float = 0.03
    #: A concave patch narrower than this across the line of sight (metres) is no dish (an
    #: opening too narrow to see into); it goes by the rules above.
    dish_width: float = 0.04


def _top(points: np.ndarray) -> float:
    """The 90 % height of plane-frame points with depth (NaN under 4 of them)."""
    z = points[np.isfinite(points[:, 2]), 2]
    return quantile(z, 0.9) if len(z) >= 4 else float("nan")


def _entry(cache: dict, L: int, lab: np.ndarray, points: Callable[[np.ndarray], np.ndarray]
           ) -> list:
    """``cache[L]``, filled on first use: [piece ``L``'s points with depth, their 90 % height,
    whether its top is thin (None until tested)]."""
    if L not in cache:                          # once per piece, whatever the patch
        a = points(lab == L)
        a = a[np.isfinite(a[:, 2])]
        cache[L] = [a, _top(a), None]
    return cache[L]


def footprint_home(patch: np.ndarray, lab: np.ndarray, candidates: list[int],
                   points: Callable[[np.ndarray], np.ndarray],
                   p: OrphanHomeParams = OrphanHomeParams(), cache: Optional[dict] = None,
                   dish: bool = False) -> Optional[int]:
    """The first label of ``candidates`` (labels of ``lab`` bordering the patch, best first)
    within whose completed footprint the patch lies, or None. ``patch`` (h, w) bool;
    ``points(mask)``: the plane-frame points (N, 3; NaN where missing) of the pixels of a mask;
    ``cache``: {label: [its points with depth, their 90 % height, its top is thin]}, kept
    between patches. ``dish``: the patch is a concave surface (a bowl's or a cup's inside),
    whose hidden part is its near side, behind the front rim: a thin-topped piece no higher
    than it that lies within its footprint completed toward the camera is its wall, too."""
    q = points(patch)
    q = q[np.isfinite(q[:, 2])]
    if len(q) < 4:
        return None
    q = q[:: max(1, len(q) // 300)]
    top = quantile(q[:, 2], 0.9)
    cache = {} if cache is None else cache
    bowl = None
    if dish:
        along, cross = sight_axes(q[:, :2])
        lo, hi = across(q[:, :2], cross)
        bowl = grow_convex(completed_hull(q[:, :2], -along, p.dish_back * (hi - lo)), p.grow)
    for L in candidates:
        a, a_top, thin = _entry(cache, L, lab, points)
        below = top <= a_top + p.above          # the patch no higher than the piece
        rim = bowl is not None and a_top <= top + p.rim_above
        if len(a) < 4 or not (below or rim):
            continue
        if thin is None:                        # tested once, where first needed
            thin = cache[L][2] = thin_top(a, a_top)
        if not thin:                            # a solid top: what lies beyond is not its
            continue
        a = a[:: max(1, len(a) // 400)]
        if rim and len(bowl) >= 3 and share(inside_convex(bowl, a[:, :2])) >= p.inside:
            return L
        if not below:
            continue
        along, cross = sight_axes(a[:, :2])
        lo, hi = across(a[:, :2], cross)
        hull = completed_hull(a[:, :2], along, p.back * (hi - lo))
        if len(hull) >= 3 and share(inside_convex(grow_convex(hull, p.grow), q[:, :2])) >= p.inside:
            return L
    return None


def _width(points: np.ndarray) -> float:
    """The width (metres) across the line of sight of plane-frame points (NaN rows ignored)."""
    uv = points[np.isfinite(points[:, 2]), :2]
    if len(uv) < 4:
        return 0.0
    lo, hi = across(uv, sight_axes(uv)[1])
    return hi - lo


def _dishes(comp: np.ndarray, large: np.ndarray, size: np.ndarray,
            folds: Optional[np.ndarray], points: Optional[Callable[[np.ndarray], np.ndarray]],
            home: OrphanHomeParams) -> np.ndarray:
    """(m,) bool: the patches of ``comp`` among ``large`` that are dishes (``home.dish``)."""
    dish = np.zeros(len(size), bool)
    if folds is None or home.dish <= 0 or not len(large) or points is None:
        return dish
    dish[large] = np.bincount(comp[folds], minlength=len(size))[large] >= home.dish * size[large]
    for k in np.flatnonzero(dish):
        dish[k] = _width(points(comp == k)) >= home.dish_width
    return dish


def attach_orphans(lab: np.ndarray, free: np.ndarray, jumps, min_pixels: float,
                   Q: Optional[Union[np.ndarray, Callable[[np.ndarray], np.ndarray]]] = None,
                   home: OrphanHomeParams = OrphanHomeParams(),
                   folds: Optional[np.ndarray] = None) -> None:
    """Foreground that the cuts left in no piece and that no piece absorbed (a pen's upper half
    in front of a box, between the jump bands of its two sides): each 4-connected patch of
    ``free`` of at least ``min_pixels`` joins the piece it shares the longest jump-free boundary
    with; with ``Q`` (plane-frame points, (h, w, 3), or a function giving those of a mask's
    pixels, called only for patches large enough to judge), a piece it borders and lies
    within seen from above comes first (a bowl's inside, beyond its front rim:
    :func:`footprint_home` with ``home``). A patch never joins two pieces. A patch with no such
    neighbour stays out unless it holds at least ``home.own`` times ``min_pixels``: then it is a
    piece of its own (seen only across depth jumps, it is something behind or in front of its
    neighbours, not a part of one). With ``folds`` ((h, w) bool: the pixels on concave folds),
    a dish (``home.dish``: a bowl's inside) joins its boundary's neighbour only when that
    neighbour is no higher than its rim, and is otherwise a piece of its own. In place."""
    if not free.any():
        return
    m, comp = cv2.connectedComponents(free.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    keys, jumped = [], []
    L = int(lab.max()) + 1
    for axis, jump in ((1, jumps[0]), (0, jumps[1])):
        ca, cb = (comp[:, :-1], comp[:, 1:]) if axis == 1 else (comp[:-1], comp[1:])
        la, lb = (lab[:, :-1], lab[:, 1:]) if axis == 1 else (lab[:-1], lab[1:])
        for c, l in ((ca, lb), (cb, la)):
            sel = (c > 0) & (l > 0)
            keys.append(c[sel].astype(np.int64) * L + l[sel])
            jumped.append(jump[sel])
    key = np.concatenate(keys)
    jumped = np.concatenate(jumped)
    pair = np.bincount(key[~jumped], minlength=m * L).reshape(m, L)
    best = pair.argmax(axis=1)
    size = np.bincount(comp.ravel(), minlength=m)
    ok = (pair.max(axis=1) > 0) & (size >= min_pixels)
    ok[0] = False
    large = np.flatnonzero(size[1:] >= home.min_size * min_pixels) + 1
    homed = np.zeros(m, bool)
    cache: dict = {}
    points = (Q if callable(Q) else (lambda mask: Q[mask])) if Q is not None else None
    dish = _dishes(comp, large, size, folds, points, home)
    if points is not None and len(large):
        touch = np.bincount(key, minlength=m * L).reshape(m, L)
        for k in large:
            near = [int(x) for x in np.argsort(-touch[k])[: home.max_candidates]
                    if touch[k, x] >= home.min_pairs]
            host = (footprint_home(comp == k, lab, near, points, home, cache, bool(dish[k]))
                    if near else None)
            if host is not None:
                best[k], ok[k], homed[k] = host, True, True
    dish &= ~homed
    for k in np.flatnonzero(dish & ok):     # its boundary's neighbour stands behind its rim
        dish[k] = bool(_entry(cache, int(best[k]), lab, points)[1]
                       > _top(points(comp == k)) + home.rim_above)
    ok &= ~dish
    own = (~ok) & (size >= home.own * min_pixels) if home.own > 0 else np.zeros(m, bool)
    own |= dish
    own[0] = False
    if own.any():
        best[own] = L + np.arange(int(own.sum()))
        ok |= own
    if ok.any():
        sel = ok[comp]
        lab[sel] = best[comp[sel]]
