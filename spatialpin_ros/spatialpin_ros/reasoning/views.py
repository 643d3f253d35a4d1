"""ZeroVLM novel views of the reconstructed scene, with ZeroVLM's view prompts.

ZeroVLM renders left, right or random views of the input with a generative model; here the views
come from the scene itself: the coloured point cloud seen from a camera orbited about the
vertical axis through the scene's centre (or from above), with each object's box and id drawn in.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from spatialpin_ros.core.colors import PALETTE
from spatialpin_ros.core.types import CameraModel, Pose, Scene, look_at

VIEW_ANGLES = {"left": 45.0, "right": -45.0}  # degrees of orbit about the scene's vertical axis
VIEW_PROMPT_SINGLE = ("The second image is a 3D single-view image generated from the original "
                      "image, centered on the objects: the same scene seen from the {name}. "
                      "Object ids are drawn on it and match the 3D information.")
VIEW_PROMPT_MULTI = ("The image is stitched from four views of the same scene: the top-left "
                     "tile is the original image, the top-right tile is the view from the left, "
                     "the bottom-left tile the view from the right and the bottom-right tile the "
                     "view from above. Object ids are drawn on the generated views and match the "
                     "3D information.")


def view_pose(scene: Scene, name: str) -> Pose:
    """Camera pose of a named view: ``left``/``right`` (orbit by 45 degrees), ``top``, or a
    number of degrees of orbit (positive = the viewer moves to the left)."""
    center = np.mean([o.center for o in scene.objects], axis=0) if scene.objects else \
        scene.camera_pose.position + 0.5 * scene.camera_pose.rotation.as_matrix()[:, 2]
    eye = scene.camera_pose.position
    if name == "top":
        r = max(0.5, float(np.linalg.norm(eye - center)))
        fwd = scene.camera_pose.rotation.as_matrix()[:, 2]
        up_hint = np.array([fwd[0], fwd[1], 0.0])
        return look_at(center + [0, 0, r], center, up=up_hint / (np.linalg.norm(up_hint) + 1e-9))
    try:
        ang = math.radians(VIEW_ANGLES[name] if name in VIEW_ANGLES else float(name))
    except ValueError:
        raise ValueError(f"unknown view {name!r}: left, right, top or an angle in degrees") \
            from None
    rel = eye - center
    c, s = math.cos(ang), math.sin(ang)
    # Orbit about the vertical: moving the viewer to its left is a clockwise turn seen from above
    # for a camera that faces the scene, hence the minus sign.
    rel = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    return look_at(center + rel, center)


def render_view(points: np.ndarray, colors: np.ndarray, camera: CameraModel, pose: Pose,
                scene: Scene | None = None, point_px: int = 2) -> np.ndarray:
    """Splat a coloured cloud (world frame) into an (H, W, 3) uint8 image seen from ``pose``,
    nearest point winning; draw the scene's boxes and ids when given."""
    img = np.full((camera.height, camera.width, 3), 40, np.uint8)
    pc = pose.inverse().transform_points(np.asarray(points, dtype=float))
    ok = pc[:, 2] > 0.05
    pc, col = pc[ok], np.asarray(colors)[ok]
    uv = camera.project(pc)
    order = np.argsort(-pc[:, 2])  # far first, near last (near overwrites)
    u = np.round(uv[order, 0]).astype(int)
    v = np.round(uv[order, 1]).astype(int)
    col = col[order]
    for du in range(point_px):
        for dv in range(point_px):
            uu, vv = u + du, v + dv
            inside = (uu >= 0) & (uu < camera.width) & (vv >= 0) & (vv < camera.height)
            img[vv[inside], uu[inside]] = col[inside]
    if scene is not None:
        edges = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6),
                 (5, 7), (6, 7)]
        for o in scene.objects:
            cc = pose.inverse().transform_points(o.corners())
            if np.any(cc[:, 2] <= 0.05):
                continue
            p2 = camera.project(cc).astype(int)
            rgb = PALETTE.get(o.color_name, (1, 1, 1))
            color = tuple(int(255 * x) for x in rgb)
            for i, j in edges:
                cv2.line(img, tuple(p2[i]), tuple(p2[j]), color, 1, cv2.LINE_AA)
            top = p2[np.argmin(p2[:, 1])]
            cv2.putText(img, o.id, (int(top[0]) - 10, int(top[1]) - 4), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def stitch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Up to four equally sized images as a 2x2 grid."""
    h, w = images[0].shape[:2]
    grid = np.zeros((2 * h, 2 * w, 3), np.uint8)
    for k, im in enumerate(images[:4]):
        r, c = divmod(k, 2)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = cv2.resize(im, (w, h))
    return grid


def zerovlm_views(scene: Scene, cloud: tuple[np.ndarray, np.ndarray], image: np.ndarray,
                  names: Sequence[str], stitch_views: bool = False) -> tuple[list, str]:
    """Novel views for a VLM prompt and their view prompt: one view per name, or
    (``stitch_views``) the original and the views in one 2x2 image."""
    pts, cols = cloud
    views = [render_view(pts, cols, scene.camera, view_pose(scene, n), scene) for n in names]
    if stitch_views:
        return [stitch([image, *views])], VIEW_PROMPT_MULTI
    where = " and ".join(f"{n}" for n in names)
    return views, VIEW_PROMPT_SINGLE.format(name=where)
