"""Bounded histories: an ``OrderedDict`` kept oldest first and cut to a size, as the nodes keep
their recent scenes, images and clouds."""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


def trim_oldest(items: OrderedDict, limit: int) -> None:
    """Drop the oldest entries of ``items`` until at most ``limit`` (at least 0) are left."""
    while len(items) > max(0, int(limit)):
        items.popitem(last=False)


def put_newest(items: OrderedDict, key: Hashable, value, limit: int) -> None:
    """Store ``value`` under ``key`` as the newest entry (an entry already there moves to the
    end), then keep only the newest ``limit`` entries."""
    items[key] = value
    items.move_to_end(key)
    trim_oldest(items, limit)
