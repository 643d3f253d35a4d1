"""One rim cut into pieces is one object (perception/rims, through pieces.merge_nested): a tray's
four walls with no floor in view, a noisy plate's wide rim arcs and floor; two cups touching,
two low boxes side by side, and a textured block of another colour lying against a plate's rim,
stay apart."""

import numpy as np

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.pieces import Piece, _hull, merge_nested
from test_pieces_containers import _plate

RNG = np.random.default_rng(11)


def _piece(label, Q):
    Q = np.asarray(Q, dtype=float)
    idx = np.arange(len(Q))
    return Piece(label, idx, idx, Q, quantile(Q[:, 2], 0.9), _hull(Q))


def _wall(a, b, height=0.045, thick=0.005, n=600):
    """Points of a straight wall from ``a`` to ``b`` (plane frame): its two faces and its top."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = RNG.uniform(0, 1, n)
    side = RNG.integers(0, 3, n)                     # outer face, inner face, top
    d = (b - a) / np.linalg.norm(b - a)
    normal = np.array([-d[1], d[0]])
    off = np.where(side == 0, -thick / 2, np.where(side == 1, thick / 2,
                                                   RNG.uniform(-thick / 2, thick / 2, n)))
    h = np.where(side == 2, height, RNG.uniform(0.004, height, n))
    xy = a + t[:, None] * (b - a) + off[:, None] * normal
    return np.column_stack([xy, h])


def _box_top(x0, y0, size=0.06, height=0.03):
    g = np.stack(np.meshgrid(np.linspace(x0, x0 + size, 25), np.linspace(y0, y0 + size, 25)),
                 -1).reshape(-1, 2)
    front = np.column_stack([np.full(200, x0), RNG.uniform(y0, y0 + size, 200),
                             RNG.uniform(0.004, height, 200)])
    return np.concatenate([np.column_stack([g, np.full(len(g), height)]), front])


def test_a_trays_walls_without_a_floor_in_view_are_one_object():
    c = [(0.4, -0.1), (0.6, -0.1), (0.6, 0.1), (0.4, 0.1)]
    pieces = [_piece(k + 1, _wall(c[k], c[(k + 1) % 4])) for k in range(4)]
    out, joined = merge_nested(pieces)
    assert len(out) == 1 and len(joined) == 3


def test_a_noisy_plates_wide_rim_arcs_and_floor_are_one_object():
    a, r, Q = _plate(centre=(0.5, 0.0), floor_r=0.05, noise=0.004)
    floor = r < 0.05
    pieces = [_piece(1, Q[floor])]
    for k in range(3):                               # three wide arcs, not thin-topped
        lo, hi = -np.pi + k * 2 * np.pi / 3, -np.pi + (k + 1) * 2 * np.pi / 3
        pieces.append(_piece(2 + k, Q[~floor & (a >= lo) & (a < hi)]))
    out, joined = merge_nested(pieces)
    assert len(out) == 1 and len(joined) == 3


def _cup(centre, radius=0.04, height=0.1, n=900):
    a = RNG.uniform(-np.pi, np.pi, n)
    rr = radius - RNG.uniform(0, 0.004, n)
    h = RNG.uniform(0.004, height, n)
    return np.column_stack([centre[0] + rr * np.cos(a), centre[1] + rr * np.sin(a), h])


def test_two_cups_touching_and_two_low_boxes_side_by_side_stay_apart():
    cups = [_piece(1, _cup((0.5, 0.0))), _piece(2, _cup((0.5, 0.081)))]
    out, joined = merge_nested(cups)
    assert not joined and len(out) == 2
    boxes = [_piece(1, _box_top(0.4, 0.0)), _piece(2, _box_top(0.4, 0.061)),
             _piece(3, _box_top(0.461, 0.0)), _piece(4, _box_top(0.461, 0.061))]
    out, joined = merge_nested(boxes)
    assert not joined and len(out) == 4


def test_a_bowls_inside_joins_its_rim_though_a_larger_cup_touches_it():
    n = 2400
    r = np.sqrt(RNG.uniform(0, 0.065 ** 2, n))
    a = RNG.uniform(-np.pi, np.pi, n)
    h = 0.005 + 0.055 * (r / 0.065) ** 2                 # the inside, rising to the rim
    inside = np.column_stack([0.5 + r * np.cos(a), r * np.sin(a), h])
    b = RNG.uniform(-np.pi, np.pi, 500)
    rr = RNG.uniform(0.066, 0.07, 500)
    rim = np.column_stack([0.5 + rr * np.cos(b), rr * np.sin(b), RNG.uniform(0.066, 0.07, 500)])
    cup = _cup((0.5, 0.115), height=0.11, n=1500)         # behind it, touching the inside
    out, joined = merge_nested([_piece(1, inside), _piece(2, rim), _piece(3, cup)])
    assert joined == {2: 1} and len(out) == 2


def test_a_textured_block_against_a_plates_rim_is_no_part_of_it():
    a, r, Q = _plate(centre=(0.5, 0.0), floor_r=0.05, noise=0.004)
    floor = r < 0.05
    parts = [Q[floor]] + [Q[~floor & (a >= lo) & (a < lo + 2 * np.pi / 3)]
                          for lo in (-np.pi, -np.pi / 3, np.pi / 3)]
    g = np.stack(np.meshgrid(np.linspace(0.0, 0.1, 40), np.linspace(0.0, 0.035, 14)),
                 -1).reshape(-1, 2)
    block = np.column_stack([g + [0.45, 0.102], np.full(len(g), 0.02)])   # beside the rim
    parts.append(np.concatenate([block, np.column_stack([
        RNG.uniform(0.45, 0.55, 200), np.full(200, 0.102), RNG.uniform(0.003, 0.02, 200)])]))
    width = 100
    rows = [np.arange(len(q)) for q in parts]
    start = np.cumsum([0] + [len(q) for q in parts])
    rgb = np.zeros((start[-1] // width + 1, width, 3), np.uint8)
    flat = rgb.reshape(-1, 3)
    flat[: start[-2]] = (230, 120, 170)                                      # a pink plate
    flat[start[-2]:start[-1]] = np.clip(RNG.normal((120, 80, 40), 30, (len(parts[-1]), 3)),
                                        0, 255)                          # wood, textured
    pieces = []
    for k, (q, s0) in enumerate(zip(parts, start)):
        idx = s0 + rows[k]
        pieces.append(Piece(k + 1, idx // width, idx % width, q, quantile(q[:, 2], 0.9),
                            _hull(q), rgb=rgb))
    out, joined = merge_nested(pieces)
    assert len(out) == 2 and 5 not in joined and 5 in {p.label for p in out}
