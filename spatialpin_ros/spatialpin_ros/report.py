"""Pictures for reports (ROS-free): scene priors drawn on the camera image."""

from __future__ import annotations

import cv2
import numpy as np

from spatialpin_ros.core.colors import PALETTE
from spatialpin_ros.core.types import Scene

_EDGES = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6),
          (5, 7), (6, 7)]


def draw_priors(rgb: np.ndarray, scene: Scene, truth: Scene | None = None) -> np.ndarray:
    """The colour image (H, W, 3 uint8 RGB) with each object's 3D box projected and labelled
    with its id and label; true boxes (when given) in thin white."""
    img = rgb.copy()
    cam, inv = scene.camera, scene.camera_pose.inverse()
    if truth is not None:
        inv_t = truth.camera_pose.inverse()
        for o in truth.objects:
            pc = inv_t.transform_points(o.corners())
            if np.all(pc[:, 2] > 0.05):
                uv = np.round(cam.project(pc)).astype(int)
                for i, j in _EDGES:
                    cv2.line(img, tuple(uv[i]), tuple(uv[j]), (255, 255, 255), 1, cv2.LINE_AA)
    for o in scene.objects:
        pc = inv.transform_points(o.corners())
        if np.any(pc[:, 2] <= 0.05):
            continue
        uv = np.round(cam.project(pc)).astype(int)
        rgbf = PALETTE.get(o.color_name, (0.9, 0.9, 0.9))
        color = tuple(int(255 * min(1.0, 0.35 + 0.65 * c)) for c in rgbf)
        for i, j in _EDGES:
            cv2.line(img, tuple(uv[i]), tuple(uv[j]), color, 2, cv2.LINE_AA)
        x, y = int(uv[:, 0].min()), int(uv[:, 1].min()) - 6
        text = f"{o.id}: {o.label}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
        cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + 3), (0, 0, 0), -1)
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return img
