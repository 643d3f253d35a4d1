"""VLM clients by backend name, each made on first use and shared by every thread.

A node answering on several threads (the spatial QA node's asks) must make each client once: two
threads asking for a backend that is not made yet would otherwise both make it (two model loads
for ``transformers``), and a client dropped while another thread makes it could survive with old
settings. One lock per backend name makes creation, use and forgetting of that client atomic;
making a slow client (a model load) never holds up the other backends.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from spatialpin_ros.vlm.base import VLMClient


class LazyVLMs(dict):
    """``name -> VLM client`` for the names given, each made by ``factory(name)`` on first
    use (so a missing model or server never stops its owner from starting). ``in`` and iteration
    list the names, made or not; ``forget(name)`` drops a client, made again on next use. Any
    other name raises KeyError. Safe to use from any number of threads."""

    def __init__(self, factory: Callable[[str], VLMClient],
                 names: Iterable[str] = ("openai", "transformers")) -> None:
        super().__init__()
        self._factory = factory
        self._names = tuple(names)
        self._locks = {n: threading.Lock() for n in self._names}

    def __contains__(self, name) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def made(self) -> list[str]:
        """The names whose client exists now."""
        return [n for n in self._names if dict.__contains__(self, n)]

    def forget(self, name) -> None:
        """Drop the client ``name`` (made again on next use); waits for one being made."""
        lock = self._locks.get(name)
        if lock is not None:
            with lock:
                dict.pop(self, name, None)

    def __getitem__(self, name) -> VLMClient:
        lock = self._locks.get(name)
        if lock is None:
            raise KeyError(name)
        with lock:  # one thread makes the client; the others wait for it, then share it
            if not dict.__contains__(self, name):
                dict.__setitem__(self, name, self._factory(name))
            return dict.__getitem__(self, name)
