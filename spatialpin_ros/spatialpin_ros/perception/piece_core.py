"""A piece's core: the piece without the thin strips of a neighbour that the segmentation's
cut bands and orphan patches gave it.

The segmentation joins leftover pixels to the piece they border in the image. Along the edge
of an object in front, such a band can run a line of pixels from one object into the next (a
strip of the can behind a box's top edge joined to the bottle beside it): in the image the
strip is part of the piece, and it stretches the piece's footprint across its neighbour. A
footprint so stretched makes the neighbour look as if it stood inside the piece
(``pieces.merge_nested``), and the shape fitted to it spans both objects. The core is the
piece's main body: its mask opened by a 3 x 3 square (lines one or two pixels wide go), the
largest 4-connected part of that, grown back by one pixel within the piece (its own edge
pixels return), plus the thin parts that run along it (a block's top face seen edge-on lies
along its front face; a strip into the neighbour leaves it). When the core keeps under
``min_share`` of the piece's pixels with depth (a rim arc, a tray's wall: thin things are all
edge), the piece is its own core. ``pieces.gather_pieces`` then drops only the pixels of the
rest that lie beyond the core's footprint.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.geometry import grow_convex, inside_convex, rect_from_points

_SQUARE = np.ones((3, 3), np.uint8)


def core_mask(rows: np.ndarray, cols: np.ndarray, with_depth: np.ndarray,
              min_share: float = 0.75, along: float = 0.25) -> Optional[np.ndarray]:
    """(M,) bool over a piece's pixels ``rows``, ``cols`` (working grid): those in its core;
    None when the core is the whole piece. ``with_depth`` (M,) bool: the pixels with depth,
    on which ``min_share`` is counted. A part left out that runs along the body (at least
    ``along`` of its pixels border it: a block's top face seen edge-on, a thin strip along
    its front face) stays in the core; a strip that leaves the body goes."""
    if len(rows) < 9:
        return None
    r0, c0 = int(rows.min()) - 1, int(cols.min()) - 1
    m = np.zeros((int(rows.max()) - r0 + 2, int(cols.max()) - c0 + 2), np.uint8)
    r, c = rows - r0, cols - c0
    m[r, c] = 1
    n, lab, stats, _ = cv2.connectedComponentsWithStats(
        cv2.morphologyEx(m, cv2.MORPH_OPEN, _SQUARE), connectivity=4)
    if n < 2:
        return None
    big = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    body = cv2.dilate((lab == big).view(np.uint8), _SQUARE) & m
    if cv2.countNonZero(body) == len(rows):         # the body is the whole piece
        return None
    _keep_alongside(body, m, along)
    keep = body[r, c].astype(bool)
    if keep.all() or (keep & with_depth).sum() < min_share * with_depth.sum():
        return None
    return keep


def _keep_alongside(body: np.ndarray, m: np.ndarray, along: float) -> None:
    """Add to ``body`` (uint8 mask, in place) the 8-connected parts of ``m`` outside it of
    which at least ``along`` of the pixels border it."""
    rest = m & (1 - body)
    n, lab = cv2.connectedComponents(rest, connectivity=8)
    if n < 2:
        return
    size = np.bincount(lab.ravel(), minlength=n)
    touch = np.bincount(lab[cv2.dilate(body, _SQUARE) > 0], minlength=n)
    ok = touch >= along * size
    ok[0] = False
    body |= ok[lab].view(np.uint8)


def near_core(Q: np.ndarray, core: np.ndarray, ok: np.ndarray, margin: float = 0.03,
               flat: float = 0.02) -> np.ndarray:
    """(M,) bool over a piece's pixels: ``core`` (its core, ``piece_core.core_mask``) and
    the other pixels whose points (``Q``, of the pixels ``ok`` with depth) lie within the
    core's footprint hull grown by ``margin`` metres, or that have no depth: only a strip
    that stretches the footprint goes. When the core's footprint is under ``flat`` metres wide
    (one face of a block seen square on), the strips beside it are its other faces, seen
    edge-on, and all stay."""
    if min(rect_from_points(Q[core[ok]][:: max(1, int(core.sum()) // 400), :2])[1]) < flat:
        return np.ones(len(core), dtype=bool)
    hull = grow_convex(_footprint(Q[core[ok]]), margin)
    keep = core.copy()
    out = np.flatnonzero(~core & ok)
    keep[out] = inside_convex(hull, Q[(~core)[ok]][:, :2])
    keep[~core & ~ok] = True
    return keep


def _footprint(Q: np.ndarray) -> np.ndarray:
    """The convex hull (K, 2) of the points' footprint (``pieces._hull``: 400 points at most)."""
    uv = Q[:: max(1, len(Q) // 400), :2].astype(np.float32)
    return cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)
