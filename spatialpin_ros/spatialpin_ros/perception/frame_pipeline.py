"""One frame of the "models" backend on a GPU, with the lifting overlapped with the models.

The lifting's first half needs only the depth (support plane, working grid, foreground, the
support's extent: :meth:`~spatialpin_ros.perception.geometric.GeometricBackend.prepare`), its
second half the masks. So one frame is enqueued on the GPU in this order, each part a CUDA
graph replay where ``cuda_graphs`` is on:

1. the image upload (a reused pinned buffer);
2. the depth model, then the depth's copy into a reused pinned host buffer, and an event;
3. SAM's image encoder and the detector (concurrent streams), SAM's decoder, then the copies
   of the detections (and of the masks, unless the lifting runs in torch on the GPU:
   :mod:`~spatialpin_ros.perception.lift_gpu`) into reused pinned host buffers, and a second
   event.

The host waits for the first event only, and lifts the first half while the GPU runs the
detector and the segmenter; then it waits for the masks and lifts the second half (pieces,
shapes, priors). Priors are those of the sequential path: the same code on the same inputs.

Results: the backend's :class:`~spatialpin_ros.core.types.Scene`, and
``backend.last["model_timing_ms"]`` with the host's times (milliseconds): ``depth_ready`` (enqueue
to depth on the host), ``prepare`` (the first half), ``masks_wait`` (what the host still waited
for the masks), ``finish`` (the second half) and ``total``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import torch

from spatialpin_ros.core.types import RGBDFrame, Scene
from spatialpin_ros.perception.model_utils import upload_image


class PinnedHost:
    """Reused pinned host buffers for device-to-host copies, in ``sets`` alternating sets (a
    frame's arrays stay valid while the next frame is copied). :meth:`copy` enqueues a
    non-blocking copy on the current stream and returns the host tensor (read it after the
    stream's event)."""

    def __init__(self, sets: int = 2) -> None:
        self._sets: list[dict] = [{} for _ in range(max(1, int(sets)))]
        self._k = 0

    def next_frame(self) -> None:
        self._k = (self._k + 1) % len(self._sets)

    def copy(self, name: str, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "cuda":
            return t.detach()
        bufs = self._sets[self._k]
        buf = bufs.get(name)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = bufs[name] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        return buf


def can_overlap(backend, need_depth: bool) -> bool:
    """The overlapped path applies: it is on, and (when depth is needed) the native depth model
    runs on the backend's device. On the CPU it runs too (nothing overlaps there: the same
    steps in order, so the tests cover this path)."""
    from spatialpin_ros.perception.models_depth import TransformersDepth

    if not getattr(backend, "overlap_lifting", False):
        return False
    if not need_depth:
        return True
    d = backend.depth_estimator
    return isinstance(d, TransformersDepth) and d.native and d.device == backend.device


def perceive_overlapped(backend, frame: RGBDFrame, need_depth: bool,
                        scene_id: str = "") -> Scene:
    """:meth:`ModelBackend.perceive`'s GPU path (see the module's description)."""
    t0 = time.perf_counter()
    pinned: PinnedHost = backend._pinned
    pinned.next_frame()
    cuda = backend.device.type == "cuda"
    stream = torch.cuda.current_stream(backend.device) if cuda else None
    with torch.inference_mode():
        img = upload_image(frame.rgb, backend.device)
        depth_ready: Optional[torch.cuda.Event] = None
        if need_depth:
            d = backend.depth_estimator.estimate_gpu(img)
            d_host = pinned.copy("depth", d)
            if cuda:
                depth_ready = torch.cuda.Event()
                depth_ready.record(stream)
        outs = list(backend.segmenter.segment_gpu(img))
        keep = 1 if getattr(backend, "torch_lifting", False) else 0   # masks stay on the GPU
        seg_host = [pinned.copy(f"seg{i}", t) for i, t in enumerate(outs) if i >= keep]
        masks_ready = torch.cuda.Event() if cuda else None
        if cuda:
            masks_ready.record(stream)
    if need_depth:
        if depth_ready is not None:
            depth_ready.synchronize()
        est = backend.finish_depth(d_host.numpy(), frame)
        frame = dataclasses.replace(frame, depth=est)
    t1 = time.perf_counter()
    prep = backend.prepare_lift(frame, scene_id)
    t2 = time.perf_counter()
    if masks_ready is not None:
        masks_ready.synchronize()
    t3 = time.perf_counter()
    seg = backend.finish_segmentation(outs[:keep] + [h.numpy() for h in seg_host])
    scene = backend.lift(frame, seg, scene_id, prep=prep)
    t4 = time.perf_counter()
    backend.last["model_timing_ms"] = {
        "depth_ready": round(1000 * (t1 - t0), 2), "prepare": round(1000 * (t2 - t1), 2),
        "masks_wait": round(1000 * (t3 - t2), 2), "finish": round(1000 * (t4 - t3), 2),
        "models": round(1000 * (t3 - t0), 2), "lift": round(1000 * (t4 - t3 + t2 - t1), 2),
        "total": round(1000 * (t4 - t0), 2)}
    backend.last["depth_estimated"] = bool(need_depth)
    backend.last["overlapped"] = True
    return scene

