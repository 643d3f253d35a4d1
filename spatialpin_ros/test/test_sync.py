"""Approximate-time pairing (no ROS)."""

import pytest

from spatialpin_ros.core.sync import ApproxTimeSync


def test_pairs_within_slop_and_drops_older():
    out = []
    s = ApproxTimeSync(["rgb", "depth"], slop=0.01, queue_size=5, callback=out.append)
    s.add("rgb", 1.000, "r1")
    s.add("rgb", 1.100, "r2")
    s.add("depth", 1.104, "d2")  # pairs with r2, not r1
    assert out == [{"rgb": "r2", "depth": "d2"}]
    s.add("depth", 1.2, "d3")
    s.add("rgb", 1.25, "r4")  # 50 ms apart: no pair
    assert len(out) == 1
    s.add("rgb", 1.201, "r3")
    assert out[-1] == {"rgb": "r3", "depth": "d3"}


def test_bounded_queues_and_bad_arguments():
    s = ApproxTimeSync(["a", "b"], 0.0, 3, lambda m: None)
    for i in range(10):
        s.add("a", i, i)
    assert len(s.queues["a"]) == 3
    with pytest.raises(ValueError):
        ApproxTimeSync(["a"], -1, 3, print)
