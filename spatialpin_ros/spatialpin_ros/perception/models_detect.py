"""Open-vocabulary detection (OWLv2) for the model backend.

* :class:`OpenVocabDetector` -- OWLv2 (or OWL-ViT) prompted with object names, all names in one
  call (their text embeddings are computed once per name list and cached); score threshold,
  class-agnostic non-maximum suppression and a fixed number of output slots, so the whole
  detection runs on the device with static shapes and no host synchronisation.

SAM and the detector together are in :mod:`~spatialpin_ros.perception.models_segment`.

Object names come from a parameter list and/or from a VLM's answer to SpatialPIN's
object-finding prompt (:data:`OBJECT_FINDING_PROMPT`, lines "Object idx: x of color y, texture z at
location w", parsed by :func:`parse_object_lines`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spatialpin_ros.core.errors import ModelLoadError
from spatialpin_ros.perception.model_utils import (GraphedFunction, cache_position_interpolation,
                                                   load_config, load_part, load_weights,
                                                   maybe_compile, mean_std, pick_device,
                                                   pick_dtype, prepare_module, resize,
                                                   resolve_source, setting, to_host,
                                                   to_nchw_float, upload_image)

DEFAULT_DETECTOR_MODEL = "google/owlv2-base-patch16-ensemble"
#: Generic tabletop names used until a list or a VLM answer gives the scene's own.
DEFAULT_OBJECT_NAMES = ("box", "block", "cube", "cylinder", "can", "cup", "mug", "bowl", "ball",
                        "bottle")
#: SpatialPIN's thresholds (Grounded-SAM): box score 0.3 (text 0.25 applies to Grounding DINO's
#: per-token scores only; OWLv2 gives one score per box).
BOX_THRESHOLD = 0.3
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: SpatialPIN's object-finding prompt: the VLM lists the objects, one line each.
OBJECT_FINDING_PROMPT = (
    "List every distinct object on the table in the image. Write one line per object, exactly "
    "in this form and nothing else:\n"
    "Object idx: x of color y, texture z at location w\n"
    "where idx counts from 1, x is a short noun for the object (e.g. mug, box, apple), y its "
    "main color, z its texture (e.g. smooth, matte, glossy) and w where it is in the image "
    "(e.g. left, center, top right).")

_OBJ_LINE = re.compile(
    r"^\W*object\s*\d*\s*[:.)\-]\s*(?P<x>.+?)"
    r"(?:\s+of\s+colou?r\s+(?P<y>[^,]+?))?"
    r"(?:\s*,\s*(?:with\s+)?texture\s+(?P<z>.+?))?"
    r"(?:\s*,?\s+at\s+(?:the\s+)?location\s+(?P<w>.+?))?\s*\W*$",
    re.IGNORECASE)
_NO_VALUE = {"", "none", "n/a", "na", "unknown", "various", "multiple", "mixed", "-"}


def parse_object_lines(text: str) -> list[str]:
    """Object names from a VLM's answer to :data:`OBJECT_FINDING_PROMPT`.

    Each line "Object idx: x of color y, texture z at location w" gives the name "y x" (e.g.
    "Object 1: mug of color red, texture glossy at location left" -> "red mug"); a colour that is
    missing, unknown or already in x is left out. Markdown bullets and bold are tolerated; other
    lines are ignored; duplicates are dropped (first kept).
    """
    names: list[str] = []
    for raw in str(text or "").splitlines():
        line = raw.replace("*", "").replace("`", "").strip()
        m = _OBJ_LINE.match(line)
        if not m:
            continue
        x = re.sub(r"\s+", " ", m.group("x")).strip(" .,;:\"'").lower()
        y = re.sub(r"\s+", " ", m.group("y") or "").strip(" .,;:\"'").lower()
        if not x or x in _NO_VALUE:
            continue
        name = x if (y in _NO_VALUE or y in x.split()) else f"{y} {x}"
        if name not in names:
            names.append(name)
    return names


def clean_names(names: Iterable[str]) -> tuple[str, ...]:
    """Stripped, non-empty, de-duplicated names; ValueError when none is left."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        if not isinstance(n, str):
            raise ValueError(f"object names must be strings, got {n!r}")
        n = re.sub(r"\s+", " ", n).strip()
        if n and n not in out:
            out.append(n)
    if not out:
        raise ValueError("at least one object name is needed to prompt the detector")
    return tuple(out)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Keep mask of boxes sorted by descending score: a box is dropped when a higher-scoring
    box overlaps it by more than ``iou`` (matrix "fast NMS": static shapes, no host sync)."""
    m = box_iou(boxes, boxes).triu(diagonal=1)
    return m.amax(dim=0) <= iou


@dataclass
class Detections:
    """Detections of one image: ``boxes`` (N, 4) float32 xyxy pixels, ``scores`` (N,),
    ``names`` (N,) and ``label_ids`` (N,) indices into the query names."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    names: list[str] = field(default_factory=list)
    label_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.names)


