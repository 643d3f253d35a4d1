"""Manipulation node: the ``/spatialpin/execute_task`` action (ExecuteTask).

For a task (stack ``object_id`` on ``target_id``, or pick and place at ``place_pose``) on the
latest perceived scene it plans grasp, lift, transfer and place motions (OMPL RRT* in joint
space against the perceived priors, then shortcutting, smoothing and time parameterisation),
publishes the end-effector path and markers, and, when ``execute`` is true, sends the joint
trajectory to the arm: as a JointTrajectory on the controller topic, or through a
FollowJointTrajectory action where control_msgs is installed and ``use_follow_joint_trajectory``
is set (a ros2_control joint_trajectory_controller; ``follow_joint_trajectory.py``): then the
goal must be accepted, the node waits for the controller's result, and a rejection, an error
code (a path or goal tolerance violated, ...) or no answer ends the task with that reason. A
trajectory breaking joint, velocity or acceleration limits is never sent. Feedback names the
stage; a cancel stops the arm where it is. After execution it checks the result on a fresh
perceived scene.

One goal at a time: a new goal while one runs (plans, executes or verifies) is rejected
(``goal_policy: reject``, the default) or preempts it (``goal_policy: preempt``, as ros2_control's
joint_trajectory_controller): the running goal stops the arm and ends ABORTED with "preempted by
a new goal", and only then does the new one start. Two trajectories never overlap in time.

Fresh scenes: a goal is checked, planned and executed on a scene whose header stamp is later
than the goal's arrival, the last scene load announced on ``scene_loaded_topic`` (the
simulator's reset) and the end of the last arm motion; it waits up to
``fresh_scene_timeout_s`` for one, and fails with the reason when none comes. Verification
waits, up to ``verify_timeout_s``, for a scene stamped after the motion ended. Scene stamps must
be on this node's clock (the camera's image stamps).

Every goal ends with a reason in the result message (at most 500 characters): a bad
``place_pose`` (NaN, infinite, an all-zero or non-unit quaternion) is ABORTED before planning,
and an exception anywhere in a goal aborts it with its type and text (the arm is stopped if it
was moving).

An empty scene perception could not use (ScenePriors status other than "ok") never replaces the
last good scene: it is logged (throttled), and a task naming its id is refused with its status
and reason.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import OrderedDict
from typing import Callable, Optional

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from visualization_msgs.msg import MarkerArray
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from spatialpin_interfaces.action import ExecuteTask
from spatialpin_interfaces.msg import ScenePriors
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from spatialpin_ros.core.history import put_newest
from spatialpin_ros.core.trajectory import JointTrajectory  # noqa: F401 (type of send())
from spatialpin_ros.core.types import PerceptionStatus, Scene
from spatialpin_ros.core.waiting import wait_until
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.node_main import run_node
from spatialpin_ros.ros.gripper_controller import merge_joint_states
from spatialpin_ros.ros.manipulation_params import PARAMS  # noqa: F401 (the node's parameters)
from spatialpin_ros.ros.params import declare_params
from spatialpin_ros.ros.sim_node import LATCHED
from spatialpin_ros.ros.manipulation_exec import PREEMPTED, STOP_SETTLE_S, TaskExecutionMixin
from spatialpin_ros.ros.manipulation_goal import (GoalContext, GoalStepsMixin,  # noqa: F401
                                                  place_pose_problem)


#: Longest result message (reasons echo goal fields and exception texts).
MAX_REASON = 500
#: Seconds an accepted goal counts as running before its execution starts.
ACCEPTED_STARTS_WITHIN_S = 5.0


def bounded_reason(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 20] + f"…({len(text)} chars)"


class _Run:
    """One accepted goal in the node's single-goal queue."""

    def __init__(self) -> None:
        self.preempted = False


#: Scenes perception could not use, remembered by id to explain a refused task.
MAX_UNUSABLE = 20


