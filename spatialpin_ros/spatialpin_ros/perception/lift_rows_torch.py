"""The device half of the torch lifting: from the working grid's piece labels to one table of
per-object numbers, in tensor ops with no host synchronisation (so that a frame's whole device
lifting is one CUDA graph replay for a given image size, stride, mask count and piece size
bucket). See :mod:`~spatialpin_ros.perception.lift_gpu` for the host half.

Each row of the table is one mask's piece (labels 1..K, first mask wins, inside the foreground)
with the quantities of ``pieces.gather_pieces``, ``selection._reject``, ``shapes.fit_shape``
and ``selection._on_extent`` (columns: :data:`COLS`); the pieces' pairwise nearest distances
(for ``merge_nested``'s touching test) and the full-resolution object labels
(``objects.full_labels``) come with it.
"""

from __future__ import annotations

import math

import torch

from spatialpin_ros.perception.lift_fits_torch import fit_table
from spatialpin_ros.perception.lift_torch import (F64, compact, inside_polygon, mptp_max,
                                                  mquantile, take_strided, valid_mask)

#: Columns after fit_table's 14: piece kept by the area rule, pixel bounds on the working grid,
#: pixels, points, depth noise, base on the extent, too large, span of the wall test's points.
COLS = ("keep", "rmin", "rmax", "cmin", "cmax", "npix", "n", "noise", "on_extent", "big",
        "span")
FIT = 14


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


