"""Waiting on a condition that another thread makes true (ROS-free): a bounded poll."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll ``predicate`` every ``step`` seconds until it holds (True) or ``timeout`` seconds
    pass (False). It is checked once more at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
