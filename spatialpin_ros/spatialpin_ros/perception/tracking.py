"""Stage 5 of geometric perception: object ids that stay the same across frames of one scene."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from spatialpin_ros.core.types import ObjectPrior


class ObjectTracker:
    """Keeps object ids stable across frames of one scene: each new object takes the id of the
    nearest remembered object (3D centre distance, plus ``color_penalty`` metres when colour
    names differ) within ``gate`` metres (Hungarian assignment); others get fresh ids
    ``obj_<n>``. Ids unseen for more than ``memory`` frames are forgotten."""

    def __init__(self, gate: float = 0.06, memory: int = 30, color_penalty: float = 0.03,
                 prefix: str = "obj_"):
        self.gate, self.memory = gate, memory
        self.color_penalty, self.prefix = color_penalty, prefix
        self.reset()

    def reset(self) -> None:
        self._tracks: dict[str, dict] = {}
        self._next = 0

    def assign(self, objects: list[ObjectPrior]) -> list[ObjectPrior]:
        """Set each object's ``id`` in place (and return the list)."""
        ids = list(self._tracks)
        taken: dict[int, str] = {}
        if ids and objects:
            cen = np.array([o.center for o in objects])
            tc = np.array([self._tracks[k]["center"] for k in ids])
            cost = np.linalg.norm(cen[:, None, :] - tc[None, :, :], axis=2)
            col = np.array([[o.color_name != self._tracks[k]["color"] for k in ids]
                            for o in objects])
            cost = cost + self.color_penalty * col
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= self.gate:
                    taken[int(r)] = ids[int(c)]
        seen = set()
        for i, o in enumerate(objects):
            if i in taken:
                o.id = taken[i]
            else:
                o.id = f"{self.prefix}{self._next}"
                self._next += 1
            self._tracks[o.id] = {"center": o.center.copy(), "color": o.color_name, "missed": 0}
            seen.add(o.id)
        for k in list(self._tracks):
            if k not in seen:
                self._tracks[k]["missed"] += 1
                if self._tracks[k]["missed"] > self.memory:
                    del self._tracks[k]
        return objects
