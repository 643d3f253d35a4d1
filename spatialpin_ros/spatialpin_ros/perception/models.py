"""The "models" perception backend: learned depth, detection and segmentation plugged into the
geometric backend (the RGB-only path of SpatialPIN).

    backend = make_backend("models")                 # the real checkpoints (hub ids, below)
    backend = make_backend("models", depth_model="/models/da2", detector_model="/models/owlv2",
                           segmenter_model="/models/sam", object_names=["red mug", "bowl"])
    scene = backend.perceive(frame)                  # frame.depth may be all 0/NaN (RGB only)

Per frame:

1. the colour image is uploaded once; the frame's device work is one function: on CUDA the
   depth model (:class:`TransformersDepth`, only when the frame has no valid depth, or always
   with ``always_estimate_depth``), SAM's image encoder and the detector
   (:class:`OpenVocabDetector`, all object names in one call) run as three concurrent branches
   (forked streams), then SAM's decoder (:class:`PromptableSegmenter`, all boxes in one call);
   half precision, ``torch.inference_mode``, pre- and post-processing on the device, optional
   CUDA graph (``cuda_graphs``: the whole frame is one graph replay) / ``torch.compile``; only the
   final depth and masks (and a few numbers) come back to the host, with one synchronisation;
2. the masks (with their detector names and scores) and the depth are lifted to 3D priors by the
   SAME code as the geometric backend (:class:`GeometricBackend`: support plane, per-mask
   primitive fits, support resolution, ids), so priors have one format; each prior's label is its
   detector name and its confidence the geometric fit confidence times the detector score.

Object names come from ``object_names`` and can be replaced at any time with
:meth:`ModelBackend.set_object_names` or from a VLM's answer to SpatialPIN's object-finding prompt
(:meth:`ModelBackend.set_object_names_from_text`, :data:`OBJECT_FINDING_PROMPT`).

On import this module registers the backend as "models" (see
:func:`~spatialpin_ros.perception.base.register_backend`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from spatialpin_ros.core.errors import PerceptionError
from spatialpin_ros.core.types import CameraModel, RGBDFrame, Scene
from spatialpin_ros.perception.base import DepthEstimator, Segmentation, register_backend
from spatialpin_ros.perception.detection_names import _DetectionNamer, _Fixed
from spatialpin_ros.perception.frame_pipeline import PinnedHost, can_overlap, perceive_overlapped
from spatialpin_ros.perception.geometric import GeometricBackend, GeometricParams, Prepared
from spatialpin_ros.perception.lift_gpu import (LIFTING_MODES, TorchLifter, device_masks,
                                                host_segmentation)
from spatialpin_ros.perception.model_utils import (GraphedFunction, pick_device, pick_dtype,
                                                   to_host, upload_image)
from spatialpin_ros.perception.models_depth import DEFAULT_DEPTH_MODEL, TransformersDepth
from spatialpin_ros.perception.models_detect import (BOX_THRESHOLD, DEFAULT_DETECTOR_MODEL,
                                                     DEFAULT_OBJECT_NAMES, OBJECT_FINDING_PROMPT,
                                                     Detections, OpenVocabDetector,
                                                     parse_object_lines)
from spatialpin_ros.perception.models_segment import (DEFAULT_SAM_MODEL, DetectAndSegment,
                                                      PromptableSegmenter)
from spatialpin_ros.perception.prepare_torch import TorchPreparer

__all__ = ["DEFAULT_DEPTH_MODEL", "DEFAULT_DETECTOR_MODEL", "DEFAULT_OBJECT_NAMES",
           "DEFAULT_SAM_MODEL", "OBJECT_FINDING_PROMPT", "BOX_THRESHOLD", "DetectAndSegment",
           "Detections", "ModelBackend", "OpenVocabDetector", "PromptableSegmenter",
           "TransformersDepth", "intrinsics", "parse_object_lines"]


def intrinsics(width: int, height: int, camera: Optional[CameraModel] = None,
               fov_deg: float = 60.0) -> CameraModel:
    """The camera's intrinsics: ``camera`` (from camera_info) when there is one, else square
    pixels with vertical field of view ``fov_deg`` (:meth:`CameraModel.from_fov`)."""
    if camera is not None:
        if (camera.width, camera.height) != (width, height):
            raise PerceptionError(f"camera_info is {camera.width}x{camera.height} but the image "
                                  f"is {width}x{height}")
        return camera
    return CameraModel.from_fov(int(width), int(height), float(fov_deg))


class ModelBackend(GeometricBackend):
    """Depth, detection and segmentation models plugged into the geometric lifting.

    Args:
        params: :class:`GeometricParams` of the lifting (other keyword arguments not listed
            here set its fields too, e.g. ``workspace_x=None``).
        depth_model: hub id / local directory of a metric depth checkpoint, a
            :class:`~spatialpin_ros.perception.base.DepthEstimator`, or None (no depth model:
            frames must carry depth).
        detector_model: hub id / local directory of an OWLv2 checkpoint or an
            :class:`OpenVocabDetector` (then the detector arguments below are its own).
        segmenter_model: hub id / local directory of a SAM checkpoint or a
            :class:`PromptableSegmenter`.
        object_names: names the detector looks for (default: a given detector's own names, else
            :data:`DEFAULT_OBJECT_NAMES`).
        device, dtype: where and in what precision the models run ("auto": CUDA in float16 if
            available, else the CPU in float32 with a warning).
        box_threshold, nms_iou, max_detections, detector_input_size, query_template: the
            detector's (see :class:`OpenVocabDetector`); ``mask_box_margin``: SAM masks are
            clipped to their box grown by this fraction (None: not clipped).
        depth_input_size: the depth model's input size (default: its processor's, 518 for Depth
            Anything; smaller is faster and coarser).
        plane_distance: camera height above the table (m) for the depth's scale alignment
            (None: no alignment).
        fov_deg: when set, the intrinsics are ``CameraModel.from_fov(W, H, fov_deg)`` instead of
            the frame's (for cameras without a calibrated camera_info); also the depth model's
            fallback.
        always_estimate_depth: estimate depth even when the frame has some.
        cuda_graphs: capture the frame's device work in one CUDA graph (per image size and
            number of names; falls back to eager with a warning if capture fails);
            ``compile``: ``torch.compile`` the parts (falls back likewise); ``concurrent``:
            depth, SAM's encoder and the detector as concurrent CUDA streams.
        overlap_lifting: on CUDA, lift the depth-only half of the frame on the host while the
            GPU runs the detector and SAM (:mod:`~spatialpin_ros.perception.frame_pipeline`);
            off: the whole frame's models first (one graph), then the lifting.
        lifting: where the masks are lifted to priors: "numpy" (the geometric backend's code
            on the host), "torch" (:mod:`~spatialpin_ros.perception.lift_gpu`: on the models'
            device, the masks never leave it; the same priors) or "auto" (torch on CUDA, else
            numpy; the default: the CUDA-graph torch lifting is twice as fast on a GPU). With
            torch, :class:`Segmentation` masks of a frame are device tensors.
        lifting_compile: on CUDA, ``torch.compile`` the torch lifting's device half (its
            ~1,500 small operations fused into fewer kernels; inside the CUDA graph where
            ``cuda_graphs`` is on; the first frame runs eagerly, the second compiles for a
            minute or so; falls back to eager).
        lifting_threads: worker threads for the torch lifting's top faces (one object
            each; the same top faces; 1, the default: in line. Not faster on a 2-core
            machine; not yet timed on a GPU machine's host).
        seed: the lifting's RANSAC seed.

    Raises :class:`~spatialpin_ros.core.errors.ModelLoadError` when a model cannot be loaded.
    """

    name = "models"

    def __init__(self, params: Optional[GeometricParams] = None, *,
                 depth_model: Any = DEFAULT_DEPTH_MODEL,
                 detector_model: Any = DEFAULT_DETECTOR_MODEL,
                 segmenter_model: Any = DEFAULT_SAM_MODEL,
                 object_names: Optional[Sequence[str]] = None,
                 device: Any = "auto", dtype: Any = "auto",
                 box_threshold: float = BOX_THRESHOLD, nms_iou: float = 0.5,
                 max_detections: int = 10, detector_input_size: Optional[int] = None,
                 depth_input_size: Optional[int] = None,
                 query_template: str = "a photo of a {}", mask_box_margin: Optional[float] = 0.1,
                 plane_distance: Optional[float] = None, fov_deg: Optional[float] = None,
                 always_estimate_depth: bool = False, cuda_graphs: bool = False,
                 compile: bool = False, concurrent: bool = True, overlap_lifting: bool = True,
                 lifting: str = "auto", lifting_compile: bool = False,
                 lifting_threads: int = 1, seed: int = 0, **overrides):
        dev = pick_device(device)
        dt = pick_dtype(dtype, dev)
        if lifting not in LIFTING_MODES:
            raise ValueError(f"lifting must be one of {LIFTING_MODES}, got {lifting!r}")
        if fov_deg is not None and not 0 < float(fov_deg) < 180:
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg!r}")
        self.fov_deg = None if fov_deg is None else float(fov_deg)
        if depth_model is None or isinstance(depth_model, DepthEstimator):
            depth = depth_model
        else:
            depth = TransformersDepth(depth_model, device=dev, dtype=dt,
                                      plane_distance=plane_distance,
                                      fov_deg=self.fov_deg or 60.0,
                                      input_size=depth_input_size, cuda_graphs=cuda_graphs,
                                      compile=compile)
        if isinstance(detector_model, OpenVocabDetector):
            detector = detector_model
            if object_names is not None:
                detector.set_names(object_names)
        else:
            detector = OpenVocabDetector(detector_model, device=dev, dtype=dt,
                                         names=object_names or DEFAULT_OBJECT_NAMES,
                                         query_template=query_template,
                                         box_threshold=box_threshold, nms_iou=nms_iou,
                                         max_detections=max_detections,
                                         input_size=detector_input_size,
                                         cuda_graphs=cuda_graphs, compile=compile)
        if isinstance(segmenter_model, PromptableSegmenter):
            sam = segmenter_model
        else:
            sam = PromptableSegmenter(segmenter_model, device=dev, dtype=dt,
                                      box_margin=mask_box_margin, cuda_graphs=cuda_graphs,
                                      compile=compile)
        segmenter = DetectAndSegment(detector, sam, cuda_graphs=cuda_graphs,
                                     concurrent=concurrent)
        super().__init__(params, depth_estimator=depth, segmenter=segmenter, namer=None,
                         always_estimate_depth=always_estimate_depth, seed=seed, **overrides)
        self.detector, self.sam = detector, sam
        self.device = segmenter.device
        self.concurrent = bool(concurrent)
        #: The depth branch's stream (CUDA, concurrent).
        self._aux: Optional[torch.cuda.Stream] = None
        if self.device.type == "cuda" and self.concurrent:
            self._aux = torch.cuda.Stream(self.device)
        #: One device function per frame: depth || SAM image encoder || detector, then SAM's
        #: decoder; with cuda_graphs one CUDA graph whose branches run concurrently.
        self._frame_fn = GraphedFunction(self._frame_forward, "frame", enabled=cuda_graphs)
        self._last_seg: Optional[Segmentation] = None
        self.overlap_lifting = bool(overlap_lifting)
        self._pinned = PinnedHost()
        self._torch_lift = TorchLifter(graphs=cuda_graphs, compile=lifting_compile)
        self.lifting_threads = max(1, int(lifting_threads))
        self._torch_prep = TorchPreparer(graphs=cuda_graphs)
        #: True: the masks are lifted in torch on the models' device (``lifting``).
        self.torch_lifting = lifting == "torch" or (lifting == "auto"
                                                     and self.device.type == "cuda")

    def __repr__(self) -> str:
        return (f"ModelBackend(depth={self.depth_estimator!r}, detector={self.detector!r}, "
                f"segmenter={self.sam!r})")

    # -- object names ---------------------------------------------------------------------------
    @property
    def object_names(self) -> tuple[str, ...]:
        return self.detector.names

    def set_object_names(self, names: Sequence[str]) -> None:
        """Look for these objects from the next frame on."""
        self.detector.set_names(names)

    def set_object_names_from_text(self, text: str, keep: Sequence[str] = ()) -> list[str]:
        """Names from a VLM's answer to :data:`OBJECT_FINDING_PROMPT` (plus ``keep``)."""
        return self.detector.set_names_from_text(text, keep)

    def find_object_names(self, vlm, rgb: np.ndarray, keep: Sequence[str] = (),
                          max_tokens: int = 256) -> list[str]:
        """Ask ``vlm`` (a :class:`~spatialpin_ros.vlm.base.VLMClient`) SpatialPIN's
        object-finding question about ``rgb`` and look for the objects it lists."""
        reply = vlm.generate("", OBJECT_FINDING_PROMPT, [rgb], max_tokens=max_tokens)
        return self.set_object_names_from_text(reply.text, keep)

    # -- perception -----------------------------------------------------------------------------
    def perceive(self, frame: RGBDFrame, scene_id: str = "") -> Scene:
        t0 = time.perf_counter()
        if frame.camera_pose is None:
            raise PerceptionError("the frame has no camera pose: perception needs the camera's "
                                  "pose in the world frame (camera_pose)")
        if self.fov_deg is not None:
            cam = CameraModel.from_fov(frame.camera.width, frame.camera.height, self.fov_deg,
                                       frame_id=frame.camera.frame_id)
            frame = dataclasses.replace(frame, camera=cam)
        depth = np.asarray(frame.depth)
        need_depth = self.depth_estimator is not None and (
            self.always_estimate_depth or not np.any(np.isfinite(depth) & (depth > 0)))
        if can_overlap(self, need_depth):
            return perceive_overlapped(self, frame, need_depth, scene_id)
        est, seg = self.run_models(frame, need_depth)
        t1 = time.perf_counter()
        if need_depth:
            frame = dataclasses.replace(frame, depth=est)
        scene = self.lift(frame, seg, scene_id)
        t2 = time.perf_counter()
        self.last["model_timing_ms"] = {"models": round(1000 * (t1 - t0), 2),
                                        "lift": round(1000 * (t2 - t1), 2),
                                        "total": round(1000 * (t2 - t0), 2)}
        self.last["depth_estimated"] = bool(need_depth)
        self.last["overlapped"] = False
        return scene

    def _up_hint(self, frame: RGBDFrame) -> Optional[np.ndarray]:
        """World up (+z) in the optical frame."""
        if frame.camera_pose is None:
            return None
        return frame.camera_pose.rotation.as_matrix().T @ np.array([0.0, 0.0, 1.0])

    def run_models(self, frame: RGBDFrame, need_depth: bool
                   ) -> tuple[Optional[np.ndarray], Segmentation]:
        """The models' part of :meth:`perceive`: (estimated depth or None, segmentation)."""
        rgb, cam = frame.rgb, frame.camera
        depth_est = self.depth_estimator if need_depth else None
        native = isinstance(depth_est, TransformersDepth) and depth_est.native \
            and depth_est.device == self.device
        img = upload_image(rgb, self.device)
        dh = None
        if native:
            # the frame's whole device work in one call (one graph replay with cuda_graphs), then
            # one copy back of the depth, the masks and a few numbers
            with torch.inference_mode():
                outs = self._frame_fn(img, self.detector._embeds)
            dh, host = self._to_host(outs[1:], outs[0])
        else:
            _, host = self._to_host(self.segmenter.segment_gpu(img))
        seg = self.finish_segmentation(host)
        est = None
        if depth_est is not None:
            if dh is not None:
                est = self.finish_depth(dh, frame)
            elif isinstance(depth_est, TransformersDepth):
                est = depth_est.estimate(rgb, cam, self._up_hint(frame))
            else:
                est = np.asarray(depth_est.estimate(rgb, cam), dtype=np.float32)
            if est.shape != rgb.shape[:2]:
                raise PerceptionError(f"the depth model gave {est.shape}, not the image's "
                                      f"{rgb.shape[:2]}")
        return est, seg

    def _to_host(self, seg_outs, depth=None):
        """One copy back of the depth (when given) and the segmenter's outputs; with the
        torch lifting the masks (the first output) stay on the device."""
        seg_outs = list(seg_outs)
        keep = 1 if self.torch_lifting else 0
        lead = [] if depth is None else [depth]
        host = to_host(lead + seg_outs[keep:])
        dh = host.pop(0) if depth is not None else None
        return dh, seg_outs[:keep] + host

    def finish_depth(self, dh: np.ndarray, frame: RGBDFrame) -> np.ndarray:
        """The depth model's host output (H, W) made metric depth for the lifting (the depth
        model's :meth:`~TransformersDepth.finish`: invalid values to 0, scale alignment)."""
        est = self.depth_estimator.finish(np.asarray(dh, dtype=np.float32), frame.camera,
                                          self._up_hint(frame))
        if est.shape != frame.rgb.shape[:2]:
            raise PerceptionError(f"the depth model gave {est.shape}, not the image's "
                                  f"{frame.rgb.shape[:2]}")
        return est

    def finish_segmentation(self, host) -> Segmentation:
        """The segmenter's host outputs as this frame's :class:`Segmentation`."""
        seg = self.segmenter.to_segmentation(host)
        self._last_seg = seg
        return seg

    def _frame_forward(self, img: torch.Tensor, query_embeds: torch.Tensor):
        """Depth and detection + segmentation of one uploaded frame, on the device. With
        ``concurrent`` on CUDA three branches run at once: the depth model and SAM's image
        encoder on two forked streams, the detector on the current one; SAM decodes the boxes
        once its encoder joins, and the depth joins at the end (in a CUDA graph: concurrent
        branches of one graph). Returns (depth, *segment outputs)."""
        depth = self.depth_estimator
        if self._aux is None or img.device.type != "cuda":
            return (depth._forward(img),) + tuple(self.segmenter._forward(img, query_embeds))
        cur = torch.cuda.current_stream(img.device)
        self._aux.wait_stream(cur)
        with torch.cuda.stream(self._aux):
            d = depth._forward(img)
        seg = self.segmenter._forward(img, query_embeds)   # forks SAM's encoder itself
        cur.wait_stream(self._aux)
        return (d,) + tuple(seg)

    @contextlib.contextmanager
    def _lifter(self, seg: Optional[Segmentation] = None, bounds: Optional[tuple] = None):
        """The geometric backend's parts for lifting: no depth estimator (the depth is given),
        the given masks, and the namer of those masks (``bounds``: around every mask)."""
        namer = _DetectionNamer(seg, bounds) if seg is not None else None
        saved = (self.depth_estimator, self.segmenter, self.namer)
        self.depth_estimator = None
        self.segmenter = _Fixed(seg) if seg is not None else None
        self.namer = namer
        try:
            yield namer
        finally:
            self.depth_estimator, self.segmenter, self.namer = saved

    def prepare_lift(self, frame: RGBDFrame, scene_id: str = "") -> "Prepared | Scene":
        """The lifting's stages that need the depth alone (:meth:`GeometricBackend.prepare`),
        with ``frame.depth`` as it is (no estimate): these run while the GPU segments."""
        with self._lifter():
            if self.torch_lifting:               # the grids on the models' device
                return self._torch_prep.prepare(self, frame, self.device, scene_id)
            return GeometricBackend.prepare(self, frame, scene_id)

    def lift(self, frame: RGBDFrame, seg: Segmentation, scene_id: str = "",
             prep: "Optional[Prepared | Scene]" = None) -> Scene:
        """Masks + depth -> 3D priors through the geometric backend's code; labels are the
        detector's names, confidences the fit confidence times the detector score. ``prep``:
        this frame's :meth:`prepare_lift`, when already done."""
        bounds = self.segmenter.last.get("bounds") if seg is self._last_seg else None
        scene = None
        if self.torch_lifting and prep is None:
            prep = self.prepare_lift(frame, scene_id)
        if self.torch_lifting and not isinstance(prep, Scene):
            got = self._torch_lift.lift(self, prep, device_masks(seg, self.device, frame),
                                        seg, bounds, scene_id)
            if got is None:                       # touching pieces: the numpy path
                seg = host_segmentation(seg)
            else:
                scene, namer = got
        if scene is None:
            with self._lifter(seg, bounds) as namer:
                if prep is None:
                    prep = GeometricBackend.prepare(self, frame, scene_id)
                scene = prep if isinstance(prep, Scene) else GeometricBackend.finish(
                    self, prep, scene_id, masks=host_segmentation(seg).masks)
            self.last["lifting"] = "numpy"
        for ob in scene.objects:
            hit = namer.by_roi.get(tuple(int(v) for v in ob.roi))
            if hit is not None:
                ob.confidence = round(float(ob.confidence) * hit[1], 3)
        self.last["detections"] = dict(self.segmenter.last)
        if isinstance(self.depth_estimator, TransformersDepth):
            self.last["depth_scale"] = self.depth_estimator.last.get("scale")
        return scene


register_backend("models", ModelBackend)
