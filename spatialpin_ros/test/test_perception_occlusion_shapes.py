"""Hidden objects' strips, balls told from cylinders, and blocks that are not a container's
walls (issue 10's simulated figures)."""

import numpy as np
import pytest

from spatialpin_ros.perception import metrics
from spatialpin_ros.perception.geometric import GeometricBackend
from spatialpin_ros.perception.occluded import OccludedParams, recover_occluded
from spatialpin_ros.perception.rims import thin_top as _thin_top
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def _strip_scene(strip_rgb, strip_z):
    """A front piece (label 1, red, 0.60 m) with an unlabelled foreground strip to its right."""
    h, w = 40, 60
    labels = np.zeros((h, w), np.int32)
    labels[5:35, 5:30] = 1
    fg = np.zeros((h, w), bool)
    fg[5:35, 5:45] = True
    z = np.full((h, w), 0.60, np.float32)
    z[5:35, 30:45] = strip_z
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[5:35, 5:30] = (200, 30, 30)
    rgb[5:35, 30:45] = strip_rgb
    return labels, fg, z, rgb


@pytest.mark.parametrize("strip_rgb,strip_z,found", [
    ((30, 160, 40), 0.66, True),      # another object, 6 cm behind, green: a piece of its own
    ((200, 30, 30), 0.66, False),     # the red object's own colour: not another object
    ((30, 160, 40), 0.603, False),    # no depth jump: joined smoothly, not hidden behind
])
def test_a_hidden_strip_becomes_a_piece_only_behind_a_jump_and_in_another_colour(
        strip_rgb, strip_z, found):
    labels, fg, z, rgb = _strip_scene(strip_rgb, strip_z)
    out = recover_occluded(labels, fg, z, rgb, px=0.003, p=OccludedParams())
    assert bool(out[5:35, 30:45].max() == 2) is found
    assert (out[5:35, 5:30] == 1).all()
    off = recover_occluded(labels, fg, z, rgb, px=0.003,
                           p=OccludedParams(recover_hidden=False))
    assert (off == labels).all()


def test_a_rim_is_thin_and_a_block_top_is_not():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 300)
    rim = np.c_[0.06 * np.cos(a), 0.06 * np.sin(a), np.full(300, 0.05)]
    top = np.c_[rng.uniform(-0.03, 0.03, (300, 2)) + [0.1, 0.0], np.full(300, 0.05)]
    corner = np.r_[np.c_[rng.uniform(0, 0.12, 300), rng.uniform(0, 0.006, 300)],
                   np.c_[rng.uniform(0, 0.006, 300), rng.uniform(0, 0.12, 300)]]
    corner = np.c_[corner, np.full(600, 0.05)]            # a tray's corner: two walls in an L
    assert _thin_top(rim, 0.05)
    assert _thin_top(corner, 0.05)
    assert not _thin_top(top, 0.05)


@pytest.mark.parametrize("seed", [1037, 1041])
def test_balls_are_spheres_and_cylinders_stay_cylinders(seed):
    """Random scenes with balls beside cylinders: every matched ball is a sphere, every matched
    cylinder a cylinder (a ball's outline from above is a circle too)."""
    with SimWorld(random_scene(seed)) as world:
        frame, seg = world.render(with_segmentation=True)
        gt = world.ground_truth(seg)
    score = metrics.score_scene(GeometricBackend().perceive(frame), gt)
    round_ = [s for s in score.objects if s.matched and s.gt_shape in ("sphere", "cylinder")]
    assert any(s.gt_shape == "sphere" for s in round_)
    for s in round_:
        assert s.pred_shape == s.gt_shape, (s.gt_id, s.pred_shape)


def test_missing_depth_beside_a_strip_is_not_a_depth_jump():

    lab = np.zeros((20, 30), np.int32)
    lab[:, :15] = 1                                   # a piece in front
    fg = np.ones_like(lab, dtype=bool)
    z = np.full(lab.shape, 0.60, np.float32)
    z[:, 15:] = 0.70                                  # a strip 10 cm behind it
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[:, :15] = (200, 30, 30)
    rgb[:, 15:] = (30, 30, 200)
    out = recover_occluded(lab, fg, z, rgb, 0.003, OccludedParams())
    assert len(np.unique(out[:, 15:])) == 1 and out[0, 20] > 1       # recovered
    z[:, 15:] = 0.60                                  # the same depth: a fragment, not hidden
    z[:, 14] = 0.0                                    # and no depth along the shared edge
    out = recover_occluded(lab, fg, z, rgb, 0.003, OccludedParams())
    assert np.all(out[:, 15:] == 0)


