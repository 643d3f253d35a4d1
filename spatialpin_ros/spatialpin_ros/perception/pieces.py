"""Between segmentation and shape fitting: the segmented pieces in the support-plane frame, and
the one merge that needs 3D layout rather than local convexity.

Solid things cannot share a footprint unless one stands on the other. A piece that lies inside
another piece's footprint (seen from above) and does not rise above its top is therefore inside
it: the inner wall and bottom of a bowl, a cup or a tray, which meet the rim in a concave fold
that the convexity segmentation cuts. It joins the piece around it. Something standing in a
bowl and rising above its rim stays apart; so does an object stacked on another (it is above).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spatialpin_ros.core.geometry import inside_convex, quantile
from spatialpin_ros.perception.segmentation import SurfaceSegmentation
from spatialpin_ros.perception.support import SupportPlane


@dataclass
class Piece:
    """One segmented piece: its working-grid pixels (``rows``, ``cols``; with and without
    depth), plane-frame points ``Q`` (N, 3; metres, h above the plane) of those with depth,
    ``top`` (90 % height quantile, metres: robust to a few stray points) and its footprint hull ``hull`` (K, 2)."""

    label: int
    rows: np.ndarray
    cols: np.ndarray
    Q: np.ndarray
    top: float
    hull: np.ndarray


def gather_pieces(seg: SurfaceSegmentation, sup: SupportPlane, min_area: float) -> list[Piece]:
    """The pieces of ``seg`` whose pixels with depth cover at least ``min_area`` square metres
    (image area at the piece's depth)."""
    lab = seg.labels
    flat = lab.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=seg.num_labels + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    w = lab.shape[1]
    out = []
    for L in range(1, len(counts)):
        if counts[L] < 4:
            continue
        idx = order[starts[L]:starts[L + 1]]
        r, c = idx // w, idx % w
        P = seg.points[r, c]
        ok = np.isfinite(P[:, 2])
        if ok.sum() < 4:
            continue
        px = float(np.median(P[ok, 2])) / max(seg.focal, 1e-6)
        if ok.sum() * px * px < min_area:
            continue
        Q = sup.to_plane(P[ok].astype(np.float64))
        out.append(Piece(L, r, c, Q, quantile(Q[:, 2], 0.9), _hull(Q)))
    return out


def _hull(Q: np.ndarray) -> np.ndarray:
    uv = Q[:: max(1, len(Q) // 400), :2].astype(np.float32)
    return cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)


def merge_nested(pieces: list[Piece], inside_share: float = 0.8, top_margin: float = -0.005
                 ) -> tuple[list[Piece], dict[int, int]]:
    """Join each piece lying inside a larger piece's footprint (``inside_share`` of its points)
    and lower than its top (by at least ``-top_margin``) to that piece. Returns the pieces and
    the label map {absorbed label: label it joined}."""
    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i].Q))
    joined: dict[int, int] = {}
    alive = [True] * len(pieces)
    for ib, b in enumerate(order):
        B = pieces[b]
        for a in order[:ib]:
            A = pieces[a]
            if not alive[a] or len(A.hull) < 3 or B.top > A.top + top_margin:
                continue
            pts = B.Q[:: max(1, len(B.Q) // 300), :2]
            if inside_convex(A.hull, pts).mean() >= inside_share:
                A.rows = np.concatenate([A.rows, B.rows])
                A.cols = np.concatenate([A.cols, B.cols])
                A.Q = np.concatenate([A.Q, B.Q])
                joined[B.label] = A.label
                alive[b] = False
                break
    for k, v in list(joined.items()):              # chains: follow to the final piece
        while v in joined:
            v = joined[v]
        joined[k] = v
    return [p for p, a in zip(pieces, alive) if a], joined
