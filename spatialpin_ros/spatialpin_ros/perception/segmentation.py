"""Stage 2 of geometric perception: what stands on the support, cut into objects by geometry.

Convexity-based segmentation in the spirit of LCCP (Stein et al., "Object Partitioning using
Local Convexity", CVPR 2014), on the depth image at a working resolution:

1. **Foreground**: pixels higher than the depth noise above the support plane (and below
   ``max_height``).
2. **Cuts**: the surface is cut where depth jumps (an occluding edge, found at full resolution
   so that narrow gaps survive the downsampling) and where it folds concavely: the local
   convexity of two points ``k`` pixels apart on either side, ``(n1 - n2) . (x1 - x2) / |x1 -
   x2|``, is below ``-crease``. Convex edges (the corners of one box, a can's rim) and smooth
   surfaces (printed labels, logos, texture: colour is not used) never cut. A concave fold is
   where one object meets another: a box on a box, a banana against a block.
3. **Pieces**: 4-connected components of the uncut foreground; pixels on a cut and pieces too
   small to be an object join the nearest piece at a consistent depth.

Returns a label image at the working resolution; the caller turns labels into objects.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.geometry import quantile, row_norms
from scipy import ndimage

from spatialpin_ros.perception.orphan_home import (OrphanHomeParams,
                                                   attach_orphans as _attach_orphans)
from spatialpin_ros.perception.support import SupportPlane
from spatialpin_ros.perception.surface_ops import (box_mean, concave_folds, depth_jumps,
                                                  patch_borders, pool_any, surface_normals)


@dataclass
class SegmentationParams:
    """Geometric segmentation (metres, pixels of the working resolution)."""

    #: Working resolution: every ``stride``-th pixel; 0 = the largest stride (up to
    #: ``max_stride``) whose pixels are at most ``working_pixel`` metres wide on the objects.
    stride: int = 0
    working_pixel: float = 0.0035
    max_work_pixels: int = 20000
    max_stride: int = 6
    #: Foreground: higher than max(min_height, noise_sigmas * sigma(z)) above the plane.
    min_height: float = 0.006
    noise_sigmas: float = 3.5
    max_height: float = 0.45
    #: Hysteresis: pixels above max(min_height_low, noise_sigmas_low * sigma(z)) join the
    #: foreground next to it (the base band of an object).
    min_height_low: float = 0.003
    noise_sigmas_low: float = 2.0
    #: Depth jump between neighbouring full-resolution pixels: abs + rel * z (metres).
    jump_abs: float = 0.006
    jump_rel: float = 0.015
    #: Normals from points averaged over a square this wide (metres at the foreground's median
    #: depth, so that the scale is the same for any camera and resolution).
    normal_window: float = 0.012
    #: Convexity baseline (metres each side) and the concave fold that cuts.
    crease_baseline: float = 0.012
    crease: float = 0.15
    #: Pieces meeting along a boundary whose mean convexity is above ``-merge_concavity`` merge.
    merge_concavity: float = 0.1
    #: Shortest shared boundary (working pixel pairs) that can merge two pieces.
    min_boundary: int = 3
    #: Bridges up to about 2 * bridge_width wide (metres) between pieces (where a fold fades out
    #: at its ends) are broken before the pieces are found; the pixels rejoin their nearest piece.
    bridge_width: float = 0.0045
    #: Pieces smaller than this (square metres at their depth) are absorbed by neighbours or
    #: dropped.
    min_piece_area: float = 1.5e-4
    #: Patches without depth mostly surrounded by one piece join it (dark or shiny parts).
    fill_missing: bool = True
    #: Cut pixels join a piece within this many working pixels beyond the baseline.
    absorb_margin: float = 2.0
    #: A leftover patch joins a piece it lies within seen from above before the one it shares
    #: the longest jump-free boundary with (:mod:`~spatialpin_ros.perception.orphan_home`).
    orphan_footprint: bool = True
    #: A leftover patch of at least this many times the smallest piece that borders no piece
    #: without a depth jump and lies within none is a piece of its own (the band of an object
    #: seen behind another); 0: it stays out (``orphan_home.OrphanHomeParams.own``).
    orphan_own: float = 4.0
    #: A leftover patch with this share of its pixels on concave folds joins no piece by its
    #: boundary alone (``orphan_home.OrphanHomeParams.dish``); 0: off.
    orphan_dish: float = 0.5


@dataclass
class SurfaceSegmentation:
    """Working-resolution segmentation of one frame.

    ``labels`` (h, w) int32: 0 = not an object pixel, 1..n = piece. ``points`` (h, w, 3): optical-
    frame points (NaN where depth is missing). ``height`` (h, w): metres above the support
    plane (NaN where missing). ``normals`` (h, w, 3): unit normals facing the camera.
    ``foreground`` (h, w) bool. ``stride``: working pixel (r, c) is image pixel (r*stride,
    c*stride); ``focal``: the working grid's focal length (pixels).
    """

    labels: np.ndarray
    num_labels: int
    points: np.ndarray
    height: np.ndarray
    normals: np.ndarray
    foreground: np.ndarray
    stride: int
    focal: float = 0.0

    def metric_pixel(self) -> float:
        """Metres per working pixel at the foreground's median depth (1 mm without one)."""
        return metric_pixel(self.points[..., 2], self.foreground, self.focal)


