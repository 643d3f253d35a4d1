"""The models backend's masks-to-priors lifting in torch, on the models' device.

:meth:`~spatialpin_ros.perception.geometric.GeometricBackend.finish` on the masks path, with the
masks never leaving the device: first-mask-wins labels on the working grid, every piece's
points in the plane frame (one padded tensor, gathered by one stable sort of the labels), the
pieces' size and wall checks, the shape fits of every object at once
(:mod:`~spatialpin_ros.perception.lift_fits_torch`), the base-on-extent checks, and the
full-resolution object labels with the silhouette margin. What comes back to the host: one
small table of per-object numbers (fits, pixel bounds), the full-resolution object labels
(uint8/int16 crops of each prior's mask come from it) and the detection labels inside the
masks' bounds (to name each object after its mask), through reused pinned buffers. The host
then resolves what rests on what (a few boxes), builds the priors and assigns ids.

The depth-only half (support plane, working grid, foreground, the support's extent) is the
host's :meth:`~spatialpin_ros.perception.geometric.GeometricBackend.prepare`: in the overlapped
frame pipeline it runs while the GPU runs the detector and SAM, off the critical path.

Pieces that touch one another (closer than 1.5 cm: stacks, objects side by side) may have to
be merged (:func:`~spatialpin_ros.perception.pieces.merge_nested`: convex hulls, a KD-tree);
for such a frame the pieces' points come to the host and ``merge_nested`` decides. When it
joins pieces (a bowl cut at its rim, a bottle and its cap), the frame is lifted by the numpy
code (the masks are copied to the host), and ``last["lifting"]`` says so. Priors equal the numpy path's up to floating-point rounding
(``test/test_lift_torch.py``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import torch

from spatialpin_ros.core.geometry import quantile, rect_from_points
from spatialpin_ros.core.types import ObjectPrior, Scene
from spatialpin_ros.perception.base import Segmentation
from spatialpin_ros.perception.detection_names import _DetectionNamer
from spatialpin_ros.perception.geometric import GeometricBackend, Prepared
from spatialpin_ros.perception.lift_fits_torch import fit_shapes
from spatialpin_ros.perception.lift_torch import (F64, compact, inside_polygon, mptp_max,
                                                  mquantile, take_strided, valid_mask)
from spatialpin_ros.perception.objects import WorldView, make_prior
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested
from spatialpin_ros.perception.selection import Candidate, _stands_on_extent, bottom_occluded
from spatialpin_ros.perception.shapes import resolve_support

LIFTING_MODES = ("auto", "numpy", "torch")


class PinnedIn:
    """Reused pinned host buffers for host-to-device copies (one per name and shape)."""

    def __init__(self) -> None:
        self._bufs: dict = {}

    def upload(self, name: str, a: np.ndarray, device: torch.device) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if device.type != "cuda":
            return t
        buf = self._bufs.get(name)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = self._bufs[name] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t)
        return buf.to(device, non_blocking=True)


def det_labels(masks: torch.Tensor) -> torch.Tensor:
    """(H, W) int16: the index of the first mask holding each pixel, -1 where none."""
    if masks.shape[0] == 0:
        return torch.full(masks.shape[1:], -1, dtype=torch.int16, device=masks.device)
    m = masks.to(torch.uint8)
    first = m.argmax(0).to(torch.int16)
    return torch.where(m.amax(0) > 0, first, torch.full_like(first, -1))


def full_labels_t(lab: torch.Tensor, z: torch.Tensor, stride: int, width: int, height: int,
                  margin: int) -> torch.Tensor:
    """:func:`~spatialpin_ros.perception.objects.full_labels` in torch: grown by the margin over
    nobody's pixels of no or near depth, then nearest-neighbour upsampled to (height, width)."""
    g = int(math.ceil(margin / stride))
    if g > 0:
        k = 2 * g + 1
        lf = lab.to(torch.float32)[None, None]
        grown = torch.nn.functional.max_pool2d(lf, k, 1, g)[0, 0]
        zl0 = torch.where(lab > 0, z, torch.zeros_like(z))[None, None]
        zl = torch.nn.functional.max_pool2d(zl0, k, 1, g)[0, 0]
        take = (lab == 0) & (grown > 0) & ((z <= 0) | ((z - zl).abs() < 0.03))
        lab = torch.where(take, grown.to(lab.dtype), lab)
    h, w = lab.shape
    if (h, w) == (height, width):
        return lab
    ri = torch.floor(torch.arange(height, device=lab.device, dtype=F64) * (h / height)).long()
    ci = torch.floor(torch.arange(width, device=lab.device, dtype=F64) * (w / width)).long()
    return lab[ri.clamp(max=h - 1)][:, ci.clamp(max=w - 1)]


