"""The models backend's masks-to-priors lifting in torch, on the models' device.

:meth:`~spatialpin_ros.perception.geometric.GeometricBackend.finish` on the masks path, with the
masks never leaving the device. The device half (:mod:`~spatialpin_ros.perception.
lift_rows_torch`, one CUDA graph replay with ``graphs``): first-mask-wins labels on the working
grid, every piece's points in the plane frame (one padded tensor, gathered by one stable sort
of the labels), the pieces' size and wall numbers, the shape fits of every object at once
(:mod:`~spatialpin_ros.perception.lift_fits_torch`), the base-on-extent checks, the pieces'
nearest distances and the full-resolution object labels with the silhouette margin. What comes
back to the host, through pinned buffers with one synchronisation: a (K, 25) table of numbers,
a (K, K) distance table, the full-resolution object labels (each prior's mask is a crop of
them) and the detection labels (to name each object after its mask). On CUDA a second graph
(:mod:`~spatialpin_ros.perception.top_faces_torch`) then describes every label's top face
(its own download, waited for only when the top faces are set). The host meanwhile selects
the pieces, resolves what rests on what (a few rectangles), builds the priors, keeps the top
faces' hulls and assigns ids.

The depth-only half (support plane, working grid, foreground, the support's extent) is
:class:`~spatialpin_ros.perception.prepare_torch.TorchPreparer` (its grids on the device: a
:class:`~spatialpin_ros.perception.prepare_torch.TorchPrepared` brings its device tensors, and
nothing is uploaded again), or the host's
:meth:`~spatialpin_ros.perception.geometric.GeometricBackend.prepare`; in the overlapped
frame pipeline it runs while the GPU runs the detector and SAM.

Pieces that touch one another (closer than 1.5 cm: stacks, objects side by side) may have to
be merged (:func:`~spatialpin_ros.perception.pieces.merge_nested`: convex hulls, a KD-tree);
for such a frame those pieces' points come to the host and ``merge_nested`` decides. When it
joins pieces (a bowl cut at its rim, a bottle and its cap), the frame is lifted by the numpy
code (the masks are copied to the host), and ``last["lifting"]`` says so. Likewise an object
of shape "other" (its yaw is OpenCV's minimum-area rectangle) and a possible wall bring that
object's points back. Priors equal the numpy path's up to floating-point rounding
(``test/test_lift_torch.py``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import numpy as np
import torch

from spatialpin_ros.core.geometry import quantile, rect_from_points
from spatialpin_ros.core.types import ObjectPrior, Scene
from spatialpin_ros.perception.base import Segmentation
from spatialpin_ros.perception.detection_names import _DetectionNamer
from spatialpin_ros.perception.geometric import GeometricBackend, Prepared
from spatialpin_ros.perception.lift_fits_torch import fits_from_table
from spatialpin_ros.perception.lift_rows_torch import FIT, COLS, det_labels, lift_rows
from spatialpin_ros.perception.model_utils import GraphedFunction
from spatialpin_ros.perception.objects import WorldView, mask_pixels
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested
from spatialpin_ros.perception.selection import Candidate, bottom_occluded, settle
from spatialpin_ros.perception.top_faces import describe_tops
from spatialpin_ros.perception.top_faces_torch import (object_labels, top_consts,
                                                      top_table_t, tops_from_grids)

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
        np.copyto(buf.numpy(), t.numpy())      # not torch's copy_: its thread pool is slow here
        return buf.to(device, non_blocking=True)


def _bucket(x: int, least: int = 256) -> int:
    """The power of two at least ``x`` (and ``least``): few distinct CUDA graphs."""
    return max(least, 1 << max(0, int(x) - 1).bit_length())


class TorchLifter:
    """The torch lifting of one backend: reused pinned buffers, and with ``graphs`` on CUDA one
    CUDA graph of the device half (:func:`~spatialpin_ros.perception.lift_rows_torch.
    lift_rows`) per image size, working stride, mask count and piece-size bucket."""

    def __init__(self, graphs: bool = False, compile: bool = False,
                 device_tops: Optional[bool] = None) -> None:
        self.graphs = bool(graphs)
        self.compile = bool(compile)
        #: the top faces' array work in the device half (``top_faces_torch``); None: on CUDA
        #: only (on a CPU the host's ``describe_tops`` is faster)
        self.device_tops = device_tops
        self.pinned = PinnedIn()
        self._fns: dict = {}

    def _fn(self, fn, name: str, **kw) -> GraphedFunction:
        """``fn`` with ``kw`` (a graph per distinct ``kw``: params by identity and value)."""
        key = (name,) + tuple((k, (id(v), repr(v)) if k == "params" else v)
                              for k, v in sorted(kw.items()))
        g = self._fns.get(key)
        if g is None:
            f = functools.partial(fn, **kw)
            g = self._fns[key] = GraphedFunction(_Compiled(f) if self.compile else f, name,
                                                 enabled=self.graphs)
        return g

    def lift(self, backend: GeometricBackend, prep: Prepared, masks: torch.Tensor,
             seg: Segmentation, bounds: Optional[tuple], scene_id: str = ""
             ) -> Optional[tuple[Scene, _DetectionNamer]]:
        """:meth:`GeometricBackend.finish` of ``prep`` with the detection masks (K, H, W) bool
        on the device: the scene and the namer that named its objects (with each object's
        detector score), or None when the frame needs the numpy path (pieces to merge)."""
        got = self.device_half(backend, prep, masks)
        prep.tick("segmentation")
        return host_half(backend, prep, got, seg, bounds, scene_id)

    def device_half(self, backend: GeometricBackend, prep: Prepared, masks: torch.Tensor
                    ) -> "DeviceResults":
        """The device half of :meth:`lift` (one graph replay) and its one download."""
        p, dev = backend.params, masks.device
        sup, pts = prep.support, prep.points
        h, w = pts.shape[:2]
        s, K = prep.foreground.stride, int(masks.shape[0])
        up = self.pinned.upload
        on_dev = getattr(prep, "dev", None) or {}      # a TorchPrepared: already there
        if getattr(prep, "ready", None) is not None:
            torch.cuda.current_stream(dev).wait_event(prep.ready)
        P = on_dev["points"] if on_dev else up("points", pts, dev)
        fg = on_dev["fg"] if on_dev else up("fg", prep.foreground.foreground, dev)
        hull = np.concatenate([sup.hull, np.repeat(sup.hull[-1:], _bucket(len(sup.hull), 16)
                                                   - len(sup.hull), 0)])
        consts = np.array([prep.foreground.focal, sup.noise_k, sup.offset], dtype=np.float64)
        small = {"hull": hull, "origin": sup.origin.astype(np.float64),
                 "R": sup.R.astype(np.float64), "consts": consts}
        if not on_dev:
            small.update(height=prep.foreground.height, region=prep.extent)
        dv = {k: up(k, v, dev) for k, v in small.items()}
        if on_dev:
            dv.update(height=on_dev["height"], region=on_dev["region"])
        det = det_labels(masks)
        ds = det[::s, ::s][:h, :w]
        lab = torch.where(fg & (ds >= 0), ds.to(torch.int32) + 1,
                          torch.zeros_like(ds, dtype=torch.int32))
        cap = _bucket(int(torch.bincount(lab.reshape(-1), minlength=K + 1)[1:].max())
                      if K else 1)
        fn = self._fn(lift_rows, "lifting", params=p, K=K, cap=cap, stride=s,
                      width=prep.frame.camera.width, height_px=prep.frame.camera.height)
        table, near, full, boxes, Q, n = fn(lab, P, dv["height"], dv["region"], dv["hull"],
                                            dv["origin"], dv["R"], dv["consts"])
        pending = to_host([table, near, full, det, boxes], wait=False)
        T_wc, world = backend._world(prep.frame, sup)
        plane = backend._plane_world(sup, T_wc)
        tops = None
        if self.device_tops if self.device_tops is not None else dev.type == "cuda":
            # the top faces' graph after the lifting's: the host selects the pieces and builds
            # the priors while the GPU describes the top faces
            depth = on_dev.get("depth")
            tops = to_host(list(self._fn(top_table_t, "top faces", K=K)(
                full, depth if depth is not None else up("depth", prep.depth, dev), boxes,
                up("tops", top_consts(prep.frame.camera, T_wc, plane), dev))), wait=False)
        # while the GPU replays the graphs: the host work that needs no device result
        frame_work = {"T_wc": T_wc, "world": world, "view": WorldView.of(sup, T_wc),
                      "plane": plane}
        return DeviceResults(pending(), Q, n, lab, frame_work, tops)


class _Compiled:
    """``fn`` through ``torch.compile`` (static shapes) on inputs on ``devices`` (CUDA),
    eagerly elsewhere or after the compilation failed (logged once).

    The first call runs ``fn`` eagerly: it uploads the lifting's module constants
    (``lift_torch._const``) outside the traced code. Traced, the upload reads a numpy global
    through ``torch.as_tensor``, and Dynamo (torch 2.11) fails its own guard on it under
    inference mode ("Guard failed on the same frame it was created"), so a node whose first
    frame went straight to the compiled lifting ran it eagerly from then on."""

    def __init__(self, fn, devices: tuple[str, ...] = ("cuda",)) -> None:
        self.fn = fn
        self.devices = tuple(devices)
        self._compiled = None
        self._warm = False
        self.failed: Optional[str] = None

    def __call__(self, *tensors: torch.Tensor):
        if tensors[0].device.type not in self.devices or self.failed is not None:
            return self.fn(*tensors)
        if not self._warm:
            self._warm = True
            return self.fn(*tensors)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self._compiled(*tensors)
        except Exception as e:  # noqa: BLE001 - any compile failure: eager from now on
            import logging

            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            logging.getLogger(__name__).warning(
                "torch.compile of the lifting failed (%s); running it eagerly", self.failed)
            return self.fn(*tensors)


@dataclasses.dataclass
class DeviceResults:
    """What :meth:`TorchLifter.device_half` gives the host: the downloaded ``host`` arrays
    (table, near, full, det, boxes) and, left on the device, the pieces' points ``Q``, their
    counts ``n`` and the working-grid labels ``lab``."""

    host: list
    Q: torch.Tensor
    n: torch.Tensor
    lab: torch.Tensor
    frame_work: dict = dataclasses.field(default_factory=dict)
    #: waits for the top faces' table and top cells (``top_faces_torch.top_table_t``) and
    #: returns them; None: the host describes the top faces
    tops: Optional[Callable] = None


def host_half(backend: GeometricBackend, prep: Prepared, got: DeviceResults, seg: Segmentation,
              bounds: Optional[tuple], scene_id: str = ""
              ) -> Optional[tuple[Scene, _DetectionNamer]]:
    """The host half of :meth:`TorchLifter.lift`: selection, support relations, priors, names
    and ids from the device's results (None when the frame needs the numpy path)."""
    return _finish(backend, prep, got.host, got.Q, got.n, got.lab, seg, bounds, scene_id,
                   got.frame_work, got.tops)