class ManipulationNode(GoalStepsMixin, TaskExecutionMixin, Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("manipulation", **kwargs)
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.robot = self._load_robot()
        self._lock = threading.Lock()
        self.scene = None
        self.scene_time = 0.0
        #: Recent scenes with a status other than ok (empty, with the reason), by id, and when
        #: the latest arrived; they never replace ``scene``.
        self.unusable: "OrderedDict[str, Scene]" = OrderedDict()
        self.unusable_time = 0.0
        self.joints: Optional[JointState] = None
        #: Stamp (s, this node's clock) of the newest joint state: its header's, or when it
        #: came where the header has none.
        self.joints_stamp = 0.0
        self.sent_trajectories = 0
        #: Stamps (s, this node's clock): the last scene load announced, and when the arm last
        #: came to rest (end of a trajectory, or a stop plus STOP_SETTLE_S).
        self.scene_loaded_stamp = 0.0
        self.motion_end_stamp = 0.0
        #: One goal at a time: the goal that owns the arm, the newest one waiting to preempt
        #: it, and goals accepted but not started yet (guarded by ``_goals``).
        self._goals = threading.Condition()
        self._running: Optional[_Run] = None
        self._next: Optional[_Run] = None
        #: monotonic times of goals accepted and not started yet
        self._accepted: list[float] = []
        group = ReentrantCallbackGroup()
        self.create_subscription(ScenePriors, p.scene_priors_topic, self._on_scene, LATCHED,
                                 callback_group=group)
        self.create_subscription(JointState, p.joint_states_topic, self._on_joints, 10,
                                 callback_group=group)
        if p.scene_loaded_topic:
            self.create_subscription(Header, p.scene_loaded_topic, self._on_scene_loaded,
                                     LATCHED, callback_group=group)
        self.pub_traj = self.create_publisher(JointTrajectoryMsg, p.joint_trajectory_topic, 10)
        self.pub_path = self.create_publisher(Path, p.path_topic, LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, p.plan_markers_topic, LATCHED)
        self._fjt = self._make_fjt_client() if p.use_follow_joint_trajectory else None
        self._server = ActionServer(self, ExecuteTask, p.action_name, self._execute,
                                    goal_callback=self._on_goal,
                                    cancel_callback=lambda g: CancelResponse.ACCEPT,
                                    callback_group=group)
        self.get_logger().info(f"ready: {p.action_name} ({p.algorithm}, goal_policy "
                               f"{p.goal_policy})")

    def _load_robot(self):
        """The planning model of the ``robot`` parameter's description; a bad description is
        logged with what is wrong and raised (the node cannot plan without its arm)."""
        import dataclasses

        from spatialpin_ros.core.robot_description import RobotDescriptionError, load_robot
        from spatialpin_ros.planning import RobotModel
        p = self.p
        try:
            d = load_robot(p.robot, p.robot_description)
            d = dataclasses.replace(d, limits=dataclasses.replace(
                d.limits, velocity_scale=float(p.velocity_scale)))
            robot = RobotModel(d)
        except RobotDescriptionError as e:
            self.get_logger().error(f"robot description: {e}")
            raise
        self.get_logger().info(f"robot {robot.name}: arm {list(robot.arm_joints)}, gripper "
                               f"{list(robot.gripper_joints)}")
        return robot

    def _make_fjt_client(self):
        try:
            from control_msgs.action import FollowJointTrajectory
        except ImportError:
            self.get_logger().warning("control_msgs is not installed: sending JointTrajectory "
                                      f"messages on {self.p.joint_trajectory_topic} instead")
            return None
        from spatialpin_ros.ros.follow_joint_trajectory import FollowJointTrajectoryClient
        if self.p.gripper_follow_joint_trajectory_action:
            from spatialpin_ros.ros.gripper_controller import ArmAndGripperClient
            return ArmAndGripperClient(
                self, FollowJointTrajectory, self.p.follow_joint_trajectory_action,
                self.p.gripper_follow_joint_trajectory_action, self.robot.gripper_joints,
                timeout_s=float(self.p.follow_joint_trajectory_timeout_s),
                goal_time_tolerance_s=float(self.p.goal_time_tolerance_s))
        return FollowJointTrajectoryClient(
            self, FollowJointTrajectory, self.p.follow_joint_trajectory_action,
            timeout_s=float(self.p.follow_joint_trajectory_timeout_s),
            goal_time_tolerance_s=float(self.p.goal_time_tolerance_s))

    def _on_scene(self, msg: ScenePriors) -> None:
        scene = conv.scene_from_msg_or_log(msg, self.get_logger())
        if scene is None:
            return
        if scene.status is not PerceptionStatus.OK:
            with self._lock:
                put_newest(self.unusable, scene.scene_id, scene, MAX_UNUSABLE)
                self.unusable_time = time.monotonic()
                last = self.scene.scene_id if self.scene is not None else None
            self.get_logger().warning(
                f"scene {scene.scene_id!r} is {conv.scene_status_text(scene)}; planning on "
                + (f"the last good scene {last!r}" if last else "no scene until a good one comes"),
                throttle_duration_sec=5.0)
            return
        with self._lock:
            self.unusable.pop(scene.scene_id, None)
            if self.scene is not None and scene.stamp < self.scene.stamp:
                older = self.scene.stamp - scene.stamp
            else:
                older = 0.0
                self.scene, self.scene_time = scene, time.monotonic()
        if older:
            self.get_logger().warning(
                f"ignored scene {conv.bounded(scene.scene_id, 40)!r}: stamped {older:.3f} s "
                "before the newest one", throttle_duration_sec=5.0)

    def _on_scene_loaded(self, msg: Header) -> None:
        stamp = conv.stamp_to_sec(msg.stamp)
        with self._lock:
            self.scene_loaded_stamp = max(self.scene_loaded_stamp, stamp)
        self.get_logger().info("scene (re)loaded: goals wait for a scene perceived after it")

    def _on_joints(self, msg: JointState) -> None:
        stamp = conv.stamp_to_sec(msg.header.stamp) or self._now()
        with self._lock:
            self.joints = merge_joint_states(self.joints, msg)
            self.joints_stamp = max(self.joints_stamp, stamp)

    def current_fingers(self) -> float:
        """Opening of one finger (m), or fully open when unknown."""
        with self._lock:
            js = self.joints
        try:
            return self.robot.finger_from_positions(
                [js.position[js.name.index(n)] for n in self.robot.gripper_joints])
        except (AttributeError, ValueError, IndexError):
            return self.robot.finger_open

    def q_since(self, since: float, timeout_s: float) -> Optional[np.ndarray]:
        """The arm's joints from a joint state stamped at or after ``since`` (s, this node's
        clock), waiting up to ``timeout_s`` for one; None when none comes."""
        def fresh() -> bool:
            with self._lock:
                return self.joints_stamp >= since
        return self.current_q() if wait_until(fresh, timeout_s) else None

    def current_q(self) -> Optional[np.ndarray]:
        with self._lock:
            js = self.joints
        if js is None:
            return None
        try:
            return np.array([js.position[js.name.index(n)] for n in self.robot.arm_joints])
        except (ValueError, IndexError):
            return None

    # -- one goal at a time ------------------------------------------------------------------
    def _on_goal(self, goal_request) -> GoalResponse:
        with self._goals:
            # An accepted goal starts at once; one that never started holds nothing for long.
            now = time.monotonic()
            self._accepted = [t for t in self._accepted if now - t < ACCEPTED_STARTS_WITHIN_S]
            busy = self._running is not None or bool(self._accepted)
            if busy and self.p.goal_policy == "reject":
                self.get_logger().warning("rejected a new goal: another goal is running "
                                          "(goal_policy reject)")
                return GoalResponse.REJECT
            self._accepted.append(now)
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> ExecuteTask.Result:
        arrival = self._now()
        run = _Run()
        with self._goals:
            if self._accepted:
                self._accepted.pop(0)
            if self._running is not None:
                if self.p.goal_policy == "reject":  # the policy changed since it was accepted
                    return self._end(goal_handle, ExecuteTask.Result(), False,
                                     "another goal is running (goal_policy reject)")
                # Preempt: stop the running goal and any goal waiting to, then wait for the
                # running one to end (it stops the arm first).
                self.get_logger().info("a new goal preempts the running one")
                self._running.preempted = True
                if self._next is not None:
                    self._next.preempted = True
                self._next = run
                while (self._running is not None and not run.preempted
                       and not goal_handle.is_cancel_requested):
                    self._goals.wait(0.05)
                if self._next is run:
                    self._next = None
                if run.preempted or goal_handle.is_cancel_requested:
                    return self._end(goal_handle, ExecuteTask.Result(), False,
                                     PREEMPTED if run.preempted
                                     else "cancelled before it started",
                                     cancelled=not run.preempted)
            self._running = run
        try:
            return self._run_goal(goal_handle, run, arrival)
        finally:
            with self._goals:
                self._running = None
                self._goals.notify_all()

    def _end(self, goal_handle, result: ExecuteTask.Result, ok: bool, msg: str,
             cancelled: bool = False) -> ExecuteTask.Result:
        """Finish the goal: SUCCEEDED, CANCELED or ABORTED, with ``msg`` (bounded) as the
        result message."""
        result.success, result.message = ok, bounded_reason(msg)
        if not ok:
            self.get_logger().warning(f"task failed: {result.message}")
        try:
            if ok:
                goal_handle.succeed()
            elif cancelled:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        except Exception as e:  # noqa: BLE001 (already terminal: keep the first outcome)
            self.get_logger().error(f"could not end the goal: {e}")
        return result

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _run_goal(self, goal_handle, run: _Run, arrival: float) -> ExecuteTask.Result:
        """The goal, with any exception turned into an ABORTED result with its reason."""
        result = ExecuteTask.Result()
        state = {"stage": "check", "moving": False}
        try:
            return self._task(goal_handle, run, arrival, result, state)
        except Exception as e:  # noqa: BLE001 (a goal is a boundary: the node keeps serving)
            if state["moving"]:
                self.stop()
            self.get_logger().error(f"error in stage {state['stage']}: "
                                    + bounded_reason(traceback.format_exc(), 2000))
            return self._end(goal_handle, result, False,
                             f"error in the {state['stage']} stage: {type(e).__name__}: {e}"
                             + ("; the arm was stopped where it was" if state["moving"] else ""))

    def _fresh_scene(self, after: float, timeout: float,
                     interrupted: Callable[[], Optional[str]]) -> tuple[Optional[Scene], str]:
        """The latest good scene stamped after ``after``, the last scene load and the end of the
        last arm motion, waiting up to ``timeout`` s; else None and the reason (or the reason
        ``interrupted()`` gives)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                marks = {"the goal's arrival": after,
                         "the last scene reset": self.scene_loaded_stamp,
                         "the end of the last arm motion": self.motion_end_stamp}
                scene = self.scene
                bad = next(reversed(self.unusable.values()), None)
            what, need = max(marks.items(), key=lambda kv: kv[1])
            if scene is not None and scene.stamp > need:
                return scene, ""
            why = interrupted()
            if why:
                return None, why
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        latest = ("no scene has been perceived" if scene is None else
                  f"the latest, {conv.bounded(scene.scene_id, 40)!r}, is stamped "
                  f"{need - scene.stamp:.2f} s before {what}")
        if bad is not None and bad.stamp > need:
            latest += (f"; a newer one, {conv.bounded(bad.scene_id, 40)!r}, is "
                       f"{conv.scene_status_text(bad)}")
        return None, f"no scene perceived after {what} within {timeout:g} s ({latest})"

    def _path_msg(self, ee_path: np.ndarray, stamp) -> Path:
        header = Header(frame_id=self.p.world_frame, stamp=stamp)
        msg = Path(header=header)
        for row in np.asarray(ee_path):
            ps = PoseStamped(header=header)
            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = map(float, row[:3])
            if len(row) >= 7:
                q = row[3:7]
                ps.pose.orientation.x, ps.pose.orientation.y = float(q[0]), float(q[1])
                ps.pose.orientation.z, ps.pose.orientation.w = float(q[2]), float(q[3])
            msg.poses.append(ps)
        return msg

    def send(self, traj: JointTrajectory) -> Optional[str]:
        """Send ``traj`` to the arm: None once it moves (published, or a FollowJointTrajectory
        goal accepted), else why it does not (nothing moves)."""
        msg = conv.trajectory_to_msg(traj, Header(stamp=self.get_clock().now().to_msg()))
        if self._fjt is not None:
            out = self._fjt.send(msg, traj.duration)
            if out is not None:
                return out.describe()
        else:
            self.pub_traj.publish(msg)
        self.sent_trajectories += 1
        return None

    def motion_over(self, t: float, duration: float) -> tuple[bool, Optional[str]]:
        """Whether the motion sent ``t`` s ago, lasting ``duration`` s, is over, and if it
        failed, why. Through FollowJointTrajectory: when the controller's result came (or is
        overdue); on the topic: at ``duration`` plus half a second."""
        if self._fjt is None:
            return t >= duration + 0.5, None
        out = self._fjt.outcome()
        if out is None:
            return False, None
        return True, None if out.ok else out.describe()

    def stop(self) -> None:
        """Stop the arm where it is: cancel the FollowJointTrajectory goal and wait for it to
        end, or send an empty trajectory, which a joint_trajectory_controller (and the
        simulator) takes as stop."""
        with self._lock:
            self.motion_end_stamp = max(self.motion_end_stamp, self._now() + STOP_SETTLE_S)
        if self._fjt is not None:
            self._fjt.cancel()
            return
        self.pub_traj.publish(JointTrajectoryMsg(
            header=Header(stamp=self.get_clock().now().to_msg()),
            joint_names=list(self.robot.joint_names)))


def main(args=None) -> int:
    return run_node(ManipulationNode, args, threads=3)


if __name__ == "__main__":
    raise SystemExit(main())