class _Pieces:
    """The frame's pieces on the device: labels (K,), pixels (K, N) and their validity, points
    in the plane frame compacted to those with depth ``Q`` (K, N, 3) float64 with counts ``n``,
    the optical depth median ``zmed``."""

    def __init__(self, lab, P, origin, R, focal, min_area, num_labels):
        dev = lab.device
        w = lab.shape[1]
        flat = lab.reshape(-1).long()
        counts = torch.bincount(flat, minlength=num_labels + 1)[1:]
        order = torch.sort(flat, stable=True).indices
        starts = torch.cumsum(counts, 0) - counts + (flat == 0).sum()
        cap = max(int(counts.max()) if num_labels else 0, 1)
        self.pixvalid = valid_mask(counts, cap)
        idx = (starts[:, None] + torch.arange(cap, device=dev)[None]).clamp(max=flat.numel() - 1)
        self.pix = order[idx]
        Pp = P.reshape(-1, 3)[self.pix].to(F64)
        ok = self.pixvalid & torch.isfinite(Pp[..., 2])
        nok = ok.sum(1)
        self.zmed = mquantile(Pp[..., 2], ok, 0.5)
        px = self.zmed / max(focal, 1e-6)
        self.keep = (counts >= 4) & (nok >= 4) & (nok * px * px >= min_area)
        Qall = (torch.nan_to_num(Pp) - origin) @ R
        self.Q, self.n = compact(Qall, ok, torch.ones_like(nok), cap)
        self.rows, self.cols = torch.div(self.pix, w, rounding_mode="floor"), self.pix % w

    def select(self, sel: torch.Tensor) -> None:
        for k in ("pixvalid", "pix", "zmed", "Q", "n", "rows", "cols"):
            setattr(self, k, getattr(self, k)[sel])


def _touching(pc: _Pieces, touch: float) -> bool:
    """Any two pieces with points (subsampled as ``pieces._touching``) closer than ``touch``."""
    K = pc.Q.shape[0]
    if K < 2:
        return False
    step = torch.clamp(torch.div(pc.n, 150, rounding_mode="floor"), min=1)
    sub, m = take_strided(pc.Q, pc.n, step, 300)
    v = valid_mask(m, 300)
    d = torch.cdist(sub.reshape(1, -1, 3), sub.reshape(1, -1, 3))[0].reshape(K, 300, K, 300)
    ok = v[:, :, None, None] & v[None, None, :, :]
    near = torch.where(ok, d, torch.full_like(d, math.inf)).amin(dim=(1, 3))
    near.fill_diagonal_(math.inf)
    return bool((near <= touch).any())


def _merges(pc: _Pieces, labels: list[int]) -> bool:
    """Whether :func:`~spatialpin_ros.perception.pieces.merge_nested` joins any pieces (run on
    the host on the pieces' points: only for frames with touching pieces)."""
    Qh, n = pc.Q.cpu().numpy(), pc.n.tolist()
    empty = np.zeros(0, dtype=np.int64)
    pieces = [Piece(L, empty, empty, Qh[k, : n[k]], quantile(Qh[k, : n[k], 2], 0.9),
                    _hull(Qh[k, : n[k]])) for k, L in enumerate(labels)]
    return bool(merge_nested(pieces)[1])


