"""Monocular metric depth with a transformers model (the RGB-only path of the "models" backend).

:class:`TransformersDepth` loads a depth-estimation checkpoint once (a hub id or a local
directory; default Depth Anything V2 metric indoor, large) and turns an RGB image into an
(H, W) float32 depth image in metres at the camera's resolution:

* Depth Anything (V1/V2, metric head): pre-processing (the DPT processor's aspect-keeping resize to
  a multiple of the patch, bicubic, ImageNet normalisation) and post-processing (bicubic resize
  back to the image) run on the model's device, in the model's dtype, optionally replayed through
  a CUDA graph; only the image goes in and the final depth comes out;
* other metric models (ZoeDepth, Depth Pro, GLPN) go through their own processor on the CPU and
  ``post_process_depth_estimation``.

Relative (affine-invariant) depth checkpoints are refused: their output is not metres.

Intrinsics come from the frame's camera (camera_info); without one, ``fov_deg`` gives them
(:meth:`CameraModel.from_fov`). With ``plane_distance`` (the camera's height above the table, in
metres, along the table's normal) the depth is rescaled so that the support plane found by RANSAC
in the estimated depth lies at that distance: monocular metric depth is often off by a scale
factor, and the table height fixes it.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch

from spatialpin_ros.core.errors import ModelLoadError, PerceptionError
from spatialpin_ros.core.types import CameraModel
from spatialpin_ros.perception.base import DepthEstimator
from spatialpin_ros.perception.model_utils import (GraphedFunction, cache_position_interpolation,
                                                   load_config, load_part, load_weights, log,
                                                   maybe_compile, mean_std, pick_device,
                                                   pick_dtype, prepare_module, resize,
                                                   resolve_source, setting, to_host,
                                                   to_nchw_float, upload_image)

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"
#: Model types whose pre- and post-processing run on the device.
NATIVE_DEPTH_TYPES = ("depth_anything",)
#: Metric model types run through their own (CPU) processor.
GENERIC_DEPTH_TYPES = ("zoedepth", "depth_pro", "glpn")
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _constrain(val: float, multiple: int) -> int:
    """DPT's constrain_to_multiple_of (no bounds)."""
    return int(round(val / multiple) * multiple)


def dpt_input_size(height: int, width: int, target: tuple[int, int], keep_aspect_ratio: bool,
                   multiple: int) -> tuple[int, int]:
    """The DPT image processor's resize rule: (h, w) of the model input for an image."""
    th, tw = target
    sh, sw = th / height, tw / width
    if keep_aspect_ratio:
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh
    return _constrain(sh * height, multiple), _constrain(sw * width, multiple)