def test_an_object_reaching_below_a_neighbours_top_stands_beside_it():
    """resolve_support: a block whose visible side goes 2.6 cm below a neighbour's top (a long
    block lying against a short one) stands on the table, not on the neighbour; one whose lowest
    point is at the neighbour's top rests on it."""
    from spatialpin_ros.perception.shapes import ShapeFit, resolve_support

    def fits(low):
        base = ShapeFit(shape="box", center_uv=np.array([0.0, 0.0]),
                        size_uv=np.array([0.08, 0.04]), top=0.042, low=0.002)
        other = ShapeFit(shape="box", center_uv=np.array([0.0, 0.02]),
                         size_uv=np.array([0.07, 0.04]), top=0.05 + low, low=low)
        return [base, other]

    beside = fits(0.016)
    resolve_support(beside, tol=0.03, sink=0.01)
    assert beside[1].support is None and beside[1].bottom == 0.0
    on_top = fits(0.044)
    resolve_support(on_top, tol=0.03, sink=0.01)
    assert on_top[1].support == 0 and on_top[1].bottom == pytest.approx(0.042)


def test_a_floating_object_rests_on_a_base_seen_from_one_face_by_its_completed_footprint():
    """resolve_support's second pass (only the floating objects): a block stands on a box of
    which only the front face is seen (fitted 1.8 cm deep), mostly over its hidden part; its
    lowest visible point is 1.2 cm over the base's top. The base's footprint completed away
    from the camera (as deep as its longest seen side) holds it; the seen footprint alone does
    not, and a block beside the base or in front of it still rests on nothing."""
    from spatialpin_ros.perception.shapes import ShapeFit, resolve_support

    def fits(centre):
        base = ShapeFit(shape="box", center_uv=np.array([0.595, -0.04]),
                        size_uv=np.array([0.018, 0.053]), top=0.048, low=0.004)
        load = ShapeFit(shape="box", center_uv=np.array(centre), size_uv=np.array([0.044, 0.036]),
                        top=0.11, low=0.06)
        return [base, load]

    on = fits([0.572 + 0.05, -0.04])              # beyond the seen face, away from the camera
    resolve_support(on, tol=0.03, sink=0.01)      # first pass: the seen footprint alone
    assert on[1].support is None
    resolve_support(on, tol=0.03, sink=0.01, only={1})
    assert on[1].support == 0 and on[1].bottom == pytest.approx(0.048)
    for centre in ([0.55, -0.04], [0.62, 0.05]):  # in front of it, beside it
        off = fits(centre)
        resolve_support(off, tol=0.03, sink=0.01, only={1})
        assert off[1].support is None


def test_a_base_seen_from_one_face_grows_to_hold_what_stands_on_it():
    from spatialpin_ros.perception.shapes import ShapeFit, carry_stacked
    # the base: only its front face seen, fitted 2 cm deep; the camera's foot is the origin,
    # the base lies 0.5 m out along +x; a block stands on it beyond the seen face
    base = ShapeFit(shape="box", center_uv=np.array([0.50, 0.0]), size_uv=np.array([0.02, 0.10]),
                    top=0.06)
    load = ShapeFit(shape="box", center_uv=np.array([0.54, 0.0]), size_uv=np.array([0.04, 0.04]),
                    bottom=0.06, top=0.10, support=0)
    beside = ShapeFit(shape="box", center_uv=np.array([0.80, 0.3]), size_uv=np.array([0.04, 0.04]),
                      top=0.04)
    carry_stacked([base, load, beside])
    lo = base.center_uv - base.size_uv / 2
    hi = base.center_uv + base.size_uv / 2
    assert lo[0] == pytest.approx(0.49)                 # the seen face did not move
    assert hi[0] == pytest.approx(0.56)                 # grown away from the camera
    assert base.size_uv[1] == pytest.approx(0.10)       # the other side held the load already
    # a base that already holds its load is unchanged, and a round base never grows
    held = ShapeFit(shape="box", center_uv=np.array([0.5, 0.0]), size_uv=np.array([0.1, 0.1]))
    can = ShapeFit(shape="cylinder", center_uv=np.array([0.5, 0.5]), size_uv=np.array([0.02, 0.02]))
    on_held = ShapeFit(center_uv=np.array([0.52, 0.0]), size_uv=np.array([0.04, 0.04]), support=0)
    on_can = ShapeFit(center_uv=np.array([0.56, 0.5]), size_uv=np.array([0.04, 0.04]), support=1)
    carry_stacked([held, can, on_held, on_can])
    assert held.size_uv.tolist() == [0.1, 0.1] and can.size_uv.tolist() == [0.02, 0.02]


