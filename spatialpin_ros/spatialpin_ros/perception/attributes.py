"""Stage 4 of geometric perception: what a person would call an object: its colour name, a
short label ("tall blue cylinder", "white bowl") and SpatialPIN's names of its axes as the
viewer sees them."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from spatialpin_ros.core import colors as _colors
from spatialpin_ros.core.colors import nearest_color_name
from spatialpin_ros.core.geometry import row_norms, unit

#: SpatialPIN's direction names, in the order used for ties.
DIRECTION_NAMES = ("up", "down", "left", "right", "front", "back", "front-left", "front-right",
                   "back-left", "back-right")


def shading_invariant_color_name(rgb: Sequence[float], max_gain: float = 1.8,
                                 gain_cost: float = 30.0) -> str:
    """Palette name of an observed colour that shading may have darkened: the colour is
    brightened by gains 1..``max_gain``; the gain whose result is nearest a palette colour
    (L*a*b* distance plus ``gain_cost`` per unit of gain above 1, so that no shading is
    preferred) is named with :func:`~spatialpin_ros.core.colors.nearest_color_name`."""
    key = tuple(int(round(float(v))) for v in np.asarray(rgb, dtype=float).reshape(3))
    return _shading_invariant_color_name(key, float(max_gain), float(gain_cost))


@functools.lru_cache(maxsize=4096)
def _shading_invariant_color_name(rgb: tuple, max_gain: float, gain_cost: float) -> str:
    rgb = np.asarray(rgb, dtype=float).reshape(3)
    gains, cost = _gains(max_gain, gain_cost)
    cand = np.clip(rgb[None, :] * gains, 0, 255)
    lab = _colors._to_lab(cand / 255.0)
    dist = row_norms(lab[:, None, :] - _colors._LAB[None, :, :]).min(axis=1)
    best = int(np.argmin(dist + cost))
    return nearest_color_name(cand[best])


@functools.lru_cache(maxsize=16)
def _gains(max_gain: float, gain_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """The gains tried (17, 1) and what each costs (17,) (read-only)."""
    gains = np.linspace(1.0, max_gain, 17)
    out = gains[:, None], gain_cost * (gains - 1.0)
    for a in out:
        a.flags.writeable = False
    return out


def viewer_directions(up: np.ndarray, camera_forward: np.ndarray,
                      camera_right: np.ndarray) -> np.ndarray:
    """(10, 3) unit vectors of :data:`DIRECTION_NAMES` as the viewer sees them (world frame)."""
    fwd = camera_forward - (camera_forward @ up) * up
    front = -unit(fwd)                          # towards the viewer
    right = camera_right - (camera_right @ up) * up
    right = unit(right - (right @ front) * front)
    left = -right
    return np.stack([up, -up, left, right, front, -front, unit(front + left),
                     unit(front + right), unit(-front + left), unit(-front + right)])


def axis_names(R_box: np.ndarray, dirs: np.ndarray) -> list[str]:
    """Names of the box's x, y, z axes (columns of ``R_box``) from :func:`viewer_directions`."""
    return [DIRECTION_NAMES[int(np.argmax(dirs @ R_box[:, k]))] for k in range(3)]


def object_label(color: str, shape: str, size: np.ndarray, container: bool) -> str:
    """A short noun phrase: "tall blue cylinder", "red box", "white bowl", "green object"."""
    if container:
        if shape == "cylinder":
            noun = "cup" if size[2] > 0.8 * size[0] else "bowl"
        else:
            noun = "tray" if size[2] < 0.4 * min(size[0], size[1]) else "container"
        return f"{color} {noun}".strip()
    noun = {"box": "box", "cylinder": "cylinder", "sphere": "sphere"}.get(shape, "object")
    adj = ""
    if shape in ("box", "cylinder"):
        if size[2] > 1.5 * max(size[0], size[1]):
            adj = "tall "
        elif size[2] < 0.5 * min(size[0], size[1]):
            adj = "flat "
    return f"{adj}{color} {noun}".strip()
