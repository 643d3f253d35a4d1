"""Directions as the viewer sees them (SpatialPIN's named directions), from a camera pose.

The viewer frame is gravity-aligned: ``right`` is the camera's x axis laid flat on the support
plane, ``away`` is the horizontal direction the camera looks along, ``up`` is world z. "front"
means toward the camera, "back" away from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spatialpin_ros.core.types import Pose

#: The ten named directions and their unit vectors in (right, away, up) coordinates.
DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "right": (1, 0, 0), "left": (-1, 0, 0), "back": (0, 1, 0), "front": (0, -1, 0),
    "up": (0, 0, 1), "down": (0, 0, -1),
    "front-right": (math.sqrt(0.5), -math.sqrt(0.5), 0),
    "front-left": (-math.sqrt(0.5), -math.sqrt(0.5), 0),
    "back-right": (math.sqrt(0.5), math.sqrt(0.5), 0),
    "back-left": (-math.sqrt(0.5), math.sqrt(0.5), 0),
}
_NAMES = list(DIRECTIONS)
_VECS = np.array([DIRECTIONS[n] for n in _NAMES])


@dataclass
class ViewerFrame:
    """Unit vectors (world frame) of the viewer's right, away (forward, horizontal) and up, and
    the camera position (metres, world frame)."""

    right: np.ndarray
    away: np.ndarray
    up: np.ndarray
    eye: np.ndarray

    @classmethod
    def from_camera(cls, camera_pose: Pose, up=(0.0, 0.0, 1.0)) -> "ViewerFrame":
        R = camera_pose.rotation.as_matrix()
        up = np.asarray(up, dtype=float)
        fwd = R[:, 2] - np.dot(R[:, 2], up) * up
        if np.linalg.norm(fwd) < 1e-6:  # looking straight down: use the image's "up" as away
            fwd = -R[:, 1] - np.dot(-R[:, 1], up) * up
        away = fwd / np.linalg.norm(fwd)
        right = np.cross(away, up)
        return cls(right=right, away=away, up=up, eye=camera_pose.position.copy())

    def to_viewer(self, v: np.ndarray) -> np.ndarray:
        """World vector(s) (..., 3) as (right, away, up) components."""
        return np.stack([v @ self.right, v @ self.away, v @ self.up], axis=-1)

    def name(self, v: np.ndarray, horizontal_only: bool = False) -> str:
        """Nearest named direction of world vector ``v``."""
        c = self.to_viewer(np.asarray(v, dtype=float))
        vecs = _VECS[[i for i, n in enumerate(_NAMES) if not horizontal_only
                      or n not in ("up", "down")]]
        names = [n for n in _NAMES if not horizontal_only or n not in ("up", "down")]
        n = np.linalg.norm(c)
        if n < 1e-9:
            return "none"
        return names[int(np.argmax(vecs @ (c / n)))]

    def bearing_deg(self, v: np.ndarray) -> float:
        """Horizontal angle of ``v`` in degrees, counter-clockwise seen from above, 0 = right,
        90 = away from the viewer (back), 180 = left, -90 = toward the viewer (front)."""
        c = self.to_viewer(np.asarray(v, dtype=float))
        return math.degrees(math.atan2(c[1], c[0]))


def axis_names(pose: Pose, viewer: ViewerFrame) -> list[str]:
    """SpatialPIN's names of a box's x, y and z axes: each the nearest of the ten directions."""
    R = pose.rotation.as_matrix()
    return [viewer.name(R[:, k]) for k in range(3)]
