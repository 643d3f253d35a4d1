"""A container cut into pieces by depth noise is joined again (perception/pieces.merge_nested):
a plate's floor split in two inside its rim arcs, a shallow plate's rim arcs; separate objects
beside each other stay apart."""

import numpy as np

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested

RNG = np.random.default_rng(3)


def _piece(label, Q):
    Q = np.asarray(Q, dtype=float)
    idx = np.arange(len(Q))
    return Piece(label, idx, idx, Q, quantile(Q[:, 2], 0.9), _hull(Q))


def _plate(centre=(0.0, 0.0), radius=0.1, floor_r=0.07, floor_h=0.006, rim_h=0.02,
           noise=0.0015):
    """Points of a plate seen from above (plane frame), as (angle, radius, height) arrays."""
    r = np.sqrt(RNG.uniform(0, radius ** 2, 6000))
    a = RNG.uniform(-np.pi, np.pi, len(r))
    h = np.where(r < floor_r, floor_h,
                 floor_h + (rim_h - floor_h) * np.sin(np.pi / 2 * (r - floor_r) /
                                                       (radius - floor_r)))
    h = h + RNG.normal(0, noise, len(r))
    xy = np.stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)], axis=1)
    return a, r, np.column_stack([xy, h])


def _plate_pieces(floor_r=0.07):
    a, r, Q = _plate(floor_r=floor_r)
    pieces = []
    floor = r < floor_r
    pieces.append(_piece(1, Q[floor & (a < 0)]))                  # the floor, cut in two
    pieces.append(_piece(2, Q[floor & (a >= 0)]))
    for k in range(4):                                            # the rim, cut in four arcs
        lo, hi = -np.pi + k * np.pi / 2, -np.pi + (k + 1) * np.pi / 2
        pieces.append(_piece(3 + k, Q[~floor & (a >= lo) & (a < hi)]))
    return pieces


def test_a_plate_cut_into_floor_halves_and_rim_arcs_is_one_object():
    out, joined = merge_nested(_plate_pieces())
    assert len(out) == 1
    assert len(joined) == 5


def test_two_blocks_side_by_side_and_a_plate_stay_apart():
    pieces = _plate_pieces()
    g = np.stack(np.meshgrid(np.linspace(0, 0.05, 25), np.linspace(0, 0.05, 25)), -1).reshape(-1, 2)
    top = np.column_stack([g + [0.2, 0.0], np.full(len(g), 0.05)])       # a block's top face
    top2 = np.column_stack([g + [0.2, 0.052], np.full(len(g), 0.05)])    # another, touching it
    pieces += [_piece(10, top), _piece(11, top2)]
    out, _ = merge_nested(pieces)
    assert len(out) == 3
    labels = {p.label for p in out}
    assert {10, 11} <= labels
