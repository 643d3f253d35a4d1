"""A gripper on its own controller (node tier), as ros2_control setups often have it: the arm's
joint_trajectory_controller and a second FollowJointTrajectory controller for the gripper's
joints, each publishing its own joints' states on /joint_states.

The manipulation node merges both publishers' joint states by name, splits each planned
trajectory into the arm's and the gripper's columns, sends one goal to each controller, and a
stack ends verified with each controller having moved only its own joints."""

import numpy as np
import pytest

from conftest import send_goal, spin_until
import standin_ws

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from spatialpin_ros.ros.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from spatialpin_interfaces.action import ExecuteTask  # noqa: E402
from spatialpin_interfaces.msg import TaskProposal  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from scene_publisher import BLUE, STACKED, ScenePublisher  # noqa: E402
from spatialpin_ros.core.robot_description import load_robot  # noqa: E402
from spatialpin_ros.ros.gripper_controller import (merge_joint_states,  # noqa: E402
                                                   split_trajectory)

ROBOT = load_robot()
ARM, GRIP = list(ROBOT.arm_joints), list(ROBOT.gripper.joints)


def test_joint_states_of_two_publishers_merge_by_name():
    arm = JointState(name=["a", "b"], position=[0.1, 0.2], velocity=[1.0, 2.0])
    grip = JointState(header=Header(frame_id="g"), name=["f"], position=[0.04], velocity=[0.3])
    js = merge_joint_states(merge_joint_states(None, arm), grip)
    assert list(js.name) == ["a", "b", "f"] and js.header.frame_id == "g"
    assert np.allclose(js.position, [0.1, 0.2, 0.04]) and np.allclose(js.velocity, [1, 2, 0.3])
    # A newer arm message replaces the arm's values and keeps the gripper's.
    js = merge_joint_states(js, JointState(name=["b", "a"], position=[0.5, 0.6],
                                           velocity=[0.0, 0.0]))
    assert np.allclose(js.position, [0.6, 0.5, 0.04])
    # A publisher without velocities: positions merge, velocities are no longer known.
    js = merge_joint_states(js, JointState(name=["f"], position=[0.01]))
    assert np.allclose(js.position, [0.6, 0.5, 0.01]) and len(js.velocity) == 0


def test_a_trajectory_splits_into_the_arm_and_the_gripper_columns():
    names = ARM + GRIP
    msg = JointTrajectory(header=Header(frame_id="world"), joint_names=names)
    for k in range(3):
        msg.points.append(JointTrajectoryPoint(
            positions=[float(10 * k + i) for i in range(len(names))],
            velocities=[0.0] * len(names), time_from_start=Duration(sec=k)))
    arm, grip = split_trajectory(msg, GRIP)
    assert list(arm.joint_names) == ARM and list(grip.joint_names) == GRIP
    assert arm.header.frame_id == grip.header.frame_id == "world"
    assert [p.time_from_start.sec for p in grip.points] == [0, 1, 2]
    assert list(grip.points[2].positions) == [20.0 + len(ARM) + i for i in range(len(GRIP))]
    assert list(arm.points[1].positions) == [10.0 + i for i in range(len(ARM))]
    assert len(arm.points[0].velocities) == len(ARM) and not arm.points[0].accelerations
    with pytest.raises(ValueError, match="no_such_joint"):
        split_trajectory(msg, ["no_such_joint"])


def test_stack_with_the_gripper_on_its_own_controller(rclpy_context):
    standin_ws.require("control_msgs")
    from joint_trajectory_controller import JointTrajectoryControllerStandIn, Tolerances
    from spatialpin_ros.ros.manipulation_node import ManipulationNode
    arm = JointTrajectoryControllerStandIn(
        ARM, list(ROBOT.home), name="arm_controller",
        tolerances=Tolerances(path={n: 0.1 for n in ARM}, goal={n: 0.01 for n in ARM}))
    grip = JointTrajectoryControllerStandIn(
        GRIP, list(ROBOT.gripper.open), name="gripper_controller",
        tolerances=Tolerances(goal={n: 0.005 for n in GRIP}))
    manip = ManipulationNode(parameter_overrides=[
        Parameter("use_follow_joint_trajectory", value=True),
        Parameter("follow_joint_trajectory_action",
                  value="/arm_controller/follow_joint_trajectory"),
        Parameter("gripper_follow_joint_trajectory_action",
                  value="/gripper_controller/follow_joint_trajectory"),
        Parameter("follow_joint_trajectory_timeout_s", value=3.0),
        Parameter("velocity_scale", value=1.0),
        Parameter("slip_retry", value=False),
        Parameter("scene_loaded_topic", value=""),
        Parameter("verify_timeout_s", value=5.0)])
    client = Node("gripper_task_client")
    perception = ScenePublisher(client, "grip")
    action = ActionClient(client, ExecuteTask, "/spatialpin/execute_task")
    ex = MultiThreadedExecutor(num_threads=5)
    for n in (arm, grip, manip, client):
        ex.add_node(n)
    try:
        # Both publishers' joints are known: the arm's from one, the gripper's from the other.
        assert spin_until(ex, lambda: manip.scene is not None and manip.current_q() is not None
                          and set(GRIP) <= set(manip.joints.name), timeout=20)
        assert abs(manip.current_fingers() - manip.robot.finger_open) < 1e-3
        _, res_fut, _ = send_goal(action, ex, ExecuteTask.Goal(task=TaskProposal(
            action="stack", object_id="obj_0", target_id="obj_1"), execute=True))

        def done():
            if arm.ended and arm.ended[-1][0] == "succeeded":
                perception.objects = [STACKED, BLUE]
            return res_fut.done()
        assert spin_until(ex, done, timeout=90)
        res = res_fut.result().result
        assert res.success and res.message.startswith("stacked"), res.message
        assert arm.ended == [("succeeded", 0, "Goal successfully reached!")]
        assert grip.ended == [("succeeded", 0, "Goal successfully reached!")]
        # Each controller took its own joints' half; the gripper ends open where the plan ends.
        last = res.joint_trajectory.points[-1]
        names = list(res.joint_trajectory.joint_names)
        for n in GRIP:
            assert abs(grip.position(n) - last.positions[names.index(n)]) < 0.005
        for n in ARM:
            assert abs(arm.position(n) - last.positions[names.index(n)]) < 0.01
        assert arm.overlaps == 0 and grip.overlaps == 0
    finally:
        ex.shutdown()
        for n in (client, manip, grip, arm):
            n.destroy_node()
