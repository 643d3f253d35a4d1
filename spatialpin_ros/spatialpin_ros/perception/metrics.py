"""Scoring perceived scenes against ground truth (benchmarks and tests only).

Boxes are treated as gravity-aligned: a box is its centre, its yaw about the world z axis and its
full extents. The 3D IoU of two such boxes is exact: the intersection area of the two footprint
rectangles (convex polygons) times the overlap of their height intervals.

Yaw-symmetric ground-truth objects (cylinders, spheres) have no defined yaw, so their box is
turned to the predicted yaw before the IoU is computed. A box that is not upright (a cylinder
that fell on its side, a leaning box) is scored as its gravity-aligned equivalent: the box axis
nearest the world z axis becomes its height (see :func:`gravity_aligned`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from spatialpin_ros.core.types import ObjectPrior, Scene

#: A footprint whose sides differ by less than this fraction counts as square (yaw modulo 90).
SQUARE_TOL = 0.10


def footprint(center_xy: Sequence[float], size_xy: Sequence[float], yaw: float) -> np.ndarray:
    """The (4, 2) corners of a yaw-rotated rectangle, counter-clockwise."""
    hx, hy = float(size_xy[0]) / 2, float(size_xy[1]) / 2
    local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    c, s = math.cos(yaw), math.sin(yaw)
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(center_xy, dtype=float)[:2]


def polygon_intersection_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of two convex polygons (K, 2)."""
    area, _ = cv2.intersectConvexConvex(np.asarray(a, np.float32).reshape(-1, 1, 2),
                                        np.asarray(b, np.float32).reshape(-1, 1, 2))
    return max(float(area), 0.0)


def box_iou_3d(center_a, size_a, yaw_a: float, center_b, size_b, yaw_b: float) -> float:
    """Exact 3D IoU of two gravity-aligned boxes (centres (3,), full extents (3,), yaws)."""
    ca, cb = np.asarray(center_a, float), np.asarray(center_b, float)
    sa, sb = np.abs(np.asarray(size_a, float)), np.abs(np.asarray(size_b, float))
    va, vb = float(np.prod(sa)), float(np.prod(sb))
    if va <= 0 or vb <= 0:
        return 0.0
    dz = min(ca[2] + sa[2] / 2, cb[2] + sb[2] / 2) - max(ca[2] - sa[2] / 2, cb[2] - sb[2] / 2)
    if dz <= 0:
        return 0.0
    # Work in millimetres around the first centre: cv2 computes in float32.
    scale, origin = 1000.0, ca[:2]
    fa = footprint((ca[:2] - origin) * scale, sa[:2] * scale, yaw_a)
    fb = footprint((cb[:2] - origin) * scale, sb[:2] * scale, yaw_b)
    inter = polygon_intersection_area(fa, fb) / scale**2 * dz
    return float(inter / (va + vb - inter))


def gravity_aligned(obj: ObjectPrior) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """(centre, extents, yaw, upright) of an object's box as a gravity-aligned box: the box axis
    nearest world z is the height, the yaw is that of the first remaining axis. ``upright`` is
    False when the box's z axis is not the one nearest world z (a fallen cylinder)."""
    R = obj.pose.rotation.as_matrix()
    k = int(np.argmax(np.abs(R[2, :])))
    i, j = [a for a in range(3) if a != k]
    size = np.abs(np.asarray(obj.size, float))[[i, j, k]]
    ax = R[:, i]
    return obj.center, size, math.atan2(ax[1], ax[0]), k == 2


def object_iou(pred: ObjectPrior, gt: ObjectPrior) -> float:
    """3D IoU of a predicted and a ground-truth object (see the module notes on symmetry)."""
    pc, ps, pyaw, _ = gravity_aligned(pred)
    gc, gs, gyaw, upright = gravity_aligned(gt)
    if gt.yaw_symmetric and upright:
        gyaw = pyaw
    return box_iou_3d(pc, ps, pyaw, gc, gs, gyaw)


def iou_matrix(pred: Sequence[ObjectPrior], gt: Sequence[ObjectPrior]) -> np.ndarray:
    m = np.zeros((len(pred), len(gt)))
    for i, p in enumerate(pred):
        for j, g in enumerate(gt):
            m[i, j] = object_iou(p, g)
    return m


