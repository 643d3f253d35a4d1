"""Object masks keep what segmentation cannot see in depth: dark depth holes that are the object's
own surface (perception/depth_holes), and foreground patches the cuts left in no piece
(segmentation._attach_orphans)."""

import numpy as np

from spatialpin_ros.perception.depth_holes import DepthHoleParams, claim_dark_holes
from spatialpin_ros.perception.segmentation import _attach_orphans


def _scene():
    labels = np.zeros((20, 30), np.int32)
    labels[10:18, 5:9] = 1              # a pen's body
    labels[2:18, 15:25] = 2             # a box
    lum = np.full(labels.shape, 200.0)  # a bright table
    has_depth = np.ones(labels.shape, bool)
    return labels, lum, has_depth


def test_a_dark_hole_touching_one_object_joins_it():
    labels, lum, has_depth = _scene()
    has_depth[6:10, 5:9] = False        # the pen's black cap: no depth
    lum[6:10, 5:9] = 20.0
    out = claim_dark_holes(labels, has_depth, lum, DepthHoleParams())
    assert np.all(out[6:10, 5:9] == 1)
    assert np.array_equal(out[labels > 0], labels[labels > 0])


def test_bright_holes_and_holes_between_two_objects_stay_out():
    labels, lum, has_depth = _scene()
    has_depth[10:18, 9:11] = False      # a shadow on the table beside the pen: table-coloured
    out = claim_dark_holes(labels, has_depth, lum, DepthHoleParams())
    assert np.all(out[10:18, 9:11] == 0)
    has_depth[10:18, 9:15] = False      # dark, but between the pen and the box
    lum[10:18, 9:15] = 20.0
    out = claim_dark_holes(labels, has_depth, lum, DepthHoleParams())
    assert np.all(out[10:18, 9:15] == 0)


def test_a_hole_larger_than_its_object_stays_out():
    labels, lum, has_depth = _scene()
    has_depth[0:10, 0:14] = False
    lum[0:10, 0:14] = 10.0
    out = claim_dark_holes(labels, has_depth, lum, DepthHoleParams(hole_max_share=1.0))
    assert np.all(out[0:10, 0:14] == 0)


def _no_jumps(shape):
    return np.zeros((shape[0], shape[1] - 1), bool), np.zeros((shape[0] - 1, shape[1]), bool)


def test_an_orphan_patch_joins_the_piece_it_continues():
    lab = np.zeros((20, 10), np.int32)
    lab[12:20, 3:7] = 1                 # the pen's lower half is a piece
    free = np.zeros(lab.shape, bool)
    free[4:12, 3:7] = True              # its upper half was cut to nothing
    _attach_orphans(lab, free, _no_jumps(lab.shape), 4)
    assert np.all(lab[4:12, 3:7] == 1)


def test_an_orphan_across_a_depth_jump_is_its_own_piece_and_too_small_stays_out():
    """Seen only across a depth jump, a patch is not a part of its neighbour: large enough,
    it is a piece of its own (an object's band seen behind another, which the bridge-breaking
    erosion crumbled); with ``own`` 0, or too small, it stays out."""
    from spatialpin_ros.perception.orphan_home import OrphanHomeParams

    def layout():
        lab = np.zeros((20, 10), np.int32)
        lab[12:20, 3:7] = 1
        free = np.zeros(lab.shape, bool)
        free[4:12, 3:7] = True          # 32 pixels, 8 times the smallest piece
        jx, jy = _no_jumps(lab.shape)
        jy[11, :] = True                # a depth jump between row 11 and row 12
        return lab, free, (jx, jy)
    lab, free, jumps = layout()
    _attach_orphans(lab, free, jumps, 4)
    assert np.all(lab[4:12, 3:7] == 2) and np.all(lab[12:20, 3:7] == 1)
    lab, free, jumps = layout()
    _attach_orphans(lab, free, jumps, 4, home=OrphanHomeParams(own=0.0))
    assert np.all(lab[4:12, 3:7] == 0)
    lab, free, jumps = layout()         # bordering no piece at all: its own piece too
    lab[:] = 0
    _attach_orphans(lab, free, jumps, 4)
    assert np.all(lab[4:12, 3:7] == 1)
    lab, free, jumps = layout()
    free[:] = False
    free[10:12, 3:4] = True             # two pixels: noise, not a part
    _attach_orphans(lab, free, _no_jumps(lab.shape), 4)
    assert np.all(lab[10:12, 3:4] == 0)


