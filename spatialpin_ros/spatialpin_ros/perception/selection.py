"""Which pieces are objects: what stands on the support's own extent, is object-sized, is not a
wall, and rests on the support or on another object (or has its base hidden behind one).
Each surviving piece gets its shape fit; each dropped one a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from spatialpin_ros.core.geometry import extent, quantile, rect_from_points, share
from spatialpin_ros.perception.colour_split import ColourSplitParams
from spatialpin_ros.perception.face_join import join_top_faces
from spatialpin_ros.perception.overlap_join import join_overlapping
from spatialpin_ros.perception.pieces import Piece, gather_pieces, merge_nested
from spatialpin_ros.perception.segmentation import SurfaceSegmentation
from spatialpin_ros.perception.shapes import (ShapeFit, ShapeParams, carry_stacked, fit_shape,
                                              resolve_support)
from spatialpin_ros.perception.support import SupportPlane


@dataclass
class SelectionParams:
    """Which pieces are objects (metres)."""

    #: At most this many pieces (the largest) go on to shape fitting: a bound on the cost.
    max_pieces: int = 30
    #: Smallest object: image area at its depth (square metres).
    min_object_area: float = 1.2e-4
    #: Largest object footprint (furniture, walls and monitors are larger).
    max_object_size: float = 0.5
    #: A piece thinner than ``wall_thickness`` and longer than ``wall_length`` (its footprint)
    #: is a wall, a bin's side or a board on edge, not an object.
    wall_thickness: float = 0.015
    wall_length: float = 0.2
    #: An object's lowest point is at most this high above the plane (or on another object).
    rest_tolerance: float = 0.03
    #: An object rests on another only if its lowest visible point is at most this far below
    #: the other's top (deeper, it stands beside it).
    sink_tolerance: float = 0.01
    #: At least this share of its base lies on the plane's extent.
    min_on_extent: float = 0.5
    #: The hidden-base rule looks this far (metres, in the image) below an object's lowest
    #: visible edge for a nearer object.
    occlusion_reach: float = 0.04
    #: A box base seen from one face is grown on its hidden side to hold what stands on it,
    #: plus this margin (metres).
    carry_margin: float = 0.0
    #: Two fitted candidates whose boxes share at least this much of the smaller one's volume
    #: are one object (:mod:`~spatialpin_ros.perception.overlap_join`); 0 turns it off.
    join_share: float = 0.5
    #: Each piece keeps only its core, without thin strips that run from it into a
    #: neighbour (:mod:`~spatialpin_ros.perception.piece_core`; geometric pieces only).
    core_only: bool = True
    #: A box's top face cut off from its sides joins them (:mod:`~spatialpin_ros.perception.
    #: face_join`; geometric pieces only).
    top_faces: bool = True


@dataclass
class Candidate:
    """A piece that passed: its ``label`` in the segmentation, working-grid pixels, fit,
    number of points with depth and the depth noise at its distance (metres)."""

    label: int
    fit: ShapeFit
    rows: np.ndarray
    cols: np.ndarray
    num_points: int
    noise: float


@dataclass
class Selection:
    """The candidates and the dropped pieces as (label, reason, working pixels)."""

    candidates: list[Candidate] = field(default_factory=list)
    dropped: list[tuple[int, str, int]] = field(default_factory=list)


def select_objects(seg: SurfaceSegmentation, sup: SupportPlane, region: np.ndarray,
                   p: SelectionParams, shapes: ShapeParams, rgb: Optional[np.ndarray] = None,
                   colour: Optional[ColourSplitParams] = None,
                   join_overlaps: bool = True,
                   jumps: Optional[tuple[float, float]] = None) -> Selection:
    """Pieces of ``seg`` that are objects, fitted. ``region`` (h, w) bool: the support's extent
    in the image. Merged pieces are relabelled in ``seg.labels`` (the masks follow). With
    ``rgb`` (the working grid's colours) and ``colour``, two uniformly and clearly differently
    coloured pieces are never merged. ``join_overlaps``: candidates filling one space are
    joined, and each piece keeps its core (``SelectionParams.core_only``; geometric pieces: a
    segmenter's masks are kept as they are). ``jumps``: the segmentation's depth-jump
    threshold (``jump_abs``, ``jump_rel``), for joining top faces to their sides
    (``SelectionParams.top_faces``; without it they are not joined)."""
    c = colour or ColourSplitParams()
    pieces = gather_pieces(seg, sup, p.min_object_area, rgb, c.lightness_weight,
                           p.core_only and join_overlaps)
    if len(pieces) > p.max_pieces:                     # clutter or noise: the largest only
        pieces = sorted(pieces, key=lambda pc: -len(pc.Q))[: p.max_pieces]
    pieces, joined = merge_nested(pieces, contrast=c.min_contrast, spread=c.max_spread)
    _relabel(seg, joined)
    if join_overlaps and p.top_faces and jumps is not None:
        pieces, joined = join_top_faces(pieces, seg, *jumps, c.min_contrast)
        _relabel(seg, joined)
    out = Selection()
    camera = np.array([0.0, 0.0, sup.offset])
    kept = []
    for pc in pieces:
        reason = _reject(pc, p)
        if reason:
            out.dropped.append((pc.label, reason, len(pc.rows)))
        else:
            kept.append(pc)

    noise: dict[int, tuple[np.ndarray, float]] = {}

    def noise_of(pc: Piece) -> float:
        """The depth noise at the piece's median depth, once per piece until its pixels change
        (``absorb`` replaces ``rows``; the memo keeps the old array, so its id is not reused)."""
        memo = noise.get(id(pc))
        if memo is None or memo[0] is not pc.rows:
            z = seg.points[pc.rows, pc.cols, 2]
            zmed = float(quantile(z[np.isfinite(z)], 0.5))
            memo = noise[id(pc)] = (pc.rows, sup.noise_k * zmed * zmed)
        return memo[1]

    fits = [fit_shape(pc.Q, noise_of(pc), shapes, camera) for pc in kept]
    if join_overlaps and p.join_share > 0:
        joined = join_overlapping(kept, fits, p.join_share,
                                  lambda pc: fit_shape(pc.Q, noise_of(pc), shapes, camera),
                                  c.min_contrast, c.max_spread)
        if joined:
            remap = np.arange(int(seg.labels.max()) + 1, dtype=np.int32)
            for k, v in joined.items():
                remap[k] = v
            seg.labels = remap[seg.labels]
    out.candidates = [Candidate(pc.label, f, pc.rows, pc.cols, len(pc.Q), noise_of(pc))
                      for pc, f in zip(kept, fits)]
    on_extent = [_on_extent(pc, seg, sup, region, p) for pc in kept]
    out.candidates = settle(out.candidates, on_extent, p,
                            lambda cands, idx: {i for i in idx if bottom_occluded(
                                cands[i], seg, p.occlusion_reach)},
                            lambda c: len(c.rows), out.dropped)
    return out


def _relabel(seg: SurfaceSegmentation, joined: dict[int, int]) -> None:
    """Relabel ``seg.labels`` in place: each joined label {joined: kept} becomes the kept one."""
    if joined:
        remap = np.arange(int(seg.labels.max()) + 1, dtype=np.int32)
        for k, v in joined.items():
            remap[k] = v
        seg.labels = remap[seg.labels]


def settle(cands: list[Candidate], on_extent: list[bool], p: SelectionParams, occluded,
           size, dropped: list) -> list[Candidate]:
    """:func:`select_objects`' last part, shared with the torch lifting: what rests on what
    (:func:`~spatialpin_ros.perception.shapes.resolve_support`), then the candidates kept.
    Floating ones (no support, lowest point above ``rest_tolerance`` plus the noise) whose
    base ``occluded(cands, indices)`` (the set of those hidden behind a nearer object) does
    not excuse, and ones not standing on the support's extent, go to ``dropped`` as (label,
    reason, ``size(candidate)``)."""
    fits = [c.fit for c in cands]
    resolve_support(fits, tol=p.rest_tolerance, sink=p.sink_tolerance)
    floating = {i for i, c in enumerate(cands)
                if c.fit.support is None and c.fit.low > p.rest_tolerance + 3 * c.noise}
    if floating:
        floating -= occluded(cands, floating)
    if floating:
        resolve_support(fits, tol=p.rest_tolerance, only=floating)
    carry_stacked(fits, margin=p.carry_margin)
    keep = []
    for i, c in enumerate(cands):
        if i in floating and c.fit.support is None:
            dropped.append((c.label, "not resting on anything", size(c)))
        elif not _stands_on_extent(i, fits, on_extent):
            dropped.append((c.label, "beyond the support's extent", size(c)))
        else:
            keep.append(c)
    return keep


def _stands_on_extent(i: int, fits: list[ShapeFit], on_extent: list[bool]) -> bool:
    """The object's base is on the support's extent, or it rests on an object that is (an
    object stacked on a block has its base on the block, not on the table)."""
    seen = set()
    while i not in seen:
        if on_extent[i]:
            return True
        seen.add(i)
        if fits[i].support is None:
            return False
        i = fits[i].support
    return False


def _on_extent(pc: Piece, seg: SurfaceSegmentation, sup: SupportPlane, region: np.ndarray,
               p: SelectionParams) -> bool:
    """At least ``min_on_extent`` of the piece's base lies on the support's extent, in the
    plane frame and in the image."""
    Q = pc.Q
    base = Q[Q[:, 2] < quantile(Q[:, 2], 0.02) + 0.02, :2]
    rows, cols = base_pixels(pc, seg)
    on_region = share(region[rows, cols]) if len(rows) else 0.0
    return bool(share(sup.inside(base)) >= p.min_on_extent and on_region >= p.min_on_extent)


def _reject(pc: Piece, p: SelectionParams) -> str:
    """Why the piece cannot be an object whatever it rests on ("" when it may be one)."""
    Q = pc.Q
    if extent(Q[:, :2]) > p.max_object_size:
        return "too large (furniture, a wall)"
    thin = rect_from_points(Q[:: max(1, len(Q) // 400), :2])[1]
    if min(thin) < p.wall_thickness and max(thin) > p.wall_length:
        return "a wall (thin, long, upright)"
    return ""


def base_pixels(pc: Piece, seg: SurfaceSegmentation) -> tuple[np.ndarray, np.ndarray]:
    """Working pixels of the piece's lowest visible band (its base)."""
    h = seg.height[pc.rows, pc.cols]
    ok = np.isfinite(h)
    if not ok.any():
        return pc.rows, pc.cols
    sel = ok & (h < quantile(h[ok], 0.02) + 0.02)
    return pc.rows[sel], pc.cols[sel]


def bottom_occluded(c: Candidate, seg: SurfaceSegmentation, reach: float = 0.04,
                    min_share: float = 0.5) -> bool:
    """True when the object's lowest visible edge is hidden behind a nearer object: below most
    of its bottom pixels (within ``reach`` metres in the image, across the cut band between
    them) lies another object, nearer the camera. Its base is then not seen and it may stand on
    the table behind."""
    lab, z = seg.labels, seg.points[..., 2]
    h = lab.shape[0]
    zc = quantile(np.nan_to_num(z[c.rows, c.cols], nan=1.0), 0.5)
    steps = int(np.clip(reach * seg.focal / max(zc, 0.1), 3, 40))
    cols = np.unique(c.cols)
    bottom = np.full(lab.shape[1], -1)
    np.maximum.at(bottom, c.cols, c.rows)
    rb = bottom[cols]
    hidden = np.zeros(len(cols), dtype=bool)
    zb = z[rb, cols]
    zb = np.where(np.isfinite(zb), zb, zc)      # the edge's own depth is often missing
    for dr in range(1, steps + 1):
        r = np.minimum(rb + dr, h - 1)
        other = (lab[r, cols] > 0) & (lab[r, cols] != c.label)
        nearer = np.nan_to_num(z[r, cols], nan=np.inf) < zb - 0.01
        hidden |= other & nearer
    return bool(share(hidden) >= min_share)
