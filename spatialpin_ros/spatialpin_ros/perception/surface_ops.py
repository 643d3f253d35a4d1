"""Local operations on an organised point cloud or depth image for the convexity segmentation
(:mod:`~spatialpin_ros.perception.segmentation`): depth jumps, any-pooling onto a coarser grid,
masked box means, normals and concave folds. ROS-free; numpy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

from spatialpin_ros.core.geometry import cross3, last_axis_sum, row_norms, squared_norms


#: The two 4-neighbour pairings of an image's pixels, as slice pairs ``(a, b)``: ``img[a]`` and
#: ``img[b]`` are left/right neighbours, then top/bottom neighbours.
NEIGHBOUR_PAIRS = (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                   ((slice(None, -1), slice(None)), (slice(1, None), slice(None))))


def depth_jumps(depth: np.ndarray, jump_abs: float, jump_rel: float) -> np.ndarray:
    """(H, W) bool: full-resolution pixels beside a depth jump to a valid neighbour (both
    sides marked). ``depth`` in metres, 0 where missing."""
    z = np.where(depth > 0, depth, np.float32(np.nan))   # no jump to or from a NaN
    thr = jump_abs + jump_rel * z
    out = np.zeros(z.shape, dtype=bool)
    for a, b in NEIGHBOUR_PAIRS:
        j = np.abs(z[a] - z[b]) > np.maximum(thr[a], thr[b])
        out[a] |= j
        out[b] |= j
    return out


def pool_any(mask: np.ndarray, s: int, shape: tuple[int, int]) -> np.ndarray:
    """Any-pooling of a full-resolution mask onto the working grid."""
    if s == 1:
        return mask
    h, w = shape
    m = np.where(mask[: h * s, : w * s], np.uint8(255), np.uint8(0))
    if m.shape != (h * s, w * s):
        m = np.pad(m, ((0, h * s - m.shape[0]), (0, w * s - m.shape[1])))
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) > 0    # any of s x s


def box_mean(P: np.ndarray, valid: np.ndarray, r: int) -> np.ndarray:
    k = (2 * r + 1, 2 * r + 1)
    w = cv2.boxFilter(valid.astype(np.float32), -1, k, normalize=False,
                      borderType=cv2.BORDER_CONSTANT)
    out = np.empty_like(P)
    for i in range(3):
        out[..., i] = cv2.boxFilter(np.where(valid, P[..., i], 0).astype(np.float32, copy=False),
                                    -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return out / np.maximum(w, 1e-6)[..., None]


def surface_normals(Ps: np.ndarray) -> np.ndarray:
    """Unit normals of a smoothed organised cloud, facing the camera (n . p < 0)."""
    dx = np.zeros_like(Ps)
    dy = np.zeros_like(Ps)
    dx[:, 1:-1] = Ps[:, 2:] - Ps[:, :-2]
    dy[1:-1] = Ps[2:] - Ps[:-2]
    n = cross3(dx, dy)
    # dot products over the 3 components: last_axis_sum adds the products in order, the same
    # bits as np.einsum("hwi,hwi->hw") (which sums a short axis an order of magnitude slower)
    norm = np.sqrt(squared_norms(n))[..., None]
    n = n / np.maximum(norm, 1e-12)
    flip = last_axis_sum(n * Ps) > 0
    return np.negative(n, out=n, where=flip[..., None])


def concave_folds(Ps: np.ndarray, N: np.ndarray, ok: np.ndarray, k: int,
                  crease: float) -> np.ndarray:
    """(h, w) bool: pixels where the surface folds concavely across x or y (baseline k)."""
    out = np.zeros(ok.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        c = [slice(None)] * 2
        a[axis], b[axis], c[axis] = slice(None, -2 * k), slice(2 * k, None), slice(k, -k)
        a, b, c = tuple(a), tuple(b), tuple(c)
        d = Ps[b] - Ps[a]
        dn = row_norms(d)
        conv = last_axis_sum((N[b] - N[a]) * d) / np.maximum(dn, 1e-9)   # as in surface_normals
        both = ok[a] & ok[b]
        out[c] |= both & (conv < -crease)
    return out


def patch_borders(comp: np.ndarray, inside: np.ndarray, lab: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The borders of labelled patches: for every pair of 4-neighbours p, q where p is in a
    patch (``comp[p] > 0``) and q is outside every patch (not ``inside[q]``), ``comp[p]`` and
    ``lab[q]``, as two arrays (one entry per such pair)."""
    h, w = comp.shape
    keys, labs = [], []
    for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        src = comp[max(-dr, 0):h - max(dr, 0), max(-dc, 0):w - max(dc, 0)]
        nb = (slice(max(dr, 0), h - max(-dr, 0) or None), slice(max(dc, 0), w - max(-dc, 0) or None))
        edge = (src > 0) & ~inside[nb]
        keys.append(src[edge])
        labs.append(lab[nb][edge])
    return np.concatenate(keys), np.concatenate(labs)