def test_one_flat_face_is_not_fitted_as_a_wide_cylinder():
    from spatialpin_ros.perception.shapes import _top_narrower
    rng = np.random.default_rng(3)
    # a box's seen top is a 12 cm x 5 mm strip: it cannot carry a 16 cm circle; a can's disc can
    strip = np.stack([rng.uniform(-0.06, 0.06, 200), rng.uniform(0, 0.005, 200)], 1)
    t = rng.uniform(0, 2 * np.pi, 400)
    r = 0.08 * np.sqrt(rng.uniform(0, 1, 400))
    disc = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    assert _top_narrower(strip, 0.08, 0.001)
    assert not _top_narrower(disc, 0.08, 0.001)
    half_disc = disc[disc[:, 1] < 0.02]                 # a can's top, its back half hidden
    assert not _top_narrower(half_disc, 0.08, 0.001)


def test_the_torch_lifting_applies_the_same_top_face_rule():
    torch = pytest.importorskip("torch")
    from spatialpin_ros.perception.lift_fits_torch import _top_narrower_t
    from spatialpin_ros.perception.shapes import ShapeParams, _top_narrower
    rng = np.random.default_rng(5)
    rows = [np.stack([rng.uniform(-0.06, 0.06, 200), rng.uniform(0, 0.005, 200)], 1) @
            np.array([[0.8, 0.6], [-0.6, 0.8]])]                 # a tilted strip
    t, r = rng.uniform(0, 2 * np.pi, 200), 0.08 * np.sqrt(rng.uniform(0, 1, 200))
    rows.append(np.stack([r * np.cos(t), r * np.sin(t)], 1))    # a disc
    rows.append(rows[1][:10])                                   # too few points to judge
    xy = torch.zeros(3, 200, 2, dtype=torch.float64)
    band = torch.zeros(3, 200, dtype=torch.bool)
    for k, row in enumerate(rows):
        xy[k, :len(row)] = torch.from_numpy(row)
        band[k, :len(row)] = True
    radius, noise = torch.full((3,), 0.08, dtype=torch.float64), torch.full((3,), 0.001,
                                                                          dtype=torch.float64)
    got = _top_narrower_t(xy, band, radius, noise, ShapeParams()).tolist()
    assert got == [_top_narrower(row, 0.08, 0.001) for row in rows] == [True, False, False]


def _block_piece(label, lo, hi, rgb=None, n=600, seed=0):
    from spatialpin_ros.perception.pieces import Piece, _hull
    rng = np.random.default_rng(seed + label)
    Q = rng.uniform(lo, hi, (n, 3))
    rows = np.full(n, label, np.int64)
    return Piece(label, rows, np.arange(n), Q, float(np.quantile(Q[:, 2], 0.9)), _hull(Q),
                 rgb=rgb)


