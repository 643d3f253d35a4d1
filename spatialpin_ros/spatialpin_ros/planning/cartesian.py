"""Straight-line TCP moves (approach, lift, place, retreat) and gripper moves (ROS-free).

A straight move solves IK every ``step`` metres along the line, each seeded with the previous
solution (so the arm moves continuously; a joint jump aborts the move), checks every solution
and the midpoints between them against the planning scene, and fits a monotone cubic (PCHIP) q(u)
through them over the distance u travelled. A one-dimensional Ruckig profile u(t) (rest to rest) under a
TCP speed, acceleration and jerk limit then times it; the joint velocities q'(u) u' and
accelerations q''(u) u'^2 + q'(u) u'' are checked against the joint limits and the TCP limits
are lowered until they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from ruckig import InputParameter, Result, Ruckig, Trajectory
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation, Slerp

from spatialpin_ros.core.types import Pose
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.timing import sample_times
from spatialpin_ros.planning.scene import PlanningScene
from spatialpin_ros.planning.timing import TimedPath


@dataclass
class CartesianResult:
    success: bool
    path: Optional[np.ndarray] = None      # IK solutions along the line (K, dof)
    timed: Optional[TimedPath] = None
    reason: str = ""
    #: Where a move stopped for a collision: the colliding pairs (robot link or "held", other).
    contacts: tuple[tuple[str, str], ...] = ()


def _profile(length: float, v: float, a: float, j: float) -> Trajectory:
    inp = InputParameter(1)
    inp.current_position, inp.target_position = [0.0], [float(length)]
    inp.current_velocity = inp.current_acceleration = [0.0]
    inp.target_velocity = inp.target_acceleration = [0.0]
    inp.max_velocity, inp.max_acceleration, inp.max_jerk = [v], [a], [j]
    traj = Trajectory(1)
    res = Ruckig(1).calculate(inp, traj)
    if res not in (Result.Working, Result.Finished):
        raise RuntimeError(f"ruckig: {res}")
    return traj


def straight_line(robot: RobotModel, scene: Optional[PlanningScene], q0: np.ndarray,
                  target: Pose, step: float = 0.005, speed: float = 0.1, accel: float = 0.5,
                  jerk: float = 5.0, dt: float = 0.01, max_joint_step: float = 0.15,
                  min_length: Optional[float] = None,
                  stop: Optional[Callable[[np.ndarray], bool]] = None) -> CartesianResult:
    """Move the TCP from its pose at ``q0`` along a straight line to ``target`` (orientation
    interpolated by slerp). ``scene`` None skips collision checks. With ``stop``, the move ends
    at the first configuration past ``min_length`` metres where ``stop(q)`` holds (used to rise
    only as far as needed to clear the neighbours); without such a point it goes to ``target``.
    """
    q0 = np.asarray(q0, dtype=float)
    start = robot.fk(q0)
    p0, p1 = start.position, target.position
    length = float(np.linalg.norm(p1 - p0))
    ang = (target.rotation * start.rotation.inv()).magnitude()
    n = max(1, int(math.ceil(max(length / step, ang / math.radians(3)))))
    slerp = Slerp([0.0, 1.0], Rotation.concatenate([start.rotation, target.rotation]))
    Q = [q0]
    if scene is not None and not scene.is_valid(q0):
        return _collided(scene, q0, None)
    s = 1.0
    for k in range(1, n + 1):
        s = k / n
        pose = Pose(p0 + s * (p1 - p0), slerp([s]).as_quat()[0])
        q = robot.ik(pose, Q[-1], restarts=0, pos_tol=0.001, rot_tol_deg=0.5)
        if q is None:
            return CartesianResult(False, reason=f"unreachable: no IK {s * length:.3f} m along "
                                   f"the line to {np.round(p1, 3).tolist()}")
        if np.max(np.abs(q - Q[-1])) > max_joint_step:
            return CartesianResult(False, reason="unreachable: the arm would jump between IK "
                                   "branches along the line")
        if scene is not None:
            for qc in (0.5 * (Q[-1] + q), q):
                if not scene.is_valid(qc):
                    return _collided(scene, qc, np.array(Q))
        Q.append(q)
        if stop is not None and s * length >= (min_length or 0.0) - 1e-9 and stop(q):
            break
    Q = np.array(Q)
    travelled = s * length if length > 1e-9 else s * ang
    try:
        timed = time_line(robot, Q, travelled, speed, accel, jerk, dt)
    except RuntimeError as e:
        return CartesianResult(False, Q, reason=f"unreachable: {e}")
    return CartesianResult(True, Q, timed)


def _collided(scene: PlanningScene, q: np.ndarray, path: Optional[np.ndarray]
              ) -> CartesianResult:
    """The failed move's result at the colliding configuration ``q``."""
    hits = scene.collisions(q)
    pairs = ", ".join(f"{a}-{b}" for a, b, _ in hits[:3])
    return CartesianResult(False, path, reason=f"collision along the line ({pairs})",
                           contacts=tuple((a, b) for a, b, _ in hits))


