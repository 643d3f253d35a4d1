"""Colour edges as cuts: a geometric piece made of several flat-coloured objects (a ball and two
blocks pushed together, a small block against a large one) is cut along its strong colour edges
when what the cuts leave are a few large, uniform regions of clearly different colours.

This complements :mod:`~spatialpin_ros.perception.colour_split`, whose clustering of the whole
piece fails when one partner is small (a tenth of the piece), when there are three or more, or
when shading spreads one object's colour towards another's. Here colour is compared only
between neighbouring pixels, so shading (gradual, or a change of lightness at a crease) does
not cut, and a small partner is a region of its own.

Texture, printed labels and logos never split a piece: a textured piece is cut into many small
regions that do not cover it; a label is not uniform, or is enclosed by the object (it does not
reach the piece's outline), or its colour recurs on both sides of it (one colour group must be
one region).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import connected_components

from spatialpin_ros.core.geometry import row_norms
from spatialpin_ros.perception.colour_split import ColourSplitParams, colour_features


def colour_edges(feat: np.ndarray, step: float, labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose colour differs by more than ``step`` from their left or upper
    neighbour in the same piece of ``labels`` (h, w): a one-pixel cut line that separates
    4-connected regions (a piece's outline is not an edge)."""
    cut = np.zeros(feat.shape[:2], dtype=bool)
    same = labels > 0
    cut[:, 1:] |= (row_norms(feat[:, 1:] - feat[:, :-1]) > step) & (
        labels[:, 1:] == labels[:, :-1]) & same[:, 1:]
    cut[1:] |= (row_norms(feat[1:] - feat[:-1]) > step) & (
        labels[1:] == labels[:-1]) & same[1:]
    return cut


def _groups(means: np.ndarray, contrast: float) -> np.ndarray:
    """Colour group of each region (single linkage: regions closer than ``contrast`` join)."""
    d = np.sqrt(((means[:, None] - means[None]) ** 2).sum(axis=2))
    return connected_components(d < contrast, directed=False)[1]


def _piece_split(piece: np.ndarray, cut: np.ndarray, feat: np.ndarray,
                 p: ColourSplitParams):
    """Group index (-1: none yet) of each pixel of one piece (a crop: ``piece`` bool mask,
    ``cut`` the colour edges, ``feat`` the colour features), or None when it stays whole."""
    n = int(piece.sum())
    lines = int((piece & cut).sum())
    if lines > p.max_cut * n:
        return None                                   # texture: edges everywhere
    _, regions = cv2.connectedComponents((piece & ~cut).view(np.uint8), connectivity=4)
    ids, counts = np.unique(regions[regions > 0], return_counts=True)
    big = ids[counts >= p.min_pixels]
    if len(big) < 2:
        return None
    sizes = counts[counts >= p.min_pixels]
    if sizes.sum() < (1.0 - p.max_outliers) * (n - lines):
        return None                                   # texture: many small regions
    means, spread = [], []
    for r in big:
        x = feat[regions == r]
        mu = x.mean(axis=0)
        means.append(mu)
        spread.append(float(np.median(np.sqrt(((x - mu) ** 2).sum(axis=1)))))
    if max(spread) > p.max_spread:
        return None
    group = _groups(np.array(means), p.min_contrast)
    if group.max() < 1:
        return None
    outline = piece & ~ndimage.binary_erosion(piece, border_value=0)
    out = np.full(piece.shape, -1, dtype=np.int32)
    for g in range(int(group.max()) + 1):
        mask = np.isin(regions, big[group == g])
        size = int(mask.sum())
        nc, cl, st, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        if st[1:, cv2.CC_STAT_AREA].max() < p.min_contiguous * size:
            return None                               # one colour on both sides of another
        edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
        if size < p.min_share * n and (edge & outline).sum() < p.min_outline * edge.sum():
            return None                               # a small region enclosed: a label
        out[mask] = g
    return out


