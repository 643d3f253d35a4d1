"""Box-prompted segmentation (SAM) and detection + segmentation as one model ``Segmenter``.

* :class:`PromptableSegmenter` -- SAM prompted with boxes: one image embedding per frame, all
  boxes decoded in one mask-decoder call, masks upsampled and thresholded on the device
  (optionally clipped to their box grown by a margin, which cuts SAM's occasional leaks).
* :class:`DetectAndSegment` -- :class:`~spatialpin_ros.perception.models_detect.
  OpenVocabDetector` and SAM together as a :class:`~spatialpin_ros.perception.base.Segmenter`
  returning masks, names and scores; the detector's boxes stay on the device and go straight into
  SAM; only the final masks and a few numbers come back to the host, once.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spatialpin_ros.core.errors import ModelLoadError
from spatialpin_ros.core.types import CameraModel
from spatialpin_ros.perception.base import Segmentation, Segmenter
from spatialpin_ros.perception.model_utils import (GraphedFunction, load_config, load_part,
                                                   load_weights, maybe_compile, mean_std,
                                                   pick_device, pick_dtype, prepare_module,
                                                   resize, resolve_source, setting, to_host,
                                                   to_nchw_float, upload_image)
from spatialpin_ros.perception.models_detect import OpenVocabDetector
from spatialpin_ros.perception.sam_attention import (use_device_rel_pos,
                                                     use_fast_rel_pos_attention)

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"
_SAM_MEAN, _SAM_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PromptableSegmenter:
    """SAM masks from box prompts.

    Args:
        model: hub id or local directory of a SAM checkpoint, or a loaded ``SamModel`` (then give
            ``processor``).
        processor: its image processor (or a ``SamProcessor``).
        mask_threshold: logit threshold of the masks (SAM's 0).
        box_margin: masks are clipped to their box grown by this fraction of its size on each
            side (None: not clipped).
        fast_attention: run the vision attention without materialising its relative-position
            bias (:func:`use_fast_rel_pos_attention`; same outputs up to rounding).
        cuda_graphs: replay the device work through a CUDA graph
            (:class:`~spatialpin_ros.perception.model_utils.GraphedFunction`); ``compile``:
            ``torch.compile`` it (:func:`~spatialpin_ros.perception.model_utils.maybe_compile`).
    """

    def __init__(self, model: Any = DEFAULT_SAM_MODEL, processor: Any = None,
                 device: Any = "auto", dtype: Any = "auto", mask_threshold: float = 0.0,
                 box_margin: Optional[float] = 0.1, fast_attention: bool = True,
                 cuda_graphs: bool = False, compile: bool = False):
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.mask_threshold = float(mask_threshold)
        self.box_margin = None if box_margin is None else float(box_margin)
        kind = "segmenter"
        if processor is not None and hasattr(processor, "image_processor"):
            processor = processor.image_processor
        if isinstance(model, torch.nn.Module):
            if processor is None:
                raise ModelLoadError("a segmenter given as a module needs its image processor "
                                     "(processor=...)")
            self.model = prepare_module(model, self.device, self.dtype)
            self.source = type(model).__name__
        else:
            from transformers import AutoImageProcessor, SamModel

            src, what = resolve_source(kind, model)
            load_config(kind, src, what, ("sam",))
            if processor is None:
                processor = load_part(kind, AutoImageProcessor.from_pretrained, src, what,
                                      "image processor")
            self.model = load_weights(kind, SamModel, src, what, self.device, self.dtype)
            self.source = src
        self.processor = processor
        self.patched_rel_pos = use_device_rel_pos(self.model)
        self.patched_attention = use_fast_rel_pos_attention(self.model) if fast_attention else 0
        cfg = self.model.config
        size = setting(processor, "size", {})
        self.longest = int(setting(size, "longest_edge", cfg.vision_config.image_size))
        pad = setting(processor, "pad_size", {})
        self.pad = (int(setting(pad, "height", self.longest)),
                    int(setting(pad, "width", self.longest)))
        self._mean, self._std = mean_std(processor, self.device, _SAM_MEAN, _SAM_STD)
        self.embed = maybe_compile(self.embed, "SAM image encoder", compile)
        self.decode = maybe_compile(self.decode, "SAM mask decoder", compile)
        self._graphed = GraphedFunction(lambda img, boxes: self._forward(img, boxes),
                                        "segmenter", enabled=cuda_graphs)

    def __repr__(self) -> str:
        return f"PromptableSegmenter({self.source!r}, device={str(self.device)!r})"

    def resized(self, H: int, W: int) -> tuple[int, int]:
        """SAM's resize: the longest side to ``longest`` pixels (rounded half up)."""
        s = self.longest / max(H, W)
        return int(H * s + 0.5), int(W * s + 0.5)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 on the device -> (1, 3, P, P) pixel values (what the SAM image
        processor makes: longest side resized, rescale, normalise, pad bottom/right with 0)."""
        H, W = int(img.shape[0]), int(img.shape[1])
        nh, nw = self.resized(H, W)
        x = resize(to_nchw_float(img), (nh, nw), "bilinear").clamp_(0.0, 1.0)
        x = (x - self._mean) / self._std
        return F.pad(x, (0, self.pad[1] - nw, 0, self.pad[0] - nh)).to(self.dtype)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """The image embedding of an uploaded (H, W, 3) uint8 image (the costly, prompt-free
        part: it can run while the detector looks for the boxes)."""
        return self.model.get_image_embeddings(self.preprocess(img))

    def _forward(self, img: torch.Tensor, boxes: torch.Tensor):
        """(H, W, 3) uint8 + (K, 4) float32 xyxy pixel boxes -> masks (K, H, W) bool and
        predicted IoUs (K,) (no host sync)."""
        return self.decode(self.embed(img), boxes, int(img.shape[0]), int(img.shape[1]))

    def decode(self, emb: torch.Tensor, boxes: torch.Tensor, H: int, W: int):
        """Masks (K, H, W) bool and predicted IoUs (K,) of (K, 4) boxes from an image
        embedding of an H x W image."""
        nh, nw = self.resized(H, W)
        sb = boxes.float().clone()
        sb[:, 0::2] *= nw / W
        sb[:, 1::2] *= nh / H
        out = self.model(image_embeddings=emb, input_boxes=sb[None], multimask_output=False)
        low = out.pred_masks[0, :, 0:1].float()                        # (K, 1, m, m)
        up = F.interpolate(low, size=self.pad, mode="bilinear", align_corners=False)
        up = F.interpolate(up[..., :nh, :nw], size=(H, W), mode="bilinear", align_corners=False)
        masks = up[:, 0] > self.mask_threshold
        if self.box_margin is not None:
            b = boxes.float()
            m = (b[:, 2:] - b[:, :2]) * self.box_margin
            lo, hi = b[:, :2] - m, b[:, 2:] + m
            xs = torch.arange(W, device=b.device, dtype=torch.float32)
            ys = torch.arange(H, device=b.device, dtype=torch.float32)
            inx = (xs[None] >= lo[:, 0:1]) & (xs[None] <= hi[:, 0:1])     # (K, W)
            iny = (ys[None] >= lo[:, 1:2]) & (ys[None] <= hi[:, 1:2])     # (K, H)
            masks &= iny[:, :, None] & inx[:, None, :]
        return masks, out.iou_scores[0, :, 0].float()

    def segment_gpu(self, img: torch.Tensor, boxes: torch.Tensor):
        with torch.inference_mode():
            return self._graphed(img, boxes)

    def segment_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) bool masks and (N,) predicted IoUs for (N, 4) xyxy pixel boxes."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0,) + rgb.shape[:2], bool), np.zeros(0, np.float32)
        img = upload_image(rgb, self.device)
        masks, iou = to_host(self.segment_gpu(img, torch.from_numpy(boxes).to(self.device)))
        return masks, iou


class DetectAndSegment(Segmenter):
    """Detector boxes -> SAM masks, as a :class:`Segmenter` (masks, names, scores).

    The detection and the segmentation of a frame run as one device function (one CUDA graph
    with ``cuda_graphs``): the boxes never leave the device; all ``max_detections`` slots are
    segmented (invalid ones are masked out afterwards), which keeps shapes static. ``last``
    holds the last frame's boxes, scores, names and SAM's predicted IoUs.
    """

    def __init__(self, detector: OpenVocabDetector, segmenter: PromptableSegmenter,
                 cuda_graphs: bool = False, concurrent: bool = True,
                 min_mask_pixels: int = 20):
        if detector.device != segmenter.device:
            raise ValueError(f"the detector ({detector.device}) and the segmenter "
                             f"({segmenter.device}) must be on one device")
        self.detector, self.sam = detector, segmenter
        self.device = detector.device
        self.min_mask_pixels = int(min_mask_pixels)
        #: SAM's image encoder runs on this stream while the detector runs (CUDA, concurrent).
        self.sam_stream = torch.cuda.Stream(self.device) \
            if concurrent and self.device.type == "cuda" else None
        self._graphed = GraphedFunction(lambda img, q: self._forward(img, q), "detect+segment",
                                        enabled=cuda_graphs)
        self.last: dict = {}

    def _forward(self, img: torch.Tensor, query_embeds: torch.Tensor):
        """Detection then SAM on the device; with ``sam_stream`` (CUDA) SAM's image encoder runs
        on that stream while the detector runs on the current one, joining before decoding."""
        sam_stream = self.sam_stream
        if sam_stream is not None and img.device.type == "cuda":
            cur = torch.cuda.current_stream(img.device)
            sam_stream.wait_stream(cur)
            with torch.cuda.stream(sam_stream):
                emb = self.sam.embed(img)
            boxes, scores, labels, valid = self.detector._forward(img, query_embeds)
            cur.wait_stream(sam_stream)
        else:
            emb = self.sam.embed(img)
            boxes, scores, labels, valid = self.detector._forward(img, query_embeds)
        masks, iou = self.sam.decode(emb, boxes, int(img.shape[0]), int(img.shape[1]))
        masks &= valid[:, None, None]
        rows, cols = masks.any(dim=2), masks.any(dim=1)        # (K, H), (K, W): mask extents
        area = masks.sum(dim=(1, 2))
        return masks, boxes, scores, labels, valid, iou, area, rows, cols

    def segment_gpu(self, img: torch.Tensor):
        """The device tensors (masks, boxes, scores, labels, valid, iou, areas, row and column
        occupancy) of an uploaded image, without synchronising (CUDA graph outputs with
        ``cuda_graphs``: copy before the next call)."""
        with torch.inference_mode():
            return self._graphed(img, self.detector._embeds)

    def to_segmentation(self, host: Sequence[np.ndarray]) -> Segmentation:
        """The host copies of :meth:`segment_gpu`'s outputs as a Segmentation (valid detections
        with non-trivial masks, in descending score order)."""
        masks, boxes, scores, labels, valid, iou, area, rows, cols = host
        keep = [i for i in range(len(valid)) if valid[i] and area[i] >= self.min_mask_pixels]
        names = self.detector.names
        seg = Segmentation(masks=[masks[i] for i in keep],
                           names=[names[int(labels[i])] for i in keep],
                           scores=[round(float(scores[i]), 4) for i in keep])
        bounds = None                                  # (r0, r1, c0, c1) around every mask
        if keep:
            r = np.flatnonzero(rows[keep].any(axis=0))
            c = np.flatnonzero(cols[keep].any(axis=0))
            bounds = (int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1)
        self.last = {"boxes": boxes[keep].astype(float).round(1).tolist(),
                     "scores": seg.scores, "names": seg.names,
                     "sam_iou": [round(float(iou[i]), 3) for i in keep],
                     "mask_pixels": [int(area[i]) for i in keep],
                     "num_candidates": int(np.count_nonzero(valid)), "bounds": bounds}
        return seg

    def segment(self, rgb: np.ndarray, depth: Optional[np.ndarray] = None,
                camera: Optional[CameraModel] = None) -> Segmentation:
        """Masks, names and detector scores of the current names' objects (``depth`` and
        ``camera`` are not used)."""
        img = upload_image(rgb, self.device)
        return self.to_segmentation(to_host(self.segment_gpu(img)))
