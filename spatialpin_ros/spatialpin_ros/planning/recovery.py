"""Is the object in the hand, and getting back when it is not (ROS-free).

``hand_check``: after the fingers close (and again after the lift), the measured finger joint
positions say whether they stopped on the object: fingers that reached their commanded target
(``Grasp.finger_target``: nearly closed, ``hold.until_stopped``, unless the planner was set
to close a few millimetres inside the object's perceived half-width) closed on nothing, or the
object slipped out. Fingers still moving are not judged (``settled``).

``plan_recovery``: from where the arm stopped, open the fingers, go straight up and plan back
home, as one timed trajectory; the caller then re-perceives and plans the task once more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.core.types import Pose, Scene
from spatialpin_ros.planning.cartesian import gripper_move, straight_line
from spatialpin_ros.planning.grasps import Grasp
from spatialpin_ros.planning.planner import MotionPlanner
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.task_plan import TrajectoryBuilder
from spatialpin_ros.planning.scene import PlanningScene

#: The fingers must stop at least this far (m, the gap) outside their commanded closing target
#: for the object to count as held.
HELD_MARGIN = 0.002
#: Finger speed (m/s) below which the fingers count as settled.
SETTLED_SPEED = 0.05


class HandState(str, enum.Enum):
    HELD = "held"
    EMPTY = "empty"          # the fingers closed on nothing: a miss or a slip
    MOVING = "moving"        # not settled yet: not judged


@dataclass
class HandCheck:
    state: HandState
    gap: float               # measured finger gap (m, both fingers)
    closed_gap: float        # the gap the fingers were commanded to
    detail: str

    @property
    def held(self) -> bool:
        return self.state == HandState.HELD


def hand_check(finger_positions: Sequence[float], grasp: Grasp,
               finger_velocities: Optional[Sequence[float]] = None,
               margin: float = HELD_MARGIN) -> HandCheck:
    """Whether the object is in the hand, from the two fingers' openings (m each; see
    ``RobotModel.finger_state``) and, when given, their speeds, after closing with ``grasp``."""
    f = np.asarray(finger_positions, dtype=float).reshape(-1)
    if len(f) < 2 or not np.all(np.isfinite(f)):
        return HandCheck(HandState.MOVING, float("nan"), 2 * grasp.finger_target,
                         "no finger positions")
    gap = float(f[0] + f[1])
    closed = 2.0 * float(grasp.finger_target)
    if finger_velocities is not None:
        v = np.abs(np.asarray(finger_velocities, dtype=float).reshape(-1))
        if len(v) >= 2 and np.all(np.isfinite(v)) and float(v.max()) > SETTLED_SPEED:
            return HandCheck(HandState.MOVING, gap, closed, "fingers still moving")
    if gap >= closed + margin:
        return HandCheck(HandState.HELD, gap, closed,
                         f"fingers stopped {100 * gap:.1f} cm apart on the object (commanded "
                         f"{100 * closed:.1f} cm)")
    return HandCheck(HandState.EMPTY, gap, closed,
                     f"fingers closed to {100 * gap:.1f} cm (commanded {100 * closed:.1f} cm): "
                     "nothing between them")


def plan_recovery(robot: RobotModel, scene: Optional[Scene], q_now: Sequence[float],
                  finger_now: float, planner: Optional[MotionPlanner] = None,
                  lift: float = 0.10, time_limit: float = 2.0,
                  q_home: Optional[Sequence[float]] = None) -> Optional[JointTrajectory]:
    """Open the fingers, go straight up ``lift`` m (or as far as it goes) and plan home, from
    arm configuration ``q_now``, to ``q_home`` (default the robot's home); None when no way
    home is found."""
    planner = planner or MotionPlanner(robot)
    q_now = np.asarray(q_now, dtype=float)
    ps = PlanningScene(robot, scene)
    try:
        b = TrajectoryBuilder(robot, q_now, float(finger_now), planner.dt)
        b.fingers(gripper_move(float(finger_now), robot.finger_open, robot.finger_vmax,
                               robot.finger_amax, robot.finger_jmax, planner.dt), "release")
        tcp = robot.fk(q_now)
        up = Pose(tcp.position + [0.0, 0.0, lift], tcp.quaternion)
        names = list(ps.bodies)
        with ps.allow(names):
            cr = straight_line(robot, None, q_now, up, dt=planner.dt)
        q = q_now
        if cr.success:
            b.arm(cr.timed, "retreat")
            q = cr.path[-1]
        home = robot.home if q_home is None else np.asarray(q_home, dtype=float)
        res = planner.plan(q, home, ps, time_limit=time_limit)
        if not res.success:
            return None
        b.arm(res.timed, "home")
        return b.trajectory()
    finally:
        ps.close()


def describe_grasp(plan) -> str:
    """The grasp a TaskPlan chose, in words."""
    g = plan.grasp
    if g is None:
        return ""
    how = {"box": "from the perceived box", "cloud": "antipodal on the perceived points",
           "rim": "on the rim (a wall pinched), from the perceived points"}.get(g.kind, g.kind)
    if g.kind == "side":
        return (f"from the side at {100 * g.pose.position[2]:.1f} cm height "
                f"({100 * g.depth:.1f} cm below the top), across {100 * g.width:.1f} cm, "
                f"approaching at heading {np.degrees(g.yaw):.0f} deg (no top-down grasp "
                "fits and holds steady)")
    return (f"top-down across {100 * g.width:.1f} cm at yaw {np.degrees(g.yaw):.0f} deg, "
            f"{100 * g.depth:.1f} cm below the top, {how}")