@pytest.mark.parametrize("case,joined", [
    ("face inside its box", True),       # a printed box's label piece inside the box's fit
    ("stacked", False),                  # a block on another: the height ranges barely meet
    ("in a container", False),           # fruit in a bowl, seen above the bowl's floor
    ("beside", False),
])
def test_two_fitted_candidates_never_fill_one_space(case, joined):
    from spatialpin_ros.perception.overlap_join import join_overlapping
    from spatialpin_ros.perception.shapes import ShapeParams, fit_shape
    big = _block_piece(1, (0.40, -0.05, 0.0), (0.50, 0.05, 0.06))
    small = {"face inside its box": ((0.41, -0.03, 0.0), (0.46, 0.03, 0.05)),
             "stacked": ((0.42, -0.02, 0.058), (0.48, 0.02, 0.10)),
             "in a container": ((0.43, -0.02, 0.03), (0.47, 0.02, 0.08)),
             "beside": ((0.52, -0.02, 0.0), (0.56, 0.02, 0.05))}[case]
    other = _block_piece(2, *small)
    fit = lambda pc: fit_shape(pc.Q, 0.001, ShapeParams())    # noqa: E731
    pieces = [big, other]
    fits = [fit(pc) for pc in pieces]
    if case == "in a container":
        fits[0].container = True
    out = join_overlapping(pieces, fits, 0.5, fit, contrast=25.0, spread=10.0)
    assert (out == {2: 1}) is joined
    assert len(pieces) == len(fits) == (1 if joined else 2)
    if joined:
        assert len(pieces[0].Q) == 1200 and fits[0].size_uv.max() > 0.09