def test_the_colour_of_a_two_coloured_object_is_its_dominant_hue():
    """A yellow cup with a blue band and a white lip is yellow: averaging gives grey."""
    from spatialpin_ros.perception.objects import lit_colour
    from spatialpin_ros.perception.attributes import shading_invariant_color_name
    rng = np.random.default_rng(0)
    yellow = np.array([200, 180, 30]) * rng.uniform(0.6, 1.0, (600, 1))     # shaded body
    blue = np.tile([40, 70, 200], (250, 1))
    white = np.tile([245, 245, 245], (150, 1))
    px = np.concatenate([yellow, blue, white]).astype(np.uint8)
    assert shading_invariant_color_name(lit_colour(px)) == "yellow"
    assert shading_invariant_color_name(px.reshape(-1, 3).mean(axis=0)) != "yellow"


def test_a_bowls_inside_stays_apart_from_a_bottle_behind_its_rim_and_joins_its_rim():
    """A wide concave patch (a bowl's inside: all on concave folds) whose only jump-free
    neighbour stands well above it (a bottle behind the bowl's far rim) is a piece of its own,
    not the bottle's; the same patch beside a piece no higher than its rim joins it, and with
    ``dish`` 0 it joins the bottle as any leftover patch does."""
    from spatialpin_ros.perception.orphan_home import OrphanHomeParams

    def layout(neighbour_top):
        lab = np.zeros((20, 20), np.int32)
        lab[2:14, 10:14] = 1                # the neighbour, beside the patch
        free = np.zeros(lab.shape, bool)
        free[6:14, 2:10] = True             # 64 pixels: the bowl's inside, 7 cm wide
        r, c = np.mgrid[0:20, 0:20].astype(float)
        Q = np.stack([0.5 + 0.01 * r, 0.01 * (c - 10), np.zeros_like(r)], axis=-1)
        Q[..., 2] = np.where(free, 0.02 + 0.005 * np.abs(c - 6), 0.0)  # rising to the rim
        Q[lab == 1, 2] = np.linspace(0.0, neighbour_top, int((lab == 1).sum()))
        return lab, free, Q
    for top, dish, expect in ((0.15, 0.5, 2), (0.05, 0.5, 1), (0.15, 0.0, 1)):
        lab, free, Q = layout(top)
        _attach_orphans(lab, free, _no_jumps(lab.shape), 4, Q, OrphanHomeParams(dish=dish),
                        folds=free.copy())
        assert np.all(lab[6:14, 2:10] == expect), (top, dish)
        assert np.all(lab[2:14, 10:14] == 1)


def test_a_dish_finds_its_front_wall_by_its_footprint_completed_toward_the_camera():
    """A cup's far inner wall (the patch) standing higher than the visible front wall's top is
    not within the wall's footprint by the plain test; read as a dish, its footprint completed
    toward the camera (its hidden near side) holds the thin-topped front wall."""
    from spatialpin_ros.perception.orphan_home import footprint_home

    lab = np.zeros((30, 30), np.int32)
    lab[15:25, 5:25] = 1                          # the front wall
    patch = np.zeros(lab.shape, bool)
    patch[0:10, 5:25] = True                      # the far inner wall
    Q = np.full(lab.shape + (3,), np.nan)
    r, c = np.mgrid[0:10, 0:20].astype(float)
    far = np.radians(-80 + 160 * c / 19)          # angles of the far half, seen from above
    Q[0:10, 5:25] = np.stack([0.5 + 0.035 * np.cos(far), 0.035 * np.sin(far),
                              0.09 - 0.006 * r], axis=-1)
    front = np.radians(100 + 160 * c / 19)
    Q[15:25, 5:25] = np.stack([0.5 + 0.04 * np.cos(front), 0.04 * np.sin(front),
                               0.07 - 0.007 * r], axis=-1)
    points = lambda m: Q[m]                       # noqa: E731
    assert footprint_home(patch, lab, [1], points) is None
    assert footprint_home(patch, lab, [1], points, dish=True) == 1
