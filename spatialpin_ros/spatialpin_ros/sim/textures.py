"""Procedural texture images for the simulator's meshes (OpenCV drawing, deterministic from a
seed): printed food-box faces with stripes, a logo and text, and wrap-around textures for
revolved objects (glaze with a rim band, a bottle or can label). ROS-free.

Every function returns an (H, W, 3) uint8 RGB image; colours are 0..1 RGB triples.
"""

from __future__ import annotations

import cv2
import numpy as np

_BRANDS = ("CRUNCHOS", "OATY", "BISKO", "TEA TIME", "PASTA", "RICE", "CHOCO", "MUESLI",
           "CRACKERS", "GRANOLA", "SOUP", "COCOA")
_WORDS = ("NATURAL", "CLASSIC", "FAMILY PACK", "WHOLE GRAIN", "ORIGINAL", "NEW!", "500 g")


def _bgr(rgb) -> tuple[int, int, int]:
    r, g, b = (int(round(255 * float(np.clip(v, 0, 1)))) for v in rgb[:3])
    return (b, g, r)


def _contrast(rgb, rng: np.random.Generator) -> np.ndarray:
    """A colour that stands out against ``rgb`` (for stripes, logos and text)."""
    rgb = np.asarray(rgb[:3], float)
    lum = float(rgb @ [0.299, 0.587, 0.114])
    if rng.random() < 0.5:
        return np.array([0.97, 0.97, 0.95]) if lum < 0.55 else np.array([0.08, 0.08, 0.1])
    hue = rng.uniform(0, 1, 3)
    return np.clip(1.0 - rgb * 0.8 + (hue - 0.5) * 0.4, 0, 1)


def _grain(img: np.ndarray, rng: np.random.Generator, amount: float = 4.0) -> np.ndarray:
    noise = rng.normal(0, amount, img.shape[:2])[..., None]
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def printed_face(width_px: int, height_px: int, base_rgb, rng: np.random.Generator,
                 kind: str = "front", text: str = "") -> np.ndarray:
    """One face of a printed box: background ``base_rgb`` with stripes, and on the ``front``
    a round logo and a brand name; ``back`` carries lines of small print; ``side`` and ``cap``
    (top/bottom) stripes only. Colour varies across the face."""
    w, h = max(8, int(width_px)), max(8, int(height_px))
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = _bgr(base_rgb)
    accent = _contrast(base_rgb, rng)
    accent2 = np.clip(np.asarray(base_rgb[:3], float) * 0.55, 0, 1)
    # Diagonal or horizontal stripes.
    n_stripes = int(rng.integers(1, 4))
    for k in range(n_stripes):
        y0 = int(h * rng.uniform(0.05, 0.95))
        t = max(2, int(h * rng.uniform(0.03, 0.09)))
        slope = rng.uniform(-0.25, 0.25) * h if kind in ("front", "side") else 0.0
        pts = np.array([[0, y0], [w, y0 + slope], [w, y0 + slope + t], [0, y0 + t]], np.int32)
        cv2.fillPoly(img, [pts], _bgr(accent if k % 2 == 0 else accent2), cv2.LINE_AA)
    if kind == "front":
        r = int(min(w, h) * rng.uniform(0.16, 0.24))
        cx, cy = int(w * rng.uniform(0.3, 0.7)), int(h * rng.uniform(0.55, 0.7))
        cv2.circle(img, (cx, cy), r, _bgr(accent), -1, cv2.LINE_AA)
        cv2.circle(img, (cx, cy), int(r * 0.6), _bgr(base_rgb), -1, cv2.LINE_AA)
        cv2.circle(img, (cx, cy), int(r * 0.3), _bgr(accent2), -1, cv2.LINE_AA)
        name = text or str(rng.choice(_BRANDS))
        _fit_text(img, name, (0.06 * w, 0.08 * h, 0.88 * w, 0.22 * h), _bgr(accent), thick=2)
        _fit_text(img, str(rng.choice(_WORDS)), (0.15 * w, 0.86 * h, 0.7 * w, 0.1 * h),
                  _bgr(accent2), thick=1)
    elif kind == "back":
        for k in range(6):
            _fit_text(img, "lorem ipsum dolor %d" % (k * 37 % 100),
                      (0.08 * w, (0.1 + 0.12 * k) * h, 0.84 * w, 0.08 * h), _bgr(accent2), 1)
    return _grain(img, rng)


