"""The miss trace of the perception diagnosis (perception.miss_stages)."""

import numpy as np

from spatialpin_ros.perception.miss_stages import (FalseKind, LostAt, false_object_kind, holder,
                                                   lost_at)


def _scene():
    a = np.zeros((20, 30), bool)
    b = np.zeros((20, 30), bool)
    a[2:10, 2:10] = True
    b[2:10, 15:25] = True
    return a, b


def _labels(*parts):
    lab = np.zeros((20, 30), np.int32)
    for value, mask in parts:
        lab[mask] = value
    return lab


def test_a_label_holds_an_object_only_with_enough_of_its_pixels():
    a, _ = _scene()
    lab = np.zeros((20, 30), np.int32)
    lab[2:4, 2:10] = 5                       # 16 of 64 pixels: a quarter
    assert holder(lab, a) == 0
    lab[2:6, 2:10] = 5                       # half
    assert holder(lab, a) == 5


def test_each_stage_of_a_miss():
    a, b = _scene()
    apart = _labels((1, a), (2, b))
    one = _labels((1, a | b))
    assert lost_at(np.zeros_like(a), [b], apart, apart, []).stage is LostAt.NOT_VISIBLE
    assert lost_at(a, [b], _labels((2, b)), apart, []).stage is LostAt.NO_PIECE
    assert lost_at(a, [b], one, one, []).stage is LostAt.MERGED_IN_SEGMENTATION
    assert lost_at(a, [b], apart, one, []).stage is LostAt.MERGED_BY_LAYOUT
    miss = lost_at(a, [b], apart, apart, [(1, "not resting on anything", 64)])
    assert miss.stage is LostAt.DROPPED and miss.reason == "not resting on anything"
    assert lost_at(a, [b], apart, apart, [(2, "too small", 80)]).stage is LostAt.BOX_OFF


def test_a_false_object_is_sorted_by_what_it_lies_on():
    a, b = _scene()
    piece = np.zeros_like(a)
    piece[2:10, 2:5] = True
    assert false_object_kind(piece, [a, b], [True, False]) is FalseKind.PIECE_OF_FOUND
    assert false_object_kind(piece, [a, b], [False, True]) is FalseKind.ON_MISSED
    table = np.zeros_like(a)
    table[15:19, 2:28] = True
    assert false_object_kind(table, [a, b], [True, True]) is FalseKind.ON_NOTHING
    assert false_object_kind(None, [a, b], [True, True]) is FalseKind.ON_NOTHING
