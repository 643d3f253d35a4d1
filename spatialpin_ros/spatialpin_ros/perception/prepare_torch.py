"""The depth-only half of the lifting (:meth:`~spatialpin_ros.perception.geometric.
GeometricBackend.prepare`) with its per-pixel work in torch on the models' device.

The same stages and numbers as the numpy ``prepare``, split where the work is large or small:

* on the device, in two sync-free functions (each one CUDA graph per image size and stride
  with ``graphs``): the working grid's points (``depth_grid.sample_depth`` and the
  back-projection: needs the stride alone, so it is enqueued first with the last frame's
  stride, and again only when the stride changed), then the heights above the support, the
  foreground with its hysteresis band (``segmentation.foreground_surfaces``) and the opened
  plane-pixel mask of ``support.support_extent``;
* on the host, while the device computes the points: the depth's cleaning, the coarse grid
  (numpy's own code) and the support plane (``support.find_support``: RANSAC on about 4,000
  sampled points, whose hypotheses come from numpy's random stream, so that the plane is the
  numpy path's exactly), the objects' layout and the working stride (a host integer: it fixes
  the working grid's shape); after the one synchronisation, the support extent's connected
  components, distance margin and hull (``support.extent_from_near``: OpenCV on the (h, w)
  mask).

The device keeps the working grid's points, heights, foreground and the extent for the masks
half (:class:`~spatialpin_ros.perception.lift_gpu.TorchLifter`), which then uploads nothing
but the support's few numbers. The host copies make a complete
:class:`~spatialpin_ros.perception.geometric.Prepared` too, for the numpy path (frames with
pieces to merge). On CUDA the work is enqueued on a high-priority stream of its own, so that
it runs beside (and ahead of) the detector and SAM of the overlapped frame pipeline.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from spatialpin_ros.core.errors import ImageError, PerceptionError
from spatialpin_ros.core.types import PerceptionStatus, RGBDFrame, Scene
from spatialpin_ros.perception.depth_grid import _offsets, sample_depth
from spatialpin_ros.perception.geometric import (GeometricBackend, Prepared, _Ticker,
                                                 clean_depth)
from spatialpin_ros.perception.lift_gpu import PinnedIn, to_host
from spatialpin_ros.perception.model_utils import GraphedFunction
from spatialpin_ros.perception.segmentation import SurfaceSegmentation, working_stride
from spatialpin_ros.perception.support import extent_from_near

_CONST: dict = {}


def _const(name: str, a, dtype, device: torch.device) -> torch.Tensor:
    """A constant on ``device``, uploaded once (no copies inside a CUDA-graph capture)."""
    key = (name, dtype, str(device))
    if key not in _CONST:
        _CONST[key] = torch.as_tensor(np.array(a), dtype=dtype, device=device)
    return _CONST[key]


def depth_jumps_t(z: torch.Tensor, jump_abs: float, jump_rel: float) -> torch.Tensor:
    """:func:`~spatialpin_ros.perception.surface_ops.depth_jumps` in torch."""
    thr = jump_abs + jump_rel * z
    out = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    jx = (z[:, :-1] > 0) & (z[:, 1:] > 0) & ((z[:, :-1] - z[:, 1:]).abs()
                                             > torch.maximum(thr[:, :-1], thr[:, 1:]))
    jy = (z[:-1] > 0) & (z[1:] > 0) & ((z[:-1] - z[1:]).abs() > torch.maximum(thr[:-1], thr[1:]))
    out[:, :-1] |= jx
    out[:, 1:] |= jx
    out[:-1] |= jy
    out[1:] |= jy
    return out


def sample_depth_t(d: torch.Tensor, s: int, jump_abs: float = 0.006,
                   jump_rel: float = 0.015) -> torch.Tensor:
    """:func:`~spatialpin_ros.perception.depth_grid.sample_depth` in torch: every ``s``-th
    pixel, a missing one filled from its block (nearest valid first) when the block agrees, and
    a filled sample beside a depth jump dropped. ``d`` (H, W) float32."""
    base = d[::s, ::s]
    out = torch.where(torch.isfinite(base), base, torch.zeros_like(base))
    if s <= 1:
        return out
    H, W = d.shape
    h, w = out.shape
    pad = torch.full((h * s, w * s), float("nan"), dtype=d.dtype, device=d.device)
    pad[:H, :W] = d
    blocks = pad.reshape(h, s, w, s).permute(0, 2, 1, 3).reshape(h, w, s * s)
    order = _const(f"offsets{s}", [dr * s + dc for dr, dc in _offsets(s)[1:]], torch.long,
                   d.device)
    v = blocks.index_select(2, order)
    ok = torch.isfinite(v) & (v > 0)
    blk = torch.where(ok, v, torch.zeros_like(v))
    hi = blk.amax(2)
    lo = torch.where(ok, blk, torch.full_like(blk, float("inf"))).amin(2)
    fill = (out <= 0) & (hi > 0) & (hi - lo <= jump_abs + jump_rel * hi)
    first = ok.to(torch.uint8).argmax(2, keepdim=True)
    out = torch.where(fill, blk.gather(2, first)[..., 0], out)
    drop = fill & depth_jumps_t(out, jump_abs * s, jump_rel)
    return torch.where(drop, torch.zeros_like(out), out)


def backproject_t(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``CameraModel.backproject`` with the camera's ray slopes ``u`` (w,) and ``v`` (h,)
    (float32, as ``pixel_rays`` gives them): (h, w, 3) float32, NaN where depth is missing."""
    zz = torch.where(torch.isfinite(z) & (z > 0), z, torch.full_like(z, float("nan")))
    return torch.stack([u[None, :] * zz, v[:, None] * zz, zz], dim=-1)


