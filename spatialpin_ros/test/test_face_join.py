"""A box's top face cut off from its sides joins them (perception/face_join): across a continuous
boundary, of one colour; the top of something behind, across a depth jump, or of another colour,
stays apart."""

import numpy as np

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.face_join import join_top_faces
from spatialpin_ros.perception.pieces import Piece, _hull
from spatialpin_ros.perception.segmentation import SurfaceSegmentation

H, W = 30, 20


def _scene(behind=0.0, top_rgb=(200, 40, 30)):
    """A box's front face (label 1, rows 10-29) and its top face (label 2, rows 0-9), seen
    from the front and above; ``behind`` pushes the top face that far away (something else's
    top); the top face's colour ``top_rgb``."""
    r, c = np.mgrid[0:H, 0:W]
    pts = np.zeros((H, W, 3), np.float32)
    pts[..., 0] = c * 0.003
    top = r < 10
    pts[..., 1] = np.where(top, 0.03 - (10 - r) * 0.002, r * 0.003)
    pts[..., 2] = np.where(top, 0.8 + (10 - r) * 0.003 + behind, 0.8)
    lab = np.where(top, 2, 1).astype(np.int32)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (200, 40, 30)
    rgb[top] = top_rgb
    seg = SurfaceSegmentation(labels=lab, num_labels=2, points=pts,
                              height=np.zeros((H, W), np.float32),
                              normals=np.zeros((H, W, 3), np.float32),
                              foreground=np.ones((H, W), bool), stride=1, focal=500.0)
    rr, cc = np.nonzero(~top)                        # the front face: a wall, 10 cm high
    front = np.column_stack([cc * 0.003, np.linspace(0, 0.004, len(rr)),
                             np.linspace(0.1, 0.0, len(rr))])
    tr, tc = np.nonzero(top)                         # the top face: a slab at its top
    slab = np.column_stack([tc * 0.003, np.linspace(0.004, 0.05, len(tr)),
                            np.linspace(0.097, 0.1, len(tr))])
    pieces = [Piece(L, r_, c_, Q, quantile(Q[:, 2], 0.9), _hull(Q), rgb=rgb)
              for L, r_, c_, Q in ((1, rr, cc, front), (2, tr, tc, slab))]
    return pieces, seg


def test_a_top_face_meeting_its_front_face_joins_it():
    pieces, seg = _scene()
    out, joined = join_top_faces(pieces, seg, 0.006, 0.015, 25.0)
    assert joined == {2: 1} and len(out) == 1 and len(out[0].Q) == H * W


def test_a_top_across_a_depth_jump_or_of_another_colour_stays_apart():
    pieces, seg = _scene(behind=0.05)
    assert join_top_faces(pieces, seg, 0.006, 0.015, 25.0)[1] == {}
    pieces, seg = _scene(top_rgb=(40, 60, 200))
    assert join_top_faces(pieces, seg, 0.006, 0.015, 25.0)[1] == {}
