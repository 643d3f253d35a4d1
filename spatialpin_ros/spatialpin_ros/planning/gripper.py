"""A parallel gripper as one number (ROS-free): the opening of one finger ``f`` (metres, half
the gap between the fingers) and the gripper joints' positions that give it.

The joints move on a straight line from their closed to their open positions (s in [0, 1]);
the gap along that line is the description's (linear) or measured between the finger links'
collision shapes and fitted by a cubic, for linkages whose gap is not linear in the joints.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.robot_description import GripperSpec, RobotDescriptionError


class GripperMap:
    """Finger opening (m) <-> gripper joint positions (rad or m) for ``spec``.

    ``measure_gap(q)``: the gap (m) between the finger links with the gripper joints at ``q``
    (needed when ``spec.opening`` is None: "measured")."""

    def __init__(self, spec: GripperSpec, robot: str,
                 measure_gap: Optional[Callable[[np.ndarray], float]] = None):
        self.closed = np.asarray(spec.closed, dtype=float)
        self.open = np.asarray(spec.open, dtype=float)
        self.span = self.open - self.closed
        if spec.opening is not None:
            lo, hi = spec.opening
            #: Gap (m) at closed and open.
            self.gap_range = (float(lo), float(hi))
            self.s_of_gap = np.poly1d([1.0 / (hi - lo), -lo / (hi - lo)])
            return
        s = np.linspace(0.0, 1.0, 21)
        gaps = np.maximum(np.asarray([measure_gap(self.closed + si * self.span) for si in s]),
                          0.0)
        if not np.all(np.isfinite(gaps)) or np.any(np.diff(gaps) <= 0):
            raise RobotDescriptionError(
                f"robot {robot!r}: the gap between gripper.finger_links {spec.finger_links} "
                f"does not grow from closed to open ({np.round(gaps, 4).tolist()} m); give "
                "gripper.opening")
        self.gap_range = (float(gaps[0]), float(gaps[-1]))
        self.s_of_gap = np.poly1d(np.polyfit(gaps, s, 3))

    @property
    def finger_open(self) -> float:
        """One finger's opening (m) when open."""
        return self.gap_range[1] / 2

    def s(self, f: float) -> float:
        """Gripper position s in [0, 1] (closed to open) for one finger's opening f (m)."""
        return float(np.clip(self.s_of_gap(2.0 * f), 0.0, 1.0))

    def positions(self, f: float) -> np.ndarray:
        """Gripper joint positions for one finger's opening ``f`` (m)."""
        return self.closed + self.s(f) * self.span

    def rates(self, f: float) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivatives of the gripper joints' positions by f."""
        d1 = self.s_of_gap.deriv()(2.0 * f) * 2.0
        d2 = self.s_of_gap.deriv(2)(2.0 * f) * 4.0 if self.s_of_gap.order > 1 else 0.0
        return self.span * d1, self.span * d2

    def max_rates(self) -> tuple[float, float]:
        """Largest |ds/df| and |d2s/df2| over the opening range."""
        gaps = np.linspace(*self.gap_range, 41)
        ds = np.abs(self.s_of_gap.deriv()(gaps)) * 2.0
        dds = (np.abs(self.s_of_gap.deriv(2)(gaps)) * 4.0 if self.s_of_gap.order > 1
               else np.zeros_like(gaps))
        return float(ds.max()), float(dds.max())

    def finger(self, q_gripper: Sequence[float]) -> float:
        """One finger's opening (m) from the gripper joints' positions (the joint that moves
        most tells s; the cubic is inverted by a table and Newton steps, so that positions ->
        opening -> positions is exact)."""
        q = np.asarray(q_gripper, dtype=float).reshape(-1)
        k = int(np.argmax(np.abs(self.span)))
        s = float(np.clip((q[k] - self.closed[k]) / self.span[k], 0.0, 1.0))
        gaps = np.linspace(*self.gap_range, 201)
        order = np.argsort(self.s_of_gap(gaps))
        gap = float(np.interp(s, self.s_of_gap(gaps)[order], gaps[order]))
        d1 = self.s_of_gap.deriv()
        for _ in range(8):
            slope = float(d1(gap))
            if abs(slope) < 1e-9:
                break
            gap -= (float(self.s_of_gap(gap)) - s) / slope
        return gap / 2.0
