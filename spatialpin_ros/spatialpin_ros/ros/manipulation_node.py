"""Manipulation node: the ``/spatialpin/execute_task`` action (ExecuteTask).

For a task (stack ``object_id`` on ``target_id``, or pick and place at ``place_pose``) on the
latest perceived scene it plans grasp, lift, transfer and place motions (OMPL RRT* in joint
space against the perceived priors, then shortcutting, smoothing and time parameterisation),
publishes the end-effector path and markers, and, when ``execute`` is true, sends the joint
trajectory to the arm: as a JointTrajectory on the controller topic, or through a
FollowJointTrajectory action where control_msgs is installed and ``use_follow_joint_trajectory``
is set. A trajectory breaking joint, velocity or acceleration limits is never sent. Feedback
names the stage; a cancel stops the arm where it is. After execution it checks the result on a
fresh perceived scene.

An empty scene perception could not use (ScenePriors status other than "ok") never replaces the
last good scene: it is logged (throttled), and a task naming its id is refused with its status
and reason.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Optional

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

from spatialpin_ros.core.errors import TrajectoryError
from spatialpin_ros.core.trajectory import JointTrajectory  # noqa: F401 (type of send())
from spatialpin_ros.core.types import PerceptionStatus, Scene
from spatialpin_ros.reasoning.tasks import check_stack, verify_stacked
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.node_main import run_node
from spatialpin_ros.ros.params import Param, declare_params, non_negative, one_of, positive
from spatialpin_ros.ros.sim_node import LATCHED
from spatialpin_ros.ros.viz import plan_markers

PARAMS = {
    "algorithm": Param("rrtstar", "OMPL planner: rrtstar or rrtconnect",
                       one_of("rrtstar", "rrtconnect")),
    "planning_time_limit": Param(2.0, "Seconds allowed to plan one motion", positive),
    "task_time_limit": Param(10.0, "Seconds allowed to plan a whole task", positive),
    "max_clearing": Param(3, "When a task is blocked by neighbours, how many of them to try "
                          "moving to a free spot first (0: never)", non_negative),
    "max_clearing_moves": Param(2, "Neighbours moved at most, one after the other, to clear "
                                "the way for one task", non_negative),
    "velocity_scale": Param(0.5, "Fraction of the joint velocity limits the planner uses",
                            positive),
    "world_frame": Param("world", "Frame of the scene priors, the path and the markers"),
    "scene_priors_topic": Param("/spatialpin/scene_priors", "ScenePriors input"),
    "joint_states_topic": Param("/joint_states", "Joint states of the arm"),
    "joint_trajectory_topic": Param("/joint_trajectory_controller/joint_trajectory",
                                    "Where trajectories go (JointTrajectory)"),
    "use_follow_joint_trajectory": Param(False, "Send through a control_msgs "
                                         "FollowJointTrajectory action instead (ros2_control)"),
    "follow_joint_trajectory_action": Param(
        "/joint_trajectory_controller/follow_joint_trajectory", "FollowJointTrajectory action"),
    "path_topic": Param("/spatialpin/planned_path", "Planned end-effector path (nav_msgs/Path)"),
    "plan_markers_topic": Param("/spatialpin/plan_markers", "The planned task for rviz "
                                "(MarkerArray: path by stage, grasp, goal poses, text)"),
    "action_name": Param("/spatialpin/execute_task", "ExecuteTask action name"),
    "verify_timeout_s": Param(10.0, "Seconds to wait for a fresh scene to check the result",
                              positive),
}


def _cleared_note(plan) -> str:
    """What was moved out of the way first, for result messages."""
    return "".join(f"; first moved {oid} out of the way to ({p.position[0]:.2f}, "
                   f"{p.position[1]:.2f})" for oid, p in plan.cleared)


#: Scenes perception could not use, remembered by id to explain a refused task.
MAX_UNUSABLE = 20


class ManipulationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("manipulation", **kwargs)
        self.p = declare_params(self, PARAMS)
        p = self.p
        from spatialpin_ros.planning import PandaModel
        self.robot = PandaModel(velocity_scale=float(p.velocity_scale))
        self._lock = threading.Lock()
        self.scene = None
        self.scene_time = 0.0
        #: Recent scenes with a status other than ok (empty, with the reason), by id, and when
        #: the latest arrived; they never replace ``scene``.
        self.unusable: "OrderedDict[str, Scene]" = OrderedDict()
        self.unusable_time = 0.0
        self.joints: Optional[JointState] = None
        self.sent_trajectories = 0
        group = ReentrantCallbackGroup()
        self.create_subscription(ScenePriors, p.scene_priors_topic, self._on_scene, LATCHED,
                                 callback_group=group)
        self.create_subscription(JointState, p.joint_states_topic, self._on_joints, 10,
                                 callback_group=group)
        self.pub_traj = self.create_publisher(JointTrajectoryMsg, p.joint_trajectory_topic, 10)
        self.pub_path = self.create_publisher(Path, p.path_topic, LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, p.plan_markers_topic, LATCHED)
        self._fjt = self._make_fjt_client() if p.use_follow_joint_trajectory else None
        self._server = ActionServer(self, ExecuteTask, p.action_name, self._execute,
                                    goal_callback=lambda g: GoalResponse.ACCEPT,
                                    cancel_callback=lambda g: CancelResponse.ACCEPT,
                                    callback_group=group)
        self.get_logger().info(f"ready: {p.action_name} ({p.algorithm})")

    def _make_fjt_client(self):
        try:
            from control_msgs.action import FollowJointTrajectory
            from rclpy.action import ActionClient
        except ImportError:
            self.get_logger().warning("control_msgs is not installed: sending JointTrajectory "
                                      f"messages on {self.p.joint_trajectory_topic} instead")
            return None
        return ActionClient(self, FollowJointTrajectory, self.p.follow_joint_trajectory_action)

    def _on_scene(self, msg: ScenePriors) -> None:
        scene = conv.scene_from_msg_or_log(msg, self.get_logger())
        if scene is None:
            return
        if scene.status is not PerceptionStatus.OK:
            with self._lock:
                self.unusable[scene.scene_id] = scene
                self.unusable.move_to_end(scene.scene_id)
                while len(self.unusable) > MAX_UNUSABLE:
                    self.unusable.popitem(last=False)
                self.unusable_time = time.monotonic()
                last = self.scene.scene_id if self.scene is not None else None
            self.get_logger().warning(
                f"scene {scene.scene_id!r} is {conv.scene_status_text(scene)}; planning on "
                + (f"the last good scene {last!r}" if last else "no scene until a good one comes"),
                throttle_duration_sec=5.0)
            return
        with self._lock:
            self.unusable.pop(scene.scene_id, None)
            self.scene, self.scene_time = scene, time.monotonic()

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self.joints = msg

    def current_fingers(self) -> float:
        """Opening of one finger (m), or fully open when unknown."""
        from spatialpin_ros.planning import FINGER_JOINTS, FINGER_OPEN
        with self._lock:
            js = self.joints
        try:
            return float(js.position[js.name.index(FINGER_JOINTS[0])])
        except (AttributeError, ValueError):
            return FINGER_OPEN

    def current_q(self) -> Optional[np.ndarray]:
        with self._lock:
            js = self.joints
        if js is None:
            return None
        try:
            from spatialpin_ros.planning import ARM_JOINTS
            return np.array([js.position[js.name.index(n)] for n in ARM_JOINTS])
        except ValueError:
            return None

    # -- the action ----------------------------------------------------------------------------
    def _execute(self, goal_handle) -> ExecuteTask.Result:
        goal = goal_handle.request
        result = ExecuteTask.Result()

        def feedback(stage: str, progress: float) -> None:
            goal_handle.publish_feedback(ExecuteTask.Feedback(stage=stage, progress=progress))

        def fail(msg: str, cancelled: bool = False) -> ExecuteTask.Result:
            result.success, result.message = False, msg
            self.get_logger().warning(f"task failed: {msg}")
            if cancelled:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return result

        feedback("check", 0.02)
        task = goal.task
        with self._lock:
            scene = self.scene
            bad = self.unusable.get(task.scene_id) if task.scene_id else None
            latest_bad = next(reversed(self.unusable.values()), None)
        if bad is not None:
            return fail(f"task scene {task.scene_id!r} has no objects to use: perception "
                        f"status {conv.scene_status_text(bad)}")
        if scene is None:
            if latest_bad is not None:
                return fail("no scene yet: perception has published only scenes it could not "
                            f"use; the latest, {latest_bad.scene_id!r}, is "
                            f"{conv.scene_status_text(latest_bad)}")
            return fail("no scene yet: nothing has been perceived")
        q0 = self.current_q()
        if q0 is None:
            return fail("no joint states from the arm")
        if task.scene_id and task.scene_id != scene.scene_id:
            self.get_logger().info(f"task for {task.scene_id}; planning on the latest scene "
                                   f"{scene.scene_id} (object ids are stable across frames)")
        if task.action == "stack":
            why = check_stack(scene, task.object_id, task.target_id)
            if why:
                return fail(why)
        elif task.action == "pick_and_place":
            if task.object_id not in {o.id for o in scene.objects}:
                return fail(f"no object {task.object_id!r} in the scene")
        else:
            return fail(f"unknown action {task.action!r}; use stack or pick_and_place")

        feedback("plan", 0.1)
        from spatialpin_ros.planning import plan_task
        plan = plan_task(
            self.robot, scene, task.object_id, max_clearing=int(self.p.max_clearing),
            max_moves=int(self.p.max_clearing_moves),
            target_id=task.target_id if task.action == "stack" else None,
            place_pose=None if task.action == "stack" else conv.pose_from_msg(task.place_pose),
            q_start=q0, finger_start=self.current_fingers(), algorithm=self.p.algorithm,
            motion_time_limit=self.p.planning_time_limit, time_limit=self.p.task_time_limit,
            should_cancel=lambda: goal_handle.is_cancel_requested)
        result.planning_time = float(plan.planning_time)
        if not plan.success:
            return fail(f"planning failed ({plan.code}): {plan.reason}",
                        cancelled=plan.code == "cancelled")
        traj = plan.trajectory
        # Never send a trajectory that breaks a joint, velocity or acceleration limit.
        from spatialpin_ros.planning import limit_violations
        nominal = self.robot.joint_limits(nominal=True)
        try:
            traj.validate(known_joints=self.robot.joint_names, limits=nominal)
        except TrajectoryError as e:
            return fail(f"the planned trajectory breaks a limit and was not sent: {e}")
        bad = {k: v for k, v in limit_violations(traj, nominal).items() if v}
        if bad:
            return fail(f"the planned trajectory breaks limits {bad} and was not sent")
        stamp = self.get_clock().now().to_msg()
        result.joint_trajectory = conv.trajectory_to_msg(traj, Header(stamp=stamp))
        ee = plan.ee_path if plan.ee_quat is None else np.hstack([plan.ee_path, plan.ee_quat])
        result.ee_path = self._path_msg(ee, stamp)
        self.pub_path.publish(result.ee_path)
        desc = task.description or (f"{task.action} {task.object_id}"
                                    + (f" on {task.target_id}" if task.target_id else ""))
        self.pub_markers.publish(plan_markers(plan, scene, desc, self.p.world_frame, stamp))
        if not goal.execute:
            result.success = True
            result.message = (f"planned {len(plan.stages)} stages, {traj.duration:.1f} s of "
                              f"motion, in {plan.planning_time:.2f} s (not executed)"
                              + _cleared_note(plan))
            goal_handle.succeed()
            return result

        feedback("execute", 0.3)
        self.send(traj)
        t0 = time.monotonic()
        stages = list(plan.stages)
        while time.monotonic() - t0 < traj.duration + 0.5:
            if goal_handle.is_cancel_requested:
                self.stop()
                return fail("cancelled during execution; the arm was stopped where it was",
                            cancelled=True)
            t = time.monotonic() - t0
            name = next((s[0] for s in stages if s[1] <= t < s[2]), "execute")
            feedback(name, 0.3 + 0.6 * min(1.0, t / max(traj.duration, 1e-3)))
            time.sleep(0.05)

        feedback("verify", 0.92)
        if task.action == "stack":
            t_done = time.monotonic()
            deadline = t_done + self.p.verify_timeout_s
            while time.monotonic() < deadline:
                with self._lock:
                    fresh, when = self.scene, self.scene_time
                if when > t_done + 0.3:
                    break
                time.sleep(0.1)
            else:
                with self._lock:
                    bad = next(reversed(self.unusable.values()), None) \
                        if self.unusable_time > t_done else None
                return fail("executed, but no fresh scene arrived to check the result"
                            + (f" (the latest, {bad.scene_id!r}, is "
                               f"{conv.scene_status_text(bad)})" if bad is not None else ""))
            ok, why = verify_stacked(fresh, scene, task.object_id, task.target_id)
            result.success = ok
            result.message = ("stacked: " if ok else "not stacked: ") + why + _cleared_note(plan)
        else:
            result.success, result.message = True, "executed" + _cleared_note(plan)
        feedback("done", 1.0)
        if result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

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

    def send(self, traj: JointTrajectory) -> None:
        msg = conv.trajectory_to_msg(traj, Header(stamp=self.get_clock().now().to_msg()))
        if self._fjt is not None:
            from control_msgs.action import FollowJointTrajectory
            self._fjt_goal = self._fjt.send_goal_async(FollowJointTrajectory.Goal(trajectory=msg))
        else:
            self.pub_traj.publish(msg)
        self.sent_trajectories += 1

    def stop(self) -> None:
        """Stop the arm where it is: cancel the FollowJointTrajectory goal, or send an empty
        trajectory, which a joint_trajectory_controller (and the simulator) takes as stop."""
        fut = getattr(self, "_fjt_goal", None)
        if self._fjt is not None and fut is not None and fut.done() and fut.result():
            fut.result().cancel_goal_async()
            return
        from spatialpin_ros.planning import JOINT_NAMES
        self.pub_traj.publish(JointTrajectoryMsg(
            header=Header(stamp=self.get_clock().now().to_msg()), joint_names=list(JOINT_NAMES)))


def main(args=None) -> int:
    return run_node(ManipulationNode, args, threads=3)


if __name__ == "__main__":
    raise SystemExit(main())
