"""A leftover patch joins the piece it lies within seen from above (perception/orphan_home,
through orphan_home.attach_orphans): a bowl's inside, seen beyond its front rim across a
depth jump, joins the bowl's outer wall, not the cup standing behind the bowl that touches it
without a jump."""

import numpy as np

from spatialpin_ros.perception.segmentation import _attach_orphans

H, W = 30, 30


def _bowl_and_cup():
    """Labels (1: the bowl's front outer wall, rows 20-29; 2: a cup behind the bowl, rows 0-4;
    0: the bowl's inside, rows 5-19), the depth jumps along the front rim, and the plane-frame
    points (the camera's foot at the origin, the bowl at u = 0.5)."""
    lab = np.zeros((H, W), np.int32)
    lab[20:] = 1
    lab[:5] = 2
    jx = np.zeros((H, W - 1), bool)
    jy = np.zeros((H - 1, W), bool)
    jy[19] = True                                   # the front rim occludes the inside
    Q = np.zeros((H, W, 3))
    t = np.linspace(-np.pi / 2, np.pi / 2, W)       # across the image: around the near half
    for r in range(H):
        if r >= 20:                                 # the outer wall, 7 cm high
            Q[r, :, 0], Q[r, :, 1] = 0.5 - 0.07 * np.cos(t), 0.07 * np.sin(t)
            Q[r, :, 2] = 0.07 * (29 - r) / 9
        elif r >= 5:                                # the inside, seen from above
            f = (r - 5) / 14
            Q[r, :, 0] = 0.56 - 0.11 * f
            Q[r, :, 1] = np.linspace(-0.05, 0.05, W) * (1 - abs(2 * f - 1) * 0.5)
            Q[r, :, 2] = 0.01 + 0.04 * abs(2 * f - 1)
        else:                                       # the cup behind, 10 cm high
            Q[r, :, 0], Q[r, :, 1] = 0.61 - 0.04 * np.cos(t), 0.04 * np.sin(t)
            Q[r, :, 2] = 0.1 * (5 - r) / 5
    return lab, (jx, jy), Q


def test_a_bowls_inside_joins_the_bowl_not_the_cup_behind_it():
    lab, jumps, Q = _bowl_and_cup()
    _attach_orphans(lab, lab == 0, jumps, 4, Q)
    assert (lab[5:20] == 1).all()
    lab, jumps, Q = _bowl_and_cup()                 # by the boundary alone: the cup
    _attach_orphans(lab, lab == 0, jumps, 4)
    assert (lab[5:20] == 2).all()
