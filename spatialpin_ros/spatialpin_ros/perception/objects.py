"""From a fitted piece to an :class:`~spatialpin_ros.core.types.ObjectPrior`: its pose and size in
the world frame, its full-resolution pixel mask, its colour and what a person would call it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.geometry import quat_mul
from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.perception.attributes import (axis_names, object_label,
                                                  shading_invariant_color_name,
                                                  viewer_directions)
from spatialpin_ros.perception.depth_holes import DepthHoleParams, claim_dark_holes
from spatialpin_ros.perception.segmentation import SurfaceSegmentation
from spatialpin_ros.perception.shapes import ShapeFit
from spatialpin_ros.perception.support import SupportPlane


@dataclass
class WorldView:
    """The support plane's frame in the world and the viewer's directions, once per frame.

    ``R_wp`` (3, 3): plane axes in the world; ``origin`` (3,): the plane frame's origin in the
    world (metres); ``q_wp``: R_wp as a quaternion (x, y, z, w); ``dirs`` (10, 3): SpatialPIN's
    direction names as the viewer sees them."""

    R_wp: np.ndarray
    origin: np.ndarray
    q_wp: np.ndarray
    dirs: np.ndarray

    @classmethod
    def of(cls, sup: SupportPlane, T_wc: Pose) -> "WorldView":
        R_wc = T_wc.rotation.as_matrix()
        R_wp = R_wc @ sup.R
        return cls(R_wp=R_wp, origin=T_wc.transform_points(sup.origin[None])[0],
                   q_wp=Rotation.from_matrix(R_wp).as_quat(),
                   dirs=viewer_directions(R_wp[:, 2], R_wc[:, 2], R_wc[:, 0]))

    def box(self, f: ShapeFit) -> tuple[np.ndarray, np.ndarray]:
        """The fit's box centre in the world and its size (metres)."""
        if f.shape == "sphere":
            cen_p = f.sphere_center.copy()
            size = np.array([f.size_uv[0]] * 3)
        else:
            cen_p = np.array([f.center_uv[0], f.center_uv[1], (f.top + f.bottom) / 2])
            size = np.array([f.size_uv[0], f.size_uv[1], max(f.top - f.bottom, 0.002)])
        return self.origin + self.R_wp @ cen_p, size


def grown_labels(seg: SurfaceSegmentation, margin: int, lum: Optional[np.ndarray] = None,
                 holes: Optional[DepthHoleParams] = None) -> np.ndarray:
    """The working-grid labels (h, w) for the masks: each object first takes the dark depth
    holes that are its own surface (:mod:`.depth_holes`; ``lum`` (h, w) the grid's
    brightness), then its outline grows by ``margin`` full-resolution pixels (rounded up to
    working pixels) over working pixels that are nobody's and have no depth or a depth near the
    object's: the silhouette's mixed pixels that segmentation cuts away. Without ``holes``
    (pieces from a segmenter's masks, which hold the dark parts already) no hole is claimed."""
    z = np.nan_to_num(seg.points[..., 2], nan=0.0)
    labels = seg.labels
    if holes is not None and lum is not None:
        labels = claim_dark_holes(labels, z > 0, lum, holes)
    g = int(math.ceil(margin / seg.stride))
    if g > 0 and labels.max() > 0:
        k = np.ones((2 * g + 1, 2 * g + 1), np.uint8)
        grown = cv2.dilate(labels.astype(np.uint16), k)
        zl = cv2.dilate(np.where(labels > 0, z, 0).astype(np.float32, copy=False), k)
        take = (labels == 0) & (grown > 0) & ((z <= 0) | (np.abs(z - zl) < 0.03))
        labels = labels.copy()
        labels[take] = grown[take].astype(labels.dtype)
    return labels


