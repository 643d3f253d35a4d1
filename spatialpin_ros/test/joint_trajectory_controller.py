"""TEST-ONLY stand-in for ros2_control's joint_trajectory_controller (with a joint_state_broadcaster
and a simulated arm): a FollowJointTrajectory action server with that controller's semantics.

- Goal validation at the request, as the controller's ``validate_trajectory_msg``: empty joint
  names, more joints than it has, a joint it does not have, a partial goal (not allowed), no
  points, point sizes that do not match the joints, times that do not increase, a trajectory
  that ends in the past. The controller refuses such a goal (GoalResponse.REJECT, the reason
  logged: ROS 2 actions carry no result for a refused goal). ``invalid_goals="abort"`` instead
  accepts it and aborts it with INVALID_JOINTS or INVALID_GOAL and the reason in error_string,
  as ROS 1's controller and some vendor drivers do.
- Tolerances: the controller's defaults (per joint: path and goal position tolerance, 0 =
  unchecked; ``stopped_velocity_tolerance``; ``goal_time``, 0 = wait for ever) and the goal's
  own: a positive value overrides the default, -1 erases it, 0 keeps it. A path tolerance
  violated while moving aborts with PATH_TOLERANCE_VIOLATED and the arm holds where it is; at the
  end the joints must be within the goal tolerance (and slower than the stopped velocity
  tolerance) by the trajectory's end plus goal_time_tolerance, else GOAL_TOLERANCE_VIOLATED.
- Cancel: accepted; the arm holds where it is and the goal ends CANCELED with an empty result.
  A new goal while one runs preempts it: the old one ends CANCELED with INVALID_GOAL, "Current
  goal cancelled due to new incoming action.", as the controller does; ``overlaps`` counts the
  goals that arrived while another one ran (two trajectories at once).
- Feedback every control period: desired, actual and error (positions, velocities).
- ``/joint_states`` every control period.

The arm: each joint follows the desired position as a first-order lag (``tracking_gain`` 1/s,
over the time that really passed between control periods).
``block(after_s, joint)`` holds one joint (default: all) still from ``after_s`` seconds into
the next goal on (a collision), which violates the path tolerance. ``command_joints``: the
joints it commands (default: all it publishes; a real arm's controller often leaves the
gripper to another one). The desired state between points is a cubic
Hermite spline where points carry velocities (the controller's interpolation), else linear.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from scipy.interpolate import CubicHermiteSpline
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectoryPoint

from control_msgs.action import FollowJointTrajectory

R = FollowJointTrajectory.Result


@dataclass
class Tolerances:
    """Per joint, in the joint's units (rad or m, and per second): 0 = unchecked."""

    path: dict = field(default_factory=dict)
    goal: dict = field(default_factory=dict)
    goal_velocity: dict = field(default_factory=dict)
    stopped_velocity: float = 0.01
    goal_time: float = 0.0


def _merge(default: dict, given, names) -> dict:
    """The goal's JointTolerance list over the defaults: > 0 overrides, -1 erases, 0 keeps."""
    out = {n: float(default.get(n, 0.0)) for n in names}
    for tol in given:
        if tol.name in out:
            if tol.position > 0:
                out[tol.name] = float(tol.position)
            elif tol.position < 0:
                out[tol.name] = 0.0
    return out


def _merge_velocity(default: dict, given, names) -> dict:
    out = {n: float(default.get(n, 0.0)) for n in names}
    for tol in given:
        if tol.name in out and tol.velocity != 0:
            out[tol.name] = max(0.0, float(tol.velocity))
    return out


def _sec(d) -> float:
    return d.sec + d.nanosec * 1e-9


