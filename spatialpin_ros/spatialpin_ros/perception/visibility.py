"""How much of an object the camera does not see: the share of its silhouette's outline that
borders something nearer to the camera (another object in front of it) or the image's edge.

Where the outline is hidden the object may go on behind the occluder, so its perceived box is a
lower bound there: a planner should prefer objects seen whole (to grasp and to put things on).
A person does the same, picking up what they can see entirely before what is half behind
something else.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from spatialpin_ros.core.types import ObjectPrior

#: A neighbour nearer than the object's own border by this much (metres, plus ``JUMP_REL`` x
#: depth) is in front of it.
JUMP_ABS = 0.015
JUMP_REL = 0.01
_KERNEL = np.ones((3, 3), np.uint8)


def hidden_share(mask: np.ndarray, depth: np.ndarray, touches_edge: np.ndarray,
                 jump_abs: float = JUMP_ABS, jump_rel: float = JUMP_REL) -> float:
    """The share (0..1) of the outline of ``mask`` (h, w bool, a crop one pixel larger than the
    object on every side where the image allows) that is hidden. ``depth`` (h, w, metres, 0 =
    none): the crop's depth. ``touches_edge`` (h, w bool): the crop's pixels on the image's
    border. An outline pixel is hidden when its neighbour outside the mask is nearer by more than
    the jump, or when it lies on the image's border; neighbours without depth are not judged."""
    m8 = mask.astype(np.uint8)
    ring = (cv2.dilate(m8, _KERNEL) > 0) & ~mask
    valid = depth > 0
    own = np.where(mask & valid, depth, 0.0).astype(np.float32, copy=False)
    # The farthest of the object's own points beside each ring pixel: a ring pixel in front of
    # even that is in front of the object.
    beside = cv2.dilate(own, _KERNEL)
    judged = ring & valid & (beside > 0)
    nearer = judged & (depth < beside - (jump_abs + jump_rel * beside))
    cut = np.count_nonzero(mask & touches_edge)
    total = np.count_nonzero(judged) + cut
    if total == 0:
        return 0.0
    return float((np.count_nonzero(nearer) + cut) / total)


def set_hidden(objects: Sequence[ObjectPrior], depth: np.ndarray) -> None:
    """Each object's ``hidden`` share from its full-resolution mask and the frame's ``depth``
    (H, W, metres). Objects without a mask keep theirs (unknown)."""
    H, W = depth.shape
    for ob in objects:
        if ob.mask is None or not ob.mask.any():
            continue
        x, y, w, h = ob.roi
        r0, c0, r1, c1 = max(y - 1, 0), max(x - 1, 0), min(y + h + 1, H), min(x + w + 1, W)
        crop = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        crop[y - r0: y - r0 + h, x - c0: x - c0 + w] = ob.mask[: r1 - y, : c1 - x][
            : crop.shape[0] - (y - r0), : crop.shape[1] - (x - c0)]
        edge = np.zeros_like(crop)
        if r0 == 0:
            edge[0] = True
        if c0 == 0:
            edge[:, 0] = True
        if r1 == H:
            edge[-1] = True
        if c1 == W:
            edge[:, -1] = True
        ob.hidden = round(hidden_share(crop, depth[r0:r1, c0:c1], edge), 3)