def to_host(ts: list[torch.Tensor], wait: bool = True):
    """Copies to the host through pinned buffers, one synchronisation. With ``wait`` False the
    copies are only enqueued, and a function that waits for them and returns the arrays comes
    back (the host can work meanwhile)."""
    if ts[0].device.type != "cuda":
        out = [t.numpy() for t in ts]
        return out if wait else (lambda: out)
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in ts]
    for hb, t in zip(host, ts):
        hb.copy_(t, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(ts[0].device))

    def arrays() -> list[np.ndarray]:
        done.synchronize()
        return [t.numpy() for t in host]

    return arrays() if wait else arrays


class _Rows:
    """Host access to some rows' points (copied back only when asked)."""

    def __init__(self, Q: torch.Tensor, n: torch.Tensor, noise: np.ndarray) -> None:
        self.Q, self.n, self.noise = Q, n, noise
        self._cache: dict = {}

    def points(self, k: int) -> np.ndarray:
        if k not in self._cache:
            self._cache[k] = self.Q[k, : int(self.n[k])].cpu().numpy()
        return self._cache[k]

    def outline(self, k: int):
        Q = self.points(k)
        return Q[:: len(Q) // 600 + 1, :2], Q, float(self.noise[k])


def _select(table: np.ndarray, near: np.ndarray, rows: _Rows, p) -> Optional[tuple]:
    """The pieces that go on (labels, row indices), as ``select_objects`` orders them, and the
    dropped ones; None when ``merge_nested`` would join pieces."""
    c = {name: FIT + i for i, name in enumerate(COLS)}
    idx = [k for k in range(len(table)) if table[k, c["keep"]] > 0.5]
    if len(idx) > p.max_pieces:                      # clutter or noise: the largest only
        idx = sorted(idx, key=lambda k: -table[k, c["n"]])[: p.max_pieces]
    if len(idx) > 1 and (near[np.ix_(idx, idx)] <= 0.015).any():
        empty = np.zeros(0, dtype=np.int64)
        pieces = [Piece(k + 1, empty, empty, rows.points(k),
                        quantile(rows.points(k)[:, 2], 0.9), _hull(rows.points(k)))
                  for k in idx]
        if merge_nested(pieces)[1]:
            return None
    keep, dropped = [], []
    for k in idx:
        reason = ""
        if table[k, c["big"]] > 0.5:
            reason = "too large (furniture, a wall)"
        elif table[k, c["span"]] > p.wall_length:
            Q = rows.points(k)
            thin = rect_from_points(Q[:: max(1, len(Q) // 400), :2])[1]
            if min(thin) < p.wall_thickness and max(thin) > p.wall_length:
                reason = "a wall (thin, long, upright)"
        if reason:
            dropped.append((k + 1, reason, int(table[k, c["npix"]])))
        else:
            keep.append(k)
    return keep, dropped


def _finish(backend, prep, host, Q, n, lab, seg, bounds, scene_id, frame_work=None,
            tops=None):
    """Support relations, priors, names and ids on the host from the device's results
    (``frame_work``: the camera pose, world frame, :class:`WorldView` and world plane, when
    already computed; ``tops``: :attr:`DeviceResults.tops`)."""
    p, sup, tick = backend.params, prep.support, prep.tick
    table, near, full, det, boxes = host
    c = {name: FIT + i for i, name in enumerate(COLS)}
    rows = _Rows(Q, n, table[:, c["noise"]])
    got = _select(table, near, rows, p.selection)
    if got is None:
        return None
    keep, dropped = got
    camera = np.array([0.0, 0.0, sup.offset])
    fits = fits_from_table(table[keep, :FIT], lambda i: rows.outline(keep[i]), p.shapes, camera)
    cands = [Candidate(k + 1, f, table[k, [c["rmin"], c["rmax"]]].astype(int),
                       table[k, [c["cmin"], c["cmax"]]].astype(int), int(table[k, c["n"]]),
                       float(table[k, c["noise"]])) for k, f in zip(keep, fits)]
    on_ext = [bool(table[k, c["on_extent"]] > 0.5) for k in keep]
    tick("shapes")
    npix = {k + 1: int(table[k, c["npix"]]) for k in keep}
    kept = _support(backend, prep, cands, on_ext, lab, dropped, npix)
    fw = frame_work or {}
    T_wc, world = (fw["T_wc"], fw["world"]) if fw else backend._world(prep.frame, sup)
    view = fw.get("view") or WorldView.of(prep.support, T_wc)
    r0, r1, c0, c1 = bounds if bounds is not None else (0, det.shape[0], 0, det.shape[1])
    namer = _DetectionNamer(seg, bounds)
    namer._lab = det[r0:r1, c0:c1]
    objects, flat = _priors(backend, kept, full, boxes, prep, view, namer)
    _describe_tops(backend, objects, prep, T_wc, fw.get("plane"),
                   int(getattr(backend, "lifting_threads", 1) or 1), (tops, boxes, full))
    objects = backend.tracker.assign(objects)
    tick("priors")
    backend.last = {"support": sup, "extent": prep.extent, "dropped": dropped,
                    "num_pieces": len(seg), "timing_ms": tick.times,
                    "plane_inlier_share": sup.inlier_share, "noise_k": sup.noise_k,
                    "lifting": "torch"}
    frame = prep.frame
    return Scene(scene_id=scene_id, objects=objects, camera=frame.camera, camera_pose=T_wc,
                 stamp=frame.stamp, frame_id=world,
                 support_plane=fw["plane"] if fw else backend._plane_world(sup, T_wc),
                 flat_items=flat), namer


_POOL: dict = {}


def _describe_tops(backend, objects, prep, T_wc, plane, threads: int, device=None) -> None:
    """The objects' top faces: from the device's (``device``: :attr:`DeviceResults.tops`, the
    boxes and the full-resolution labels), the others' by ``backend.describe_tops``, each on
    one of ``threads`` worker threads (the same function per object: the same top faces;
    OpenCV and numpy's larger loops run without the GIL). One thread, or a backend whose
    ``describe_tops`` is its own: in line, and nothing from the device."""
    own = type(backend).describe_tops is not GeometricBackend.describe_tops
    if device is not None and device[0] is not None and not own:
        tops, boxes, full = device
        objects = tops_from_grids(objects, object_labels(objects, boxes, full), *tops())
        if not objects:
            return
    if threads <= 1 or len(objects) < 2 or own:
        backend.describe_tops(objects, prep, T_wc)
        return
    from concurrent.futures import ThreadPoolExecutor

    if plane is None:
        plane = backend._plane_world(prep.support, T_wc)
    pool = _POOL.get(threads)
    if pool is None:
        pool = _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="top-faces")
    depth, camera = prep.depth, prep.frame.camera
    order = sorted(objects, key=lambda o: -(o.roi[2] * o.roi[3] if o.roi is not None else 0))
    list(pool.map(lambda o: describe_tops([o], depth, camera, T_wc, plane), order))


def _support(backend, prep, cands, on_ext, lab, dropped, npix) -> list[Candidate]:
    """``select_objects``' last part (:func:`~spatialpin_ros.perception.selection.settle`);
    the labels come to the host only when a floating object's base must be checked (rare)."""
    sp = backend.params.selection

    def occluded(cs, idx):
        lab_h = lab.cpu().numpy()
        seg_h = dataclasses.replace(prep.foreground, labels=lab_h)
        hidden = set()
        for i in idx:
            rr, cc = np.nonzero(lab_h == cs[i].label)
            c = Candidate(cs[i].label, cs[i].fit, rr, cc, 0, cs[i].noise)
            if bottom_occluded(c, seg_h, sp.occlusion_reach):
                hidden.add(i)
        return hidden

    return settle(cands, on_ext, sp, occluded, lambda c: npix[c.label], dropped)


def _priors(backend, cands, full, box_rows, prep, view, namer
            ) -> tuple[list[ObjectPrior], list]:
    """``GeometricBackend._priors`` on the downloaded results (candidates carry their pixel
    bounds as ``rows``/``cols`` (min, max), so the colour comes from the mask). ``box_rows``:
    the labels' boxes from the device (``lift_rows_torch.label_boxes_t``), as
    :func:`~spatialpin_ros.perception.objects.label_boxes` gives them."""
    boxes = {k: tuple(int(v) for v in b) for k, b in enumerate(box_rows) if k > 0 and b[2] > 0}
    return backend.assemble_priors(
        cands, view, full, boxes,
        lambda c: mask_pixels(prep.frame.rgb, full, boxes[c.label], c.label), prep.frame, namer)


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
