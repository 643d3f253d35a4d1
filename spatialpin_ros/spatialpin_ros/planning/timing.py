"""Time parameterisation of joint-space waypoint paths under velocity, acceleration and jerk
limits with Ruckig, and limit checks of sampled trajectories (ROS-free).

A path through waypoints is timed segment by segment: each segment is a Ruckig trajectory from
one waypoint's state to the next. In the plain mode every waypoint is passed at rest and the
segments use phase synchronisation, so the arm moves exactly along the straight joint-space
lines that the planner checked. In the blended mode (smoothing) the interior waypoints are
passed with a velocity along the bisector of the two adjoining segments, which rounds the
corners and saves the stops; the caller re-checks the blended trajectory for collisions and
falls back to the plain one when it collides (``time_path`` does this given ``check``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from ruckig import InputParameter, Result, Ruckig, Synchronization, Trajectory

from spatialpin_ros.core.trajectory import JointLimits, JointTrajectory


@dataclass
class TimedPath:
    """Samples of a timed path: times (N,), positions, velocities, accelerations (N, D)."""

    t: np.ndarray
    q: np.ndarray
    v: np.ndarray
    a: np.ndarray
    blended: bool = False

    @property
    def duration(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0


class TimingError(RuntimeError):
    """Ruckig found no trajectory for a segment."""


def _segment(q0, q1, v0, v1, vmax, amax, jmax, qmin, qmax, phase: bool) -> Trajectory:
    dof = len(q0)
    inp = InputParameter(dof)
    inp.current_position = [float(x) for x in q0]
    inp.current_velocity = [float(x) for x in v0]
    inp.current_acceleration = [0.0] * dof
    inp.target_position = [float(x) for x in q1]
    inp.target_velocity = [float(x) for x in v1]
    inp.target_acceleration = [0.0] * dof
    inp.max_velocity = [float(x) for x in vmax]
    inp.max_acceleration = [float(x) for x in amax]
    inp.max_jerk = [float(x) for x in jmax]
    if qmin is not None:
        inp.min_position = [float(x) for x in qmin]
        inp.max_position = [float(x) for x in qmax]
    if phase:
        inp.synchronization = Synchronization.Phase
    otg = Ruckig(dof)
    traj = Trajectory(dof)
    res = otg.calculate(inp, traj)
    if res not in (Result.Working, Result.Finished):
        raise TimingError(f"ruckig: {res}")
    return traj


def _blend_velocities(W: np.ndarray, vmax: np.ndarray, amax: np.ndarray,
                      factor: float = 0.7) -> np.ndarray:
    """Pass-through velocities of the waypoints: zero at the ends and at sharp corners, else
    along the bisector of the two segments, limited by the joints' speeds and by the speed that
    the shorter segment can build up or shed."""
    V = np.zeros_like(W)
    for i in range(1, len(W) - 1):
        d_in, d_out = W[i] - W[i - 1], W[i + 1] - W[i]
        l_in, l_out = np.linalg.norm(d_in), np.linalg.norm(d_out)
        if l_in < 1e-6 or l_out < 1e-6:
            continue
        u_in, u_out = d_in / l_in, d_out / l_out
        cos = float(u_in @ u_out)
        if cos <= 0.2:
            continue
        u = u_in + u_out
        u /= np.linalg.norm(u)
        with np.errstate(divide="ignore"):
            s_v = float(np.min(vmax / np.abs(u)))
            a_eff = float(np.min(amax / np.abs(u)))
        s = min(s_v, math.sqrt(a_eff * min(l_in, l_out))) * factor * cos
        V[i] = u * s
    return V


def sample_times(total: float, dt: float) -> np.ndarray:
    """Sample times 0, dt, 2 dt, ... ending exactly at ``total`` (a last step shorter than a
    fifth of ``dt`` is merged into the one before)."""
    m = int(math.floor(total / dt + 1e-9))
    t = np.arange(m + 1) * dt
    if total - t[-1] > 0.2 * dt or m == 0:
        t = np.append(t, total)
    else:
        t[-1] = total
    return t


def _time(W, V, vmax, amax, jmax, qmin, qmax, dt, phase) -> TimedPath:
    segs = [_segment(W[i], W[i + 1], V[i], V[i + 1], vmax, amax, jmax, qmin, qmax,
                     phase=phase and not (np.any(V[i]) or np.any(V[i + 1])))
            for i in range(len(W) - 1)]
    durations = np.array([s.duration for s in segs])
    starts = np.concatenate([[0.0], np.cumsum(durations)])
    total = float(starts[-1])
    t = sample_times(total, dt)
    D = W.shape[1]
    Q, Vs, A = np.zeros((len(t), D)), np.zeros((len(t), D)), np.zeros((len(t), D))
    k = 0
    for i, ti in enumerate(t):
        while k < len(segs) - 1 and ti > starts[k + 1]:
            k += 1
        p, v, a = segs[k].at_time(min(max(ti - starts[k], 0.0), durations[k]))
        Q[i], Vs[i], A[i] = p, v, a
    Q[0], Vs[0], A[0] = W[0], 0.0, 0.0
    Q[-1], Vs[-1], A[-1] = W[-1], 0.0, 0.0
    return TimedPath(t, Q, Vs, A, blended=not phase)


def time_path(waypoints: np.ndarray, vmax: Sequence[float], amax: Sequence[float],
              jmax: Sequence[float], qmin: Optional[Sequence[float]] = None,
              qmax: Optional[Sequence[float]] = None, dt: float = 0.01, blend: bool = True,
              check: Optional[Callable[[np.ndarray], bool]] = None) -> TimedPath:
    """Time a path through ``waypoints`` (N, D), from rest to rest, sampled every ``dt`` s.

    With ``blend`` (and more than two waypoints) the corners are rounded first; the blended
    trajectory is kept only when it stays inside [qmin, qmax] and ``check(q)`` holds at every
    sample (and the midpoints between samples), else the waypoints are passed at rest.
    """
    W = np.asarray(waypoints, dtype=float)
    if W.ndim != 2 or len(W) == 0:
        raise ValueError("waypoints must be (N, D) with N >= 1")
    # Drop repeated waypoints.
    keep = [0] + [i for i in range(1, len(W)) if np.max(np.abs(W[i] - W[i - 1])) > 1e-9]
    W = W[keep]
    vmax, amax, jmax = (np.asarray(x, dtype=float) for x in (vmax, amax, jmax))
    if len(W) == 1:
        z = np.zeros((1, W.shape[1]))
        return TimedPath(np.zeros(1), W.copy(), z, z.copy())
    if blend and len(W) > 2:
        V = _blend_velocities(W, vmax, amax)
        if np.any(V):
            try:
                tp = _time(W, V, vmax, amax, jmax, qmin, qmax, dt, phase=False)
                if check is None or _samples_valid(tp.q, check):
                    return tp
            except TimingError:
                pass
    return _time(W, np.zeros_like(W), vmax, amax, jmax, qmin, qmax, dt, phase=True)


def _samples_valid(Q: np.ndarray, check: Callable[[np.ndarray], bool]) -> bool:
    for i in range(len(Q)):
        if not check(Q[i]):
            return False
        if i + 1 < len(Q) and not check(0.5 * (Q[i] + Q[i + 1])):
            return False
    return True


def to_joint_trajectory(tp: TimedPath, joint_names: Sequence[str]) -> JointTrajectory:
    return JointTrajectory(list(joint_names), tp.t.copy(), tp.q.copy(), tp.v.copy(), tp.a.copy())


def limit_violations(traj: JointTrajectory, limits: Mapping[str, JointLimits],
                     tol: float = 1e-6) -> dict[str, int]:
    """Number of samples breaking each kind of limit: ``joint`` (position), ``velocity`` (given
    velocities and the mean velocity between samples), ``acceleration`` (given accelerations and
    the mean acceleration between samples, from the velocities)."""
    out = {"joint": 0, "velocity": 0, "acceleration": 0}
    t, Q = traj.times, traj.positions
    dt = np.diff(t)
    for j, name in enumerate(traj.joint_names):
        lim = limits.get(name)
        if lim is None:
            continue
        q = Q[:, j]
        out["joint"] += int(np.sum((q < lim.lower - tol) | (q > lim.upper + tol)))
        vbound = lim.velocity * (1 + tol) + tol
        if traj.velocities is not None:
            out["velocity"] += int(np.sum(np.abs(traj.velocities[:, j]) > vbound))
        if len(t) > 1:
            out["velocity"] += int(np.sum(np.abs(np.diff(q) / dt) > vbound))
        if math.isfinite(lim.acceleration):
            abound = lim.acceleration * (1 + tol) + tol
            if traj.accelerations is not None:
                out["acceleration"] += int(np.sum(np.abs(traj.accelerations[:, j]) > abound))
            if traj.velocities is not None and len(t) > 1:
                out["acceleration"] += int(np.sum(
                    np.abs(np.diff(traj.velocities[:, j]) / dt) > abound))
    return out