class _Goal:
    def __init__(self, handle, names, times, pos, vel, start, tol: Tolerances,
                 goal_time: float) -> None:
        self.handle, self.names = handle, names
        self.times, self.start = times, start
        self.pos = pos
        if vel is not None:
            self.spline = CubicHermiteSpline(times, pos, vel, axis=0)
        else:
            self.spline = None
        self.tol, self.goal_time = tol, goal_time
        self.done = threading.Event()
        self.result: Optional[R] = None
        self.status = ""

    def desired(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        t = min(max(t, self.times[0]), self.times[-1])
        if self.spline is not None:
            return self.spline(t), self.spline(t, 1)
        p = np.array([np.interp(t, self.times, self.pos[:, j]) for j in range(self.pos.shape[1])])
        i = min(max(np.searchsorted(self.times, t) - 1, 0), len(self.times) - 2)
        v = (self.pos[i + 1] - self.pos[i]) / max(self.times[i + 1] - self.times[i], 1e-9)
        return p, v if t < self.times[-1] else np.zeros_like(p)


class JointTrajectoryControllerStandIn(Node):
    """The controller of ``joints`` (starting at ``initial``), serving
    ``<name>/follow_joint_trajectory`` and publishing ``joint_states_topic``."""

    def __init__(self, joints, initial, name: str = "joint_trajectory_controller",
                 tolerances: Optional[Tolerances] = None, period_s: float = 0.02,
                 tracking_gain: float = 40.0, invalid_goals: str = "reject",
                 joint_states_topic: str = "/joint_states", **kwargs) -> None:
        super().__init__(f"{name}_standin", **kwargs)
        self.joints = list(joints)
        self.q = np.array(initial, dtype=float)
        self.qd = np.zeros_like(self.q)
        self.hold = self.q.copy()
        self.tol = tolerances or Tolerances()
        self.period_s, self.gain = period_s, tracking_gain
        assert invalid_goals in ("reject", "abort")
        self.invalid_goals = invalid_goals
        self._lock = threading.Lock()
        self._active: Optional[_Goal] = None
        self._blocked: Optional[tuple[Optional[str], float]] = None
        self._last_step = time.monotonic()
        #: what happened, for tests: refused goals with reasons, and ends by kind
        self.refused: list[str] = []
        self.ended: list[tuple[str, int, str]] = []
        self.accepted = 0
        self.overlaps = 0
        self.command_joints = list(self.joints)
        group = ReentrantCallbackGroup()
        self.pub_js = self.create_publisher(JointState, joint_states_topic, 10)
        self.server = ActionServer(
            self, FollowJointTrajectory, f"/{name}/follow_joint_trajectory", self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda g: CancelResponse.ACCEPT,
            callback_group=group)
        self.create_timer(period_s, self._step, callback_group=group)

    # -- test hooks ---------------------------------------------------------------------------
    def block(self, after_s: float, joint: Optional[str] = None) -> None:
        """From ``after_s`` seconds into the next goal on, ``joint`` (None: every joint) stops
        moving, until that goal ends."""
        with self._lock:
            self._blocked = (joint, after_s)

    def teleport(self, q) -> None:
        """Put the arm at ``q`` (between tests)."""
        with self._lock:
            self.q = np.array(q, dtype=float)
            self.hold = self.q.copy()

    def active(self) -> bool:
        with self._lock:
            return self._active is not None

    def position(self, joint: str) -> float:
        with self._lock:
            return float(self.q[self.joints.index(joint)])

    # -- goal validation (the controller's validate_trajectory_msg) ----------------------------
    def problem(self, goal) -> Optional[tuple[int, str]]:
        """(error code, reason) for a goal the controller does not take, or None."""
        tr = goal.trajectory
        names = list(tr.joint_names)
        if not names:
            return R.INVALID_JOINTS, "Empty joint names on incoming trajectory."
        joints = self.command_joints
        if len(names) > len(joints):
            return R.INVALID_JOINTS, "Can't accept new trajectory. Too many joints specified."
        for n in names:
            if n not in joints:
                return R.INVALID_JOINTS, (f"Incoming joint {n} doesn't match the "
                                          "controller's joints.")
        if len(set(names)) != len(names) or len(names) != len(joints):
            return R.INVALID_JOINTS, ("Joints on incoming trajectory don't match the "
                                      "controller joints.")
        if not tr.points:
            return R.INVALID_GOAL, "Empty trajectory received."
        prev = -1.0
        for i, p in enumerate(tr.points):
            t = _sec(p.time_from_start)
            if i > 0 and t <= prev:
                return R.INVALID_GOAL, (f"Time between points {i - 1} and {i} is not strictly "
                                        f"increasing, it is {prev} and {t} respectively")
            prev = t
            if len(p.positions) != len(names):
                return R.INVALID_GOAL, (f"Mismatch between joint_names size ({len(names)}) "
                                        f"and positions ({len(p.positions)}) at point #{i}.")
            for what in ("velocities", "accelerations"):
                n = len(getattr(p, what))
                if n and n != len(names):
                    return R.INVALID_GOAL, (f"Mismatch between joint_names size ({len(names)}) "
                                            f"and {what} ({n}) at point #{i}.")
            if not all(math.isfinite(v) for v in p.positions):
                return R.INVALID_GOAL, f"Point #{i} has a position that is not finite."
        start = _sec(tr.header.stamp)
        if start > 0 and start + prev < self.get_clock().now().nanoseconds * 1e-9:
            return R.INVALID_GOAL, ("Received trajectory with non-zero start time that ends "
                                    "in the past")
        return None

    def _on_goal(self, goal) -> GoalResponse:
        why = self.problem(goal)
        if why is not None and self.invalid_goals == "reject":
            self.get_logger().error(why[1])
            self.refused.append(why[1])
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    # -- execution ------------------------------------------------------------------------------
    def _execute(self, handle) -> R:
        why = self.problem(handle.request)
        if why is not None:  # invalid_goals == "abort"
            return self._end_now(handle, "aborted", why[0], why[1])
        goal = self._make_goal(handle)
        with self._lock:
            self.accepted += 1
            if self._active is not None:
                self.overlaps += 1
                old = self._active
                self._finish(old, "canceled", R.INVALID_GOAL,
                             "Current goal cancelled due to new incoming action.")
            self._active = goal
        goal.done.wait()
        if goal.status == "canceled" and not handle.is_cancel_requested:
            # Preempted: rclcpp_action's canceled() passes through CANCELING by itself;
            # rclpy's needs that step first.
            from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
            handle._update_state(_rclpy.GoalEvent.CANCEL_GOAL)
        getattr(handle, {"succeeded": "succeed", "aborted": "abort",
                         "canceled": "canceled"}[goal.status])()
        return goal.result

    def _end_now(self, handle, status: str, code: int, text: str) -> R:
        self.ended.append((status, code, text))
        handle.abort()
        return R(error_code=code, error_string=text)

    def _make_goal(self, handle) -> _Goal:
        g = handle.request
        tr = g.trajectory
        with self._lock:
            q0 = self.q.copy()
        # Joints the goal leaves out (not commanded by this controller) hold where they are.
        cols = [list(tr.joint_names).index(n) if n in tr.joint_names else None
                for n in self.joints]
        times = np.array([_sec(p.time_from_start) for p in tr.points])
        pos = np.array([[p.positions[c] if c is not None else q0[j] for j, c in enumerate(cols)]
                        for p in tr.points])
        has_vel = all(len(p.velocities) for p in tr.points)
        vel = (np.array([[p.velocities[c] if c is not None else 0.0 for c in cols]
                         for p in tr.points]) if has_vel else None)
        if times[0] > 0:  # from where the arm is to the first point, as the controller does
            times = np.concatenate([[0.0], times])
            pos = np.vstack([q0, pos])
            if vel is not None:
                vel = np.vstack([np.zeros_like(q0), vel])
        stamp = _sec(tr.header.stamp)
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        start = time.monotonic() + (max(0.0, stamp - now_ros) if stamp > 0 else 0.0)
        tol = Tolerances(path=_merge(self.tol.path, g.path_tolerance, self.joints),
                         goal=_merge(self.tol.goal, g.goal_tolerance, self.joints),
                         goal_velocity=_merge_velocity(self.tol.goal_velocity, g.goal_tolerance,
                                                       self.joints),
                         stopped_velocity=self.tol.stopped_velocity)
        gt = _sec(g.goal_time_tolerance)
        goal_time = gt if gt > 0 else self.tol.goal_time
        return _Goal(handle, self.joints, times, pos, vel, start, tol, goal_time)

    def _finish(self, goal: _Goal, status: str, code: int, text: str) -> None:
        """End ``goal`` (lock held); the arm holds where it is."""
        goal.status, goal.result = status, R(error_code=code, error_string=text)
        self.ended.append((status, code, text))
        self.hold = self.q.copy()
        self._blocked = None
        if self._active is goal:
            self._active = None
        goal.done.set()

    def _step(self) -> None:
        """One control period: desired state, the arm's response, tolerances, feedback."""
        now = time.monotonic()
        with self._lock:
            # The arm moves for the time that really passed (timers run late under load).
            dt = min(max(now - self._last_step, 1e-3), 0.5)
            self._last_step = now
            goal = self._active
            if goal is not None and goal.handle.is_cancel_requested:
                self._finish(goal, "canceled", R.SUCCESSFUL, "")  # an empty result
                goal = None
            t = now - goal.start if goal is not None else 0.0
            if goal is not None and t >= 0:
                want, want_v = goal.desired(t)
            else:
                want, want_v = self.hold, np.zeros_like(self.q)
            old = self.q.copy()
            self.q = self.q + (1.0 - math.exp(-self.gain * dt)) * (want - self.q)
            if goal is not None and self._blocked is not None and t >= self._blocked[1]:
                j = (slice(None) if self._blocked[0] is None
                     else self.joints.index(self._blocked[0]))
                self.q[j] = old[j]
            self.qd = (self.q - old) / dt
            if goal is not None and t >= 0:
                self._check(goal, t, want, want_v)
            q, qd = self.q.copy(), self.qd.copy()
        stamp = self.get_clock().now().to_msg()
        self.pub_js.publish(JointState(name=self.joints, position=q.tolist(),
                                       velocity=qd.tolist(), header=_header(stamp)))
        if goal is not None and not goal.done.is_set():
            fb = FollowJointTrajectory.Feedback(joint_names=self.joints)
            fb.header.stamp = stamp
            fb.desired = JointTrajectoryPoint(positions=want.tolist(), velocities=want_v.tolist())
            fb.actual = JointTrajectoryPoint(positions=q.tolist(), velocities=qd.tolist())
            fb.error = JointTrajectoryPoint(positions=(want - q).tolist(),
                                            velocities=(want_v - qd).tolist())
            try:
                goal.handle.publish_feedback(fb)
            except Exception:  # noqa: BLE001 (the goal ended meanwhile)
                pass

    def _check(self, goal: _Goal, t: float, want, want_v) -> None:
        err = want - self.q
        end = goal.times[-1]
        if t < end:
            for j, n in enumerate(self.joints):
                tol = goal.tol.path.get(n, 0.0)
                if tol > 0 and abs(err[j]) > tol:
                    self.get_logger().warning(f"path tolerance violated by {n}: "
                                              f"{abs(err[j]):.4f} > {tol:.4f}")
                    self._finish(goal, "aborted", R.PATH_TOLERANCE_VIOLATED,
                                 f"Aborted due to path tolerance violation: joint {n} off by "
                                 f"{abs(err[j]):.4f} (tolerance {tol:.4f})")
                    return
            return
        outside = [n for j, n in enumerate(self.joints) if self._outside_goal(goal, n, j, err)]
        if not outside:
            self._finish(goal, "succeeded", R.SUCCESSFUL, "Goal successfully reached!")
        elif goal.goal_time > 0 and t - end > goal.goal_time:
            late = t - end - goal.goal_time
            self._finish(goal, "aborted", R.GOAL_TOLERANCE_VIOLATED,
                         f"Aborted due to goal_time_tolerance exceeding by {late:.3f} seconds "
                         f"(outside the goal tolerance: {', '.join(outside)})")

    def _outside_goal(self, goal: _Goal, n: str, j: int, err) -> bool:
        """Joint ``n`` (index ``j``) not yet within the goal tolerance: position, velocity, or
        not stopped."""
        tol = goal.tol
        return ((tol.goal.get(n, 0.0) > 0 and abs(err[j]) > tol.goal[n])
                or (tol.goal_velocity.get(n, 0.0) > 0 and abs(self.qd[j]) > tol.goal_velocity[n])
                or (tol.stopped_velocity > 0 and abs(self.qd[j]) > tol.stopped_velocity))


def _header(stamp):
    from std_msgs.msg import Header
    return Header(stamp=stamp)
