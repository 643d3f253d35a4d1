"""Between segmentation and shape fitting: the segmented pieces in the support-plane frame, and
the one merge that needs 3D layout rather than local convexity.

Solid things cannot share a footprint unless one stands on the other. Two pieces whose
footprints (seen from above) overlap, where one lies mostly below the other's top, are one
object: the inner wall and bottom of a bowl, a cup or a tray meet the rim in a concave fold that
the convexity segmentation cuts, and they join again here. An object stacked on another is
above it and stays apart; so does something standing in a bowl and rising well above its rim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from spatialpin_ros.core.geometry import (column_bounds, column_means, grow_convex,
                                          inside_convex, quantile, quantiles, share,
                                          squared_norms)
from spatialpin_ros.perception.colour_split import colour_features
from spatialpin_ros.perception.part_rules import is_neck
from spatialpin_ros.perception.piece_core import core_mask, near_core
from spatialpin_ros.perception.rims import piece_thin as _piece_thin
from spatialpin_ros.perception.rims import rim_arcs as _rim_arcs
from spatialpin_ros.perception.rims import rim_groups
from spatialpin_ros.perception.segmentation import SurfaceSegmentation
from spatialpin_ros.perception.support import SupportPlane


@dataclass
class Piece:
    """One segmented piece: its working-grid pixels (``rows``, ``cols``; with and without
    depth), plane-frame points ``Q`` (N, 3; metres, h above the plane) of those with depth,
    ``top`` (90 % height quantile, metres: robust to a few stray points) and its footprint hull ``hull`` (K, 2)."""

    label: int
    rows: np.ndarray
    cols: np.ndarray
    Q: np.ndarray
    top: float
    hull: np.ndarray
    #: :func:`_thin_top` by band, filled as asked (reset when pieces are joined)
    thin: dict = field(default_factory=dict)
    #: the working grid's colours (h, w, 3) uint8 when given, and the lightness weight of
    #: :meth:`colour` (``colour_split.colour_features``)
    rgb: Optional[np.ndarray] = field(default=None, repr=False)
    lightness_weight: float = 0.2
    _colour: Optional[tuple] = field(default=None, repr=False)
    #: :meth:`grown_hull` by margin, filled as asked (reset when pieces are joined)
    _grown: dict = field(default_factory=dict, repr=False)
    #: plane-frame points (K, 3) of the strips left out of the piece (``gather_pieces``'
    #: ``core_only``): they still tell which pieces touch it
    fringe: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)), repr=False)

    def colour(self) -> Optional[tuple[np.ndarray, float]]:
        """The mean colour feature (3,) and its spread (median distance to the mean), computed
        on first use; None without a colour image."""
        if self.rgb is None:
            return None
        if self._colour is None:
            k = max(1, len(self.rows) // 300)
            x = colour_features(self.rgb[self.rows[::k], self.cols[::k]], self.lightness_weight)
            mu = x.mean(axis=0)
            self._colour = (mu, float(np.median(np.sqrt(((x - mu) ** 2).sum(axis=1)))))
        return self._colour

    def grown_hull(self, margin: float) -> np.ndarray:
        """The footprint hull grown by ``margin`` metres (``geometry.grow_convex``), computed
        on first use."""
        if margin not in self._grown:
            self._grown[margin] = grow_convex(self.hull, margin)
        return self._grown[margin]

    def absorb(self, others: list["Piece"]) -> None:
        """Join ``others``' pixels and points into this piece (in their order) and recompute
        what depends on them: ``top``, ``hull``, and the cached thin tops, colour and grown
        hulls."""
        self.rows = np.concatenate([self.rows] + [b.rows for b in others])
        self.cols = np.concatenate([self.cols] + [b.cols for b in others])
        self.Q = np.concatenate([self.Q] + [b.Q for b in others])
        self.fringe = np.concatenate([self.fringe] + [b.fringe for b in others])
        self.thin, self._colour, self._grown = {}, None, {}
        self.top, self.hull = quantile(self.Q[:, 2], 0.9), _hull(self.Q)


def gather_pieces(seg: SurfaceSegmentation, sup: SupportPlane, min_area: float,
                  rgb: Optional[np.ndarray] = None, lightness_weight: float = 0.2,
                  core_only: bool = False) -> list[Piece]:
    """The pieces of ``seg`` whose pixels with depth cover at least ``min_area`` square metres
    (image area at the piece's depth). With ``rgb`` (h, w, 3) uint8 on the working grid, each
    piece also gets its colour and the colour's spread. ``core_only``: each piece keeps only
    its core (``piece_core.core_mask``); the thin strips it loses lose their label in
    ``seg.labels`` too."""
    lab = seg.labels
    flat = lab.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=seg.num_labels + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    w = lab.shape[1]
    out = []
    for L in range(1, len(counts)):
        if counts[L] < 4:
            continue
        idx = order[starts[L]:starts[L + 1]]
        r, c = idx // w, idx % w
        P = seg.points[r, c]
        ok = np.isfinite(P[:, 2])
        if ok.sum() < 4:
            continue
        px = float(quantile(P[ok, 2], 0.5)) / max(seg.focal, 1e-6)
        if ok.sum() * px * px < min_area:
            continue
        Q = sup.to_plane(P[ok].astype(np.float64))
        fringe = Q[:0]
        keep = core_mask(r, c, ok) if core_only else None
        if keep is not None:
            keep = near_core(Q, keep, ok)
            lab[r[~keep], c[~keep]] = 0
            fringe = Q[~keep[ok]]
            r, c, ok, Q = r[keep], c[keep], ok[keep], Q[keep[ok]]
            if ok.sum() * px * px < min_area:
                continue
        out.append(Piece(L, r, c, Q, quantile(Q[:, 2], 0.9), _hull(Q), rgb=rgb,
                         lightness_weight=lightness_weight, fringe=fringe))
    return out


def _unlike(A: Piece, B: Piece, contrast: float, spread: float) -> bool:
    """Two uniformly coloured pieces of clearly different colours (two objects, whatever
    their layout)."""
    a, b = A.colour(), B.colour()
    if a is None or b is None or max(a[1], b[1]) > spread:
        return False
    return float(np.sqrt(((a[0] - b[0]) ** 2).sum())) >= contrast


def colours_differ(A: Piece, B: Piece, contrast: float) -> bool:
    """The two pieces' mean colours differ by ``contrast`` or more, however textured (the rim
    rule's and the top-face rule's test: one material; ``_unlike`` asks both to be uniform).
    A piece without colour differs from none."""
    a, b = A.colour(), B.colour()
    return a is not None and b is not None and float(
        np.sqrt(((a[0] - b[0]) ** 2).sum())) >= contrast


def _hull(Q: np.ndarray) -> np.ndarray:
    uv = Q[:: max(1, len(Q) // 400), :2].astype(np.float32)
    return cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)


def _touching(sub: list[np.ndarray], touch: float) -> dict[int, set[int]]:
    """{piece: pieces with a point within ``touch`` metres} (a KD-tree's pair query, without
    its pairs within one piece). Two pieces with points in one cell of a grid whose cells'
    diagonal is under ``touch`` touch; the other pairs whose boxes come that close are
    compared point by point (:func:`_close`)."""
    near: dict[int, set[int]] = {i: set() for i in range(len(sub))}
    bounds = [column_bounds(q) for q in sub]
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    reach = touch * (1 + 1e-6)                  # box tests only preselect: no rounding loss
    gap = np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]).max(axis=2)
    shared = _sharing_cells(sub, touch / math.sqrt(3) * (1 - 1e-6))
    for i, j in zip(*np.nonzero(np.triu(gap <= reach, 1))):
        i, j = int(i), int(j)
        if (i, j) in shared or _close(sub[i], sub[j], lo[j] - reach, hi[j] + reach,
                                      lo[i] - reach, hi[i] + reach, touch):
            near[i].add(j)
            near[j].add(i)
    return near


def _sharing_cells(sub: list[np.ndarray], cell: float) -> set[tuple[int, int]]:
    """Pairs (i < j) of pieces with points in one cell of a ``cell``-metre grid."""
    X = np.concatenate(sub)
    piece = np.repeat(np.arange(len(sub)), [len(q) for q in sub])
    c = np.floor(X / cell).astype(np.int64)
    c -= column_bounds(c)[0]
    span = column_bounds(c)[1] + 1
    key = np.unique(((c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]) * len(sub) + piece)
    cid, pid = key // len(sub), key % len(sub)  # by cell, then piece
    out: set[tuple[int, int]] = set()
    for t in range(1, len(sub)):
        same = np.flatnonzero(cid[t:] == cid[:-t])
        if len(same) == 0:
            break
        out.update(zip(pid[same].tolist(), pid[same + t].tolist()))
    return out


def _close(a: np.ndarray, b: np.ndarray, alo, ahi, blo, bhi, touch: float) -> bool:
    """Some point of ``a`` lies within ``touch`` of one of ``b``: the squared distances (the
    squares summed in order, as a KD-tree sums them) of the points of each within the other's
    box grown by ``touch`` (``alo``-``ahi`` for ``a``'s points, ``blo``-``bhi`` for ``b``'s)."""
    a = a[((a >= alo) & (a <= ahi)).all(axis=1)]
    b = b[((b >= blo) & (b <= bhi)).all(axis=1)]
    return bool(len(a) and len(b)
                and (squared_norms(a[:, None] - b[None]) <= touch * touch).any())


def _radius(xy: np.ndarray) -> tuple[np.ndarray, float]:
    cen = column_means(xy)
    return cen, quantile(np.hypot(*(xy - cen).T), 0.9)


def _enclosed(i: int, near: set[int], pieces: list[Piece], sub: list[np.ndarray],
              med: list[float], margin: float, min_share: float, rim: float = 0.015
              ) -> set[int]:
    """The walls that enclose ``i``, or an empty set: the pieces touching it that stand higher
    than it surround it seen from above: ``min_share`` of its footprint lies inside the convex
    hull of theirs, and they lie all around it (in 9 of 12 directions): a bowl's bottom inside
    its rim arcs, a tray's floor between its walls. The other pieces touching it must be no higher
    than it (the rest of a floor that noise cut in two). A banana lying beside a block is not
    enclosed. The walls are one rim: of the sets of walls whose tops lie within ``rim`` metres
    of one wall's top, the one with the most points that surrounds it counts (a cup standing
    beside a bowl is no part of the bowl's rim, nor does it hide the rim behind it), and all
    the higher pieces touching it are thin-topped (a block stacked on it is no wall)."""
    walls = {j for j in near if med[i] < pieces[j].top - margin}
    if (not walls or any(pieces[j].top > pieces[i].top + margin for j in near - walls)
            or not all(_piece_thin(pieces[j]) for j in walls)):     # walls, not blocks
        return set()

    def rim_of(ref: float) -> set[int]:
        return {j for j in walls if abs(pieces[j].top - ref) <= rim}
    rims = sorted({frozenset(rim_of(pieces[j].top)) for j in walls},
                  key=lambda js: (-sum(len(pieces[j].Q) for j in js), sorted(js)))
    return next((set(js) for js in rims if _surround(i, set(js), pieces, sub, min_share)),
                set())


def _surround(i: int, near: set[int], pieces: list[Piece], sub: list[np.ndarray],
              min_share: float) -> bool:
    """Thin-topped pieces ``near`` lie all around piece ``i`` (see :func:`_enclosed`)."""
    if not all(_piece_thin(pieces[j]) for j in near):   # walls, not blocks
        return False
    uv = np.concatenate([sub[j][:, :2] for j in near]).astype(np.float32)
    hull = cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3 or share(inside_convex(hull, sub[i][:, :2])) < min_share:
        return False
    centre = sub[i][:, :2].mean(axis=0)
    d = uv - centre
    return len(np.unique((np.degrees(np.arctan2(d[:, 1], d[:, 0])) // 30).astype(int))) >= 9


def _hangs_on(A: Piece, B: Piece, qa_low: float, qb: np.ndarray, stats_b,
              small: float = 0.25, air: float = 0.015, above: float = 0.008,
              reach: float = 0.03) -> bool:
    """``B`` hangs on the side of ``A``, as a mug's handle does: A stands on the support
    (its lowest point ``qa_low`` under ``air`` metres), B is much smaller (under ``small`` of
    A's points), held in the air (its lowest point at least ``air`` metres above the support
    and ``above`` above A's lowest), no higher than A's top, and beside A's body: its
    footprint lies within ``reach`` metres of A's, mostly outside it. Nothing small hangs in
    the air beside an object unless it is part of it; a thing stacked on A rises above A's
    top, a fruit in a bowl lies inside the bowl's footprint."""
    low_b = stats_b[0]
    if (len(B.Q) >= small * len(A.Q) or qa_low >= air or low_b < max(air, qa_low + above)
            or B.top > A.top or len(A.hull) < 3):
        return False
    uv = qb[:, :2]
    return bool(share(inside_convex(A.grown_hull(reach), uv)) >= 0.8
                and share(inside_convex(A.hull, uv)) < 0.5)


def _joined_view(pieces: list[Piece], ks: list[int]) -> Piece:
    """A new piece with the pixels and points of ``pieces[k]`` for each k of ``ks``."""
    A = pieces[ks[0]]
    view = Piece(A.label, A.rows, A.cols, A.Q, A.top, A.hull, rgb=A.rgb,
                 lightness_weight=A.lightness_weight)
    view.absorb([pieces[k] for k in ks[1:]])
    return view


def _hang_on_groups(pieces: list[Piece], near: dict[int, set[int]], sub: list[np.ndarray],
                    stats: list, find, union, contrast: float, spread: float) -> None:
    """The handle rule (:func:`_hangs_on`) once more, against the objects that
    :func:`merge_nested`'s rules built from several pieces: a handle whose mug was cut into its
    wall, rim and inside is small beside the whole mug, not beside the wall piece it touches.
    ``find`` and ``union``: merge_nested's union-find over the pieces."""
    members: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        members.setdefault(find(i), []).append(i)
    for j in range(len(pieces)):
        if len(members[find(j)]) > 1:
            continue
        for root in sorted({find(k) for k in near[j]} - {find(j)}):
            if len(members[root]) < 2:
                continue
            A = _joined_view(pieces, members[root])
            if (_hangs_on(A, pieces[j], quantile(A.Q[:, 2], 0.05), sub[j], stats[j])
                    and not _unlike(A, pieces[j], contrast, spread)):
                union(root, j)
                break


def merge_nested(pieces: list[Piece], inside: float = 0.8, grow: float = 0.01,
                 margin: float = 0.005, enclosed: float = 0.8, touch: float = 0.015,
                 contrast: float = 25.0, spread: float = 10.0
                 ) -> tuple[list[Piece], dict[int, int]]:
    """Join touching pieces that are parts of one object:

    * one lies inside the other and not above it: ``inside`` of the smaller one's footprint
      lies in the larger one's (grown by ``grow`` metres), its top is no higher (by
      ``margin``) and above the other's bottom (it is not a base the other stands on) -- a
      bowl's inside within its rim;
    * one is enclosed by higher, thin-topped pieces all around (:func:`_enclosed`) -- a tray's
      floor;
    * two are arcs of one rim, each thin (:func:`_rim_arcs`);
    * pieces touching at one height, low or thin-topped, trace one rim around an empty middle,
      with the floor inside it (:func:`~spatialpin_ros.perception.rims.rim_groups`): a tray's
      walls, a noisy plate's rim arcs;
    * one is the other's neck or cap (:func:`~spatialpin_ros.perception.part_rules.is_neck`,
      measured across the line of sight);
    * one hangs on the other's side, as a handle (:func:`_hangs_on`), or on an object those
      rules built from several pieces (:func:`_hang_on_groups`).

    Two pieces that are each uniformly coloured (colour spread at most ``spread``) and differ
    in colour by ``contrast`` or more are not joined by the first or the last rule (units of
    ``colour_split.colour_features``; pieces without colour are not compared): a small block
    beside a larger one, its footprint within the larger one's, is another object. (The other
    rules keep joining them: a cup's rim may be printed in another colour than its wall.)

    Returns the pieces and the label map {absorbed label: label it joined}."""
    n = len(pieces)
    if n == 0:
        return [], {}
    sets = DisjointSet(range(n))
    union = sets.merge

    def find(i: int) -> int:          # a set's smallest piece names it, whatever the merges
        return min(sets.subset(i))
    med, low = zip(*(quantiles(pc.Q[:, 2], (0.5, 0.05)) for pc in pieces))
    sub = [pc.Q[:: max(1, len(pc.Q) // 150)] for pc in pieces]
    near = _touching([np.concatenate([q, pc.fringe]) if len(pc.fringe) else q
                      for q, pc in zip(sub, pieces)], touch)
    stats = [(float(quantile(q[:, 2], 0.05)),) + _radius(q[:, :2]) for q in sub]
    for group in rim_groups([pc.top for pc in pieces], sub, near,
                            lambda k: _piece_thin(pieces[k]),
                            lambda a, b: colours_differ(pieces[a], pieces[b], contrast)):
        for j in group:
            union(min(group), j)
    for i in range(n):
        for j in _enclosed(i, near[i], pieces, sub, med, margin, enclosed):
            union(i, j)
        for j in near[i]:
            if sets.connected(i, j):      # joined already: the rules could only join them again
                continue
            A, B = pieces[i], pieces[j]
            if ((j > i and _rim_arcs(A, B, sub[i], sub[j]))
                    or is_neck(len(A.Q), len(B.Q), A.top, sub[i], sub[j], *stats[j])
                    or (_hangs_on(A, B, low[i], sub[j], stats[j])
                        and not _unlike(A, B, contrast, spread))):
                union(i, j)
            elif (len(A.hull) >= 3 and len(B.Q) <= len(A.Q) and B.top <= A.top + margin
                    and B.top > low[i] + 0.01           # not the base A stands on
                    and share(inside_convex(A.grown_hull(grow), sub[j][:, :2])) >= inside
                    and not _unlike(A, B, contrast, spread)):
                union(i, j)
    _hang_on_groups(pieces, near, sub, stats, find, union, contrast, spread)
    out, joined = [], {}
    for group in sorted(sets.subsets(), key=min):     # in the order of their first piece
        members = sorted(group, key=lambda i: (-len(pieces[i].Q), i))
        A = pieces[members[0]]
        if len(members) > 1:
            A.absorb([pieces[m] for m in members[1:]])
        joined.update((pieces[m].label, A.label) for m in members[1:])
        out.append(A)
    return out, joined