def full_resolution(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Working-grid ``labels`` at full resolution (nearest)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def label_boxes(labels: np.ndarray, stride: int = 1, width: int = 0,
                height: int = 0) -> dict[int, tuple[int, int, int, int]]:
    """Each label's image box (r0, c0, r1, c1; full-resolution pixels, end exclusive) from
    ``labels``: the full-resolution labels (``stride`` 1), or the working grid's, whose boxes
    grow by one working pixel so that they hold the label's full-resolution pixels however the
    grid was resized (``width``, ``height``: the image's size)."""
    out = {}
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        if stride == 1:
            out[k] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        else:
            out[k] = (max(sl[0].start - 1, 0) * stride, max(sl[1].start - 1, 0) * stride,
                      min((sl[0].stop + 1) * stride, height),
                      min((sl[1].stop + 1) * stride, width))
    return out


def mask_pixels(rgb: np.ndarray, full: np.ndarray, box: tuple[int, int, int, int],
                label: int, max_pixels: int = 4000) -> np.ndarray:
    """The colours (N, 3) of the pixels of ``label`` in the full-resolution labels ``full``
    within its ``box``, subsampled to about ``max_pixels``: an object's colour sample when its
    own segmented pixels are not at hand (pieces from a segmenter's masks)."""
    r0, c0, r1, c1 = box
    st = max(1, int(math.sqrt((r1 - r0) * (c1 - c0) / max_pixels)))
    m = full[r0:r1:st, c0:c1:st] == label
    if (rgb.ndim != 3 or not rgb.flags.c_contiguous or rgb.shape[:2] != full.shape
            or min(r0, c0) < 0):
        return rgb[r0:r1:st, c0:c1:st][m]
    # the same pixels in the same order: their flat indices, and one take of whole rows
    # (indexing an (H, W, 3) image with a 2-D mask is several times slower)
    H, W = full.shape
    flat = (np.arange(r0, min(r1, H), st)[:, None] * W + np.arange(c0, min(c1, W), st))[m]
    return np.take(rgb.reshape(H * W, rgb.shape[2]), flat, axis=0)


def lit_colour(px: np.ndarray, cell: float = 0.04) -> tuple[int, int, int]:
    """The lit part's colour (0-255) of the object's dominant hue: among the pixels (N, 3) uint8
    not too dark to have one, those within ``cell`` (rg chromaticity) of the most frequent
    chromaticity; the mean of their brightest half. A yellow cup with a blue band and a white
    lip is yellow, not the grey that averaging them gives."""
    return lit_colours([px], cell)[0]


def _segment_quantile(v: np.ndarray, seg: np.ndarray, K: int, q: float) -> np.ndarray:
    """``core.geometry.quantile`` (nearest rank) of ``v`` (small integers >= 0: brightness
    sums) within each segment 0..K-1 of ``seg``, from each segment's histogram; segments must
    not be empty."""
    top = int(v.max()) + 1
    hist = np.bincount(seg * top + v, minlength=K * top).reshape(K, top).cumsum(axis=1)
    n = hist[:, -1]
    k = np.array([min(max(int(round(q * (m - 1))), 0), m - 1) for m in n.tolist()])
    return (hist > k[:, None]).argmax(axis=1)


def lit_colours(samples: list, cell: float = 0.04) -> list[tuple[int, int, int]]:
    """:func:`lit_colour` of each pixel sample (N_i, 3) uint8, all at once: one pass of array
    operations over the concatenated samples (each sample's pixels stay together, in order)
    instead of ~20 small ones per object; each step selects by index into the last step's
    pixels (one gather of the (N, 3) pixels, not one per channel). Brightness sums are exact
    integers, chromaticities float32 quotients of them, the dominant cell's centre each
    sample's float32 sum in order (``np.cumsum``: numpy's sum of an (M, 2) array, row after
    row) over the count, so every colour is ``lit_colour``'s of the (N, 3) float32
    computation."""
    out: list = [(0, 0, 0)] * len(samples)
    idx = [i for i, px in enumerate(samples) if len(px)]
    if not idx:
        return out
    subs = [samples[i].reshape(-1, 3)[:: max(1, len(samples[i]) // 2000)] for i in idx]
    K = len(subs)
    px = np.concatenate(subs)
    seg = np.repeat(np.arange(K), [len(x) for x in subs])
    r, g, b = px.T.astype(np.int32)
    lum = r + g + b
    i1 = np.flatnonzero(lum >= np.minimum(60.0, _segment_quantile(lum, seg, K, 0.5))[seg])
    p1, lum, seg = px[i1], lum[i1], seg[i1]
    den = np.maximum(lum, 1).astype(np.float32)
    cr, cg = r[i1].astype(np.float32) / den, g[i1].astype(np.float32) / den
    side = int(1.0 / cell) + 1                        # rg in [0, 1]: cells on a side
    cid = (np.minimum((cr / cell).astype(np.int64), side - 1) * side
           + np.minimum((cg / cell).astype(np.int64), side - 1))
    votes = np.bincount(seg * side * side + cid, minlength=K * side * side)
    sel = np.flatnonzero(cid == votes.reshape(K, -1).argmax(axis=1)[seg])
    mode = _mode_means(cr[sel], cg[sel], np.bincount(seg[sel], minlength=K))
    i2 = np.flatnonzero(np.hypot(cr - mode[seg, 0], cg - mode[seg, 1]) <= cell)
    lum, seg = lum[i2], seg[i2]
    keep = np.flatnonzero(lum >= _segment_quantile(lum, seg, K, 0.5)[seg])
    p3, seg = p1[i2[keep]], seg[keep]
    count = np.bincount(seg, minlength=K)
    sums = np.stack([np.bincount(seg, p3[:, c], minlength=K) for c in range(3)], axis=1)
    # numpy's float32 mean: the (exact) sum over the count, divided in float64, then float32
    mean = (sums / count[:, None].astype(np.intp)).astype(np.float32)
    for i, m in zip(idx, mean.tolist()):
        out[i] = tuple(int(round(v)) for v in m)
    return out


def _mode_means(cr: np.ndarray, cg: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each segment's mean (float32) of its (cr, cg) (segments in order, ``n`` each): the
    float32 sum in order (numpy's sum of an (M, 2) array along its rows), over the count in
    float64, then float32."""
    sums = np.zeros((len(n), 2), dtype=np.float32)
    ends = np.cumsum(n)
    for k, (e, m) in enumerate(zip(ends.tolist(), n.tolist())):
        if m:
            sums[k, 0] = np.cumsum(cr[e - m:e])[-1]
            sums[k, 1] = np.cumsum(cg[e - m:e])[-1]
    return (sums / n[:, None].astype(np.intp)).astype(np.float32)


def core_colours(samples: list) -> list[tuple[int, int, int]]:
    """Each piece's colour for :func:`make_prior` from its colour sample (N, 3) uint8: the
    colours of the piece's own segmented pixels, without the mask's grown margin and claimed
    holes (they may show the table or a shadow); :func:`lit_colour` of about 4,000 of them."""
    return lit_colours([px[:: max(1, len(px) // 4000)] for px in samples])


def make_prior(f: ShapeFit, label: int, box: tuple[int, int, int, int], num_points: int,
               view: WorldView, full: np.ndarray, colour: tuple[int, int, int]) -> ObjectPrior:
    """The prior of one fitted piece: ``label`` in ``full`` (the full-resolution label image),
    ``box`` its image box (r0, c0, r1, c1; :func:`label_boxes`), ``colour`` its
    :func:`core_colours` colour, for its colour name."""
    center, size = view.box(f)
    cz, sz = math.cos(f.yaw), math.sin(f.yaw)
    Rb = view.R_wp @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    r0, c0, r1, c1 = box
    mask = full[r0:r1, c0:c1] == label
    name = shading_invariant_color_name(colour)
    # np.clip's numbers (NaN stays NaN), without its overhead on scalars
    conf = float(min(max(num_points / 80.0, 0.2), 1.0)
                 * min(max(1.0 - f.residual / 0.02, 0.5), 1.0))
    yaw_q = np.array([0.0, 0.0, math.sin(f.yaw / 2), math.cos(f.yaw / 2)])
    return ObjectPrior(
        id="", label=object_label(name, f.shape, size, f.container),
        pose=Pose(center, quat_mul(view.q_wp, yaw_q)), size=size, shape=f.shape,
        color_name=name, confidence=round(conf, 3), roi=(c0, r0, c1 - c0, r1 - r0),
        num_points=num_points, axis_names=axis_names(Rb, view.dirs),
        yaw_symmetric=f.shape in ("cylinder", "sphere"), rgb=colour, container=f.container,
        inner_depth=round(f.inner_depth, 4), mask=mask)
