"""Stretched footprints and parts of one object (perception/piece_core, pieces.merge_nested):
a strip of a neighbour that runs out of a piece is not part of it; a cup beside a plate is no
part of the plate's rim; a mug's handle, hanging beside the mug, joins it."""

import numpy as np

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.piece_core import core_mask, near_core
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested
from test_pieces_containers import _plate_pieces

RNG = np.random.default_rng(5)


def _piece(label, Q):
    Q = np.asarray(Q, dtype=float)
    idx = np.arange(len(Q))
    return Piece(label, idx, idx, Q, quantile(Q[:, 2], 0.9), _hull(Q))


def _mask(m):
    r, c = np.nonzero(m)
    return r, c, np.ones(len(r), dtype=bool)


def test_a_strip_running_out_of_a_piece_is_not_its_core():
    m = np.zeros((30, 40), dtype=bool)
    m[5:17, 5:17] = True                 # the body
    m[10, 17:30] = True                  # a line of pixels along an edge in front ...
    m[8:14, 30:35] = True                # ... to a patch of the object behind
    r, c, ok = _mask(m)
    keep = core_mask(r, c, ok)
    assert keep is not None
    out = ~keep
    assert set(zip(r[out].tolist(), c[out].tolist())) == {
        (y, x) for y, x in zip(*np.nonzero(m)) if x >= 18}


def test_a_face_seen_edge_on_along_the_body_stays_in_the_core():
    m = np.zeros((30, 40), dtype=bool)
    m[5:17, 5:17] = True
    m[4, 5:17] = True                    # the top face, one pixel high, along the front face
    m[5:17, 17] = True                   # a side face, one pixel wide
    assert core_mask(*_mask(m)) is None


def test_only_points_beyond_the_core_footprint_are_dropped():
    g = np.stack(np.meshgrid(np.linspace(0, 0.06, 12), np.linspace(0, 0.06, 12)), -1)
    body = np.column_stack([g.reshape(-1, 2), np.full(144, 0.05)])
    handle = np.column_stack([np.full(6, 0.075), np.linspace(0.02, 0.04, 6), np.full(6, 0.05)])
    far = np.column_stack([np.linspace(0.1, 0.14, 6), np.full(6, 0.03), np.full(6, 0.05)])
    Q = np.concatenate([body, handle, far])
    core = np.r_[np.ones(144, bool), np.zeros(12, bool)]
    keep = near_core(Q, core, np.ones(len(Q), bool))
    assert keep[:150].all() and not keep[150:].any()
    # one face seen square on: the strips beside it are its other faces, all kept
    face = np.column_stack([np.linspace(0, 0.06, 40), np.zeros(40), np.linspace(0, 0.05, 40)])
    side = np.column_stack([np.full(8, 0.06), np.linspace(0.01, 0.08, 8), np.full(8, 0.05)])
    Q = np.concatenate([face, side])
    core = np.r_[np.ones(40, bool), np.zeros(8, bool)]
    assert near_core(Q, core, np.ones(len(Q), bool)).all()


def _cylinder_wall(centre, radius, height, n=800, arc=(-np.pi, np.pi)):
    a = RNG.uniform(*arc, n)
    h = RNG.uniform(0.002, height, n)
    return np.column_stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a), h])


def test_a_cup_touching_a_plate_is_no_part_of_its_rim():
    pieces = _plate_pieces()
    arc = min(len(p.Q) for p in pieces[2:])
    # a cup on the plate's edge, its wall within a centimetre of the floor, taller than the
    # rim, with fewer points than a rim arc
    cup = _cylinder_wall((0.112, 0.0), 0.035, 0.1, n=arc - 50)
    pieces.append(_piece(20, cup))
    out, joined = merge_nested(pieces)
    assert 20 not in joined and 20 in {p.label for p in out}
    assert len(out) == 2                  # the plate whole, and the cup


def test_a_handle_hanging_beside_a_mug_joins_it_and_a_block_beside_it_does_not():
    mug = _cylinder_wall((0.0, 0.0), 0.04, 0.1, n=1200, arc=(-np.pi, 0.0))
    g = np.stack(np.meshgrid(np.linspace(0.045, 0.058, 5), np.linspace(-0.004, 0.004, 3)), -1)
    uv = np.repeat(g.reshape(-1, 2), 8, axis=0)
    handle = np.column_stack([uv, np.tile(np.linspace(0.025, 0.08, 8), 15)])
    out, joined = merge_nested([_piece(1, mug), _piece(2, handle)])
    assert joined == {2: 1} and len(out) == 1
    block = np.column_stack([uv + [0.0, 0.0], np.tile(np.linspace(0.002, 0.04, 8), 15)])
    out, joined = merge_nested([_piece(1, mug), _piece(3, block)])
    assert joined == {} and len(out) == 2
