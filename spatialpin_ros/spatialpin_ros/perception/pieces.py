"""Between segmentation and shape fitting: the segmented pieces in the support-plane frame, and
the one merge that needs 3D layout rather than local convexity.

Solid things cannot share a footprint unless one stands on the other. Two pieces whose
footprints (seen from above) overlap, where one lies mostly below the other's top, are one
object: the inner wall and bottom of a bowl, a cup or a tray meet the rim in a concave fold that
the convexity segmentation cuts, and they join again here. An object stacked on another is
above it and stays apart; so does something standing in a bowl and rising well above its rim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from scipy.spatial import cKDTree

from spatialpin_ros.core.geometry import grow_convex, inside_convex, quantile, robust_circle
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


def gather_pieces(seg: SurfaceSegmentation, sup: SupportPlane, min_area: float) -> list[Piece]:
    """The pieces of ``seg`` whose pixels with depth cover at least ``min_area`` square metres
    (image area at the piece's depth)."""
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
        px = float(np.median(P[ok, 2])) / max(seg.focal, 1e-6)
        if ok.sum() * px * px < min_area:
            continue
        Q = sup.to_plane(P[ok].astype(np.float64))
        out.append(Piece(L, r, c, Q, quantile(Q[:, 2], 0.9), _hull(Q)))
    return out


def _hull(Q: np.ndarray) -> np.ndarray:
    uv = Q[:: max(1, len(Q) // 400), :2].astype(np.float32)
    return cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)


def _enclosures(pieces: list[Piece], sub: list[np.ndarray], trees, med: list[float],
                margin: float, share: float, touch: float) -> list[tuple[int, int]]:
    """Pairs (inner, outer): the pieces that ``inner`` touches in 3D (closer than ``touch``
    metres), all standing higher than it, surround it seen from above: ``share`` of its
    footprint lies inside the convex hull of theirs, and they lie all around it (in 9 of 12
    directions): a bowl's bottom inside its rim arcs, a tray's floor between its walls."""
    out = []
    for i in range(len(pieces)):
        near = [j for j in range(len(pieces)) if j != i
                and trees[j].query(sub[i], k=1, distance_upper_bound=touch)[0].min() < touch]
        if not near or not all(med[i] < pieces[j].top - margin for j in near):
            continue
        uv = np.concatenate([sub[j][:, :2] for j in near]).astype(np.float32)
        hull = cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)
        if len(hull) < 3 or inside_convex(hull, sub[i][:, :2]).mean() < share:
            continue
        # surrounded on all sides, not merely lying beside two objects
        d = uv - sub[i][:, :2].mean(axis=0)
        bins = np.unique((np.degrees(np.arctan2(d[:, 1], d[:, 0])) // 30).astype(int))
        if len(bins) >= 9:
            out.extend((i, j) for j in near)
    return out


def _rim_arcs(pieces: list[Piece], sub: list[np.ndarray], trees, touch: float,
              max_residual: float = 0.003, band: float = 0.015) -> list[tuple[int, int]]:
    """Pairs of pieces that are arcs of one rim: tops at the same height, touching, and
    their top bands lie on one circle (radius 2-20 cm) with nothing at that height inside it
    (a bowl's or cup's rim cut into arcs by folds). Two cans side by side do not fit one
    circle."""
    out = []
    n = len(pieces)
    for i in range(n):
        for j in range(i + 1, n):
            A, B = pieces[i], pieces[j]
            if abs(A.top - B.top) > 0.01:
                continue
            if trees[j].query(sub[i], k=1, distance_upper_bound=touch)[0].min() >= touch:
                continue
            ba = sub[i][sub[i][:, 2] > A.top - band, :2]
            bb = sub[j][sub[j][:, 2] > B.top - band, :2]
            if len(ba) < 8 or len(bb) < 8:
                continue
            fit = robust_circle(np.concatenate([ba, bb]), 0.004)
            if fit is None:
                continue
            c, r, res = fit
            if not (0.02 < r < 0.2) or res > max_residual:
                continue
            near_a = np.abs(np.hypot(*(ba - c).T) - r) < 3 * max_residual
            near_b = np.abs(np.hypot(*(bb - c).T) - r) < 3 * max_residual
            if near_a.mean() > 0.8 and near_b.mean() > 0.8:
                out.append((i, j))
    return out


def _necks(pieces: list[Piece], sub: list[np.ndarray], trees, touch: float,
           flat: float = 0.005, ring: float = 0.02, narrow: float = 0.5, centred: float = 0.6
           ) -> list[tuple[int, int]]:
    """Pairs (upper, lower): a narrow piece (radius under ``narrow`` of the lower one's) centred
    on top of a larger one (within ``centred`` of its radius) that has no flat top around it: the lower piece's points within ``ring`` metres around the upper one's footprint do
    not lie on a plane at the upper one's base (within ``flat``). A bottle's neck or cap on its
    shoulder, a mustard bottle's cap. Something stacked on a box stands on a flat top and stays
    apart."""
    out = []
    for j, B in enumerate(pieces):
        low_b = quantile(sub[j][:, 2], 0.05)
        cen = sub[j][:, :2].mean(axis=0)
        rad = float(np.percentile(np.hypot(*(sub[j][:, :2] - cen).T), 90))
        for i, A in enumerate(pieces):
            if i == j or len(A.Q) <= len(B.Q) or A.top > low_b + 0.01 or len(A.hull) < 3:
                continue
            if inside_convex(grow_convex(A.hull, 0.005), sub[j][:, :2]).mean() < 0.8:
                continue
            cen_a = sub[i][:, :2].mean(axis=0)
            rad_a = float(np.percentile(np.hypot(*(sub[i][:, :2] - cen_a).T), 90))
            if rad > narrow * rad_a or np.hypot(*(cen - cen_a)) > centred * rad_a:
                continue                                   # not a neck: wide or off-centre
            if trees[i].query(sub[j], k=1, distance_upper_bound=touch)[0].min() >= touch:
                continue
            d = np.hypot(*(sub[i][:, :2] - cen).T)
            around = sub[i][(d > rad) & (d < rad + ring), 2]
            if len(around) >= 5 and np.mean(np.abs(around - low_b) < flat) < 0.5:
                out.append((j, i))
    return out


def merge_nested(pieces: list[Piece], inside: float = 0.8, grow: float = 0.01,
                 margin: float = 0.005,
                 enclosed: float = 0.8, touch: float = 0.015
                 ) -> tuple[list[Piece], dict[int, int]]:
    """Join pieces where one lies inside the other and not above it: either ``inside`` of the
    smaller one's footprint lies in the larger one's (grown by ``grow`` metres) and its top is
    no higher (by ``margin``) -- a bowl's inside within its rim, a piece of its rim cut off by a
    fold --, or the higher pieces it touches
    surround it seen from above (``enclosed`` of its footprint inside theirs: a bowl's bottom
    inside its rim, whose arcs the folds cut apart). Returns the pieces and the
    label map {absorbed label: label it joined}."""
    n = len(pieces)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    med = [float(np.median(pc.Q[:, 2])) for pc in pieces]
    sub = [pc.Q[:: max(1, len(pc.Q) // 300)] for pc in pieces]
    trees = [cKDTree(q) for q in sub]
    for i, j in _enclosures(pieces, sub, trees, med, margin, enclosed, touch):
        union(i, j)
    for i, j in _rim_arcs(pieces, sub, trees, touch):
        union(i, j)
    for i, j in _necks(pieces, sub, trees, touch):
        union(i, j)
    grown = [grow_convex(pc.hull, grow) if len(pc.hull) >= 3 else pc.hull for pc in pieces]
    for i in range(n):
        for j in range(n):
            A, B = pieces[i], pieces[j]
            if i == j or len(A.hull) < 3 or len(B.Q) > len(A.Q) or B.top > A.top + margin:
                continue
            if inside_convex(grown[i], B.Q[:: max(1, len(B.Q) // 300), :2]).mean() >= inside:
                union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    out, joined = [], {}
    for root, members in groups.items():
        members.sort(key=lambda i: -len(pieces[i].Q))
        A = pieces[members[0]]
        for m in members[1:]:
            B = pieces[m]
            A.rows = np.concatenate([A.rows, B.rows])
            A.cols = np.concatenate([A.cols, B.cols])
            A.Q = np.concatenate([A.Q, B.Q])
            joined[B.label] = A.label
        if len(members) > 1:
            A.top = quantile(A.Q[:, 2], 0.9)
            A.hull = _hull(A.Q)
        out.append(A)
    return out, joined
