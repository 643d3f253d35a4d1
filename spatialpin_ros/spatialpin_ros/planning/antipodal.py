"""Antipodal top-down grasps sampled on an object's perceived points (ROS-free).

The perceived box says where an object is; its points say what the fingers will meet: a
bottle's neck, a mug's body beside its handle, a bowl's rim, a box perceived too wide. For a
candidate -- a closing direction ``c`` (horizontal), a TCP position over the object and a depth
below the local top -- the open fingers stand on both sides of the **closing region**: the
object's points between the fingertips' height and the top, within half a finger's width of
the closing line and within the open hand. Their extent along ``c`` (robust: the 2nd to 98th
percentile) is what the fingers close on; the TCP moves to its middle and the region is
measured again there. A candidate is kept when:

- the extent is at most ``max_width`` (the gripper's opening less a margin on each side);
- each finger's column (a finger's thickness beyond the preshape opening, its width plus
  ``clearance`` across, from its tip up) holds at most ``max_hits`` points, of the object or of
  anything else (a neighbour, a piece perception left out): the fingers come down there;
- no more than ``max_hits`` points of anything else lie between the fingers.

Candidates: ``headings`` closing directions over a half turn, TCP positions every
``offset_step`` along ``c`` across the whole object (centred ones straddle the object; those
near its edge pinch a wall: **rim grasps** of bowls, cups and plates where the hand cannot
open around the object), and two depths (``depth`` and 60 % of it). The object's hidden back is
completed as perception completes it: a round object (cylinder, sphere, round container) turned
about its vertical axis -- each layer about the centre of the circle its own points fit, since a
bottle's neck or a cup's rim may stand a few millimetres from the fitted cylinder's axis --
anything else by a half turn about the box's centre.

Score (higher first), by weight: how near the object's centre the fingers close (a grasp far
off the centre of mass tilts the object), a narrower extent (a box across its narrow side), how
well the surface normals at the two contacts line up with ``c`` (antipodal), then the full
depth, the wrist well inside its limits and the least wrist turn.
The fingers are commanded to half the measured half-width (or ``squeeze`` inside it, whichever
is deeper; fully closed on a thin wall), so that they press on the object even where the points
make it look wider than it is, and ``recovery.hand_check`` judges the hand by that target
(the task planner commands them nearly closed instead, ``hold.until_stopped``: even half
the measured width stopped short of parts narrower than that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial import cKDTree

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.stacking import wrap
from spatialpin_ros.core.types import ObjectPrior
from spatialpin_ros.planning.grasps import Grasp, Hand, wrist_margin
from spatialpin_ros.planning.robot import top_down_pose


@dataclass(frozen=True)
class SamplingConfig:
    """Settings of ``cloud_grasps`` (metres unless said): ``headings`` closing directions over
    a half turn; ``offset_step`` between TCP positions along the closing direction; ``voxel``
    size the points are thinned to; ``min_points`` in a closing region; ``max_hits`` points
    tolerated in a finger's column (depth noise); ``clearance`` around a finger's width;
    ``keep`` best candidates returned (each at two headings, a half turn apart); ``rim_thin``
    (m): an extent this thin is a wall, closed on fully (as is a rim grasp, off the object's
    axis: the fingers pinch a wall, which the points show wider than it is)."""

    headings: int = 12
    offset_step: float = 0.01
    voxel: float = 0.003
    min_points: int = 6
    max_hits: int = 3
    clearance: float = 0.004
    keep: int = 12
    rim_thin: float = 0.014


@dataclass
class _Cand:
    phi: float
    s: float          # TCP offset along c from the object's centre (m)
    t: float          # TCP offset across c (m)
    tcp_z: float
    width: float
    preshape: float
    align: float
    depth_scale: float
    tight: bool
    score: float = 0.0


def _thin(points: np.ndarray, voxel: float) -> np.ndarray:
    """One point per occupied voxel (their mean)."""
    if len(points) == 0:
        return points
    keys = np.floor(points / voxel).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    out = np.zeros((len(counts), 3))
    np.add.at(out, inv, points)
    return out / counts[:, None]


def _denoise(points: np.ndarray, k: int = 4, radius: float = 0.012) -> np.ndarray:
    """Drop isolated points (flying pixels at depth edges): the ``k``-th neighbour farther
    than ``radius``."""
    if len(points) <= k:
        return points
    d, _ = cKDTree(points).query(points, k=k + 1)
    return points[d[:, -1] <= radius]


def _normals(points: np.ndarray, k: int = 10) -> np.ndarray:
    """Unit surface normals (N, 3) by PCA of each point's ``k`` nearest neighbours."""
    if len(points) < 4:
        return np.zeros_like(points)
    k = min(k, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0]


