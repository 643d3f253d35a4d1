"""A box's top face cut off from its sides joins them again (geometric pieces, in
:func:`~spatialpin_ros.perception.selection.select_objects` after ``merge_nested``).

Under depth noise the convex edge between a box's top face and its front face can fail the
convexity merge (few boundary pixels, noisy normals along it): the top face comes out as a piece
of its own, a flat slab in the air. Nothing thinner than an object floats at another object's
top height right beside it; such a slab is that object's top face, when the two meet along a
continuous surface in the image: the 3D gap between neighbouring pixels across their boundary
is under the depth-jump threshold. Something behind the box, of the same height, with its top
seen over the box's top edge, meets it across a depth jump instead and stays apart. A neighbour
of the same height touching it may meet it without one (the top of a can behind another can),
so the two must also be of one colour: their mean colours closer than the colour split's
contrast (``pieces.colours_differ``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatialpin_ros.core.geometry import quantiles, row_norms
from spatialpin_ros.perception.pieces import Piece, colours_differ
from spatialpin_ros.perception.segmentation import SurfaceSegmentation


@dataclass
class FaceJoinParams:
    """The top-face rule (metres)."""

    #: A slab: its points' heights (5-95 %) span at most ``flat``, its lowest (5 %) at least
    #: ``air`` above the support.
    flat: float = 0.012
    air: float = 0.015
    #: Its median height within ``level`` of the other piece's top.
    level: float = 0.01
    #: The boundary: at least ``min_pairs`` neighbouring pixel pairs, at least ``continuous`` of
    #: them closer in 3D than the depth-jump threshold (``jump_abs`` * stride + ``jump_rel`` * z).
    min_pairs: int = 3
    continuous: float = 0.5


def boundary_pairs(seg: SurfaceSegmentation, jump_abs: float, jump_rel: float
                   ) -> dict[tuple[int, int], tuple[int, int]]:
    """{(label a, label b), a < b: (neighbouring pixel pairs, pairs without a depth jump)} over
    the 4-neighbours of ``seg.labels`` (pairs with missing depth count as neither)."""
    lab, P = seg.labels, seg.points
    n = int(lab.max()) + 1
    keys, flat = [], []
    for a, b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                 ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        la, lb = lab[a], lab[b]
        sel = (la > 0) & (lb > 0) & (la != lb)
        if not sel.any():
            continue
        pa, pb = P[a][sel], P[b][sel]
        ok = np.isfinite(pa[:, 2]) & np.isfinite(pb[:, 2])
        x, y = la[sel][ok].astype(np.int64), lb[sel][ok].astype(np.int64)
        thr = jump_abs * seg.stride + jump_rel * np.minimum(pa[ok, 2], pb[ok, 2])
        keys.append(np.minimum(x, y) * n + np.maximum(x, y))
        flat.append(row_norms(pa[ok] - pb[ok]) < thr)
    if not keys:
        return {}
    key, cont = np.concatenate(keys), np.concatenate(flat)
    uk, inv = np.unique(key, return_inverse=True)
    cnt = np.bincount(inv)
    good = np.bincount(inv, weights=cont.astype(float))
    return {(int(k // n), int(k % n)): (int(c), int(g)) for k, c, g in zip(uk, cnt, good)}


def join_top_faces(pieces: list[Piece], seg: SurfaceSegmentation, jump_abs: float,
                   jump_rel: float, contrast: float,
                   p: FaceJoinParams = FaceJoinParams()) -> tuple[list[Piece], dict[int, int]]:
    """Join, in place, each slab (see the module) into the piece whose top face it is.
    Returns the pieces left and {joined label: kept label}."""
    pairs = boundary_pairs(seg, jump_abs, jump_rel)
    if not pairs:
        return pieces, {}
    by_label = {pc.label: pc for pc in pieces}
    joined: dict[int, int] = {}
    for B in sorted(pieces, key=lambda pc: len(pc.Q)):
        lo, med, hi = quantiles(B.Q[:, 2], (0.05, 0.5, 0.95))
        if hi - lo > p.flat or lo < p.air:
            continue
        best, host = 0, None
        for (x, y), (cnt, good) in pairs.items():
            if B.label not in (x, y):
                continue
            other = by_label.get(y if x == B.label else x)
            if (other is None or other.label in joined or cnt < p.min_pairs
                    or good < p.continuous * cnt or abs(med - other.top) > p.level
                    or len(other.Q) <= len(B.Q) or colours_differ(other, B, contrast)):
                continue
            if cnt > best:
                best, host = cnt, other
        if host is not None:
            host.absorb([B])
            joined[B.label] = host.label
    for k, v in joined.items():           # a slab joined to a slab that joined another
        while v in joined:
            v = joined[v]
        joined[k] = v
    return [pc for pc in pieces if pc.label not in joined], joined
