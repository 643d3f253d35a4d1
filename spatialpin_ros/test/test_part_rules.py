"""Parts of one object read as the camera sees them (perception/part_rules, through
pieces.merge_nested): a bottle's cap joins the bottle though only its near half is seen; a block
standing on a box's flat top stays apart, also when the box's edge hides its base; a handle joins
its mug when the mug is several pieces."""

import numpy as np

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested

RNG = np.random.default_rng(7)


def _piece(label, Q):
    Q = np.asarray(Q, dtype=float)
    idx = np.arange(len(Q))
    return Piece(label, idx, idx, Q, quantile(Q[:, 2], 0.9), _hull(Q))


def _near_side(centre, radius, h0, h1, n, arc=np.pi / 3, top=True, rng=RNG):
    """Points of an upright cylinder's wall, the arc (``arc`` radians each side) facing the
    camera's foot (the plane frame's origin), and of its top when ``top``."""
    c = np.asarray(centre, float)
    face = np.arctan2(-c[1], -c[0])
    a = rng.uniform(face - arc, face + arc, n)
    wall = np.column_stack([c[0] + radius * np.cos(a), c[1] + radius * np.sin(a),
                            rng.uniform(h0, h1, n)])
    if not top:
        return wall
    r = radius * np.sqrt(rng.uniform(0, 1, n // 3))
    b = rng.uniform(-np.pi, np.pi, n // 3)
    top = np.column_stack([c[0] + r * np.cos(b), c[1] + r * np.sin(b), np.full(n // 3, h1)])
    return np.concatenate([wall, top])


def test_a_bottle_cap_seen_from_the_side_joins_the_bottle():
    centre = (0.5, 0.1)
    # the wall's edges at grazing angles have no depth: about a third of the wall is seen,
    # so the body's visible points lie well in front of its axis; the cap's top is seen whole
    body = _near_side(centre, 0.032, 0.002, 0.15, 1500, top=False)
    shoulder = np.concatenate([_near_side(centre, r, h, h + 0.003, 40, top=False)
                               for r, h in zip(np.linspace(0.032, 0.014, 8),
                                               np.linspace(0.15, 0.172, 8))])
    cap = _near_side(centre, 0.012, 0.175, 0.205, 200)
    out, joined = merge_nested([_piece(1, np.concatenate([body, shoulder])), _piece(2, cap)])
    assert joined == {2: 1} and len(out) == 1


def test_a_block_standing_on_a_box_top_stays_apart():
    g = np.stack(np.meshgrid(np.linspace(0.45, 0.55, 30), np.linspace(0.05, 0.15, 30)), -1)
    top = np.column_stack([g.reshape(-1, 2), np.full(900, 0.10)])
    front = np.column_stack([np.full(400, 0.45), RNG.uniform(0.05, 0.15, 400),
                             RNG.uniform(0.0, 0.1, 400)])
    box = np.concatenate([top[np.hypot(top[:, 0] - 0.5, top[:, 1] - 0.1) > 0.02], front])
    block = _near_side((0.5, 0.1), 0.015, 0.10, 0.14, 200)
    out, joined = merge_nested([_piece(1, box), _piece(2, block)])
    assert not joined and len(out) == 2


def test_a_handle_joins_its_mug_cut_into_two_wall_arcs():
    n = 700
    a = RNG.uniform(-np.pi, np.pi, n)
    r = 0.04 - RNG.uniform(0, 0.003, n)
    wall = np.column_stack([0.5 + r * np.cos(a), r * np.sin(a), RNG.uniform(0.002, 0.1, n)])
    near_side = np.abs(a) < np.pi / 2                  # the arc on the handle's side
    t = RNG.uniform(0, 1, 120)                         # the handle: a loop beside the wall
    handle = np.column_stack([0.5 + 0.042 + 0.016 * np.sin(np.pi * t),
                              RNG.uniform(-0.004, 0.004, 120), 0.03 + 0.05 * t])
    pieces = [_piece(1, wall[near_side]), _piece(2, wall[~near_side]), _piece(3, handle)]
    assert len(handle) >= 0.25 * near_side.sum()       # not small beside one arc alone
    out, joined = merge_nested(pieces)
    assert len(out) == 1 and set(joined) == {2, 3}


def test_a_can_on_a_box_top_with_its_base_hidden_stays_apart():
    """The can stands at the back of the box's top: the box's near edge hides the can's base,
    so its lowest visible point is 1.2 cm above the box's top. Its ring of box points is flat at
    the box's top, not at the can's lowest seen point: a stacked can, not the box's neck."""
    rng = np.random.default_rng(11)          # its own draws, whatever ran before
    g = np.stack(np.meshgrid(np.linspace(0.42, 0.54, 40), np.linspace(0.04, 0.16, 40)), -1)
    top = np.column_stack([g.reshape(-1, 2), np.full(1600, 0.05)])
    front = np.column_stack([np.full(600, 0.42), rng.uniform(0.04, 0.16, 600),
                             rng.uniform(0.0, 0.05, 600)])
    can_centre = (0.50, 0.10)
    box = np.concatenate([top[np.hypot(top[:, 0] - can_centre[0],
                                       top[:, 1] - can_centre[1]) > 0.028], front])
    can = _near_side(can_centre, 0.027, 0.062, 0.16, 400, rng=rng)
    out, joined = merge_nested([_piece(1, box), _piece(2, can)])
    assert not joined and len(out) == 2


def test_the_completed_hull_of_a_large_footprint():
    """Over 800 points the footprint is subsampled: the hull still comes (OpenCV refuses a
    strided view) and holds the footprint and its copy pushed back."""
    from spatialpin_ros.perception.part_rules import completed_hull
    rng = np.random.default_rng(0)
    uv = rng.uniform(-0.05, 0.05, (3000, 2)) + [0.5, 0.0]
    hull = completed_hull(uv, np.array([1.0, 0.0]), 0.1)
    assert len(hull) >= 4
    assert hull[:, 0].max() > 0.64 and hull[:, 0].min() < 0.46