def _walls(pc: _Pieces, p) -> list[str]:
    """``selection._reject`` of each piece: "" or why it is not an object. The minimum-area
    rectangle of the wall rule is taken on the host only for pieces long enough to be walls."""
    v = valid_mask(pc.n, pc.Q.shape[1])
    big = (mptp_max(pc.Q[..., :2], v) > p.max_object_size).tolist()
    step = torch.clamp(torch.div(pc.n, 400, rounding_mode="floor"), min=1)
    sub, m = take_strided(pc.Q[..., :2], pc.n, step, 800)
    vs = valid_mask(m, 800)
    inf = torch.full_like(sub, math.inf)
    span = (torch.where(vs[..., None], sub, -inf).amax(1)
            - torch.where(vs[..., None], sub, inf).amin(1)).norm(dim=1)
    long = (span > p.wall_length).tolist()
    out = []
    for k in range(len(big)):
        if big[k]:
            out.append("too large (furniture, a wall)")
            continue
        if long[k]:
            thin = rect_from_points(sub[k, : int(m[k])].cpu().numpy())[1]
            if min(thin) < p.wall_thickness and max(thin) > p.wall_length:
                out.append("a wall (thin, long, upright)")
                continue
        out.append("")
    return out


def _on_extent(pc: _Pieces, height: torch.Tensor, region: torch.Tensor, hull: torch.Tensor,
               share: float) -> list[bool]:
    """``selection._on_extent`` of each piece."""
    v = valid_mask(pc.n, pc.Q.shape[1])
    hq = pc.Q[..., 2]
    base = v & (hq < (mquantile(hq, v, 0.02) + 0.02)[:, None])
    ins = inside_polygon(hull, pc.Q[..., :2]) & base
    in_plane = ins.sum(1) / base.sum(1).clamp(min=1)
    hp = height.reshape(-1)[pc.pix].to(F64)
    ok = pc.pixvalid & torch.isfinite(hp)
    anyok = ok.any(1)
    sel = torch.where(anyok[:, None],
                      ok & (hp < (mquantile(hp, ok, 0.02) + 0.02)[:, None]), pc.pixvalid)
    onr = (region.reshape(-1)[pc.pix] & sel).sum(1) / sel.sum(1).clamp(min=1)
    return ((in_plane >= share) & (onr >= share)).tolist()


def lift_masks_torch(backend: GeometricBackend, prep: Prepared, masks: torch.Tensor,
                     seg: Segmentation, bounds: Optional[tuple], scene_id: str = "",
                     pinned_in: Optional[PinnedIn] = None
                     ) -> Optional[tuple[Scene, _DetectionNamer]]:
    """:meth:`GeometricBackend.finish` of ``prep`` with the detection masks (K, H, W) bool on the
    device: the scene and the namer that named its objects (with each object's detector
    score), or None when the frame needs the numpy path (touching pieces)."""
    p, dev = backend.params, masks.device
    pin = pinned_in or PinnedIn()
    frame, sup, pts, tick = prep.frame, prep.support, prep.points, prep.tick
    s = prep.foreground.stride
    h, w = pts.shape[:2]
    P = pin.upload("points", pts, dev)
    fg = pin.upload("fg", prep.foreground.foreground, dev)
    height = pin.upload("height", prep.foreground.height, dev)
    region = pin.upload("region", prep.extent, dev)
    hull = torch.as_tensor(sup.hull, dtype=F64, device=dev)
    det = det_labels(masks)
    ds = det[::s, ::s][:h, :w]
    lab = torch.where(fg & (ds >= 0), ds.to(torch.int32) + 1, torch.zeros_like(ds, dtype=torch.int32))
    origin = torch.as_tensor(sup.origin, dtype=F64, device=dev)
    R = torch.as_tensor(sup.R, dtype=F64, device=dev)
    pc = _Pieces(lab, P, origin, R, prep.foreground.focal, p.selection.min_object_area,
                 int(masks.shape[0]))
    labels = (torch.nonzero(pc.keep)[:, 0] + 1).tolist()
    sizes = pc.n[pc.keep].tolist()
    order = sorted(range(len(labels)), key=lambda i: -sizes[i])
    if len(order) > p.selection.max_pieces:         # clutter or noise: the largest only
        order = order[: p.selection.max_pieces]
    else:
        order = list(range(len(labels)))
    sel = torch.nonzero(pc.keep)[:, 0][torch.as_tensor(order, dtype=torch.long, device=dev)]
    pc.select(sel)
    labels = [labels[i] for i in order]
    tick("segmentation")
    if _touching(pc, 0.015) and _merges(pc, labels):
        return None
    reasons = _walls(pc, p.selection)
    keep = [i for i, r in enumerate(reasons) if not r]
    npix = pc.pixvalid.sum(1).tolist()
    dropped = [(labels[i], r, npix[i]) for i, r in enumerate(reasons) if r]
    kt = torch.as_tensor(keep, dtype=torch.long, device=dev)
    pc.select(kt)
    labels = [labels[i] for i in keep]
    noise = sup.noise_k * pc.zmed * pc.zmed
    fits = fit_shapes(pc.Q, pc.n, noise, p.shapes, np.array([0.0, 0.0, sup.offset]))
    on_ext = _on_extent(pc, height, region, hull, p.selection.min_on_extent)
    return _finish_host(backend, prep, pc, labels, fits, on_ext, noise, lab, det, P, seg,
                        bounds, scene_id, dropped, tick)


