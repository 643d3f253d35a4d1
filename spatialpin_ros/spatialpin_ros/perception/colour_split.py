"""Where geometry cannot tell two objects apart, colour may: a geometric piece made of two large,
uniformly coloured, clearly different and each contiguous regions (two flat-coloured blocks
pushed together with flush faces) is split in two.

Texture, printed labels and logos never split a piece: their regions are not uniform, not
contiguous, or too small. Colour proposes; the regions' own uniformity and shape decide. This
runs after the convexity segmentation, on each of its pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.geometry import last_axis_sum, quantile


@dataclass
class ColourSplitParams:
    """Colour split of a geometric piece, in shading-tolerant units: rg chromaticity x 300 and
    L* x ``lightness_weight``. ``enabled`` False keeps pieces whole."""

    enabled: bool = True
    lightness_weight: float = 0.2
    #: The two regions' colours differ by at least this much...
    min_contrast: float = 25.0
    #: ...each is uniform (median distance to its own colour below this)...
    max_spread: float = 10.0
    #: ...holds at least this share of the piece and ``min_pixels`` working pixels...
    min_share: float = 0.12
    min_pixels: int = 25
    #: ...and is one contiguous region (its largest part holds this share of it).
    min_contiguous: float = 0.85
    #: Splits per piece at most (a piece of three blocks needs two).
    max_splits: int = 3
    #: Pixels farther than ``outlier_spread`` x ``max_spread`` from every region's colour (a
    #: shadow line, a neighbour's edge) may be up to this share of the piece; they do not count
    #: toward a region's uniformity and join the nearest region.
    max_outliers: float = 0.1
    outlier_spread: float = 3.0
    #: Cuts along colour edges (:mod:`~spatialpin_ros.perception.colour_regions`): neighbouring
    #: pixels whose colours differ by more than ``edge_step`` are cut apart; a region smaller
    #: than ``min_share`` of its piece splits off only when at least ``min_outline`` of its
    #: border is the piece's outline (a label inside an object never does). A piece whose cut
    #: lines hold more than ``max_cut`` of its pixels is textured and stays whole.
    edge_cuts: bool = True
    max_cut: float = 0.15
    #: A cut-off group under ``min_share`` into which no disc of this radius (working pixels)
    #: fits is a sliver of a neighbour, not an object.
    min_width: float = 3.0
    edge_step: float = 12.0
    min_outline: float = 0.3


def colour_features(rgb: np.ndarray, w: float) -> np.ndarray:
    """Shading-tolerant colour features (N, 3): rg chromaticity (x 300, so that 0.1 of
    chromaticity is 30 units; dark pixels pulled to neutral) and luma (0-100) x ``w``."""
    x = rgb.reshape(-1, 3).astype(np.float32)
    s = last_axis_sum(x)[:, None] + 45.0
    luma = x @ np.array([[0.299], [0.587], [0.114]], np.float32) / 2.55   # 0..100, like L*
    wl = w * luma
    out = np.empty((len(x), 3), np.result_type(x, wl))        # np.concatenate's, filled
    # (c + 15) / (sum + 45): dark pixels, whose chromaticity is noise, tend to neutral grey
    np.divide(300.0 * (x[:, :2] + 15.0), s, out=out[:, :2])
    out[:, 2:] = wl
    return out


def _try_split(rows, cols, rgb, p: ColourSplitParams):
    """Region index (0..k-1) of each pixel for the first k in (2, 3) that splits the piece into
    uniform, distinct, contiguous regions; None when none does. The tests run on a sample of
    the piece's pixels first; all pixels are only labelled when the sample allows a split."""
    n = len(rows)
    step = max(1, n // 400)
    sample = colour_features(rgb[rows[::step], cols[::step]], p.lightness_weight)
    dev = sample - sample.mean(axis=0)
    if np.sqrt(np.einsum("ni,ni->n", dev, dev)).mean() < p.min_contrast / 4:
        return None                                   # one colour: nothing to split
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 0.5)
    for k in (2, 3):
        if n < k * p.min_pixels or len(sample) < 4 * k:
            return None
        _, _, centres = cv2.kmeans(sample, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
        for cand in (centres, _without_minor(sample, centres, p)):
            if cand is None or not _plausible(sample, cand, p):
                continue
            which = _regions(rows, cols, colour_features(rgb[rows, cols], p.lightness_weight),
                             cand, p)
            if which is not None:
                return which
    return None


def _assign(x: np.ndarray, centres: np.ndarray, p: ColourSplitParams):
    """Nearest centre of each feature row, its distance, and whether it is an inlier; None
    when the outliers are too many."""
    diff = x[:, None, :] - centres[None]
    d = np.sqrt(np.einsum("nki,nki->nk", diff, diff))
    which = np.argmin(d, axis=1)
    dmin = d[np.arange(len(x)), which]
    inl = dmin <= p.outlier_spread * p.max_spread
    if inl.mean() < 1.0 - p.max_outliers:
        return None
    return which, dmin, inl


def _without_minor(sample: np.ndarray, centres: np.ndarray, p: ColourSplitParams):
    """Of three colour clusters, the two that each hold ``min_share`` when the third is a
    minor one (an edge, a shadow line), re-centred on their members; else None."""
    if len(centres) != 3:
        return None
    diff = sample[:, None, :] - centres[None]
    which = np.argmin(np.einsum("nki,nki->nk", diff, diff), axis=1)
    share = np.bincount(which, minlength=3) / len(sample)
    minor = int(np.argmin(share))
    if share[minor] >= p.min_share or share[minor] > p.max_outliers:
        return None
    keep = [j for j in range(3) if j != minor]
    return np.stack([sample[which == j].mean(axis=0) for j in keep]).astype(np.float32)


def _plausible(sample: np.ndarray, centres: np.ndarray, p: ColourSplitParams) -> bool:
    """The cheap tests of :func:`_regions` on the sample only."""
    k = len(centres)
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(axis=2))[np.triu_indices(k, 1)]
    if gaps.min() < p.min_contrast:
        return False
    got = _assign(sample, centres, p)
    if got is None:
        return False
    which, d, inl = got
    for j in range(k):
        sel = (which == j) & inl
        if sel.mean() < p.min_share or quantile(d[sel], 0.5) > p.max_spread:
            return False
    return True