def gather(lab, P, origin, R, focal, min_area: float, K: int, cap: int) -> dict:
    """``pieces.gather_pieces`` for labels 1..K, padded to ``cap`` pixels: the pixels (``pix``,
    ``pixvalid``), plane-frame points with depth ``Q`` (K, cap, 3) and counts ``n``, optical
    depth median ``zmed``, and ``keep`` (the area rule)."""
    dev = lab.device
    w = lab.shape[1]
    flat = lab.reshape(-1).long()
    counts = torch.zeros(K + 1, dtype=torch.long, device=dev).scatter_add_(
        0, flat, torch.ones_like(flat))
    order = torch.sort(flat, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    pixvalid = valid_mask(counts[1:], cap)
    idx = (starts[1:, None] + torch.arange(cap, device=dev)[None]).clamp(max=flat.numel() - 1)
    pix = order[idx]
    Pp = P.reshape(-1, 3)[pix].to(F64)
    ok = pixvalid & torch.isfinite(Pp[..., 2])
    nok = ok.sum(1)
    zmed = mquantile(Pp[..., 2], ok, 0.5)
    px = zmed / torch.clamp(focal, min=1e-6)
    keep = (counts[1:] >= 4) & (nok >= 4) & (nok * px * px >= min_area)
    Q, n = compact((torch.nan_to_num(Pp) - origin) @ R, ok, torch.ones_like(nok), cap)
    return dict(pix=pix, pixvalid=pixvalid, rows=torch.div(pix, w, rounding_mode="floor"),
                cols=pix % w, Q=Q, n=n, zmed=zmed, keep=keep)


def nearest(Q, n) -> torch.Tensor:
    """(K, K): the nearest distance between two pieces' points subsampled as
    ``pieces._touching`` does (inf on the diagonal)."""
    K = Q.shape[0]
    step = torch.clamp(torch.div(n, 150, rounding_mode="floor"), min=1)
    sub, m = take_strided(Q, n, step, 300)
    v = valid_mask(m, 300)
    far = 1e6 * torch.arange(1, K + 1, dtype=sub.dtype, device=sub.device)[:, None, None]
    sub = torch.where(v[..., None], sub, far.expand_as(sub))   # padding: far from all else
    d = torch.cdist(sub.reshape(1, -1, 3), sub.reshape(1, -1, 3))[0].reshape(K, 300, K, 300)
    near = d.amin(dim=(1, 3))
    return near + torch.diag(torch.full((K,), math.inf, dtype=near.dtype, device=near.device))


def on_extent(pc: dict, height, region, hull, share: float) -> torch.Tensor:
    """``selection._on_extent`` of each piece (K,) bool."""
    Q, n = pc["Q"], pc["n"]
    v = valid_mask(n, Q.shape[1])
    hq = Q[..., 2]
    base = v & (hq < (mquantile(hq, v, 0.02) + 0.02)[:, None])
    ins = inside_polygon(hull, Q[..., :2]) & base
    in_plane = ins.sum(1) / base.sum(1).clamp(min=1)
    hp = height.reshape(-1)[pc["pix"]].to(F64)
    ok = pc["pixvalid"] & torch.isfinite(hp)
    sel = torch.where(ok.any(1)[:, None],
                      ok & (hp < (mquantile(hp, ok, 0.02) + 0.02)[:, None]), pc["pixvalid"])
    onr = (region.reshape(-1)[pc["pix"]] & sel).sum(1) / sel.sum(1).clamp(min=1)
    return (in_plane >= share) & (onr >= share)


def wall_numbers(Q, n) -> tuple[torch.Tensor, torch.Tensor]:
    """``selection._reject``'s numbers: the largest footprint extent (ptp) and the diagonal of
    the wall test's points' bounding box (no minimum-area rectangle is longer)."""
    v = valid_mask(n, Q.shape[1])
    ext = mptp_max(Q[..., :2], v)
    step = torch.clamp(torch.div(n, 400, rounding_mode="floor"), min=1)
    sub, m = take_strided(Q[..., :2], n, step, 800)
    vs = valid_mask(m, 800)
    inf = torch.full_like(sub, math.inf)
    span = (torch.where(vs[..., None], sub, -inf).amax(1)
            - torch.where(vs[..., None], sub, inf).amin(1)).norm(dim=1)
    return ext, span


def lift_rows(lab, P, height, region, hull, origin, R, consts, *, K: int, cap: int,
              stride: int, width: int, height_px: int, params):
    """The device lifting of one frame (see the module's description). ``consts``: (focal of
    the working grid, noise_k, camera height above the plane). Returns (table (K, 25) float64,
    nearest (K, K), full-resolution labels (H, W) int16, their boxes (K + 1, 4), Q, n)."""
    p = params
    pc = gather(lab, P, origin, R, consts[0], p.selection.min_object_area, K, cap)
    Q, n = pc["Q"], pc["n"]
    noise = consts[1] * pc["zmed"] * pc["zmed"]
    camera = torch.stack([torch.zeros_like(consts[2]), torch.zeros_like(consts[2]), consts[2]])
    fits = fit_table(Q, n, noise, p.shapes, camera)
    big = torch.iinfo(torch.long).max
    pv, rows, cols = pc["pixvalid"], pc["rows"], pc["cols"]
    ext, span = wall_numbers(Q, n)
    extra = [pc["keep"], torch.where(pv, rows, big).amin(1), torch.where(pv, rows, -1).amax(1),
             torch.where(pv, cols, big).amin(1), torch.where(pv, cols, -1).amax(1), pv.sum(1),
             n, noise, on_extent(pc, height, region, hull, p.selection.min_on_extent),
             ext > p.selection.max_object_size, span]
    table = torch.cat([fits, torch.stack([e.to(F64) for e in extra], 1)], 1)
    z = torch.nan_to_num(P[..., 2], nan=0.0)
    full = full_labels_t(lab, z, stride, width, height_px, p.mask_margin).to(torch.int16)
    return table, nearest(Q, n), full, label_boxes_t(full, K), Q, n


def label_boxes_t(full: torch.Tensor, K: int) -> torch.Tensor:
    """Each label's box in the full-resolution labels (``objects.label_boxes``): (K + 1, 4)
    int64 rows (r0, c0, r1, c1), end exclusive, row k for label k; r1 is 0 for an absent
    label."""
    H, W = full.shape
    idx = full.long()
    dev = full.device
    ar, ac = torch.arange(H, device=dev), torch.arange(W, device=dev)
    rows = torch.zeros((K + 1, H), dtype=torch.bool, device=dev)
    cols = torch.zeros((K + 1, W), dtype=torch.bool, device=dev)
    one = torch.ones((), dtype=torch.bool, device=dev)      # a device value: graph-safe
    rows.index_put_((idx, ar[:, None].expand(H, W)), one)
    cols.index_put_((idx, ac[None, :].expand(H, W)), one)
    return torch.stack([torch.where(rows, ar, H).amin(1), torch.where(cols, ac, W).amin(1),
                        torch.where(rows, ar, -1).amax(1) + 1,
                        torch.where(cols, ac, -1).amax(1) + 1], 1)