def _download(pc: _Pieces, noise, lab, det, P, prep: Prepared, bounds, margin: int):
    """One copy back: per-object pixel bounds, pixel and point counts and noise; the
    full-resolution object labels; the detection labels inside ``bounds``."""
    cam = prep.frame.camera
    big = torch.iinfo(torch.long).max
    rmin = torch.where(pc.pixvalid, pc.rows, torch.full_like(pc.rows, big)).amin(1)
    cmin = torch.where(pc.pixvalid, pc.cols, torch.full_like(pc.cols, big)).amin(1)
    rmax = torch.where(pc.pixvalid, pc.rows, torch.full_like(pc.rows, -1)).amax(1)
    cmax = torch.where(pc.pixvalid, pc.cols, torch.full_like(pc.cols, -1)).amax(1)
    table = torch.stack([rmin.to(F64), rmax.to(F64), cmin.to(F64), cmax.to(F64),
                         pc.pixvalid.sum(1).to(F64), pc.n.to(F64), noise], 1)
    z = torch.nan_to_num(P[..., 2], nan=0.0)
    full = full_labels_t(lab, z, prep.foreground.stride, cam.width, cam.height, margin)
    full = full.to(torch.int16)
    r0, r1, c0, c1 = bounds if bounds is not None else (0, cam.height, 0, cam.width)
    outs = [table, full, det[r0:r1, c0:c1]]
    if lab.device.type == "cuda":
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in outs]
        for hb, t in zip(host, outs):
            hb.copy_(t, non_blocking=True)
        torch.cuda.current_stream(lab.device).synchronize()
        outs = host
    return [t.numpy() for t in outs]


