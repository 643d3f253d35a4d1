"""A RealSense D435-like depth-noise model for the simulator's perfect depth images.

The D435 is an active stereo camera (50 mm baseline). Its depth error grows with the square of
the distance: ``sigma_z = z^2 * e_subpix / (f * b)`` (Intel's "Tuning depth cameras for best
performance" and Ahn et al. 2019 measure 1-2 mm RMS at 0.5-0.7 m and ~3-4 mm at 1 m with the
default preset, at 640x480, f ~ 385 px, subpixel error ~0.05-0.08). Part of the error is
spatially correlated (the matcher's 7x7-ish census windows), part per pixel, and the output is
quantised to the 1 mm depth unit of the 16-bit stream.

Missing pixels (depth 0) appear

* at depth discontinuities: an invalid band 1-3 px wide on the occluded (far) side, where only
  one of the two imagers sees the surface, and at most 1 px on the near side;
* on dark surfaces (little signal, also in IR for dark paints) -- the darker, the more;
* on shiny surfaces: very bright, unsaturated highlights saturate the imagers;
* as a few random dropouts.

``apply_d435_noise(depth, rgb, rng)`` returns a new float32 depth image; it never changes its
inputs, and the same generator state gives the same output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.errors import ImageError


@dataclass
class D435NoiseParams:
    """Parameters of :func:`apply_d435_noise` (metres, pixels, probabilities)."""

    #: Axial noise std: ``sigma_base + sigma_quad * z^2`` (1.8 mm at 0.7 m, 3.1 mm at 1 m).
    sigma_base: float = 0.0005
    sigma_quad: float = 0.0026
    #: Share of the noise variance that is spatially correlated, and its correlation length (px).
    correlated_fraction: float = 0.4
    correlation_px: float = 2.0
    #: Depth unit of the 16-bit stream (quantisation step); 0 disables quantisation.
    depth_unit: float = 0.001
    #: Valid range of the sensor (the D435's minimum Z at 640x480 is ~0.2-0.3 m).
    min_range: float = 0.2
    max_range: float = 6.0
    #: A neighbour nearer by more than ``edge_jump + edge_jump_rel * z`` makes a discontinuity.
    edge_jump: float = 0.008
    edge_jump_rel: float = 0.01
    #: Invalid band on the far side: always ``edge_far_min_px`` wide, up to ``edge_far_max_px``
    #: (each extra ring kept with ``edge_extra_prob``), and on the near side 1 px with
    #: probability ``edge_near_prob``.
    edge_far_min_px: int = 1
    edge_far_max_px: int = 3
    edge_extra_prob: float = 0.5
    edge_near_prob: float = 0.3
    #: Dark surfaces: dropout probability ``dark_max_prob * (1 - I / dark_intensity)`` below
    #: mean RGB intensity ``dark_intensity`` (0..255).
    dark_intensity: float = 45.0
    dark_max_prob: float = 0.5
    #: Specular highlights: pixels brighter than ``specular_intensity`` with saturation below
    #: ``specular_max_saturation`` drop with up to ``specular_max_prob``.
    specular_intensity: float = 232.0
    specular_max_saturation: float = 0.12
    specular_max_prob: float = 0.5
    #: Isolated random dropouts.
    random_dropout: float = 0.003

    def sigma(self, z: np.ndarray) -> np.ndarray:
        """Axial noise standard deviation (metres) at depth ``z``."""
        return self.sigma_base + self.sigma_quad * np.square(z)


def apply_d435_noise(depth: np.ndarray, rgb: np.ndarray, rng: np.random.Generator,
                     params: Optional[D435NoiseParams] = None) -> np.ndarray:
    """A D435-like noisy copy of a perfect ``depth`` image (metres, 0 or NaN = missing), using the
    aligned ``rgb`` (H, W, 3) uint8 for dark and shiny surfaces. Missing pixels are 0."""
    p = params or D435NoiseParams()
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ImageError(f"depth must be (H, W), got {depth.shape}")
    if rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"rgb {rgb.shape} must be (H, W, 3) aligned to depth {depth.shape}")
    h, w = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    valid = z > 0

    # --- missing pixels -------------------------------------------------------------------
    big = np.float32(1e6)
    zf = np.where(valid, z, big)  # missing counts as "very far" for the far-side test
    jump = np.float32(p.edge_jump) + np.float32(p.edge_jump_rel) * z
    drop = np.zeros((h, w), dtype=bool)
    k_min = 2 * p.edge_far_min_px + 1
    near_min = cv2.erode(zf, np.ones((k_min, k_min), np.uint8))
    drop |= valid & (z - near_min > jump)
    for r in range(p.edge_far_min_px + 1, p.edge_far_max_px + 1):
        k = 2 * r + 1
        near = cv2.erode(zf, np.ones((k, k), np.uint8))
        ring = valid & (z - near > jump) & ~drop
        drop |= ring & (rng.random((h, w)) < p.edge_extra_prob ** (r - p.edge_far_min_px))
    far = cv2.dilate(np.where(valid, z, 0).astype(np.float32), np.ones((3, 3), np.uint8))
    near_side = valid & (far - z > jump) & ~drop
    drop |= near_side & (rng.random((h, w)) < p.edge_near_prob)

    rgbf = rgb.astype(np.float32)
    intensity = rgbf.mean(axis=2)
    mx, mn = rgbf.max(axis=2), rgbf.min(axis=2)
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    p_drop = np.full((h, w), p.random_dropout, dtype=np.float32)
    if p.dark_intensity > 0:
        p_drop += p.dark_max_prob * np.clip(1.0 - intensity / p.dark_intensity, 0.0, 1.0)
    if p.specular_intensity < 255:
        shine = np.clip((intensity - p.specular_intensity) / (255.0 - p.specular_intensity), 0, 1)
        p_drop += p.specular_max_prob * shine * (saturation < p.specular_max_saturation)
    drop |= rng.random((h, w)) < p_drop

    # --- axial noise ------------------------------------------------------------------------
    sigma = p.sigma(z).astype(np.float32)
    white = rng.standard_normal((h, w), dtype=np.float32)
    f = float(np.clip(p.correlated_fraction, 0.0, 1.0))
    if f > 0 and p.correlation_px > 0:
        corr = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0),
                                p.correlation_px)
        corr /= max(float(corr.std()), 1e-9)
        noise = np.sqrt(1 - f) * white + np.sqrt(f) * corr
    else:
        noise = white
    out = z + sigma * noise
    if p.depth_unit > 0:
        out = np.round(out / p.depth_unit) * p.depth_unit
    out = out.astype(np.float32)
    out[~valid | drop | (out < p.min_range) | (out > p.max_range)] = 0.0
    return out