def edge_map(rgb: np.ndarray, labels: np.ndarray, p: ColourSplitParams
             ) -> tuple[np.ndarray, np.ndarray]:
    """The colour features (h, w, 3) of ``rgb`` (h, w, 3) uint8 and its colour edges within
    the pieces of ``labels``."""
    h, w = labels.shape
    feat = np.zeros((h, w, 3), np.float32)
    cut = np.zeros((h, w), dtype=bool)
    rows, cols = np.nonzero((labels > 0).any(axis=1))[0], np.nonzero((labels > 0).any(axis=0))[0]
    if len(rows) == 0:
        return feat, cut
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))   # the pieces only
    crop = rgb[box]
    feat[box] = colour_features(crop, p.lightness_weight).reshape(crop.shape[:2] + (3,))
    cut[box] = colour_edges(feat[box], p.edge_step, labels[box])
    return feat, cut


def split_at_colour_edges(labels: np.ndarray, rgb: np.ndarray, p: ColourSplitParams,
                          edges: Optional[tuple[np.ndarray, np.ndarray]] = None
                          ) -> np.ndarray:
    """``labels`` (h, w) int32 pieces (0 = none), ``rgb`` (h, w, 3) uint8 on the same grid;
    returns the labels with each piece cut into its colour groups where
    :func:`_piece_split` allows. Pixels on the cut lines and in small regions join the group
    of the nearest large region of their piece. The piece's largest group is the piece; any
    other group that borders another piece of its own colour joins it (a strip of a neighbour
    that the geometry gave to the wrong piece); a sliver (under ``min_share`` of its piece, and
    no disc of ``min_width`` pixels' radius fits in it) that does not stays with its piece's
    largest group: cutting leaves no thin fragment of its own, but a small compact object (a
    ball beside a block) is one. ``edges``: :func:`edge_map` of ``rgb`` when already made."""
    if not p.enabled or not p.edge_cuts or labels.max() == 0:
        return labels
    feat, cut = edges if edges is not None else edge_map(rgb, labels, p)
    out = labels.copy()
    nxt = int(labels.max()) + 1
    cut_off = []                                      # (label, parent's main label, its size)
    for L, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        piece = labels[sl] == L
        n = int(piece.sum())
        if n < 2 * p.min_pixels:
            continue
        group = _piece_split(piece, cut[sl], feat[sl], p)
        if group is None:
            continue
        _, (ri, ci) = ndimage.distance_transform_edt(group < 0, return_indices=True)
        group = group[ri, ci]
        sizes = np.bincount(group[piece])
        main = nxt + int(np.argmax(sizes))
        sub = out[sl]
        for g in range(len(sizes)):
            sub[piece & (group == g)] = nxt
            cut_off.append((nxt, main, n))
            nxt += 1
    for L, main, n in cut_off:
        if L == main or _join_same_colour(out, L, feat, p.min_contrast):
            continue
        region = out == L                   # as it is now, others of its colour joined
        if _sliver(region, n, p):
            out[region] = main
    return out


def _sliver(region: np.ndarray, n: int, p: ColourSplitParams) -> bool:
    """``region`` (h, w bool, as it is now: a group that others of its colour joined is no
    longer the strip it was) is under ``min_share`` of its piece's ``n`` pixels and no disc of
    ``min_width`` pixels' radius fits in it."""
    size = int(region.sum())
    if size == 0 or size >= p.min_share * n:
        return False
    sl = ndimage.find_objects(region.astype(np.int32))[0]
    return bool(ndimage.distance_transform_edt(np.pad(region[sl], 1)).max() < p.min_width)


def _join_same_colour(labels: np.ndarray, L: int, feat: np.ndarray, contrast: float,
                      reach: int = 3) -> bool:
    """Region ``L`` joins a piece of its own colour within ``reach`` pixels (across a cut
    band), in place; True when it did."""
    sl = ndimage.find_objects((labels == L).astype(np.int32))[0]
    grow = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in sl)
    sub = labels[grow]
    mask = sub == L
    ring = ndimage.binary_dilation(mask, iterations=reach) & ~mask & (sub > 0)
    if not ring.any():
        return False
    mu = feat[grow][mask].mean(axis=0)
    best, best_d = None, contrast
    for M in np.unique(sub[ring]):
        d = float(np.sqrt(((feat[labels == M].mean(axis=0) - mu) ** 2).sum()))
        if d < best_d:
            best, best_d = int(M), d
    if best is None:
        return False
    sub[mask] = best
    return True
