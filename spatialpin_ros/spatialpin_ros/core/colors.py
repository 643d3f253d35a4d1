"""Named colours: one palette for the simulator's objects and for naming perceived colours."""

from __future__ import annotations

import numpy as np

from spatialpin_ros.core.geometry import row_norms

#: name -> RGB in 0..1. Chosen to be far apart in hue or lightness, and unlike the table's wood.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.65, 0.15),
    "blue": (0.10, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.55, 0.15, 0.75),
    "cyan": (0.10, 0.80, 0.85),
    "magenta": (0.95, 0.20, 0.65),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
    "gray": (0.50, 0.50, 0.52),
    "orange": (1.00, 0.50, 0.05),
    "pink": (1.00, 0.65, 0.75),
}


#: sRGB (linear) to XYZ, transposed for row vectors, and the D65 white point.
_RGB_TO_XYZ_T = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                          [0.0193, 0.1192, 0.9505]]).T
_WHITE = np.array([0.95047, 1.0, 1.08883])


def _to_lab(rgb01: np.ndarray) -> np.ndarray:
    """sRGB in 0..1, shape (..., 3) -> CIE L*a*b* (D65)."""
    rgb = np.asarray(rgb01, dtype=float)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ_T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


_NAMES = list(PALETTE)
_LAB = _to_lab(np.array([PALETTE[n] for n in _NAMES]))


def nearest_color_name(rgb: np.ndarray, scale: float = 255.0) -> str:
    """Name of the palette colour nearest (in L*a*b*) to ``rgb`` (values in 0..``scale``)."""
    lab = _to_lab(np.asarray(rgb, dtype=float).reshape(3) / scale)
    return _NAMES[int(np.argmin(row_norms(_LAB - lab)))]