def metric_pixel(z: np.ndarray, fg: np.ndarray, focal: float) -> float:
    """Metres per working pixel at the median depth ``z`` (metres; NaN or 0 where missing) of
    the pixels ``fg``, for a grid of focal length ``focal`` (pixels); 1 mm without any."""
    zz = z[fg]
    zz = zz[np.isfinite(zz) & (zz > 0)]
    return float(quantile(zz, 0.5)) / max(focal, 1e-6) if len(zz) else 1e-3


def depth_jumps_work(z: np.ndarray, p: SegmentationParams, stride: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Jumps between working-grid neighbours along x and along y: ((h, w-1), (h-1, w)) bool."""
    thr = p.jump_abs * stride + p.jump_rel * z
    jx = np.abs(z[:, 1:] - z[:, :-1]) > np.maximum(thr[:, 1:], thr[:, :-1])
    jy = np.abs(z[1:] - z[:-1]) > np.maximum(thr[1:], thr[:-1])
    return jx, jy


def _merge_convex(lab: np.ndarray, n: int, Ps: np.ndarray, N: np.ndarray, jumps, k: int,
                  p: SegmentationParams) -> np.ndarray:
    """Merge neighbouring pieces whose shared boundary is convex on average (LCCP's criterion,
    averaged along the boundary): for each boundary pixel pair, the convexity of the points
    ``k`` pixels back on either side."""
    h, w = lab.shape
    keys, vals = [], []
    for axis, jump in ((1, jumps[0]), (0, jumps[1])):
        if axis == 1:
            la, lb = lab[:, :-1], lab[:, 1:]
        else:
            la, lb = lab[:-1], lab[1:]
        sel = (la > 0) & (lb > 0) & (la != lb) & ~jump
        r, c = np.nonzero(sel)
        if len(r) == 0:
            continue
        if axis == 1:
            ra, ca, rb, cb = r, np.maximum(c - k, 0), r, np.minimum(c + 1 + k, w - 1)
        else:
            ra, ca, rb, cb = np.maximum(r - k, 0), c, np.minimum(r + 1 + k, h - 1), c
        d = Ps[rb, cb] - Ps[ra, ca]
        conv = np.einsum("ij,ij->i", N[rb, cb] - N[ra, ca], d) / np.maximum(
            row_norms(d), 1e-9)
        a, b = la[r, c], lb[r, c]
        keys.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
        vals.append(conv)
    if not keys:
        return lab
    key = np.concatenate(keys)
    val = np.concatenate(vals)
    uk, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    mean = np.bincount(inv, weights=np.clip(val, -1, 1)) / cnt
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i in np.argsort(-mean):
        if mean[i] < -p.merge_concavity:
            break
        if cnt[i] < p.min_boundary:
            continue
        a, b = find(int(uk[i] // n)), find(int(uk[i] % n))
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = np.array([find(x) for x in range(n)])
    return roots[lab]


def _components(core: np.ndarray, bridge: int) -> tuple[int, np.ndarray]:
    """4-connected pieces of ``core`` after breaking bridges up to ``2 * bridge`` pixels wide
    (erosion); a thin part that erosion removes whole (a pen, a handle) keeps its own label
    rather than vanishing. Returns (number of labels incl. 0, labels)."""
    if bridge <= 0:
        return cv2.connectedComponents(core.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    eroded = cv2.erode(core.view(np.uint8), np.ones((3, 3), np.uint8), iterations=bridge)
    n, lab = cv2.connectedComponents(eroded, connectivity=4, ltype=cv2.CV_32S)
    m, whole = cv2.connectedComponents(core.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    survived = np.zeros(m, dtype=bool)
    survived[whole[lab > 0]] = True
    thin = ~survived
    thin[0] = False
    if thin.any():
        ids = np.zeros(m, dtype=np.int32)
        ids[thin] = np.arange(n, n + int(thin.sum()), dtype=np.int32)
        sel = thin[whole]
        lab[sel] = ids[whole[sel]]
        n += int(thin.sum())
    return n, lab


def _fill_missing_depth(lab: np.ndarray, valid: np.ndarray, fg: np.ndarray,
                        min_share: float = 0.6) -> None:
    """Pixels without depth (dark, shiny or black parts of an object) join the piece that
    surrounds them: each connected patch of missing depth whose boundary touches one piece for
    at least ``min_share`` of its length (and is no larger than that piece) becomes part of it.
    Shadows beside an object border the table as much as the object and stay out. In place."""
    miss = ~valid
    if not miss.any() or lab.max() == 0:
        return
    m, comp, stats, _ = cv2.connectedComponentsWithStats(miss.view(np.uint8), connectivity=4)
    h, w = lab.shape
    key, nl = patch_borders(comp, miss, lab)        # boundary of each missing patch
    total = np.bincount(key, minlength=m)
    if not (nl > 0).any():
        return
    L = int(lab.max()) + 1
    pair = np.bincount(key[nl > 0] * L + nl[nl > 0], minlength=m * L).reshape(m, L)
    best = pair.argmax(axis=1)
    share = pair.max(axis=1) / np.maximum(total, 1)
    size = np.bincount(lab.ravel(), minlength=L)
    ok = (share >= min_share) & (stats[:, cv2.CC_STAT_AREA] <= size[best])
    ok[0] = False
    # patches touching the crop's border may be the image's or the table's edge: leave them
    x, y, ww, hh = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    ok &= (x > 0) & (y > 0) & (x + ww < w) & (y + hh < h)
    if ok.any():
        sel = ok[comp]
        lab[sel] = best[comp[sel]]


def working_stride(focal: float, distance: float, params: SegmentationParams,
                   area: float = 0.0) -> int:
    """The working grid's stride: ``stride`` when set, else the largest whose pixels are at
    most ``working_pixel`` metres wide at ``distance`` (metres) for a camera of focal length
    ``focal`` (pixels), so the detail is the same for any camera, resolution and distance; and
    at least the one that keeps the objects' image area (``area``, full-resolution pixels) under
    ``max_work_pixels`` working pixels, so the cost is bounded."""
    if params.stride > 0:
        return params.stride
    s = math.floor(params.working_pixel * focal / max(distance, 0.05))
    s = max(s, math.ceil(math.sqrt(area / params.max_work_pixels)))
    return int(np.clip(s, 1, params.max_stride))


def plane_heights(points: np.ndarray, support: SupportPlane) -> np.ndarray:
    """The heights (h, w) float32 of ``points`` (h, w, 3; NaN read as 0) above ``support``, as
    x * nx + y * ny + z * nz in float32, each product and sum rounded in this order: the torch
    prepare (``prepare_torch.grid_masks``) does the same ops, so both give the same bits (a
    BLAS matrix product's summation order and fused multiply-adds depend on the CPU)."""
    q = np.nan_to_num(points) - support.origin.astype(np.float32)
    n = support.normal.astype(np.float32)
    return q[..., 0] * n[0] + q[..., 1] * n[1] + q[..., 2] * n[2]


def foreground_surfaces(points: np.ndarray, support: SupportPlane, params: SegmentationParams,
                        focal: float, stride: int) -> SurfaceSegmentation:
    """What rises above ``support`` (step 1 alone): heights and the foreground with its
    hysteresis band, no pieces (``labels`` all 0). The masks path needs only this: its pieces
    come from the masks. ``points`` (h, w, 3): the working grid's optical-frame points (NaN where
    missing)."""
    p = params
    h, w = points.shape[:2]
    valid = np.isfinite(points[..., 2])
    z_all = np.where(valid, points[..., 2], 0.0).astype(np.float32, copy=False)
    height = np.where(valid, plane_heights(points, support), np.nan).astype(np.float32,
                                                                           copy=False)
    hmin = np.maximum(p.min_height, p.noise_sigmas * support.noise_k * z_all * z_all)
    fg_all = valid & (height > hmin) & (height < p.max_height)
    # hysteresis: lower pixels beside the foreground (an object's base band) belong to it
    low = valid & (height > np.maximum(p.min_height_low, p.noise_sigmas_low * support.noise_k
                                       * z_all * z_all)) & (height < p.max_height)
    near = cv2.dilate(fg_all.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
    fg_all |= low & near
    return SurfaceSegmentation(labels=np.zeros((h, w), dtype=np.int32), num_labels=0,
                               points=points, height=height,
                               normals=np.zeros((h, w, 3), dtype=np.float32),
                               foreground=fg_all, stride=stride, focal=focal)


def labels_from_masks(fg: SurfaceSegmentation, masks) -> SurfaceSegmentation:
    """Pieces from full-resolution masks (first mask wins) on ``fg``'s working grid, inside its
    foreground."""
    s = fg.stride
    lab = np.zeros(fg.labels.shape, dtype=np.int32)
    for i, mk in enumerate(masks):
        m = np.asarray(mk, dtype=bool)[::s, ::s][: lab.shape[0], : lab.shape[1]]
        lab[m & (lab == 0) & fg.foreground] = i + 1
    return dataclasses.replace(fg, labels=lab, num_labels=len(masks))


def segment_surfaces(depth: np.ndarray, points: np.ndarray, support: SupportPlane,
                     params: SegmentationParams, focal: float, stride: int,
                     base: Optional[SurfaceSegmentation] = None) -> SurfaceSegmentation:
    """Cut what stands on ``support`` into convex pieces.

    ``depth`` (H, W) float32 metres (0 = missing), full resolution; ``points`` (h, w, 3) the
    optical-frame points of the working grid (NaN where missing), ``stride`` its stride and
    ``focal`` its focal length (pixels); ``base``: this frame's :func:`foreground_surfaces`
    when already computed. The work is done on the foreground's bounding box."""
    p = params
    s = stride
    h, w = points.shape[:2]
    fgs = base if base is not None else foreground_surfaces(points, support, p, focal, s)
    height, fg_all = fgs.height, fgs.foreground
    valid = np.isfinite(points[..., 2])
    z_all = np.where(valid, points[..., 2], 0.0).astype(np.float32, copy=False)
    labels = np.zeros((h, w), dtype=np.int32)
    normals = np.zeros((h, w, 3), dtype=np.float32)
    if not fg_all.any():
        return SurfaceSegmentation(labels=labels, num_labels=0, points=points, height=height,
                                   normals=normals, foreground=fg_all, stride=s, focal=focal)
    px = metric_pixel(z_all, fg_all, focal)           # metres per working pixel
    radius = int(np.clip(round(p.normal_window / 2 / px), 1, 8))
    k = int(np.clip(round(p.crease_baseline / px), 2, 12))
    solid = cv2.morphologyEx(fg_all.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if not solid.any():                   # only speckles (noise) rise above the plane
        return SurfaceSegmentation(labels=labels, num_labels=0, points=points, height=height,
                                   normals=normals, foreground=fg_all, stride=s, focal=focal)
    rows, cols = np.nonzero(solid.any(axis=1))[0], np.nonzero(solid.any(axis=0))[0]
    m = k + radius + 2
    r0, r1 = max(int(rows[0]) - m, 0), min(int(rows[-1]) + m + 1, h)
    c0, c1 = max(int(cols[0]) - m, 0), min(int(cols[-1]) + m + 1, w)
    crop = (slice(r0, r1), slice(c0, c1))
    v, fg, z = valid[crop], fg_all[crop], z_all[crop]
    P0 = np.where(v[..., None], points[crop], 0.0).astype(np.float32, copy=False)
    Ps = box_mean(P0, fg, radius)      # the table must not bend the normals at a base
    N = surface_normals(Ps)
    j = s // 2 if s % 2 == 0 else 1     # jumps at twice the working resolution: gaps survive
    cut = pool_any(depth_jumps(depth[r0 * s:r1 * s:j, c0 * s:c1 * s:j], p.jump_abs * j,
                                p.jump_rel), s // j, fg.shape)
    folds = concave_folds(Ps, N, fg, k, p.crease)
    cut |= folds
    core = fg & ~cut
    bridge = int(np.clip(round(p.bridge_width / px), 0, 3))
    n, lab = _components(core, bridge)
    if n > 1:
        counts = np.bincount(lab.ravel(), minlength=n)
        small = counts < max(4, p.min_piece_area / (px * px))
        small[0] = False
        lab[small[lab]] = 0
        # unlabelled foreground joins the nearest piece when close in the image and in depth
        free = fg & (lab == 0)
        if free.any() and (lab > 0).any():
            dist, (ri, ci) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
            rr, cc = np.nonzero(free)
            src_r, src_c = ri[rr, cc], ci[rr, cc]
            dz = np.abs(z[rr, cc] - z[src_r, src_c])
            ok = (dist[rr, cc] <= k + bridge + p.absorb_margin) & (
                dz < 2 * (p.jump_abs * s + p.jump_rel * z[rr, cc]))
            lab[rr[ok], cc[ok]] = lab[src_r[ok], src_c[ok]]
        jumps = depth_jumps_work(z, p, s)
        lab = _merge_convex(lab, n, Ps, N, jumps, k, p)
        _attach_orphans(lab, fg & v & (lab == 0), jumps, max(4, p.min_piece_area / (px * px)),
                        (lambda m: support.to_plane(points[crop][m])) if p.orphan_footprint
                        else None, OrphanHomeParams(own=p.orphan_own, dish=p.orphan_dish),
                        folds=folds)
        used = np.flatnonzero(np.bincount(lab.ravel()))     # the labels in use, sorted
        used = used[used > 0]
        remap = np.zeros(int(lab.max()) + 1, dtype=np.int32)
        remap[used] = np.arange(1, len(used) + 1, dtype=np.int32)
        lab = remap[lab]
        n = len(used) + 1
        if p.fill_missing:
            _fill_missing_depth(lab, v, fg)
    labels[crop] = lab
    normals[crop] = N
    return SurfaceSegmentation(labels=labels, num_labels=n - 1, points=points, height=height,
                               normals=normals, foreground=fg_all, stride=s, focal=focal)
