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

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from spatialpin_ros.perception.support import SupportPlane


@dataclass
class SegmentationParams:
    """Geometric segmentation (metres, pixels of the working resolution)."""

    #: Working resolution: every ``stride``-th pixel.
    stride: int = 2
    #: Foreground: higher than max(min_height, noise_sigmas * sigma(z)) above the plane.
    min_height: float = 0.006
    noise_sigmas: float = 3.5
    max_height: float = 0.45
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
    #: Pieces smaller than this (working pixels) are absorbed by neighbours or dropped.
    min_piece_px: int = 30
    #: Cut pixels join a piece within this many working pixels beyond the baseline.
    absorb_margin: float = 2.0


@dataclass
class SurfaceSegmentation:
    """Working-resolution segmentation of one frame.

    ``labels`` (h, w) int32: 0 = not an object pixel, 1..n = piece. ``points`` (h, w, 3): optical-
    frame points (NaN where depth is missing). ``height`` (h, w): metres above the support
    plane (NaN where missing). ``normals`` (h, w, 3): unit normals facing the camera.
    ``foreground`` (h, w) bool. ``stride``: working pixel (r, c) is image pixel (r*stride,
    c*stride).
    """

    labels: np.ndarray
    num_labels: int
    points: np.ndarray
    height: np.ndarray
    normals: np.ndarray
    foreground: np.ndarray
    stride: int


def depth_jumps(depth: np.ndarray, jump_abs: float, jump_rel: float) -> np.ndarray:
    """(H, W) bool: full-resolution pixels beside a depth jump to a valid neighbour (both
    sides marked). ``depth`` in metres, 0 where missing."""
    z = depth
    thr = jump_abs + jump_rel * z
    out = np.zeros(z.shape, dtype=bool)
    for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                 ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        za, zb = z[a], z[b]
        j = (za > 0) & (zb > 0) & (np.abs(za - zb) > np.maximum(thr[a], thr[b]))
        out[a] |= j
        out[b] |= j
    return out


def _pool_any(mask: np.ndarray, s: int, shape: tuple[int, int]) -> np.ndarray:
    """Any-pooling of a full-resolution mask onto the working grid."""
    if s == 1:
        return mask
    h, w = shape
    m = mask[: h * s, : w * s]
    if m.shape != (h * s, w * s):
        m = np.pad(m, ((0, h * s - m.shape[0]), (0, w * s - m.shape[1])))
    return m.reshape(h, s, w, s).any(axis=(1, 3))


def _box_mean(P: np.ndarray, valid: np.ndarray, r: int) -> np.ndarray:
    k = (2 * r + 1, 2 * r + 1)
    w = cv2.boxFilter(valid.astype(np.float32), -1, k, normalize=False,
                      borderType=cv2.BORDER_CONSTANT)
    out = np.empty_like(P)
    for i in range(3):
        out[..., i] = cv2.boxFilter(np.where(valid, P[..., i], 0).astype(np.float32), -1, k,
                                    normalize=False, borderType=cv2.BORDER_CONSTANT)
    return out / np.maximum(w, 1e-6)[..., None]


def _normals(Ps: np.ndarray) -> np.ndarray:
    """Unit normals of a smoothed organised cloud, facing the camera (n . p < 0)."""
    dx = np.zeros_like(Ps)
    dy = np.zeros_like(Ps)
    dx[:, 1:-1] = Ps[:, 2:] - Ps[:, :-2]
    dy[1:-1] = Ps[2:] - Ps[:-2]
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    n = n / np.maximum(norm, 1e-12)
    flip = np.einsum("hwi,hwi->hw", n, Ps) > 0
    n[flip] *= -1
    return n


