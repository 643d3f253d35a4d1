"""Approximate-time pairing of several streams (ROS-free), for where message_filters is absent.

Each stream keeps a bounded queue of (stamp, item). When every stream holds an item within
``slop`` seconds of one another, the newest such set is emitted and older items are dropped:
the same policy as message_filters.ApproximateTimeSynchronizer, simplified to newest-first.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Hashable, Sequence


class ApproxTimeSync:
    """Pair items from ``keys`` streams whose stamps (seconds) lie within ``slop``; calls
    ``callback(items_by_key)`` with each matched set. Queues hold at most ``queue_size`` items."""

    def __init__(self, keys: Sequence[Hashable], slop: float, queue_size: int,
                 callback: Callable[[dict], Any]):
        if slop < 0 or queue_size < 1:
            raise ValueError("slop must be >= 0 and queue_size >= 1")
        self.keys = list(keys)
        self.slop = float(slop)
        self.queues: dict[Hashable, deque] = {k: deque(maxlen=queue_size) for k in self.keys}
        self.callback = callback

    def add(self, key: Hashable, stamp: float, item: Any) -> None:
        self.queues[key].append((float(stamp), item))
        if any(not q for q in self.queues.values()):
            return
        # Try the newest item of the stream that just received one as the pivot.
        pivot = stamp
        chosen = {}
        for k, q in self.queues.items():
            best = min(q, key=lambda si: abs(si[0] - pivot))
            if abs(best[0] - pivot) > self.slop:
                return
            chosen[k] = best
        for k, q in self.queues.items():  # drop what is older than the match
            s = chosen[k][0]
            while q and q[0][0] <= s:
                q.popleft()
        self.callback({k: v[1] for k, v in chosen.items()})
