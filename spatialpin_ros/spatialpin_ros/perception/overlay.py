"""Drawing a perceived scene over its colour image (debugging, benchmarks, reports).

    img = draw_overlay(frame.rgb, scene, truth_masks=[...])   # (H, W, 3) uint8 RGB
    save_png("out/frame.png", img)                           # downsized, small on disk

Each object gets its own colour: its mask is tinted and outlined, its roi boxed, and its id and
label written above the box. An object without a mask shows its roi box only. Flat items
(paper, boards) are drawn grey with a dashed box. True masks, when given, are outlined in
white. An empty scene shows its status and message.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from spatialpin_ros.core.types import ObjectPrior, Scene

#: Distinct RGB colours (matplotlib's tab10 without its grey).
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207)]
FLAT_COLOUR = (170, 170, 170)
TRUTH_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _outline(img: np.ndarray, mask: np.ndarray, colour, thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, colour, thickness, cv2.LINE_8)


def _dashed_rect(img: np.ndarray, roi, colour, dash: int = 6, gap: int = 4) -> None:
    x, y, w, h = (int(v) for v in roi)
    corners = [(x, y), (x + w - 1, y), (x + w - 1, y + h - 1), (x, y + h - 1), (x, y)]
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        length = max(abs(x1 - x0), abs(y1 - y0))
        for s in range(0, length + 1, dash + gap):
            e = min(s + dash, length)
            a = (x0 + (x1 - x0) * s // max(length, 1), y0 + (y1 - y0) * s // max(length, 1))
            b = (x0 + (x1 - x0) * e // max(length, 1), y0 + (y1 - y0) * e // max(length, 1))
            cv2.line(img, a, b, colour, 1)


def _text(img: np.ndarray, text: str, org, colour, scale: float) -> None:
    """Text with a dark box behind it, kept inside the image."""
    th = max(1, int(round(scale * 2)))
    (tw, tht), base = cv2.getTextSize(text, FONT, scale, th)
    x = int(np.clip(org[0], 0, max(img.shape[1] - tw - 2, 0)))
    y = int(np.clip(org[1], tht + 2, img.shape[0] - base - 1))
    cv2.rectangle(img, (x, y - tht - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 1, y), FONT, scale, colour, th, cv2.LINE_AA)


def _draw_object(img: np.ndarray, o: ObjectPrior, colour, scale: float, flat: bool) -> None:
    H, W = img.shape[:2]
    mask = o.full_mask(H, W)
    if mask is not None and mask.any():
        tint = np.asarray(colour, dtype=np.float32)
        alpha = 0.25 if flat else 0.45
        img[mask] = ((1 - alpha) * img[mask] + alpha * tint).astype(np.uint8)
        _outline(img, mask, colour, 1 if flat else 2)
    x, y, w, h = (int(v) for v in o.roi)
    if w > 0 and h > 0:
        if flat:
            _dashed_rect(img, o.roi, colour)
        else:
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, 1)
    _text(img, f"{o.id} {o.label}", (x, y - 3), colour, scale)


def draw_overlay(rgb: np.ndarray, scene: Scene,
                 truth_masks: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with ``scene`` drawn over it; returns a new (H, W, 3) uint8 RGB.

    ``truth_masks``: optional (H, W) bool masks (labelled objects) outlined in white.
    """
    img = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3]).copy()
    H, W = img.shape[:2]
    scale = max(0.35, 0.4 * W / 640)
    for k, o in enumerate(scene.flat_items):
        _draw_object(img, o, FLAT_COLOUR, scale, flat=True)
    for k, o in enumerate(scene.objects):
        _draw_object(img, o, PALETTE[k % len(PALETTE)], scale, flat=False)
    for m in truth_masks or []:
        _outline(img, np.asarray(m, dtype=bool), TRUTH_COLOUR, 1)
    if not scene.objects:
        status = getattr(scene.status, "value", str(scene.status))
        msg = f"{status}: {scene.status_message}" if scene.status_message else \
            f"{status}: no objects"
        _text(img, msg[:90], (4, int(24 * scale / 0.4)), (255, 255, 255), scale)
    return img


def _png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def save_png(path: Union[str, Path], img: np.ndarray, max_width: int = 480,
             max_bytes: int = 150_000) -> Path:
    """Write RGB ``img`` (H, W, 3) uint8 as a PNG at most ``max_width`` wide (area-downsized,
    aspect kept). When the file would exceed ``max_bytes`` it is written palette-quantised
    (256, then 64 colours) so committed overlays stay small. Returns the path."""
    img = np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[..., :3])
    H, W = img.shape[:2]
    if W > max_width:
        img = cv2.resize(img, (max_width, max(1, round(H * max_width / W))),
                         interpolation=cv2.INTER_AREA)
    data = _png_bytes(img)
    if len(data) > max_bytes:
        from PIL import Image
        for colours in (256, 64):
            q = Image.fromarray(img).quantize(colors=colours, method=Image.Quantize.FASTOCTREE)
            bio = io.BytesIO()
            q.save(bio, format="PNG", optimize=True)
            data = bio.getvalue()
            if len(data) <= max_bytes:
                break
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