def _circle(xy: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares circle (centre, radius) through 2D points (Kasa's algebraic fit)."""
    A = np.c_[2 * xy, np.ones(len(xy))]
    sol, *_ = np.linalg.lstsq(A, (xy ** 2).sum(1), rcond=None)
    return sol[:2], float(np.sqrt(max(sol[2] + sol[0] ** 2 + sol[1] ** 2, 0.0)))


#: Layers of a round object's points (``axis_by_height``): their thickness (m) and the fewest
#: points a layer's circle is fitted to.
LAYER_SLAB = 0.01
LAYER_MIN_POINTS = 10


def _layer_circles(prior: ObjectPrior, points: np.ndarray, slab: float = LAYER_SLAB,
                   min_points: int = LAYER_MIN_POINTS
                   ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The credible circles of the points' horizontal ``slab``-thick layers: (layer's point
    mask, centre, rms residual (m)). Credible: ``min_points`` points or more over an arc of
    90 degrees or more, a radius and centre that the prior's box allows."""
    c0 = np.asarray(prior.center[:2], dtype=float)
    r0 = float(max(prior.size[:2])) / 2
    layer = np.floor(points[:, 2] / slab).astype(int)
    found = []
    for k in np.unique(layer):
        sel = layer == k
        xy = points[sel, :2]
        if len(xy) < min_points:
            continue
        ang = np.arctan2(*(xy - c0).T[::-1])
        spread = np.ptp(np.unwrap(np.sort(ang)))
        if spread < math.radians(90):
            continue
        c, r = _circle(xy)
        if 0.004 < r < 1.3 * r0 + 0.005 and np.linalg.norm(c - c0) < 0.5 * r0 + 0.005:
            rms = float(np.sqrt(np.mean((np.linalg.norm(xy - c, axis=1) - r) ** 2)))
            found.append((sel, c, rms))
    return found


def axis_by_height(prior: ObjectPrior, points: np.ndarray, slab: float = LAYER_SLAB,
                   min_points: int = LAYER_MIN_POINTS) -> np.ndarray:
    """For a round object, the centre (N, 2) of the horizontal circle through each point's
    ``slab``-thick layer of points (a bottle's neck may stand a few millimetres from where
    its fitted cylinder says). Where a layer's circle is not credible (too few points, a short
    arc, a centre far off), the median of the credible layers' centres: one object has one
    axis, and the prior's box centre is biased toward the camera when the box is fitted to the
    visible side only (shape 'other'); that centre only where no layer is credible."""
    return _axis_of(prior, len(points), _layer_circles(prior, points, slab, min_points))


def _axis_of(prior: ObjectPrior, n: int, found: list) -> np.ndarray:
    """``axis_by_height`` from the layers' credible circles ``found`` (``_layer_circles``)."""
    if not found:
        return np.tile(np.asarray(prior.center[:2], dtype=float), (n, 1))
    weights = np.array([np.count_nonzero(sel) for sel, _, _ in found], dtype=float)
    centres = np.array([c for _, c, _ in found])
    fallback = np.array([_weighted_median(centres[:, i], weights) for i in range(2)])
    out = np.tile(fallback, (n, 1))
    for sel, c, _ in found:
        out[sel] = c
    return out


def looks_round(prior: ObjectPrior, points: np.ndarray, slab: float = LAYER_SLAB,
                min_points: int = LAYER_MIN_POINTS, share: float = 0.6,
                rms_max: float = 0.003) -> bool:
    """Whether an object that perception left as 'other' is round by its points: circles
    that fit their layers within ``rms_max`` (depth noise) hold ``share`` of the points or
    more, about one vertical axis (centres within a quarter of the box's half-width). A
    bottle or a mug seen from one side is then completed as round, not by a half turn about
    a box centre that leans toward the camera."""
    return _round_by(prior, len(points), _layer_circles(prior, points, slab, min_points),
                     share, rms_max)


def _round_by(prior: ObjectPrior, n: int, found: list, share: float = 0.6,
              rms_max: float = 0.003) -> bool:
    """``looks_round`` from the layers' credible circles ``found`` (``_layer_circles``)."""
    found = [f for f in found if f[2] <= rms_max]
    if len(found) < 2:
        return False
    held = sum(int(np.count_nonzero(sel)) for sel, _, _ in found)
    centres = np.array([c for _, c, _ in found])
    spread = float(np.max(np.linalg.norm(centres - np.median(centres, axis=0), axis=1)))
    return held >= share * n and spread <= 0.25 * float(max(prior.size[:2]))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def completed(prior: ObjectPrior, points: np.ndarray) -> np.ndarray:
    """The object's points with its hidden back completed by symmetry about a vertical axis:
    8 turns of each layer about its own circle's centre for a round object
    (``axis_by_height``), a half turn about the prior's centre otherwise."""
    round_ = prior.shape in ("cylinder", "sphere") or (prior.yaw_symmetric and
                                                        prior.shape != "box")
    found = _layer_circles(prior, points) if round_ or prior.shape == "other" else []
    round_ = round_ or (prior.shape == "other" and _round_by(prior, len(points), found))
    turns = [k * math.pi / 4 for k in range(8)] if round_ else [0.0, math.pi]
    axis = (_axis_of(prior, len(points), found) if round_
            else np.tile(np.asarray(prior.center[:2], dtype=float), (len(points), 1)))
    rel = points[:, :2] - axis
    out = []
    for a in turns:
        ca, sa = math.cos(a), math.sin(a)
        xy = np.stack([ca * rel[:, 0] - sa * rel[:, 1], sa * rel[:, 0] + ca * rel[:, 1]], 1)
        out.append(np.c_[xy + axis, points[:, 2]])
    return np.concatenate(out)


def surface(prior: ObjectPrior, points: np.ndarray, voxel: float = SamplingConfig.voxel
            ) -> tuple[np.ndarray, np.ndarray]:
    """The object's perceived points thinned to ``voxel`` and denoised, and the same with its
    hidden back completed (``completed``)."""
    raw = _denoise(_thin(np.asarray(points, dtype=float).reshape(-1, 3), voxel))
    return raw, _thin(completed(prior, raw), voxel)


def closing_target(width: float, squeeze: float) -> float:
    """Each finger's closing target (m) on a part ``width`` across measured from points: half
    the half-width at most (see the module doc)."""
    return max(0.0, min(width / 2 - squeeze, width / 4))


class _Frame:
    """Points in a candidate's frame: along the closing direction ``u`` and across it ``v``
    (from the object's centre), and height ``z``."""

    def __init__(self, pts: np.ndarray, centre: np.ndarray, phi: float):
        c, t = np.array([math.cos(phi), math.sin(phi)]), np.array([-math.sin(phi), math.cos(phi)])
        d = pts[:, :2] - centre[:2]
        self.u, self.v, self.z = d @ c, d @ t, pts[:, 2]


def cloud_grasps(hand: Hand, prior: ObjectPrior, points: np.ndarray, others: np.ndarray,
                 support_z: float = 0.0, current_yaw: float = 0.0,
                 max_width: float = 0.072, depth: float = 0.025,
                 approach_height: float = 0.10, lift_height: float = 0.10,
                 squeeze: float = 0.005, preshape_margin: float = 0.015,
                 fingertip_clearance: float = 0.006,
                 config: SamplingConfig = SamplingConfig()) -> list[Grasp]:
    """Top-down grasps of ``prior`` from its perceived ``points`` (M, 3, world) with
    ``others`` (K, 3: every other perceived point above the support) kept clear of the
    fingers, best first; empty when ``points`` are too few. Raises ``PlanFailure``: TOO_WIDE
    when the object is wider than ``max_width`` wherever the fingers could close, BLOCKED when
    it fits but every such grasp has a finger column or the closing region taken by other
    points (a neighbour to move first). See the module doc."""
    cfg = config
    raw, full = surface(prior, points, cfg.voxel)
    if len(raw) < cfg.min_points:
        return []
    normals = _normals(raw)
    oth = _thin(np.asarray(others, dtype=float).reshape(-1, 3), cfg.voxel)
    centre = np.asarray(prior.center, dtype=float)
    lo_z = support_z + hand.fingertip_below_tcp + fingertip_clearance
    radius = float(np.max(np.hypot(*(full[:, :2] - centre[:2]).T)))
    cands: list[_Cand] = []
    why = {"fits": 0}
    for k in range(cfg.headings):
        phi = k * math.pi / cfg.headings
        F, O, R = _Frame(full, centre, phi), _Frame(oth, centre, phi), _Frame(raw, centre, phi)
        c_dir = np.array([math.cos(phi), math.sin(phi), 0.0])
        align_all = np.abs(normals @ c_dir)
        for s0 in _offsets(radius, cfg.offset_step):
            for scale in (1.0, 0.6):
                cand = _evaluate(hand, F, O, R, align_all, phi, s0, scale, depth, lo_z,
                                 max_width, preshape_margin, cfg, why)
                if cand is not None:
                    cands.append(cand)
    if not cands:
        if why["fits"] == 0:
            raise PlanFailure(PlanStatus.TOO_WIDE, f"object too wide for the gripper: "
                              f"{prior.id!r}'s points are wider than {100 * max_width:.1f} cm "
                              "wherever the fingers could close")
        raise PlanFailure(PlanStatus.BLOCKED, f"no collision-free grasp: every grasp of "
                          f"{prior.id!r} that fits has a finger on another object's points")
    return _to_grasps(hand, prior, _best(cands, radius, max_width, cfg), centre, current_yaw,
                      approach_height, lift_height, squeeze, cfg)


def _offsets(radius: float, step: float) -> list[float]:
    n = int(math.floor(radius / step))
    return [0.0] + [sgn * i * step for i in range(1, n + 1) for sgn in (1, -1)]


def _region(F: _Frame, s: float, t: float, half_w: float, reach: float,
            fz: float) -> np.ndarray:
    """Points between the open fingers at offsets ``s`` (along c) and ``t`` (across), above
    the fingertips."""
    return (np.abs(F.v - t) <= half_w) & (np.abs(F.u - s) <= reach) & (F.z >= fz + 0.002)


def _evaluate(hand: Hand, F: _Frame, O: _Frame, R: _Frame, align_all: np.ndarray, phi: float,
              s: float, scale: float, depth: float, lo_z: float, max_width: float,
              preshape_margin: float, cfg: SamplingConfig, why: dict) -> Optional[_Cand]:
    half_w = hand.finger_width / 2 + 0.002
    reach = hand.finger_open
    t = 0.0
    for _ in range(4):
        near = (np.abs(F.v - t) <= half_w) & (np.abs(F.u - s) <= reach)
        if np.count_nonzero(near) < cfg.min_points:
            return None
        top = float(np.percentile(F.z[near], 98))
        tcp_z = max(top - min(depth * scale, 0.75 * (top - lo_z + hand.fingertip_below_tcp)),
                    lo_z)
        fz = tcp_z - hand.fingertip_below_tcp
        q = _region(F, s, t, half_w, reach, fz)
        if np.count_nonzero(q) < cfg.min_points:
            return None
        a, b = float(np.min(F.u[q])), float(np.max(F.u[q]))
        # Across: an object narrower than the fingers is centred between them (a neck that
        # stands off the line would be held by a chord, or missed).
        v_lo, v_hi = float(np.min(F.v[q])), float(np.max(F.v[q]))
        t_new = (v_lo + v_hi) / 2 if v_hi - v_lo < 2 * half_w - 0.004 else t
        s_new = (a + b) / 2
        if abs(s_new - s) < 0.002 and abs(t_new - t) < 0.002:
            break
        s, t = s_new, t_new
    width = float(b - a)
    if width > max_width:
        return None
    s = float(a + b) / 2
    # Nothing else between the fingers.
    pre_full = min(hand.finger_open, width / 2 + preshape_margin)
    between_o = (np.abs(O.v - t) <= half_w) & (np.abs(O.u - s) <= pre_full) & (O.z >= fz)
    blocked = np.count_nonzero(between_o) > cfg.max_hits
    fits = False
    for margin, tight in ((preshape_margin, False), (min(0.007, preshape_margin), True)):
        pre = min(hand.finger_open, width / 2 + margin)
        if pre - width / 2 < 0.003:
            continue
        own = _column_hits(F, s, t, pre, hand, fz, cfg)
        if own > cfg.max_hits:
            continue  # the object goes on where a finger would come down: wider than this
        fits = True
        if blocked or own + _column_hits(O, s, t, pre, hand, fz, cfg) > cfg.max_hits:
            continue
        ends = _region(R, s, t, half_w, reach, fz)
        ends &= (np.abs(R.u - a) <= 0.004) | (np.abs(R.u - b) <= 0.004)
        align = float(np.mean(align_all[ends])) if np.any(ends) else 0.5
        why["fits"] += 1
        return _Cand(phi, s, t, tcp_z, width, pre, align, scale, tight)
    why["fits"] += fits
    return None


def _column_hits(F: _Frame, s: float, t: float, pre: float, hand: Hand, fz: float,
                 cfg: SamplingConfig) -> int:
    """Points in the two fingers' columns (preshape ``pre`` each side of offsets ``s``,
    ``t``)."""
    across = np.abs(F.v - t) <= hand.finger_width / 2 + cfg.clearance
    out = np.abs(F.u - s)
    col = across & (out >= pre - 0.001) & (out <= pre + hand.finger_thickness + cfg.clearance)
    return int(np.count_nonzero(col & (F.z >= fz - 0.001)))


def _best(cands: list[_Cand], radius: float, max_width: float,
          cfg: SamplingConfig) -> list[_Cand]:
    """Score, then keep the best of near-duplicates (same heading within 10 degrees, TCP
    within 6 mm, same depth), ``cfg.keep`` in all."""
    for c in cands:
        balance = 1.0 - min(1.0, abs(c.s) / max(radius, 1e-3))
        c.score = (2.0 * balance + 1.5 * (1.0 - c.width / max_width) + 1.0 * c.align
                   + 0.3 * (c.depth_scale == 1.0) - 0.3 * c.tight)
    cands.sort(key=lambda c: -c.score)
    out: list[_Cand] = []
    for c in cands:
        if any(abs(wrap(2 * (c.phi - o.phi))) < math.radians(20) and abs(c.s - o.s) < 0.006
               and abs(c.t - o.t) < 0.006 and c.depth_scale == o.depth_scale for o in out):
            continue
        out.append(c)
        if len(out) >= cfg.keep:
            break
    return out


def _to_grasps(hand: Hand, prior: ObjectPrior, cands: list[_Cand], centre: np.ndarray,
               current_yaw: float, approach_height: float, lift_height: float, squeeze: float,
               cfg: SamplingConfig) -> list[Grasp]:
    out = []
    for c in cands:
        cdir = np.array([math.cos(c.phi), math.sin(c.phi)])
        tdir = np.array([-math.sin(c.phi), math.cos(c.phi)])
        xy = centre[:2] + c.s * cdir + c.t * tdir
        pos = np.array([xy[0], xy[1], c.tcp_z])
        kind = "rim" if abs(c.s) > c.width / 2 + 0.005 else "cloud"
        thin = c.width <= cfg.rim_thin or kind == "rim"
        # Close to half the measured width at most: depth noise and a centre a few mm off
        # widen what is measured (a 2.2 cm bottle neck measures 3 cm), and fingers commanded
        # to stop short of the object neither squeeze it nor tell that they hold it.
        target = 0.0 if thin else closing_target(c.width, squeeze)
        pair = []
        for flip in (0.0, math.pi):
            yaw = wrap(c.phi + math.pi / 2 + flip)
            wm = min(wrist_margin(hand, xy[0], xy[1], yaw), 0.8)
            pair.append((c.score + 0.3 * wm / 0.8 - 0.05 * abs(wrap(yaw - current_yaw)), yaw))
        for score, yaw in sorted(pair, reverse=True):
            out.append(Grasp(
                object_id=prior.id, pose=top_down_pose(pos, yaw),
                pregrasp=top_down_pose(pos + [0, 0, approach_height], yaw),
                lift=top_down_pose(pos + [0, 0, lift_height], yaw), yaw=yaw, width=c.width,
                preshape=c.preshape, finger_target=target,
                depth=_depth_below_top(prior, c.tcp_z), kind=kind, score=score, pinch=thin))
    out.sort(key=lambda g: -g.score)
    return out


def _depth_below_top(prior: ObjectPrior, tcp_z: float) -> float:
    return float(prior.center[2] + prior.size[2] / 2 - tcp_z)