def _regions(rows, cols, lab, centres, p: ColourSplitParams):
    k = len(centres)
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(axis=2))[np.triu_indices(k, 1)]
    if gaps.min() < p.min_contrast:
        return None
    n = len(rows)
    got = _assign(lab, centres, p)
    if got is None:
        return None
    which, d, inl = got
    for j in range(k):
        core = (which == j) & inl
        if core.sum() < max(p.min_pixels, p.min_share * n):
            return None
        if quantile(d[core], 0.5) > p.max_spread:
            return None
        r0, c0 = rows.min(), cols.min()
        m = np.zeros((rows.max() - r0 + 1, cols.max() - c0 + 1), np.uint8)
        m[rows[core] - r0, cols[core] - c0] = 1
        nc, cl, st, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
        if nc <= 1 or st[1:, cv2.CC_STAT_AREA].max() < p.min_contiguous * core.sum():
            return None
    return which


def split_by_colour(labels: np.ndarray, rgb: np.ndarray, p: ColourSplitParams,
                    edges: Optional[np.ndarray] = None) -> np.ndarray:
    """``labels`` (h, w) int32 pieces (0 = none), ``rgb`` (h, w, 3) uint8 on the same grid;
    returns the labels with pieces split where :func:`_try_split` allows. ``edges`` (h, w)
    bool, the colour edges (:func:`~spatialpin_ros.perception.colour_regions.colour_edges`):
    a piece with more than ``max_cut`` of its pixels on them is textured and is not tried
    (it has no uniform regions to split into)."""
    if not p.enabled or labels.max() == 0:
        return labels
    out = labels.copy()
    nxt = int(labels.max()) + 1
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat)
    starts = np.concatenate([[0], np.cumsum(counts)])
    w = labels.shape[1]
    todo = []
    busy = (np.bincount(flat, weights=edges.ravel(), minlength=len(counts)) / np.maximum(counts, 1)
            if edges is not None else np.zeros(len(counts)))
    for L in range(1, len(counts)):
        if counts[L] >= 2 * p.min_pixels and busy[L] <= p.max_cut:
            idx = order[starts[L]:starts[L + 1]]
            todo.append((idx // w, idx % w, p.max_splits))
    while todo:
        r, c, left = todo.pop()
        which = _try_split(r, c, rgb, p)
        if which is None:
            continue
        for k in range(1, int(which.max()) + 1):
            sel = which == k
            out[r[sel], c[sel]] = nxt
            nxt += 1
        if left > 1:
            for k in range(int(which.max()) + 1):
                sel = which == k
                todo.append((r[sel], c[sel], left - 1))
    return out
