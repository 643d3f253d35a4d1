"""What a task plan is made of (ROS-free): the settings (``PickPlaceConfig``), the result
(``TaskPlan`` with its ``MotionRecord``s) and the builder that joins timed pieces of the arm
and the gripper into one trajectory (``TrajectoryBuilder``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.core.stacking import MIN_SUPPORT
from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.core.types import Pose
from spatialpin_ros.planning.grasps import Grasp, Placement
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.timing import TimedPath


@dataclass(frozen=True)
class PickPlaceConfig:
    """Settings of ``plan_pick_and_place`` (units in brackets).

    ``algorithm``: OMPL planner ("rrtstar" or "rrtconnect"). ``motion_time_limit`` [s] per
    planned motion; ``time_limit`` [s] for the whole call (both end in ``TIMEOUT``).
    ``return_home``: plan back to home at the end. ``padding`` [m] around every prior for the
    planned motions; the short straight moves near contact keep ``fine_clearance`` [m] from
    the true shapes. ``approach_height`` [m] of the pre-grasp, lift, pre-place and retreat
    poses above the grasp and the placement. ``clearance`` [m]: the object is let go this far
    above its support. ``min_support`` [fraction of the object's footprint] the target must
    carry. ``max_grasp_width`` [m] (None: the robot's). ``grasp_depth`` [m] of the TCP below
    the object's top. ``squeeze`` [m per finger] closed inside the object's half-width (None: the
    robot description's ``gripper.squeeze``); with ``close_until_stopped`` the fingers are
    commanded nearly closed instead and stop on the object (``hold.until_stopped``).
    ``cartesian_speed`` [m/s] of the straight moves. ``close_dwell`` and ``release_dwell`` [s]
    after the gripper moves. ``reference_time`` [s] of a long RRT* per sampled motion, for path
    length ratios (0: none; not counted in planning time). ``compute_ee_path``: fill
    ``TaskPlan.ee_path``. ``kind``: "put_in" or "place_on" put the object into or onto the
    target (``core.task_kinds``); otherwise a target means stacking on it.
    ``min_cloud_points``: with perceived points given, an object with at least this many is
    grasped from its points (``planning.antipodal``), else from its box.
    ``pinch_transport_speed`` (0..1]: the transport of an object held by a pinched wall or a
    thin part (a rim grasp, fingers closed fully), or held high above its centre of mass (more
    than ``swing_ratio`` times the grasp's width: a bottle by its neck), runs at this share of
    the arm's speed limits (its accelerations at the square), so that the object neither
    swings out of the fingers nor hangs tilted when it is put down; such an object is held
    still ``settle_dwell`` [s] over the place before it is lowered. A grasp (not a pinch)
    more than ``max_lever_ratio`` times its width above the object's centre of mass, or
    more than its width on a narrow part (a bottle by its neck), pivots on its two contacts
    (``hold.pivots``): it is not used; an object with no other top-down grasp is grasped
    from the side (``planning.side_grasps``), or refused (``unstable_grasp``) where no side
    grasp works either."""

    algorithm: str = "rrtstar"
    motion_time_limit: float = 1.0
    time_limit: float = 10.0
    return_home: bool = True
    padding: float = 0.01
    approach_height: float = 0.10
    clearance: float = 0.005
    min_support: float = MIN_SUPPORT
    max_grasp_width: Optional[float] = None
    grasp_depth: float = 0.025
    squeeze: Optional[float] = None
    close_until_stopped: bool = True
    cartesian_speed: float = 0.1
    close_dwell: float = 0.4
    release_dwell: float = 0.3
    reference_time: float = 0.0
    fine_clearance: float = 0.004
    compute_ee_path: bool = True
    kind: str = ""
    min_cloud_points: int = 30
    pinch_transport_speed: float = 0.5
    swing_ratio: float = 2.0
    settle_dwell: float = 0.5
    max_lever_ratio: float = 2.5


@dataclass
class MotionRecord:
    """One arm motion of the plan: ``kind`` "planned" (OMPL / direct) or "cartesian";
    ``planning_time`` s; ``path`` (K, dof) its waypoints; ``sampled``: OMPL was needed;
    ``length`` joint-space length (rad); ``reference_length`` of a long RRT* run when asked
    (``reference_algorithm``: "rrtstar", or "aorrtc" where RRT* found no path)."""

    name: str
    kind: str
    planning_time: float
    path: np.ndarray
    sampled: bool = False
    length: float = float("nan")
    reference_length: float = float("nan")
    reference_time: float = float("nan")
    reference_algorithm: str = ""


@dataclass
class TaskPlan:
    """The result of ``plan_pick_and_place`` and ``plan_task``.

    ``status``: ``PlanStatus.OK`` or why not, ``reason`` in words. ``trajectory``: arm and
    gripper joints (``RobotModel.joint_names``) sampled every ``dt`` s, positions, velocities
    and accelerations. ``ee_path`` (N, 3) and ``ee_quat`` (N, 4): the TCP at each sample
    (world frame, m). ``stages``: (name, t_start, t_end) in seconds from the start.
    ``planning_time``: wall-clock seconds of the whole call. ``motions``: every arm motion with
    its planning time.
    """

    success: bool
    reason: str = ""
    status: PlanStatus = PlanStatus.ERROR
    trajectory: Optional[JointTrajectory] = None
    ee_path: Optional[np.ndarray] = None
    ee_quat: Optional[np.ndarray] = None
    stages: list[tuple[str, float, float]] = field(default_factory=list)
    planning_time: float = 0.0
    motions: list[MotionRecord] = field(default_factory=list)
    grasp: Optional[Grasp] = None
    placement: Optional[Placement] = None
    #: Objects moved out of the way first (``plan_task``): (object id, where its centre went).
    cleared: list[tuple[str, Pose]] = field(default_factory=list)

    @property
    def motion_times(self) -> dict[str, float]:
        """Planning seconds per motion name."""
        return {m.name: m.planning_time for m in self.motions}

    def stage(self, name: str) -> tuple[float, float]:
        for n, a, b in self.stages:
            if n == name:
                return a, b
        raise KeyError(name)


class TrajectoryBuilder:
    """Concatenates timed pieces (arm, and the gripper's finger opening turned into its joints'
    positions) into one trajectory over ``robot.joint_names``."""

    def __init__(self, robot: RobotModel, q0: np.ndarray, f0: float, dt: float):
        self.robot = robot
        self.n, self.dof = len(robot.joint_names), robot.dof
        self.t = [0.0]
        self.q = [np.concatenate([q0, robot.gripper_positions(f0)])]
        self.v = [np.zeros(self.n)]
        self.a = [np.zeros(self.n)]
        self.dt = dt
        self.stages: list[tuple[str, float, float]] = []

    @property
    def now(self) -> float:
        return self.t[-1]

    @property
    def last(self) -> np.ndarray:
        return self.q[-1]

    def _append(self, tp: TimedPath, arm: bool, name: str) -> None:
        t0 = self.now
        base = self.last.copy()
        d = self.dof
        for i in range(1, len(tp.t)):
            q = base.copy()
            v, a = np.zeros(self.n), np.zeros(self.n)
            if arm:
                q[:d], v[:d], a[:d] = tp.q[i], tp.v[i], tp.a[i]
            else:
                f, vf, af = float(tp.q[i, 0]), float(tp.v[i, 0]), float(tp.a[i, 0])
                d1, d2 = self.robot.gripper_rates(f)
                q[d:] = self.robot.gripper_positions(f)
                v[d:] = d1 * vf
                a[d:] = d1 * af + d2 * vf * vf
            self.t.append(t0 + float(tp.t[i]))
            self.q.append(q)
            self.v.append(v)
            self.a.append(a)
        self.stages.append((name, t0, self.now))

    def arm(self, tp: TimedPath, name: str) -> None:
        self._append(tp, True, name)

    def fingers(self, tp: TimedPath, name: str) -> None:
        self._append(tp, False, name)

    def dwell(self, seconds: float, name: Optional[str] = None) -> None:
        t0 = self.now
        n = max(1, int(round(seconds / self.dt)))
        for _ in range(n):
            self.t.append(self.now + self.dt)
            self.q.append(self.last.copy())
            self.v.append(np.zeros(self.n))
            self.a.append(np.zeros(self.n))
        if name:
            self.stages.append((name, t0, self.now))
        elif self.stages:
            n0, a0, _ = self.stages[-1]
            self.stages[-1] = (n0, a0, self.now)

    def trajectory(self) -> JointTrajectory:
        return JointTrajectory(list(self.robot.joint_names), np.array(self.t), np.array(self.q),
                               np.array(self.v), np.array(self.a))