def time_line(robot: RobotModel, Q: np.ndarray, length: float, speed: float, accel: float,
              jerk: float, dt: float) -> TimedPath:
    """Time configurations Q (K, dof), evenly spaced along a path of ``length``, rest to rest."""
    if len(Q) < 2 or length <= 1e-9:
        z = np.zeros((1, Q.shape[1]))
        return TimedPath(np.zeros(1), Q[:1].copy(), z, z.copy())
    u = np.linspace(0.0, length, len(Q))
    # Monotone cubic pieces: no overshoot between the IK solutions (which respect the limits).
    spline = PchipInterpolator(u, Q, axis=0) if len(Q) > 2 else None
    vmax, amax = robot.vmax, robot.amax
    for _ in range(12):
        t, S = _sampled(_profile(length, speed, accel, jerk), dt)
        s, sd, sdd = np.clip(S[:, 0], 0.0, length), S[:, 1], S[:, 2]
        if spline is None:
            d1 = (Q[1] - Q[0]) / length
            q = Q[0] + np.outer(s, d1)
            v = np.outer(sd, d1)
            a = np.outer(sdd, d1)
        else:
            q, d1, d2 = spline(s), spline(s, 1), spline(s, 2)
            v = d1 * sd[:, None]
            a = d2 * (sd ** 2)[:, None] + d1 * sdd[:, None]
        q[0], q[-1] = Q[0], Q[-1]
        v[0] = v[-1] = 0.0
        a[0] = a[-1] = 0.0
        fd_v = np.abs(np.diff(q, axis=0) / np.diff(t)[:, None])
        fd_a = np.abs(np.diff(v, axis=0) / np.diff(t)[:, None])
        ratio_v = max(np.max(np.abs(v) / vmax), np.max(fd_v / vmax))
        ratio_a = max(np.max(np.abs(a) / amax), np.max(fd_a / amax))
        if ratio_v <= 0.98 and ratio_a <= 0.98 and np.all(q >= robot.lower - 1e-9) \
                and np.all(q <= robot.upper + 1e-9):
            return TimedPath(t, q, v, a)
        f = max(ratio_v, math.sqrt(ratio_a), 1.05)
        speed, accel, jerk = speed / f, accel / f ** 2, jerk / f ** 3
    raise RuntimeError("could not time the straight-line move within the joint limits")


def _sampled(prof: Trajectory, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample times and (position, velocity, acceleration) rows, shape (N, 3), of a 1-D Ruckig
    profile."""
    t = sample_times(prof.duration, dt)
    return t, np.array([prof.at_time(float(ti)) for ti in t])[:, :, 0]


def gripper_move(f0: float, f1: float, vmax: float, amax: float, jmax: float,
                 dt: float = 0.01) -> TimedPath:
    """Both fingers from ``f0`` to ``f1`` metres each (rest to rest): samples (N, 1)."""
    if abs(f1 - f0) < 1e-9:
        return TimedPath(np.zeros(1), np.array([[f0]]), np.zeros((1, 1)), np.zeros((1, 1)))
    t, S = _sampled(_profile(abs(f1 - f0), vmax, amax, jmax), dt)
    sign = 1.0 if f1 > f0 else -1.0
    q = f0 + sign * np.clip(S[:, 0], 0, abs(f1 - f0))
    q[-1] = f1
    v, a = sign * S[:, 1], sign * S[:, 2]
    v[0] = v[-1] = a[0] = a[-1] = 0.0
    return TimedPath(t, q[:, None], v[:, None], a[:, None])
