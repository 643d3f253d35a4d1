"""A gripper on a controller of its own, as ros2_control setups often have it: the arm's
joint_trajectory_controller and a second FollowJointTrajectory controller for the gripper's
joints (a ``joint_trajectory_controller`` or a ``parallel_gripper_action_controller`` serving
the same action type).

- ``merge_joint_states``: joint states from several publishers (the arm's broadcaster, the
  gripper's driver) merged by joint name, the newest value of each joint kept;
- ``split_trajectory``: one planned JointTrajectory message cut into the arm's and the
  gripper's columns, with the same header stamp, so that both controllers start them together;
- ``ArmAndGripperClient``: the manipulation node's FollowJointTrajectory client for both: it
  sends the two halves as two goals, reports the first failure of either (or success once both
  succeed), and cancels both on a stop. It has the interface of
  ``FollowJointTrajectoryClient`` (``send``, ``outcome``, ``cancel``, ``busy``, ``feedback``).
"""

from __future__ import annotations

from typing import Optional, Sequence

from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from spatialpin_ros.ros.follow_joint_trajectory import (ArmOutcome, ArmStatus,
                                                        FollowJointTrajectoryClient)


def merge_joint_states(previous: Optional[JointState], msg: JointState) -> JointState:
    """``previous`` updated with ``msg``'s joints (by name; joints only in ``previous`` keep
    their values). Velocities and efforts are kept only where every joint has one (a
    publisher that sends none leaves them empty, as the message allows). The header is
    ``msg``'s."""
    if previous is None or not previous.name:
        return msg
    names = list(previous.name)
    pos = list(previous.position) if len(previous.position) == len(names) else [float("nan")] * len(names)
    fields = {}
    for f in ("velocity", "effort"):
        old = list(getattr(previous, f))
        fields[f] = old if len(old) == len(names) else None
    index = {n: i for i, n in enumerate(names)}
    for k, n in enumerate(msg.name):
        i = index.get(n)
        if i is None:
            index[n] = i = len(names)
            names.append(n)
            pos.append(float("nan"))
            for f in fields:
                if fields[f] is not None:
                    fields[f].append(float("nan"))
        if k < len(msg.position):
            pos[i] = float(msg.position[k])
        for f in fields:
            new = getattr(msg, f)
            if fields[f] is None:
                continue
            if len(new) == len(msg.name):
                fields[f][i] = float(new[k])
            else:
                fields[f] = None   # this publisher sends none: drop the field
    out = JointState(header=msg.header, name=names, position=pos)
    for f, v in fields.items():
        if v is not None and all(x == x for x in v):   # no NaN: every joint has one
            setattr(out, f, v)
    return out


def _columns(msg: JointTrajectoryMsg, cols: Sequence[int]) -> JointTrajectoryMsg:
    out = JointTrajectoryMsg(header=msg.header,
                             joint_names=[msg.joint_names[c] for c in cols])
    for p in msg.points:
        q = JointTrajectoryPoint(time_from_start=p.time_from_start)
        for f in ("positions", "velocities", "accelerations", "effort"):
            v = list(getattr(p, f))
            if len(v) == len(msg.joint_names):
                setattr(q, f, [v[c] for c in cols])
        out.points.append(q)
    return out


def split_trajectory(msg: JointTrajectoryMsg, gripper_joints: Sequence[str]
                     ) -> tuple[JointTrajectoryMsg, JointTrajectoryMsg]:
    """The arm's columns and the gripper's (``gripper_joints``, in that order) of ``msg``, each
    a JointTrajectory with ``msg``'s header and times. ValueError naming a gripper joint the
    trajectory lacks."""
    names = list(msg.joint_names)
    missing = [j for j in gripper_joints if j not in names]
    if missing:
        raise ValueError(f"the trajectory has no column for gripper joints {missing}")
    grip = [names.index(j) for j in gripper_joints]
    arm = [i for i in range(len(names)) if i not in grip]
    return _columns(msg, arm), _columns(msg, grip)


class ArmAndGripperClient:
    """Two FollowJointTrajectory clients, the arm's and the gripper's (``gripper_joints`` go
    to ``gripper_action``). Each planned trajectory is split (``split_trajectory``) and sent
    as one goal to each."""

    def __init__(self, node, action_type, arm_action: str, gripper_action: str,
                 gripper_joints: Sequence[str], timeout_s: float,
                 goal_time_tolerance_s: float) -> None:
        self.arm = FollowJointTrajectoryClient(node, action_type, arm_action, timeout_s,
                                               goal_time_tolerance_s)
        self.gripper = FollowJointTrajectoryClient(node, action_type, gripper_action,
                                                   timeout_s, goal_time_tolerance_s)
        self.gripper_joints = list(gripper_joints)

    @property
    def feedback(self):
        """The arm controller's latest feedback."""
        return self.arm.feedback

    def send(self, msg: JointTrajectoryMsg, duration_s: float) -> Optional[ArmOutcome]:
        """Send both halves. None: both accepted; else why nothing moves (an accepted half is
        cancelled when the other is refused)."""
        try:
            arm_msg, grip_msg = split_trajectory(msg, self.gripper_joints)
        except ValueError as e:
            return ArmOutcome(ArmStatus.REJECTED, error_string=str(e))
        out = self.gripper.send(grip_msg, duration_s)
        if out is not None:
            return ArmOutcome(out.status, out.error_code, f"gripper: {out.describe()}")
        out = self.arm.send(arm_msg, duration_s)
        if out is not None:
            self.gripper.cancel()
            return out
        return None

    def outcome(self) -> Optional[ArmOutcome]:
        """None while either goal runs and neither failed; the first failure (the other goal
        then cancelled); success once both succeeded."""
        a, g = self.arm.outcome(), self.gripper.outcome()
        if a is not None and not a.ok:
            if g is None:
                self.gripper.cancel()
            return a
        if g is not None and not g.ok:
            if a is None:
                self.arm.cancel()
            return ArmOutcome(g.status, g.error_code, f"gripper: {g.describe()}")
        if a is None or g is None:
            return None
        return a

    def cancel(self) -> Optional[ArmOutcome]:
        """Stop both; the arm's outcome."""
        self.gripper.cancel()
        return self.arm.cancel()

    def busy(self) -> bool:
        return self.arm.busy() or self.gripper.busy()