def _corner_box_with_strays(seed=4):
    """A 4 x 4.4 x 7.3 cm box seen from a corner (two side faces and the top) whose points hold
    a few pixels of two neighbours beyond its faces, as a segmentation leaves at borders."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.003, 0.07, 300)
    face_x = np.stack([np.full(150, -0.020), rng.uniform(-0.022, 0.022, 150), z[:150]], 1)
    face_y = np.stack([rng.uniform(-0.020, 0.020, 150), np.full(150, -0.022), z[150:]], 1)
    top = np.stack([rng.uniform(-0.02, 0.02, 250), rng.uniform(-0.022, 0.022, 250),
                    np.full(250, 0.073)], 1)
    strays = np.concatenate([
        np.stack([rng.uniform(-0.029, -0.026, 4), rng.uniform(0.0, 0.01, 4),
                  rng.uniform(0.004, 0.01, 4)], 1),
        np.stack([np.full(4, 0.037), rng.uniform(0.018, 0.022, 4), rng.uniform(0.03, 0.05, 4)],
                 1)])
    return np.concatenate([face_x, face_y, top, strays])


def test_a_few_neighbour_pixels_do_not_make_a_box_round():
    from spatialpin_ros.core.geometry import fit_rectangle_yaw
    from spatialpin_ros.perception.shapes import ShapeParams, fit_shape
    Q = _corner_box_with_strays()
    side = Q[Q[:, 2] < 0.06, :2]
    yaw, plain, robust = fit_rectangle_yaw(side, d0=0.0015, robust=True)
    assert plain > ShapeParams().flat_face > robust     # the strays, not the faces, are off
    assert fit_shape(Q, 0.0005, ShapeParams()).shape == "box"
    # a can with the same strays stays round
    rng = np.random.default_rng(2)
    t = rng.uniform(-np.pi, 0.3, 400)
    can = np.stack([0.03 * np.cos(t), 0.03 * np.sin(t), rng.uniform(0.003, 0.08, 400)], 1)
    r, a = 0.03 * np.sqrt(rng.uniform(0, 1, 250)), rng.uniform(0, 2 * np.pi, 250)
    lid = np.stack([r * np.cos(a), r * np.sin(a), np.full(250, 0.083)], 1)
    assert fit_shape(np.concatenate([can, lid, Q[-8:]]), 0.0005, ShapeParams()).shape == \
        "cylinder"


def test_the_torch_rectangle_fit_gives_the_same_robust_residual():
    torch = pytest.importorskip("torch")
    from spatialpin_ros.core.geometry import fit_rectangle_yaw
    from spatialpin_ros.perception.lift_torch import rectangle_yaw
    side = _corner_box_with_strays()[:, :2]
    yaw, plain, robust = fit_rectangle_yaw(side, d0=0.0015, robust=True)
    xy = torch.from_numpy(side)[None].to(torch.float64)
    n = torch.tensor([len(side)])
    ty, tp, tr = rectangle_yaw(xy, n, torch.tensor([0.0015], dtype=torch.float64), robust=True)
    assert abs(float(ty[0]) - yaw) < 1e-9 and abs(float(tp[0]) - plain) < 1e-9
    assert abs(float(tr[0]) - robust) < 1e-9


def test_a_top_face_with_corners_is_a_box_not_a_can():
    """The top-face corner test: a rectangle's top fills its corners, a disc's does not along
    any yaw, and a few dozen points are too few to tell; the torch rows agree."""
    from spatialpin_ros.perception.shapes import ShapeParams, _square_top
    rng = np.random.default_rng(3)
    p = ShapeParams()
    yaw = 0.4
    R = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    rect = rng.uniform([-0.03, -0.02], [0.03, 0.02], (400, 2)) @ R.T
    r, a = 0.03 * np.sqrt(rng.uniform(0, 1, 400)), rng.uniform(0, 2 * np.pi, 400)
    disc = np.c_[r * np.cos(a), r * np.sin(a)]
    assert _square_top(rect, yaw, p)
    for y in (0.0, yaw, 1.1):
        assert not _square_top(disc, y, p)
    assert not _square_top(rect[:30], yaw, p)              # too few points to tell
    torch = pytest.importorskip("torch")
    from spatialpin_ros.perception.lift_fits_torch import _square_top_t
    xy = torch.tensor(np.stack([rect, disc]), dtype=torch.float64)
    band = torch.ones(xy.shape[:2], dtype=torch.bool)
    band[1, 200:] = False                                   # rows of different counts
    sq = _square_top_t(xy, band, torch.tensor([yaw, yaw], dtype=torch.float64), p)
    assert sq.tolist() == [True, bool(_square_top(disc[:200], yaw, p))] == [True, False]


def test_a_ball_beats_a_cylinder_by_its_misfit_not_by_the_noise():
    """Depth noise adds alike to both fits' residuals: a ball whose residual is mostly noise
    still beats a cylinder that misses it by more than the margin (the raw ratio did not);
    with no noise the raw ratio decides, and a worse fit never wins."""
    from spatialpin_ros.perception.shapes import _fits_better
    assert _fits_better(0.00174, 0.00287, 0.00124, 0.6)    # a ball under D435 noise
    assert not 0.00174 < 0.6 * 0.00287
    assert _fits_better(0.001, 0.003, 0.0, 0.6) and not _fits_better(0.002, 0.003, 0.0, 0.6)
    assert not _fits_better(0.003, 0.002, 0.0012, 0.6)
    assert not _fits_better(0.0012, 0.0012, 0.0012, 0.6)     # both all noise: no winner


def test_a_short_arc_is_a_circle_when_the_object_spans_its_diameter():
    """A can's side seen from above is an arc much shorter than its diameter: by its own span
    the circle is too big to trust, by the object's extent (its top spans the diameter) it
    is the can's; a flat face still fits no good circle. The torch rows agree."""
    from spatialpin_ros.core.geometry import robust_circle
    a = np.radians(np.linspace(-30, 30, 120))
    arc = np.c_[0.03 * np.cos(a), 0.03 * np.sin(a)]
    assert robust_circle(arc, 0.003) is None
    c, r, res = robust_circle(arc, 0.003, span=0.06)
    assert abs(r - 0.03) < 1e-3 and res < 1e-4
    face = np.c_[np.zeros(120), np.linspace(-0.03, 0.03, 120)]
    circ = robust_circle(face, 0.003, span=0.06)            # no circle, or a poor one
    assert circ is None or circ[2] > 1e-3
    torch = pytest.importorskip("torch")
    from spatialpin_ros.perception import lift_torch as lt
    XY = torch.tensor(np.stack([arc, arc]), dtype=torch.float64)
    n = torch.tensor([120, 120])
    tol = torch.full((2,), 0.003, dtype=torch.float64)
    _, rt, _, ok = lt.robust_circle(XY, n, tol, span=torch.tensor([0.0, 0.06],
                                                                  dtype=torch.float64))
    assert ok.tolist() == [False, True] and abs(float(rt[1]) - r) < 1e-9