def match(pred: Sequence[ObjectPrior], gt: Sequence[ObjectPrior],
          iou_threshold: float = 0.25) -> list[tuple[int, int, float]]:
    """One-to-one matches (pred index, gt index, IoU) with IoU >= ``iou_threshold``, maximising
    the total IoU (Hungarian)."""
    if not pred or not gt:
        return []
    m = iou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(-m)
    return [(int(r), int(c), float(m[r, c])) for r, c in zip(rows, cols)
            if m[r, c] >= iou_threshold]


def _wrap(angle: float, period: float) -> float:
    """|angle| reduced modulo ``period`` to [0, period / 2]."""
    a = math.fmod(abs(angle), period)
    return min(a, period - a)


def is_square(size: Sequence[float], tol: float = SQUARE_TOL) -> bool:
    sx, sy = abs(float(size[0])), abs(float(size[1]))
    return abs(sx - sy) <= tol * max(sx, sy)


def yaw_error(pred: ObjectPrior, gt: ObjectPrior) -> Optional[float]:
    """Yaw error in radians, or None for yaw-symmetric ground truth (cylinders, spheres).

    Square-ish footprints compare yaw modulo 90 degrees; others compare the direction of the long
    footprint axis modulo 180 degrees.
    """
    if gt.yaw_symmetric or gt.shape in ("cylinder", "sphere"):
        return None
    _, ps, pyaw, _ = gravity_aligned(pred)
    _, gs, gyaw, _ = gravity_aligned(gt)
    if is_square(gs):
        return _wrap(pyaw - gyaw, math.pi / 2)
    p_long = pyaw + (math.pi / 2 if ps[1] > ps[0] else 0.0)
    g_long = gyaw + (math.pi / 2 if gs[1] > gs[0] else 0.0)
    return _wrap(p_long - g_long, math.pi)


def extent_error(pred: ObjectPrior, gt: ObjectPrior) -> float:
    """Mean over the 3 axes of |pred - true| / true, with x/y matched up to a swap (the better)."""
    p, g = gravity_aligned(pred)[1], gravity_aligned(gt)[1]
    e1 = np.abs(p - g) / g
    e2 = np.abs(p[[1, 0, 2]] - g) / g
    return float(min(e1.mean(), e2.mean()))


def centroid_error(pred: ObjectPrior, gt: ObjectPrior) -> float:
    return float(np.linalg.norm(pred.center - gt.center))


@dataclass
class ObjectScore:
    """One ground-truth object's outcome."""

    gt_id: str
    gt_shape: str
    matched: bool
    pred_id: str = ""
    iou: float = 0.0
    centroid_error_m: float = float("nan")
    extent_error: float = float("nan")
    yaw_error_deg: Optional[float] = None
    square: bool = False
    pred_shape: str = ""
    color_ok: Optional[bool] = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SceneScore:
    objects: list[ObjectScore]
    num_pred: int
    num_gt: int
    num_matched: int

    @property
    def false_positives(self) -> int:
        return self.num_pred - self.num_matched


def score_scene(pred: Scene, gt: Scene, iou_threshold: float = 0.25) -> SceneScore:
    """Match ``pred`` to ``gt`` and score each ground-truth object."""
    matches = {g: (p, iou) for p, g, iou in match(pred.objects, gt.objects, iou_threshold)}
    out = []
    for j, g in enumerate(gt.objects):
        s = ObjectScore(gt_id=g.id, gt_shape=g.shape, matched=j in matches,
                        square=is_square(gravity_aligned(g)[1]))
        if j in matches:
            i, iou = matches[j]
            p = pred.objects[i]
            ye = yaw_error(p, g)
            s.pred_id, s.iou = p.id, iou
            s.centroid_error_m = centroid_error(p, g)
            s.extent_error = extent_error(p, g)
            s.yaw_error_deg = None if ye is None else math.degrees(ye)
            s.pred_shape = p.shape
            s.color_ok = (p.color_name == g.color_name) if g.color_name else None
        out.append(s)
    return SceneScore(objects=out, num_pred=len(pred.objects), num_gt=len(gt.objects),
                      num_matched=len(matches))