def _fit_text(img, text: str, box, color, thick: int = 2) -> None:
    """Draw ``text`` scaled to fit ``box`` = (x, y, w, h) pixels."""
    x, y, bw, bh = (float(v) for v in box)
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thick)
    scale = max(0.1, min(bw / max(tw, 1), bh / max(th, 1)))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (int(x + (bw - tw) / 2), int(y + (bh + th) / 2))
    cv2.putText(img, text, org, font, scale, color, max(1, thick), cv2.LINE_AA)


def box_atlas(size, base_rgb, rng: np.random.Generator, text: str = "",
              cell: int = 256) -> np.ndarray:
    """A 3x2 atlas of a printed box's faces (see ``meshes.printed_box`` for the layout):
    row 0: front (+y... drawn at the face's aspect), back, side; row 1: side, top, bottom."""
    sx, sy, sz = (float(v) for v in size)
    px = cell / max(sx, sy, sz)
    faces = [("front", sx, sz), ("back", sx, sz), ("side", sy, sz),
             ("side", sy, sz), ("cap", sx, sy), ("cap", sx, sy)]
    atlas = np.zeros((2 * cell, 3 * cell, 3), np.uint8)
    for i, (kind, a, b) in enumerate(faces):
        face = printed_face(int(a * px), int(b * px), base_rgb, rng, kind, text)
        r, c = divmod(i, 3)
        atlas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = cv2.resize(
            face, (cell, cell), interpolation=cv2.INTER_AREA)
    return atlas


def revolved_texture(base_rgb, rng: np.random.Generator, bands: list[tuple[float, float]] = (),
                     label_text: str = "", label_band: tuple[float, float] | None = None,
                     label_rgb=None, width: int = 256, height: int = 256) -> np.ndarray:
    """A wrap-around texture for a revolved mesh: u goes round the axis, v along the profile
    (0 at the bottom centre, 1 at the end of the profile). ``bands``: (v0, v1) stripes in a
    contrasting colour; ``label_band``: a printed label with ``label_text`` repeated around
    (background ``label_rgb``, random when None)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = _bgr(base_rgb)
    # A soft glaze gradient along the profile.
    shade = np.linspace(0.92, 1.06, height)[::-1, None, None]
    img = np.clip(img.astype(np.float32) * shade, 0, 255).astype(np.uint8)
    accent = _contrast(base_rgb, rng)
    for v0, v1 in bands:
        y0, y1 = int((1 - v1) * height), int(np.ceil((1 - v0) * height))
        img[y0:y1] = _bgr(accent)
    if label_band is not None:
        v0, v1 = label_band
        y0, y1 = int((1 - v1) * height), int(np.ceil((1 - v0) * height))
        lab_rgb = rng.uniform(0.1, 0.95, 3) if label_rgb is None else np.asarray(label_rgb[:3])
        img[y0:y1] = _bgr(lab_rgb)
        lab_accent = _contrast(lab_rgb, rng)
        t = max(2, (y1 - y0) // 8)
        img[y0:y0 + t] = _bgr(lab_accent)
        img[y1 - t:y1] = _bgr(lab_accent)
        name = label_text or str(rng.choice(_BRANDS))
        for k in range(2):  # twice around, so that every side shows a name
            _fit_text(img, name, (k * width / 2 + 0.05 * width, y0 + 0.25 * (y1 - y0),
                                  0.4 * width, 0.5 * (y1 - y0)), _bgr(lab_accent), 2)
    # Texture rows run top-down while v runs bottom-up (OBJ convention).
    return _grain(img, rng, 3.0)
