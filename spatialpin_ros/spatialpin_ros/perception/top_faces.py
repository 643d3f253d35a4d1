"""Each perceived object's top face (``core.top_face``) from its own depth points: the pixels of
its mask, back-projected into the world, with their heights above the support plane. Filled in
by the geometric backend after the priors are built (numpy and torch lifting alike), so the
stacking rules can tell a flat solid top from a rim, a cap or an uneven top."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.top_face import CELL, describe_top
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
    (:func:`sampling_stride`)."""
    n, d = np.asarray(plane[:3], dtype=float), float(plane[3])
    for o in objects:
        P = object_points(o, depth, camera, T_wc,
                          stride or sampling_stride(o, depth, camera))
        top = describe_top(P, P @ n + d) if len(P) else None
        o.top_face = None if top is None else top.about(o.center[:2], o.pose.yaw())


def top_face_summary(o: ObjectPrior) -> Optional[dict]:
    """The top face as plain numbers (for JSON and reports), None when unknown."""
    t = o.top_face
    if t is None:
        return None
    return {"height_m": t.height, "solid": t.solid, "area_cm2": round(1e4 * t.area, 1),
            "width_cm": round(100 * t.width, 1), "supports": t.supports()}