def _finish_host(backend, prep, pc, labels, fits, on_ext, noise, lab, det, P, seg, bounds,
                 scene_id, dropped, tick) -> tuple[Scene, _DetectionNamer]:
    """Support relations, priors, names and ids on the host from the device's small results."""
    p = backend.params
    table, full, det_crop = _download(pc, noise, lab, det, P, prep, bounds, p.mask_margin)
    frame, sup = prep.frame, prep.support
    cands = [Candidate(L, f, table[i, 0:2].astype(int), table[i, 2:4].astype(int),
                       int(table[i, 5]), float(table[i, 6]))
             for i, (L, f) in enumerate(zip(labels, fits))]
    tick("shapes")
    resolve_support(fits, tol=p.selection.rest_tolerance)
    floating = {i for i, c in enumerate(cands)
                if c.fit.support is None and c.fit.low > p.selection.rest_tolerance + 3 * c.noise}
    if floating:                                     # rare: the labels come to the host
        lab_h = lab.cpu().numpy()
        seg_h = dataclasses.replace(prep.foreground, labels=lab_h)
        for i in list(floating):
            rows, cols = np.nonzero(lab_h == cands[i].label)
            c = Candidate(cands[i].label, cands[i].fit, rows, cols, 0, cands[i].noise)
            if bottom_occluded(c, seg_h, p.selection.occlusion_reach):
                floating.discard(i)
        if floating:
            resolve_support(fits, tol=p.selection.rest_tolerance, only=floating)
    keep = []
    for i, c in enumerate(cands):
        if i in floating and c.fit.support is None:
            dropped.append((c.label, "not resting on anything", int(table[i, 4])))
        elif not _stands_on_extent(i, fits, on_ext):
            dropped.append((c.label, "beyond the support's extent", int(table[i, 4])))
        else:
            keep.append(c)
    T_wc, world = backend._world(frame, sup)
    namer = _DetectionNamer(seg, bounds)
    namer._lab = det_crop
    objects, flat = _priors(backend, keep, full, prep, T_wc, namer)
    objects = backend.tracker.assign(objects)
    tick("priors")
    backend.last = {"support": sup, "extent": prep.extent, "dropped": dropped,
                    "num_pieces": len(seg), "timing_ms": tick.times,
                    "plane_inlier_share": sup.inlier_share, "noise_k": sup.noise_k,
                    "lifting": "torch"}
    return Scene(scene_id=scene_id, objects=objects, camera=frame.camera, camera_pose=T_wc,
                 stamp=frame.stamp, frame_id=world,
                 support_plane=backend._plane_world(sup, T_wc), flat_items=flat), namer


def _priors(backend, cands, full, prep, T_wc, namer) -> tuple[list[ObjectPrior], list]:
    """``GeometricBackend._priors`` on the downloaded results (candidates carry their pixel
    bounds as ``rows``/``cols`` (min, max))."""
    p, frame = backend.params, prep.frame
    cam = frame.camera
    view = WorldView.of(prep.support, T_wc)
    objects, flat = [], []
    for c in cands:
        f = c.fit
        is_flat = (f.top < p.flat_max_height and not f.container
                   and f.top < p.flat_max_ratio * float(max(f.size_uv)))
        if (not is_flat and f.top - f.bottom < p.min_object_height) or (
                is_flat and p.flat_items == "drop"):
            continue
        if frame.camera_pose is not None and not backend._in_workspace(view.box(f)[0]):
            continue
        prior = make_prior(f, c.label, c.rows, c.cols, c.num_points, view, full, frame.rgb,
                           prep.foreground.stride)
        if is_flat:
            prior.id = f"flat_{len(flat)}"
            flat.append(prior)
        else:
            objects.append(prior)
    if objects:
        names = namer.name(frame.rgb, [o.full_mask(cam.height, cam.width) for o in objects])
        for ob, name in zip(objects, names):
            ob.label = name
    objects.sort(key=lambda ob: (ob.roi[0], ob.roi[1]))
    return objects, flat


def device_masks(seg: Segmentation, device: torch.device, frame) -> torch.Tensor:
    """The segmentation's masks as one (K, H, W) bool tensor on ``device``."""
    if len(seg) == 0:
        return torch.zeros((0, frame.camera.height, frame.camera.width), dtype=torch.bool,
                           device=device)
    return torch.stack([torch.as_tensor(m, device=device) for m in seg.masks]).to(torch.bool)


def host_segmentation(seg: Segmentation) -> Segmentation:
    """``seg`` with its masks as host numpy arrays (they may be device tensors)."""
    if not any(isinstance(m, torch.Tensor) for m in seg.masks):
        return seg
    masks = [m.cpu().numpy() if isinstance(m, torch.Tensor) else m for m in seg.masks]
    return Segmentation(masks=masks, names=list(seg.names), scores=list(seg.scores))
