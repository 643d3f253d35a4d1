"""core.history: the nodes' bounded histories keep the newest entries, in order."""

from collections import OrderedDict

from spatialpin_ros.core.history import put_newest, trim_oldest


def test_put_newest_keeps_the_newest_and_moves_a_known_key_to_the_end():
    h = OrderedDict()
    for k in "abcd":
        put_newest(h, k, k.upper(), 3)
    assert list(h) == ["b", "c", "d"]
    put_newest(h, "b", "B2", 3)
    assert list(h.items()) == [("c", "C"), ("d", "D"), ("b", "B2")]
    put_newest(h, "e", "E", 3)
    assert list(h) == ["d", "b", "e"]


def test_trim_oldest_cuts_to_a_smaller_limit_and_never_below_zero():
    h = OrderedDict((k, k) for k in "abcde")
    trim_oldest(h, 2)
    assert list(h) == ["d", "e"]
    trim_oldest(h, -1)
    assert not h
