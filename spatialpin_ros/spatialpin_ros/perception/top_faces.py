"""Each perceived object's top face (``core.top_face``) from its own depth points: the pixels of
its mask, back-projected into the world, with their heights above the support plane. Filled in
by the geometric backend after the priors are built (numpy and torch lifting alike), so the
stacking rules can tell a flat solid top from a rim, a cap or an uneven top."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.top_face import (BAND, CELL, MIN_POINTS, MIN_TOP_CELLS, TOP_QUANTILE,
                                          TopFace, _rot, describe_top)
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose


def object_points(o: ObjectPrior, depth: np.ndarray, camera: CameraModel, T_wc: Pose,
                  stride: int = 1) -> np.ndarray:
    """World points (N, 3) of the object's mask pixels with depth (every ``stride``-th pixel
    each way); empty without a mask."""
    if o.mask is None:
        return np.zeros((0, 3))
    x, y, w, h = o.roi
    s = max(1, int(stride))
    H, W = depth.shape
    x1, y1 = min(x + w, W), min(y + h, H)
    m = o.mask[: y1 - y: s, : x1 - x: s]
    z = depth[y:y1:s, x:x1:s][m]
    rows, cols = np.nonzero(m)
    ok = np.isfinite(z) & (z > 0)
    u = (cols[ok] * s + x - camera.cx) / camera.fx
    v = (rows[ok] * s + y - camera.cy) / camera.fy
    zz = z[ok]
    P = np.stack([u * zz, v * zz, zz], axis=1)
    return T_wc.transform_points(P)


def sampling_stride(o: ObjectPrior, depth: np.ndarray, camera: CameraModel,
                    cell: float = CELL) -> int:
    """The pixel step that still puts about two samples in each ``cell`` (metres) at the
    object's depth: the descriptor's grid, not the image, sets the cost."""
    if o.mask is None:
        return 1
    x, y, w, h = o.roi
    z = depth[y:y + h:4, x:x + w:4]
    z = z[np.isfinite(z) & (z > 0)]
    if not len(z):
        return 1
    return max(1, int(0.5 * cell * camera.fx / float(np.median(z))))


def describe_tops(objects: Sequence[ObjectPrior], depth: np.ndarray, camera: CameraModel,
                  T_wc: Pose, plane: np.ndarray, stride: int = 0) -> None:
    """Set each object's ``top_face`` from its mask's depth points. ``depth`` (H, W) metres,
    ``camera`` its model, ``T_wc`` the optical frame in the world, ``plane`` (a, b, c, d) the
    support in the world (unit normal up); ``stride`` 0 picks it per object
    (:func:`sampling_stride`).

    The same top faces as :func:`describe_tops_each` (``core.top_face.describe_top`` object by
    object), with the numpy passes shared by all objects: one back-projection and transform of
    every object's pixels, one binning of every object's points into one grid (the objects'
    grids stacked, a free row between two), one morphological closing; only the convex hull,
    its fill and the outline are per object (``test/test_lift_torch.py`` checks them equal)."""
    objects = list(objects)
    for o in objects:
        o.top_face = None
    n, d = np.asarray(plane[:3], dtype=float), float(plane[3])
    H, W = depth.shape
    idx, flat = [], []
    for k, o in enumerate(objects):
        if o.mask is None:
            continue
        s = max(1, int(stride)) if stride else _stride(o, depth, camera)
        x, y, w, h = o.roi
        x1, y1 = min(x + w, W), min(y + h, H)
        # the mask's pixels (every s-th each way) as flat indices into depth, in mask order
        idx.append(k)
        flat.append((np.arange(y, y1, s)[:, None] * W + np.arange(x, x1, s))
                    [o.mask[: y1 - y: s, : x1 - x: s]])
    if not idx:
        return
    counts = np.array([len(f) for f in flat])
    flat = np.concatenate(flat)
    R, C = np.divmod(flat, W)
    seg = np.repeat(np.arange(len(idx)), counts)
    z = depth.reshape(-1)[flat]
    ok = np.isfinite(z) & (z > 0)
    zz = z[ok]
    P = T_wc.transform_points(np.stack([(C[ok] - camera.cx) / camera.fx * zz,
                                        (R[ok] - camera.cy) / camera.fy * zz, zz], axis=1))
    h = P @ n + d
    seg = seg[ok]
    # describe_top's own filter; with a finite plane a non-finite point has a non-finite height
    ok = np.isfinite(h) if np.isfinite(plane[:4]).all() else \
        np.isfinite(h) & np.all(np.isfinite(P), axis=1)
    if not ok.all():
        P, h, seg = P[ok], h[ok], seg[ok]
    objs = [objects[k] for k in idx]
    # the objects that get a grid: enough points (describe_top's MIN_POINTS), and a grid of
    # one object's size
    counts = np.bincount(seg, minlength=len(objs))
    keep = counts >= MIN_POINTS
    ij = np.floor(P[:, :2] / CELL).astype(np.int64)
    if not keep.all():
        on = keep[seg]
        P, h, seg, ij = P[on], h[on], seg[on], ij[on]
        objs, counts = [o for o, k in zip(objs, keep) if k], counts[keep]
    if not objs:
        return
    starts = np.cumsum(counts) - counts
    lo = np.minimum.reduceat(ij, starts, axis=0)
    shape = np.maximum.reduceat(ij, starts, axis=0) - lo + 3
    keep = shape[:, 0] * shape[:, 1] <= 400_000            # larger: not one object
    if not keep.all():
        on = keep[np.repeat(np.arange(len(objs)), counts)]
        P, h, ij = P[on], h[on], ij[on]
        objs, counts, lo, shape = ([o for o, k in zip(objs, keep) if k], counts[keep],
                                   lo[keep], shape[keep])
        if not objs:
            return
        starts = np.cumsum(counts) - counts
    m, ends = len(objs), starts + counts
    width = int(shape[:, 1].max())
    rows0 = np.cumsum(shape[:, 0] + 1) - (shape[:, 0] + 1)
    total = int(rows0[-1] + shape[-1, 0] + 1)
    if total * width > 4_000_000:                           # a few huge grids: one by one
        describe_tops_each(objs, depth, camera, T_wc, plane, stride)
        return
    # every object's grid in one (total, width) array: object j's rows from rows0[j], a free
    # row (never seen, never top) after each, so the closing sees each grid as describe_top
    off = (rows0 - lo[:, 0] + 1) * width - lo[:, 1] + 1
    flat = ij[:, 0] * width + ij[:, 1] + np.repeat(off, counts)
    hmax = np.full(total * width, -np.inf)
    np.maximum.at(hmax, flat, h)
    hmax = hmax.reshape(total, width)
    tops = [_quantile(h[a:b], TOP_QUANTILE) for a, b in zip(starts, ends)]
    low = np.full(total, np.inf)
    for k in range(m):
        low[rows0[k]: rows0[k] + shape[k, 0]] = tops[k] - BAND
    seen = np.isfinite(hmax)
    is_top = hmax >= low[:, None]
    closed = cv2.morphologyEx(is_top.astype(np.uint8), cv2.MORPH_CLOSE,
                              np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                              borderValue=0)
    is_top = (closed.astype(bool) & ~(seen & (hmax < low[:, None]))) | is_top
    cells = np.add.reduceat(is_top.sum(axis=1), rows0)
    inside = np.zeros((total, width), np.uint8)
    hulls = {}
    for k in range(m):
        if cells[k] < MIN_TOP_CELLS:
            continue
        r0 = int(rows0[k])
        rc = np.argwhere(is_top[r0: r0 + shape[k, 0]])
        hull = hulls[k] = cv2.convexHull(rc[:, ::-1].astype(np.int32))
        cv2.fillConvexPoly(inside[r0: r0 + shape[k, 0]], hull, 1)
    if not hulls:
        return
    filled = np.add.reduceat((inside.astype(bool) | is_top).sum(axis=1), rows0)
    done = list(hulls)
    # each object's yaw (Pose.yaw: the x axis's heading) from one rotation of them all
    x = Rotation.from_quat(np.stack([objs[k].pose.quaternion for k in done])).as_matrix()
    for k, yaw_x in zip(done, x[:, :, 0]):
        o = objs[k]
        corners = hulls[k].reshape(-1, 2)[:, ::-1].astype(float)
        dd = corners - corners.mean(axis=0)
        nn = np.maximum(np.sqrt(np.add.reduce(dd * dd, axis=1, keepdims=True)), 1e-9)
        poly = (corners + 0.5 * dd / nn + lo[k] - 1 + 0.5) * CELL      # describe_top's
        yaw = float(math.atan2(yaw_x[1], yaw_x[0]))
        o.top_face = TopFace(height=round(tops[k], 4),                  # TopFace.about's
                             polygon=(poly - o.pose.position[:2]) @ _rot(yaw),
                             solid=round(float(cells[k]) / float(filled[k]), 3),
                             cells=int(cells[k]), points=int(ends[k] - starts[k]))


def describe_tops_each(objects: Sequence[ObjectPrior], depth: np.ndarray, camera: CameraModel,
                       T_wc: Pose, plane: np.ndarray, stride: int = 0) -> None:
    """:func:`describe_tops` object by object (``core.top_face.describe_top`` on each object's
    :func:`object_points`): the reference the shared passes are checked against."""
    n, d = np.asarray(plane[:3], dtype=float), float(plane[3])
    for o in objects:
        P = object_points(o, depth, camera, T_wc,
                          stride or sampling_stride(o, depth, camera))
        top = describe_top(P, P @ n + d) if len(P) else None
        o.top_face = None if top is None else top.about(o.center[:2], o.pose.yaw())


def _quantile(a: np.ndarray, q: float) -> float:
    """``float(np.quantile(a, q))`` (linear, no NaNs) from a partial sort: the same number
    (numpy's interpolation, ``numpy.lib._function_base_impl._lerp``), without its overhead."""
    n = len(a)
    v = (n - 1) * q
    if v >= n - 1:
        return float(a.max())
    i = math.floor(v)
    g = v - i
    part = np.partition(a, (i, i + 1))
    lo, hi = float(part[i]), float(part[i + 1])
    diff = hi - lo
    return hi - diff * (1 - g) if g >= 0.5 else lo + diff * g


def _stride(o: ObjectPrior, depth: np.ndarray, camera: CameraModel, cell: float = CELL) -> int:
    """:func:`sampling_stride` with the median from a partial sort (``np.median``'s number
    for float32 and float64 depth)."""
    if depth.dtype not in (np.float32, np.float64):
        return sampling_stride(o, depth, camera, cell)
    x, y, w, h = o.roi
    z = depth[y:y + h:4, x:x + w:4]
    z = z[np.isfinite(z) & (z > 0)]
    k = len(z)
    if not k:
        return 1
    if k % 2:
        med = np.partition(z, k // 2)[k // 2]
    else:
        part = np.partition(z, (k // 2 - 1, k // 2))
        med = (part[k // 2 - 1] + part[k // 2]) / 2       # np.mean's: in depth's dtype
    return max(1, int(0.5 * cell * camera.fx / float(med)))


def top_face_summary(o: ObjectPrior) -> Optional[dict]:
    """The top face as plain numbers (for JSON and reports), None when unknown."""
    t = o.top_face
    if t is None:
        return None
    return {"height_m": t.height, "solid": t.solid, "area_cm2": round(1e4 * t.area, 1),
            "width_cm": round(100 * t.width, 1), "supports": t.supports()}