class OpenVocabDetector:
    """OWLv2 / OWL-ViT open-vocabulary detection prompted by object names.

    Args:
        model: hub id or local directory of an OWLv2 (or OWL-ViT) checkpoint, or a loaded
            ``Owlv2ForObjectDetection`` (then give ``processor`` and ``tokenizer``).
        processor: its image processor (or a processor holding ``image_processor`` and
            ``tokenizer``); loaded from ``model`` when that is a path or id.
        tokenizer: its tokenizer (idem).
        names: object names to look for (see :meth:`set_names`); ``query_template`` turns each
            into a text query ("a photo of a {}", OWL-ViT's prompt).
        box_threshold: lowest score kept (SpatialPIN's 0.3). ``max_detections``: most boxes out
            (the fixed number of device slots). ``nms_iou``: class-agnostic NMS overlap.
            ``candidates``: top-scoring boxes that enter NMS.
        input_size: square detector input in pixels (default: the checkpoint's, 960 for OWLv2
            base); a smaller one is faster (position embeddings are interpolated).
        cuda_graphs: replay the device work through a CUDA graph
            (:class:`~spatialpin_ros.perception.model_utils.GraphedFunction`); ``compile``:
            ``torch.compile`` it (:func:`~spatialpin_ros.perception.model_utils.maybe_compile`).
    """

    def __init__(self, model: Any = DEFAULT_DETECTOR_MODEL, processor: Any = None,
                 tokenizer: Any = None, device: Any = "auto", dtype: Any = "auto",
                 names: Sequence[str] = DEFAULT_OBJECT_NAMES,
                 query_template: str = "a photo of a {}", box_threshold: float = BOX_THRESHOLD,
                 nms_iou: float = 0.5, max_detections: int = 10, candidates: int = 100,
                 input_size: Optional[int] = None, cuda_graphs: bool = False,
                 compile: bool = False):
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if "{}" not in query_template:
            raise ValueError(f"query_template needs a '{{}}' for the name, got {query_template!r}")
        if not 0.0 <= float(box_threshold) <= 1.0:
            raise ValueError(f"box_threshold must be in [0, 1], got {box_threshold!r}")
        if int(max_detections) < 1 or int(candidates) < 1:
            raise ValueError("max_detections and candidates must be >= 1")
        self.query_template = query_template
        self.box_threshold, self.nms_iou = float(box_threshold), float(nms_iou)
        self.max_detections, self.candidates = int(max_detections), int(candidates)
        kind = "detector"
        if processor is not None and hasattr(processor, "image_processor"):
            tokenizer = tokenizer or getattr(processor, "tokenizer", None)
            processor = processor.image_processor
        if isinstance(model, torch.nn.Module):
            if processor is None or tokenizer is None:
                raise ModelLoadError("a detector given as a module needs its image processor and "
                                     "tokenizer (processor=..., tokenizer=...)")
            self.model = prepare_module(model, self.device, self.dtype)
            self.source = type(model).__name__
        else:
            from transformers import (AutoImageProcessor, AutoModelForZeroShotObjectDetection,
                                      AutoTokenizer)

            src, what = resolve_source(kind, model)
            load_config(kind, src, what, ("owlv2", "owlvit"))
            if processor is None:
                processor = load_part(kind, AutoImageProcessor.from_pretrained, src, what,
                                      "image processor")
            if tokenizer is None:
                tokenizer = load_part(kind, AutoTokenizer.from_pretrained, src, what,
                                      "tokenizer")
            self.model = load_weights(kind, AutoModelForZeroShotObjectDetection, src, what,
                                      self.device, self.dtype)
            self.source = src
        self.processor, self.tokenizer = processor, tokenizer
        cache_position_interpolation(self.model)
        cfg = self.model.config
        self.model_type = getattr(cfg, "model_type", "owlv2")
        self.pad_to_square = self.model_type == "owlv2"
        self.native_size = int(cfg.vision_config.image_size)
        size = setting(processor, "size", {})
        proc_size = int(setting(size, "height", self.native_size))
        self.input_size = int(input_size or proc_size)
        self.patch = int(cfg.vision_config.patch_size)
        if self.input_size % self.patch:
            raise ValueError(f"input_size must be a multiple of the patch size {self.patch}, "
                             f"got {self.input_size}")
        self.query_length = int(getattr(cfg.text_config, "max_position_embeddings", 16))
        self._mean, self._std = mean_std(processor, self.device, _CLIP_MEAN, _CLIP_STD)
        self._names: tuple[str, ...] = ()
        self._embeds: Optional[torch.Tensor] = None
        self._bias_cache: dict = {}
        self.set_names(names)
        self._forward = maybe_compile(self._forward, "detector", compile)
        self._graphed = GraphedFunction(lambda img, q: self._forward(img, q), "detector",
                                        enabled=cuda_graphs)

    def __repr__(self) -> str:
        return (f"OpenVocabDetector({self.source!r}, device={str(self.device)!r}, "
                f"{len(self._names)} names, input {self.input_size} px)")

    # -- names ------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def set_names(self, names: Iterable[str]) -> None:
        """Look for these objects from now on (their text embeddings are computed here, once)."""
        names = clean_names(names)
        if names == self._names:
            return
        queries = [self.query_template.format(n) for n in names]
        tok = self.tokenizer(queries, padding="max_length", max_length=self.query_length,
                             truncation=True, return_tensors="pt")
        base = getattr(self.model, "owlv2", None) or getattr(self.model, "owlvit")
        with torch.inference_mode():
            out = base.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                         attention_mask=tok["attention_mask"].to(self.device))
            emb = getattr(out, "pooler_output", out)
            self._embeds = emb.to(self.dtype)[None].contiguous()       # (1, Q, D)
        self._names = names

    def set_names_from_text(self, text: str, keep: Sequence[str] = ()) -> list[str]:
        """Names parsed from a VLM's object-finding answer (:func:`parse_object_lines`), plus
        ``keep``; returns them. ValueError when none is found."""
        names = list(keep) + [n for n in parse_object_lines(text) if n not in keep]
        self.set_names(names)
        return list(self._names)

    # -- the device pipeline --------------------------------------------------------------------
    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 on the device -> (1, 3, S, S) pixel values (what the OWLv2 image
        processor makes: rescale, pad to a square at the bottom/right with 0, resize, normalise;
        OWL-ViT: resize without padding)."""
        H, W = int(img.shape[0]), int(img.shape[1])
        x = to_nchw_float(img)
        if self.pad_to_square:
            side = max(H, W)
            x = F.pad(x, (0, side - W, 0, side - H))               # bottom/right, value 0
        S = self.input_size
        x = resize(x, (S, S), "bilinear").clamp_(0.0, 1.0)
        return ((x - self._mean) / self._std).to(self.dtype)

    def _forward(self, img: torch.Tensor, query_embeds: torch.Tensor):
        """(H, W, 3) uint8 + (1, Q, D) text embeddings -> boxes (K, 4) float32 xyxy pixels,
        scores (K,), label ids (K,), valid (K,) bool, K = max_detections (no host sync)."""
        H, W = int(img.shape[0]), int(img.shape[1])
        x = self.preprocess(img)
        sx, sy = (float(max(H, W)),) * 2 if self.pad_to_square else (float(W), float(H))
        interp = self.input_size != self.native_size
        kw = {"interpolate_pos_encoding": True} if interp else {}
        fmap = self.model.image_embedder(pixel_values=x, **kw)[0]   # (1, h, w, D)
        feats = fmap.reshape(1, -1, fmap.shape[-1])
        qmask = torch.ones(query_embeds.shape[:2], dtype=torch.bool, device=x.device)
        logits = self.model.class_predictor(feats, query_embeds, qmask)[0]   # (1, P, Q)
        boxes = (self.model.box_head(feats) + self._box_bias(fmap)).sigmoid()  # (1, P, 4) cxcywh
        best, labels = logits[0].float().max(dim=-1)
        scores = best.sigmoid()
        C = min(self.candidates, scores.shape[0])
        top_s, top_i = scores.topk(C)
        b = boxes[0].float()[top_i]
        xyxy = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1)
        # scale and clip with Python scalars: no host-to-device copy (CUDA-graph safe)
        xyxy[:, 0::2] = (xyxy[:, 0::2] * sx).clamp(0.0, float(W))
        xyxy[:, 1::2] = (xyxy[:, 1::2] * sy).clamp(0.0, float(H))
        keep = fast_nms(xyxy, top_s, self.nms_iou)
        nonempty = ((xyxy[:, 2] - xyxy[:, 0]) >= 1.0) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1.0)
        ranked = torch.where(keep & nonempty, top_s, top_s - 2.0)  # suppressed ones sort last
        K = min(self.max_detections, C)
        _, sel = ranked.topk(K)
        out_s = top_s[sel]
        valid = (keep & nonempty)[sel] & (out_s > self.box_threshold)
        return xyxy[sel], out_s, labels[top_i][sel], valid

    def _box_bias(self, fmap: torch.Tensor) -> torch.Tensor:
        """OWL's box prior for the feature grid, made once per grid size on the device
        (transformers' box_predictor rebuilds it on the CPU for interpolated sizes: a host copy
        per call)."""
        h, w = int(fmap.shape[1]), int(fmap.shape[2])
        bias = self._bias_cache.get((h, w))
        if bias is None:
            if (h, w) == (self.model.num_patches_height, self.model.num_patches_width):
                bias = self.model.box_bias
            else:
                bias = self.model.compute_box_bias(h, w)
            bias = bias.to(fmap.device, fmap.dtype)
            self._bias_cache[(h, w)] = bias
        return bias

    def detect_gpu(self, img: torch.Tensor):
        """:meth:`_forward` on an uploaded image, through the CUDA graph when enabled."""
        with torch.inference_mode():
            return self._graphed(img, self._embeds)

    def detect(self, rgb: np.ndarray, names: Optional[Sequence[str]] = None) -> Detections:
        """Detections of ``names`` (default: the current names) in an RGB image."""
        if names is not None:
            self.set_names(names)
        img = upload_image(rgb, self.device)
        boxes, scores, labels, valid = to_host(self.detect_gpu(img))
        v = valid.astype(bool)
        ids = labels[v].astype(np.int64)
        return Detections(boxes[v].astype(np.float32), scores[v].astype(np.float32),
                          [self._names[i] for i in ids], ids)