def _concave(Ps: np.ndarray, N: np.ndarray, ok: np.ndarray, k: int, crease: float) -> np.ndarray:
    """(h, w) bool: pixels where the surface folds concavely across x or y (baseline k)."""
    out = np.zeros(ok.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        c = [slice(None)] * 2
        a[axis], b[axis], c[axis] = slice(None, -2 * k), slice(2 * k, None), slice(k, -k)
        a, b, c = tuple(a), tuple(b), tuple(c)
        d = Ps[b] - Ps[a]
        dn = np.linalg.norm(d, axis=2)
        conv = np.einsum("hwi,hwi->hw", N[b] - N[a], d) / np.maximum(dn, 1e-9)
        both = ok[a] & ok[b]
        out[c] |= both & (conv < -crease)
    return out


def depth_jumps_work(z: np.ndarray, p: SegmentationParams) -> tuple[np.ndarray, np.ndarray]:
    """Jumps between working-grid neighbours along x and along y: ((h, w-1), (h-1, w)) bool."""
    thr = p.jump_abs * p.stride + p.jump_rel * z
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
            np.linalg.norm(d, axis=1), 1e-9)
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
    import os
    if os.environ.get("SEGDBG"):
        for i in range(len(uk)):
            print("pair", uk[i] // n, uk[i] % n, cnt[i], round(float(mean[i]), 3))
        np.save("/tmp/proto/lab_pre.npy", lab)

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


def segment_surfaces(depth: np.ndarray, points: np.ndarray, support: SupportPlane,
                     params: SegmentationParams, focal: float) -> SurfaceSegmentation:
    """Cut what stands on ``support`` into convex pieces.

    ``depth`` (H, W) float32 metres (0 = missing), full resolution; ``points`` (h, w, 3) the
    optical-frame points of the working grid (NaN where missing); ``focal``: the working grid's
    focal length (pixels)."""
    p = params
    s = p.stride
    h, w = points.shape[:2]
    valid = np.isfinite(points[..., 2])
    P0 = np.where(valid[..., None], points, 0.0).astype(np.float32)
    z = P0[..., 2]
    height = np.where(valid, (P0 - support.origin.astype(np.float32)) @
                      support.normal.astype(np.float32), np.nan)
    hmin = np.maximum(p.min_height, p.noise_sigmas * support.noise_k * z * z)
    fg = valid & (height > hmin) & (height < p.max_height)
    zf = float(np.median(z[fg])) if fg.any() else 1.0
    px = zf / focal                                   # metres per working pixel
    radius = int(np.clip(round(p.normal_window / 2 / px), 1, 8))
    k = int(np.clip(round(p.crease_baseline / px), 2, 12))
    Ps = _box_mean(P0, valid, radius)
    N = _normals(Ps)
    cut = _pool_any(depth_jumps(depth, p.jump_abs, p.jump_rel), s, (h, w))
    cut |= _concave(Ps, N, fg, k, p.crease)
    core = fg & ~cut
    n, lab = cv2.connectedComponents(core.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n > 1:
        counts = np.bincount(lab.ravel(), minlength=n)
        small = counts < p.min_piece_px
        small[0] = False
        lab[small[lab]] = 0
        # unlabelled foreground joins the nearest piece when close in the image and in depth
        free = fg & (lab == 0)
        if free.any() and (lab > 0).any():
            dist, (ri, ci) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
            rr, cc = np.nonzero(free)
            src_r, src_c = ri[rr, cc], ci[rr, cc]
            dz = np.abs(z[rr, cc] - z[src_r, src_c])
            ok = (dist[rr, cc] <= k + p.absorb_margin) & (
                dz < 2 * (p.jump_abs + p.jump_rel * z[rr, cc]))
            lab[rr[ok], cc[ok]] = lab[src_r[ok], src_c[ok]]
        lab = _merge_convex(lab, n, Ps, N, depth_jumps_work(z, p), k, p)
        # renumber 1..m
        used = np.unique(lab)
        used = used[used > 0]
        remap = np.zeros(int(lab.max()) + 1, dtype=np.int32)
        remap[used] = np.arange(1, len(used) + 1, dtype=np.int32)
        lab = remap[lab]
        n = len(used) + 1
    return SurfaceSegmentation(labels=lab, num_labels=n - 1, points=points, height=height,
                               normals=N, foreground=fg, stride=s)
