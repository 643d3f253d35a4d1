"""The top faces' array work (:func:`~spatialpin_ros.perception.top_faces.describe_tops`) in
torch, a second CUDA graph after the lifting's (``lift_gpu.TorchLifter``), for every label of
the full-resolution labels at once (static shapes).

For each label (its mask: the label's pixels in the full-resolution labels, its roi: their box)
the device computes what ``describe_tops`` computes from the prior's mask and roi: the sampling
stride (the median depth of the box, every 4th pixel), the mask's points at that stride,
back-projected into the world, their heights above the plane, the top height (the 0.98
quantile), the grid's origin and shape, the highest point of each cell, the top cells, the
closing of one-cell gaps and the lower cells seen. The sampled pixels (about 16,000 on the
benchmark's frame) are compacted into ``SAMPLES`` slots first. What comes back: a small table
per label and each label's top cells on a (G, G) grid. The host (:func:`tops_from_grids`)
keeps only the convex hull of the top cells, its fill and the outline, per object. A label
whose grid is larger than (G, G), or every label of a frame with more samples than slots, is
left to the host's ``describe_tops`` (``fits`` 0).

The numbers are the host's: the same float32 median, the same float64 back-projection,
quantile and comparisons (the world transform is written out as sums of products; numpy's
matrix product may round its last bit differently, which moves a top height or a cell only at
a knife edge; ``test/test_top_faces_torch.py`` and ``test/test_lift_torch.py`` compare
them bit for bit).
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from spatialpin_ros.core.top_face import (BAND, CELL, MIN_POINTS, MIN_TOP_CELLS, TOP_QUANTILE,
                                          TopFace, _rot)
from spatialpin_ros.core.types import CameraModel, Pose

#: Side (cells) of each label's grid on the device: objects up to about 0.37 m across.
GRID = 64
#: Most sampled pixels of a frame (all labels) on the device; more: the host's describe_tops.
SAMPLES = 1 << 16
#: The table's columns (``top_table_t``).
TOP_COLS = ("top", "n", "lo0", "lo1", "sh0", "sh1", "cells", "fits")
_F64 = torch.float64


def top_consts(camera: CameraModel, T_wc: Pose, plane: np.ndarray) -> np.ndarray:
    """The (21,) float64 constants of :func:`top_table_t`: cx, cy, fx, fy, the stride's
    numerator (``0.5 * CELL * fx``, as ``top_faces._stride`` computes it), R_wc row-major (9),
    its translation (3), the plane (a, b, c, d)."""
    R = T_wc.rotation.as_matrix()
    return np.concatenate([[camera.cx, camera.cy, camera.fx, camera.fy, 0.5 * CELL * camera.fx],
                           R.reshape(-1), T_wc.position, np.asarray(plane, float)[:4]])


def _strides(full: torch.Tensor, depth: torch.Tensor, boxes: torch.Tensor, num: torch.Tensor
             ) -> torch.Tensor:
    """Each label's sampling stride (``top_faces._stride``): from the median valid depth of its
    box (every 4th pixel each way, float32 as numpy's median), ``max(1, int(num / median))``."""
    H, W = full.shape
    dev = full.device
    r0, c0, r1, c1 = boxes.unbind(1)
    ri = r0[:, None] + 4 * torch.arange((H + 3) // 4, device=dev)
    ci = c0[:, None] + 4 * torch.arange((W + 3) // 4, device=dev)
    inb = (ri < r1[:, None])[:, :, None] & (ci < c1[:, None])[:, None, :]
    z = depth[ri.clamp(max=H - 1)[:, :, None], ci.clamp(max=W - 1)[:, None, :]]
    ok = inb & torch.isfinite(z) & (z > 0)
    zs = torch.where(ok, z, torch.full_like(z, math.inf)).flatten(1).sort(dim=1).values
    k = ok.flatten(1).sum(1)
    a = zs.gather(1, ((k - 1) // 2).clamp(min=0)[:, None])[:, 0]
    b = zs.gather(1, (k // 2).clamp(max=zs.shape[1] - 1)[:, None])[:, 0]
    med = torch.where(k % 2 == 1, b, (a + b) / 2)
    s = torch.floor(num / med.to(_F64)).clamp(min=1)
    return torch.where(k > 0, s, torch.ones_like(s)).long()


def _samples(full, depth, boxes, c, cap: int):
    """The pixels that ``describe_tops`` samples (each label's mask at its stride, with valid
    depth), compacted in image order into ``cap`` slots: their flat indices (cap,), which slots
    hold one (cap,) bool and whether they all fit (0-d bool)."""
    H, W = full.shape
    dev = full.device
    lab = full.long()
    s = _strides(full, depth, boxes, c[4])[lab]
    rr = torch.arange(H, device=dev)[:, None]
    cc = torch.arange(W, device=dev)[None, :]
    on = ((lab > 0) & ((rr - boxes[lab, 0]) % s == 0) & ((cc - boxes[lab, 1]) % s == 0)
          & torch.isfinite(depth) & (depth > 0)).reshape(-1)
    pos = torch.cumsum(on, 0) - 1
    slot = torch.where(on & (pos < cap), pos, cap)
    pix = torch.zeros(cap + 1, dtype=torch.long, device=dev).scatter_(
        0, slot, torch.arange(H * W, device=dev))[:cap]
    total = pos[-1] + 1
    return pix, torch.arange(cap, device=dev) < total, total <= cap


def _world_points(full, depth, boxes, c, K: int, cap: int):
    """The sampled pixels' label slots (K + 1 for an empty slot), world points (x, y) and
    heights above the plane (float64), as ``describe_tops`` back-projects its samples, and
    whether all samples fit the ``cap`` slots."""
    W = full.shape[1]
    pix, on, fit = _samples(full, depth, boxes, c, cap)
    zz = torch.where(on, depth.reshape(-1)[pix], torch.ones((), device=pix.device)).to(_F64)
    u = ((pix % W).to(_F64) - c[0]) / c[2] * zz
    v = ((pix // W).to(_F64) - c[1]) / c[3] * zz
    R, t, pl = c[5:14], c[14:17], c[17:21]
    x = u * R[0] + v * R[1] + zz * R[2] + t[0]
    y = u * R[3] + v * R[4] + zz * R[5] + t[1]
    w = u * R[6] + v * R[7] + zz * R[8] + t[2]
    h = x * pl[0] + y * pl[1] + w * pl[2] + pl[3]
    on = on & torch.isfinite(h)
    key = torch.where(on, full.reshape(-1)[pix].long(), K + 1)
    zero = torch.zeros_like(h)
    return key, torch.where(on, x, zero), torch.where(on, y, zero), torch.where(on, h, zero), fit


def _top_heights(key, h, K: int):
    """Each label's sample count and top height (``top_faces._quantile`` of its heights at
    ``TOP_QUANTILE``: linear, from the sorted heights)."""
    o1 = torch.sort(h, stable=True).indices
    o2 = torch.sort(key[o1], stable=True).indices
    hs = h[o1][o2]
    n = torch.zeros(K + 2, dtype=torch.long, device=key.device).scatter_add_(
        0, key, torch.ones_like(key))[: K + 1]          # not bincount: it synchronises
    start = torch.cumsum(n, 0) - n
    v = (n - 1).to(_F64) * TOP_QUANTILE
    i = torch.floor(v).long().clamp(min=0)
    g = v - i.to(_F64)
    last = hs.numel() - 1
    lo = hs[(start + i).clamp(max=last)]
    hi = hs[(start + i + 1).clamp(max=last)]
    mx = hs[(start + n - 1).clamp(0, last)]
    diff = hi - lo
    top = torch.where(g >= 0.5, hi - diff * (1 - g), lo + diff * g)
    return n, torch.where(v >= (n - 1).to(_F64), mx, top)


def top_table_t(full: torch.Tensor, depth: torch.Tensor, boxes: torch.Tensor, c: torch.Tensor,
                K: int, G: int = GRID, cap: int = SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """For labels 0..K of ``full`` (H, W) (``boxes``: ``label_boxes_t``'s; ``depth`` (H, W)
    float32 metres; ``c``: :func:`top_consts`): a (K + 1, 8) float64 table (``TOP_COLS``)
    and the top cells (K + 1, G, G) bool, each label's grid as ``describe_tops`` lays it out
    (cell (i, j) of the grid at (lo0 + i - 1, lo1 + j - 1) cells). ``fits`` 0: the host's
    ``describe_tops`` must describe that label (its grid is larger than (G, G), or the
    frame's samples are more than ``cap``)."""
    key, x, y, h, fit = _world_points(full, depth, boxes, c, K, cap)
    n, top = _top_heights(key, h, K)
    ij = torch.stack([torch.floor(x / CELL), torch.floor(y / CELL)], 1).long()
    big = 1 << 40                                  # no label's cell index
    lo = torch.full((K + 2, 2), big, dtype=torch.long, device=key.device).scatter_reduce(
        0, key[:, None].expand(-1, 2), ij, "amin")
    hi = torch.full((K + 2, 2), -big, dtype=torch.long, device=key.device).scatter_reduce(
        0, key[:, None].expand(-1, 2), ij, "amax")
    shape = (hi - lo + 3)[: K + 1]
    # 1: the device's answer holds (a top face, or too few points for one); 0: the host's
    fits = ((shape <= G).all(1) | (n < MIN_POINTS)) & fit
    gij = (ij - lo[key] + 1).clamp(0, G - 1)
    flat = (key * G + gij[:, 0]) * G + gij[:, 1]
    hmax = torch.full(((K + 2) * G * G,), -math.inf, dtype=_F64, device=key.device)
    hmax = hmax.scatter_reduce(0, flat, h, "amax").reshape(K + 2, G, G)[: K + 1]
    low = (top - BAND)[:, None, None]
    is_top = hmax >= low
    lower = torch.isfinite(hmax) & (hmax < low)
    # describe_tops' 3x3 closing (cv2, border 0): a dilation, then an erosion with 0 outside
    dil = F.max_pool2d(is_top[:, None].to(torch.float32), 3, 1, 1)
    ero = -F.max_pool2d(-F.pad(dil, (1, 1, 1, 1), value=0.0), 3, 1, 0)
    is_top = ((ero[:, 0] > 0.5) & ~lower) | is_top
    cells = is_top.flatten(1).sum(1)
    table = torch.stack([top, n.to(_F64), lo[: K + 1, 0].to(_F64), lo[: K + 1, 1].to(_F64),
                         shape[:, 0].to(_F64), shape[:, 1].to(_F64), cells.to(_F64),
                         fits.to(_F64)], 1)
    return table, is_top


def tops_from_grids(objects: list, labels: list, table: np.ndarray, grids: np.ndarray
                    ) -> list:
    """Set the top face of each object (``labels``: its label in the full-resolution labels)
    from :func:`top_table_t`'s results, as ``describe_tops`` does; the objects whose label's
    grid did not fit the device's (or have no label: None) come back for the host's
    ``describe_tops``."""
    rest, done = [], []
    for o, lab in zip(objects, labels):
        o.top_face = None
        if lab is None or table[lab, 7] < 0.5:
            rest.append(o)
        elif table[lab, 1] >= MIN_POINTS and table[lab, 6] >= MIN_TOP_CELLS:
            done.append((o, lab))
    if not done:
        return rest
    from scipy.spatial.transform import Rotation

    x = Rotation.from_quat(np.stack([o.pose.quaternion for o, _ in done])).as_matrix()
    inside = np.zeros(grids.shape[1:], np.uint8)
    for (o, lab), yaw_x in zip(done, x[:, :, 0]):
        top = grids[lab]
        hull = cv2.convexHull(np.argwhere(top)[:, ::-1].astype(np.int32))
        inside[:] = 0
        cv2.fillConvexPoly(inside, hull, 1)
        filled = int(np.count_nonzero(inside.view(bool) | top))
        cells = int(table[lab, 6])
        corners = hull.reshape(-1, 2)[:, ::-1].astype(float)
        dd = corners - corners.mean(axis=0)
        nn = np.maximum(np.sqrt(np.add.reduce(dd * dd, axis=1, keepdims=True)), 1e-9)
        poly = (corners + 0.5 * dd / nn + table[lab, 2:4].astype(np.int64) - 1 + 0.5) * CELL
        yaw = float(math.atan2(yaw_x[1], yaw_x[0]))
        o.top_face = TopFace(height=round(float(table[lab, 0]), 4),
                             polygon=(poly - o.pose.position[:2]) @ _rot(yaw),
                             solid=round(float(cells) / float(filled), 3), cells=cells,
                             points=int(table[lab, 1]))
    return rest


def object_labels(objects: list, boxes: np.ndarray, full: np.ndarray) -> list[Optional[int]]:
    """Each object's label in ``full`` (its mask is ``full == label`` on its roi): the label
    whose box (``label_boxes_t`` rows) is the roi and whose pixels are the mask's."""
    by_roi: dict = {}
    for k in range(1, len(boxes)):
        r0, c0, r1, c1 = (int(v) for v in boxes[k])
        if r1 > 0:
            by_roi.setdefault((c0, r0, c1 - c0, r1 - r0), []).append(k)
    out = []
    for o in objects:
        ks = by_roi.get(tuple(o.roi), []) if o.mask is not None else []
        if len(ks) > 1:
            x, y, w, h = o.roi
            ks = [k for k in ks if np.array_equal(full[y:y + h, x:x + w] == k, o.mask)]
        out.append(ks[0] if len(ks) == 1 else None)
    return out
