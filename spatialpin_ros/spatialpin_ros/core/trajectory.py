"""Joint trajectories: validation against limits and sampling (ROS-free).

A trajectory is a list of waypoints for named joints, each with a time from start (seconds),
positions (radians for revolute joints, metres for prismatic ones) and optional velocities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from spatialpin_ros.core.errors import TrajectoryError


@dataclass
class JointLimits:
    """Limits of one joint: position ``lower``/``upper`` (rad or m), ``velocity`` (rad/s or m/s),
    ``acceleration`` (rad/s^2 or m/s^2; inf when unknown)."""

    lower: float
    upper: float
    velocity: float
    acceleration: float = float("inf")


@dataclass
class JointTrajectory:
    """Waypoints for ``joint_names``.

    ``times``: (N,) seconds from start, strictly increasing, >= 0. ``positions``: (N, J).
    ``velocities``: (N, J) or None (then sampling is piecewise linear).
    """

    joint_names: list[str]
    times: np.ndarray
    positions: np.ndarray
    velocities: Optional[np.ndarray] = None
    accelerations: Optional[np.ndarray] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.joint_names = list(self.joint_names)
        self.times = np.asarray(self.times, dtype=float).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=float)
        if self.positions.ndim == 1:
            self.positions = self.positions.reshape(len(self.times), -1)
        if self.velocities is not None:
            self.velocities = np.asarray(self.velocities, dtype=float)
        if self.accelerations is not None:
            self.accelerations = np.asarray(self.accelerations, dtype=float)

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def validate(self, known_joints: Optional[Sequence[str]] = None,
                 limits: Optional[Mapping[str, JointLimits]] = None,
                 check_velocity: bool = True) -> None:
        """Raise TrajectoryError with the reason if the trajectory is malformed or breaks limits.

        Checks: names non-empty and unique (and known, if ``known_joints`` is given); at least one
        point; shapes agree; all values finite; times >= 0 and strictly increasing; positions
        within the position limits; velocities (given, or implied by consecutive points) within
        the velocity limits.
        """
        names = self.joint_names
        if not names:
            raise TrajectoryError("trajectory has no joint names")
        if len(set(names)) != len(names):
            raise TrajectoryError(f"duplicate joint names in {names}")
        if known_joints is not None:
            unknown = [n for n in names if n not in known_joints]
            if unknown:
                raise TrajectoryError(
                    f"unknown joint names {unknown}; this robot has {list(known_joints)}")
        n = len(self.times)
        if n == 0:
            raise TrajectoryError("trajectory has no points")
        if self.positions.shape != (n, len(names)):
            raise TrajectoryError(
                f"positions have shape {self.positions.shape}, expected ({n}, {len(names)})")
        for label, arr in (("velocities", self.velocities), ("accelerations", self.accelerations)):
            if arr is not None and arr.shape != (n, len(names)):
                raise TrajectoryError(f"{label} have shape {arr.shape}, expected ({n}, {len(names)})")
        if not (np.all(np.isfinite(self.times)) and np.all(np.isfinite(self.positions))):
            raise TrajectoryError("trajectory has non-finite times or positions")
        if self.velocities is not None and not np.all(np.isfinite(self.velocities)):
            raise TrajectoryError("trajectory has non-finite velocities")
        if self.times[0] < 0:
            raise TrajectoryError(f"time_from_start must be >= 0, got {self.times[0]}")
        dt = np.diff(self.times)
        if np.any(dt <= 0):
            i = int(np.argmax(dt <= 0)) + 1
            raise TrajectoryError(
                f"time_from_start must increase strictly: point {i} has {self.times[i]:.4f} s "
                f"after {self.times[i - 1]:.4f} s")
        if limits is None:
            return
        for j, name in enumerate(names):
            lim = limits.get(name)
            if lim is None:
                continue
            q = self.positions[:, j]
            tol = 1e-6
            if q.min() < lim.lower - tol or q.max() > lim.upper + tol:
                raise TrajectoryError(
                    f"joint {name} leaves its limits [{lim.lower:.4f}, {lim.upper:.4f}]: "
                    f"range [{q.min():.4f}, {q.max():.4f}]")
            if not check_velocity:
                continue
            vmax = 0.0
            if self.velocities is not None:
                vmax = float(np.max(np.abs(self.velocities[:, j])))
            if n > 1:
                vmax = max(vmax, float(np.max(np.abs(np.diff(q) / dt))))
            if vmax > lim.velocity * (1 + 1e-6):
                raise TrajectoryError(
                    f"joint {name} moves at {vmax:.3f}, above its velocity limit {lim.velocity:.3f}")

    def then(self, other: "JointTrajectory") -> "JointTrajectory":
        """This trajectory followed by ``other`` (same joints), which must start where this one
        ends; its first point is dropped and its times shifted by this duration."""
        if list(other.joint_names) != self.joint_names:
            raise TrajectoryError("cannot join trajectories of different joints")
        if len(other.times) == 0:
            return self
        if not np.allclose(other.positions[0], self.positions[-1], atol=1e-6):
            raise TrajectoryError("the second trajectory does not start where the first ends")

        def cat(a, b):
            return None if a is None or b is None else np.concatenate([a, b[1:]])
        return JointTrajectory(self.joint_names,
                               np.concatenate([self.times, other.times[1:] + self.duration]),
                               np.concatenate([self.positions, other.positions[1:]]),
                               cat(self.velocities, other.velocities),
                               cat(self.accelerations, other.accelerations))

    def sample(self, t: float) -> np.ndarray:
        """Positions (J,) at time ``t`` seconds from start: cubic Hermite between points when
        velocities are given, else linear; held at the ends."""
        times, q = self.times, self.positions
        if t <= times[0]:
            return q[0].copy()
        if t >= times[-1]:
            return q[-1].copy()
        i = int(np.searchsorted(times, t, side="right")) - 1
        h = times[i + 1] - times[i]
        s = (t - times[i]) / h
        if self.velocities is None:
            return (1 - s) * q[i] + s * q[i + 1]
        v = self.velocities
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return h00 * q[i] + h10 * h * v[i] + h01 * q[i + 1] + h11 * h * v[i + 1]