class TransformersDepth(DepthEstimator):
    """Metric depth from colour with a transformers depth model.

    Args:
        model: hub id or local directory (``save_pretrained``) of a metric depth checkpoint, or a
            loaded ``DepthAnythingForDepthEstimation``-like module (then give ``processor``).
        processor: the image processor (loaded from ``model`` when it is a path or id).
        device: ``"auto"`` (CUDA if available, else the CPU with a warning), ``"cpu"``, ``"cuda"``.
        dtype: ``"auto"`` (float16 on CUDA, float32 on the CPU), ``"float16"``, ``"bfloat16"``,
            ``"float32"``.
        plane_distance: camera height above the support plane (metres); when set, the depth is
            rescaled so that the RANSAC plane lies at this distance.
        fov_deg: vertical field of view used for the intrinsics when ``estimate`` gets no camera.
        input_size: the model input's target size in pixels (Depth Anything: the processor's
            518 by default; a smaller one, e.g. 364, is about twice as fast and coarser).
        cuda_graphs: replay the device pipeline through a CUDA graph (per image size).
        compile: ``torch.compile`` the device pipeline (slow first call).

    Raises ModelLoadError when the checkpoint cannot be loaded or is not a metric depth model.
    """

    def __init__(self, model: Any = DEFAULT_DEPTH_MODEL, processor: Any = None,
                 device: Any = "auto", dtype: Any = "auto", plane_distance: Optional[float] = None,
                 fov_deg: float = 60.0, input_size: Optional[int] = None,
                 cuda_graphs: bool = False, compile: bool = False):
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if plane_distance is not None and not (math.isfinite(plane_distance)
                                               and plane_distance > 0):
            raise ValueError(f"plane_distance must be a positive number of metres, got "
                             f"{plane_distance!r}")
        if not (0 < float(fov_deg) < 180):
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg!r}")
        self.plane_distance = plane_distance
        self.fov_deg = float(fov_deg)
        kind = "depth model"
        if isinstance(model, torch.nn.Module):
            if processor is None:
                raise ModelLoadError("a depth model given as a module needs its image processor "
                                     "(processor=...)")
            self.model = prepare_module(model, self.device, self.dtype)
            self.config = self.model.config
            self.source = type(model).__name__
        else:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            src, what = resolve_source(kind, model)
            self.config = load_config(kind, src, what, NATIVE_DEPTH_TYPES + GENERIC_DEPTH_TYPES)
            self._check_metric(self.config, what)
            if processor is None:
                processor = load_part(kind, AutoImageProcessor.from_pretrained, src, what,
                                      "image processor")
            self.model = load_weights(kind, AutoModelForDepthEstimation, src, what, self.device,
                                      self.dtype)
            self.source = src
        self._check_metric(self.config, self.source)
        self.processor = processor
        self.model_type = getattr(self.config, "model_type", "?")
        self.native = self.model_type in NATIVE_DEPTH_TYPES
        if self.native:
            cache_position_interpolation(self.model)
            self._mean, self._std = mean_std(processor, self.device, _IMAGENET_MEAN,
                                             _IMAGENET_STD)
            size = setting(processor, "size", {})
            self._target = (int(setting(size, "height", 518)), int(setting(size, "width", 518)))
            self._keep = bool(setting(processor, "keep_aspect_ratio", True))
            self._multiple = int(setting(processor, "ensure_multiple_of", 14))
            if input_size is not None:
                if int(input_size) < 2 * self._multiple:
                    raise ValueError(f"input_size must be at least {2 * self._multiple} pixels, "
                                     f"got {input_size}")
                self._target = (int(input_size), int(input_size))
            resample = setting(processor, "resample", 3)
            self._mode = "bicubic" if int(getattr(resample, "value", resample)) == 3 \
                else "bilinear"
            self._forward = maybe_compile(self._forward, "depth model", compile)
        self._graphed = GraphedFunction(lambda img: self._forward(img), "depth",
                                        enabled=cuda_graphs)
        #: Internals of the last call: scale factor, plane distance before scaling.
        self.last: dict = {}

    @staticmethod
    def _check_metric(config, what: str) -> None:
        if getattr(config, "model_type", "") == "depth_anything" and \
                getattr(config, "depth_estimation_type", "relative") != "metric":
            raise ModelLoadError(f"the depth model from {what} estimates relative depth "
                                 "(depth_estimation_type='relative'), not metres; use a metric "
                                 "checkpoint such as "
                                 "'depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf'")

    def __repr__(self) -> str:
        return (f"TransformersDepth({self.source!r}, device={str(self.device)!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')!r})")

    # -- the device pipeline --------------------------------------------------------------------
    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the model input for an image of this size."""
        return dpt_input_size(height, width, self._target, self._keep, self._multiple)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 on the device -> the model's (1, 3, h, w) pixel values (what the DPT
        image processor makes: aspect-keeping resize to a multiple of the patch, rescale,
        normalise)."""
        H, W = int(img.shape[0]), int(img.shape[1])
        x = resize(to_nchw_float(img), self.input_size(H, W), self._mode).clamp_(0.0, 1.0)
        return ((x - self._mean) / self._std).to(self.dtype)

    def _forward(self, img: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 on the device -> (H, W) float32 metres on the device (no sync)."""
        H, W = int(img.shape[0]), int(img.shape[1])
        pred = self.model(pixel_values=self.preprocess(img)).predicted_depth   # (1, h, w)
        d = torch.nn.functional.interpolate(pred[:, None].float(), size=(H, W), mode="bicubic",
                                            align_corners=False)
        return d[0, 0].clamp_(min=0.0)

    def estimate_gpu(self, img: torch.Tensor) -> torch.Tensor:
        """Depth of an uploaded (H, W, 3) uint8 image as an (H, W) float32 tensor on the device,
        without synchronising (the tensor may be a CUDA graph's output: copy it before the next
        call)."""
        if not self.native:
            rgb = img.cpu().numpy()
            return torch.from_numpy(self._generic(rgb)).to(self.device)
        with torch.inference_mode():
            return self._graphed(img)

    def _generic(self, rgb: np.ndarray) -> np.ndarray:
        H, W = rgb.shape[:2]
        with torch.inference_mode():
            inputs = self.processor(images=rgb, return_tensors="pt")
            inputs = {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v)
                          else v.to(self.device)) for k, v in inputs.items()
                      if isinstance(v, torch.Tensor)}
            out = self.model(**inputs)
            try:
                res = self.processor.post_process_depth_estimation(out, target_sizes=[(H, W)])
                d = res[0]["predicted_depth"]
            except (AttributeError, TypeError, ValueError):
                d = torch.nn.functional.interpolate(out.predicted_depth[:, None].float(),
                                                    size=(H, W), mode="bicubic",
                                                    align_corners=False)[0, 0]
        return np.maximum(d.float().cpu().numpy().reshape(H, W), 0.0).astype(np.float32)

    # -- the public interface -------------------------------------------------------------------
    def camera_for(self, rgb: np.ndarray, camera: Optional[CameraModel]) -> CameraModel:
        """``camera``, or the field-of-view intrinsics of the image when it is None."""
        if camera is not None:
            return camera
        return CameraModel.from_fov(rgb.shape[1], rgb.shape[0], self.fov_deg)

    def estimate(self, rgb: np.ndarray, camera: Optional[CameraModel] = None,
                 up: Optional[Sequence[float]] = None) -> np.ndarray:
        """(H, W) float32 depth in metres (0 where the model gives none). ``camera``: intrinsics
        (default: from ``fov_deg``); ``up``: the world's up direction in the optical frame, when
        known, for the scale alignment's plane search."""
        img = upload_image(rgb, self.device)
        d = self.estimate_gpu(img)
        depth = to_host([d])[0].copy()
        return self.finish(depth, self.camera_for(rgb, camera), up)

    def finish(self, depth: np.ndarray, camera: CameraModel,
               up: Optional[Sequence[float]] = None) -> np.ndarray:
        """Host-side end of an estimate: NaN/inf to 0, then the optional scale alignment."""
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32, copy=False)
        self.last = {"scale": 1.0}
        if self.plane_distance is not None:
            depth = self.align_scale(depth, camera, up)
        return depth

    def align_scale(self, depth: np.ndarray, camera: CameraModel,
                    up: Optional[Sequence[float]] = None, stride: int = 8) -> np.ndarray:
        """``depth`` rescaled so that its RANSAC support plane lies ``plane_distance`` from the
        camera. Without ``up`` the plane's normal is searched within 60 degrees of the optical
        frame's (0, -1, -1) (a camera looking down at a table, from level to straight down).
        Raises PerceptionError when no plane is found."""
        from spatialpin_ros.core.geometry import fit_plane_ransac

        o = stride // 2
        sub = depth[o::stride, o::stride]
        # the sample grid's rays: pixel (u, v) of the subsampled image is pixel (s u + o, ...)
        u = (np.arange(sub.shape[1]) * stride + o - camera.cx) / camera.fx
        v = (np.arange(sub.shape[0]) * stride + o - camera.cy) / camera.fy
        ok = np.isfinite(sub) & (sub > 0)
        if ok.sum() < 30:
            raise PerceptionError("scale alignment: too few valid estimated depth pixels")
        vv, uu = np.nonzero(ok)
        z = sub[ok].astype(np.float64)
        P = np.stack([u[uu] * z, v[vv] * z, z], axis=1)
        if up is None:
            up_v, tilt = np.array([0.0, -1.0, -1.0]) / math.sqrt(2.0), 60.0
        else:
            up_v, tilt = np.asarray(up, dtype=float), 25.0
        inlier = max(0.01, 0.015 * float(np.median(z)))
        try:
            plane, _ = fit_plane_ransac(P, np.random.default_rng(0), iterations=128,
                                        inlier=inlier, up=up_v, max_tilt_deg=tilt)
        except PerceptionError as e:
            raise PerceptionError(f"scale alignment to plane_distance={self.plane_distance} m "
                                  f"failed: {e}") from e
        dist = abs(float(plane[3]))
        if not dist > 1e-6:
            raise PerceptionError("scale alignment: the support plane passes through the camera")
        scale = float(self.plane_distance) / dist
        self.last = {"scale": scale, "plane_distance_raw": dist}
        log.debug("depth scale %.3f (plane at %.3f m, want %.3f m)", scale, dist,
                  self.plane_distance)
        return (depth * np.float32(scale)).astype(np.float32)