def grid_points(depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, stride: int
                ) -> torch.Tensor:
    """The working grid's points (h, w, 3) float32 at ``stride`` from the frame's depth as it is
    (invalid values count as missing, as ``GeometricBackend._depth`` makes them): the stride's
    part of the working grid, which needs no support plane."""
    d = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
    return backproject_t(sample_depth_t(d, stride), u, v)


def _erode3(m: torch.Tensor) -> torch.Tensor:
    """3x3 erosion of (h, w) float 0/1 (outside the image does not erode: OpenCV's border)."""
    return -torch.nn.functional.max_pool2d(-m[None, None], 3, 1, 1)[0, 0]


def _dilate(m: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.max_pool2d(m[None, None], k, 1, k // 2)[0, 0]


def grid_masks(pts: torch.Tensor, consts: torch.Tensor, *, seg, plane_inlier: float):
    """``segmentation.foreground_surfaces``' heights and foreground on the working grid's
    points ``pts``, and ``support.support_extent``'s opened plane-pixel mask. ``consts`` (8,)
    float32: the plane origin (3), its normal (3), and ``noise_sigmas * noise_k``,
    ``noise_sigmas_low * noise_k``. Returns (height, foreground, near uint8)."""
    valid = torch.isfinite(pts[..., 2])
    z = torch.where(valid, pts[..., 2], torch.zeros_like(pts[..., 2]))
    q = torch.nan_to_num(pts) - consts[:3]
    n = consts[3:6]
    hgt = q[..., 0] * n[0] + q[..., 1] * n[1] + q[..., 2] * n[2]
    height = torch.where(valid, hgt, torch.full_like(hgt, float("nan")))
    hmin = torch.clamp(consts[6] * z * z, min=seg.min_height)
    fg = valid & (height > hmin) & (height < seg.max_height)
    hlow = torch.clamp(consts[7] * z * z, min=seg.min_height_low)
    low = valid & (height > hlow) & (height < seg.max_height)
    near5 = _dilate(fg.to(torch.float32), 5) > 0
    fg = fg | (low & near5)
    near = (torch.nan_to_num(height, nan=1.0).abs() < 1.5 * plane_inlier).to(torch.float32)
    opened = _dilate(_erode3(near), 3)
    return height, fg, opened.to(torch.uint8)


@dataclass
class TorchPrepared(Prepared):
    """A :class:`Prepared` (host arrays, complete) with the device tensors of the torch
    lifting in ``dev`` (points, height, foreground, extent) and ``ready``, the CUDA event after
    which they are valid (None off CUDA)."""

    dev: dict = field(default_factory=dict)
    ready: Optional[object] = None


class TorchPreparer:
    """``prepare`` of one backend in torch: reused pinned buffers, a high-priority stream of
    its own on CUDA (its few small kernels go ahead of the detector's and SAM's), and with
    ``graphs`` the two device functions as CUDA graphs. It remembers each camera's last
    working stride, so that the working grid's points of the next frame are enqueued before
    the host has found the plane (computed again, rarely, when the stride changes)."""

    def __init__(self, graphs: bool = False) -> None:
        self.graphs = bool(graphs)
        self.pinned = PinnedIn()
        self._fns: dict = {}
        self._stream = None
        self._strides: dict = {}

    def _fn(self, name: str, fn, **kw) -> GraphedFunction:
        key = (name,) + tuple((k, repr(v)) for k, v in sorted(kw.items()))
        if key not in self._fns:
            self._fns[key] = GraphedFunction(functools.partial(fn, **kw), f"prepare {name}",
                                              enabled=self.graphs)
        return self._fns[key]

    def _rays(self, cam, s: int, dev: torch.device):
        ru, rv = cam.subsampled(s).pixel_rays()
        key = (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy, s)
        return (_const(("u",) + key, ru[0], torch.float32, dev),
                _const(("v",) + key, rv[:, 0], torch.float32, dev))

    def _points(self, cam, s: int, depth: torch.Tensor) -> torch.Tensor:
        return self._fn("points", grid_points, stride=s)(depth, *self._rays(cam, s,
                                                                            depth.device))

    def _on_stream(self, dev: torch.device):
        if dev.type != "cuda":
            return contextlib.nullcontext()
        if self._stream is None:
            self._stream = torch.cuda.Stream(dev, priority=-1)
        return torch.cuda.stream(self._stream)

    def prepare(self, backend: GeometricBackend, frame: RGBDFrame, device: torch.device,
                scene_id: str = "") -> "TorchPrepared | Scene":
        """:meth:`GeometricBackend.prepare` of ``frame`` (its depth as it is: no estimator),
        the same results, the working grid's work on ``device``. Order: the depth's upload and
        (with the last frame's stride) the working grid's points are enqueued first; the host
        meanwhile cleans the depth and finds the plane on the coarse grid (numpy's code, so
        numpy's numbers); then the heights, foreground and plane pixels on the device, one
        synchronisation, and the extent on the host."""
        tick = _Ticker()
        p, cam, pose = backend.params, frame.camera, frame.camera_pose
        depth = np.asarray(frame.depth)
        if depth.shape != (cam.height, cam.width):
            raise ImageError(f"depth {depth.shape} does not match the camera "
                             f"{cam.height}x{cam.width}")
        c = p.support_stride
        ckey = (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy)
        guess = self._strides.get(ckey)
        with self._on_stream(device):
            d = self.pinned.upload("depth", depth.astype(np.float32, copy=False), device)
            pts_d = None if guess is None else self._points(cam, guess, d)
        clean = clean_depth(depth)
        coarse = cam.subsampled(c).backproject(sample_depth(clean, c)).astype(np.float32)
        up = None if pose is None else pose.rotation.inv().apply([0.0, 0.0, 1.0])
        try:
            support = backend._support(coarse, up, c)
        except PerceptionError as e:
            status = (PerceptionStatus.NO_VALID_DEPTH if "depth" in str(e)
                      else PerceptionStatus.NO_SUPPORT_PLANE)
            return backend._empty(frame, scene_id, status, str(e), tick)
        if pose is not None:
            backend._align_to_world(support, pose)
        tick("support")
        dist, area = backend._object_layout(coarse, support, c,
                                            backend._workspace_mask(coarse, pose))
        s = working_stride(cam.fx, dist, p.segmentation, area)
        self._strides[ckey] = s
        wcam = cam.subsampled(s)
        sp = p.segmentation
        consts = np.concatenate([support.origin.astype(np.float32),
                                 support.normal.astype(np.float32),
                                 np.array([sp.noise_sigmas * support.noise_k,
                                           sp.noise_sigmas_low * support.noise_k],
                                          dtype=np.float32)])
        with self._on_stream(device):
            if s != guess:                            # the first frame, or a new stride
                pts_d = self._points(cam, s, d)
            k = self.pinned.upload("consts", consts, device)
            fn = self._fn("masks", grid_masks, seg=sp, plane_inlier=p.support.plane_inlier)
            height_d, fg_d, near_d = fn(pts_d, k)
            pts, height, fg, near = to_host([pts_d, height_d, fg_d, near_d])
        tick("points")
        h, w = pts.shape[:2]
        fgs = SurfaceSegmentation(labels=np.zeros((h, w), dtype=np.int32), num_labels=0,
                                  points=pts, height=height,
                                  normals=np.zeros((h, w, 3), dtype=np.float32),
                                  foreground=fg, stride=s, focal=wcam.fx)
        region = extent_from_near(support, pts, near, p.support, wcam.fx)
        ready = None
        with self._on_stream(device):
            region_d = self.pinned.upload("region", region, device)
            if device.type == "cuda":
                ready = torch.cuda.Event()
                ready.record()
        tick("foreground")
        return TorchPrepared(frame=frame, depth=clean, support=support, points=pts,
                             camera=wcam, foreground=fgs, extent=region, tick=tick,
                             dev={"points": pts_d, "height": height_d, "fg": fg_d,
                                  "region": region_d, "depth": d}, ready=ready)
