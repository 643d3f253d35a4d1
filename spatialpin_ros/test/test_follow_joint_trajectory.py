"""The real-arm path (node tier): the manipulation node drives a ros2_control arm through
control_msgs/action/FollowJointTrajectory. Without a ROS 2 distribution, control_msgs is the
test-only stand-in built by colcon (standin_ws.py) and the arm is a stand-in
joint_trajectory_controller (joint_trajectory_controller.py) with that controller's semantics.

A stack executed and verified; a goal the controller refuses (refused at the request, as
ros2_control does, or accepted and aborted with INVALID_JOINTS, as other drivers do); a path
tolerance violated mid-motion; a cancel that stops the arm where it is; no server. Every
outcome reaches the ExecuteTask caller with its reason, the node serves the next goal, and the
controller never sees two trajectories at once. The test plays perception: it publishes the
scene, and after the controller reports the stack done, the scene with the block stacked."""

import numpy as np
import pytest

from conftest import send_goal, spin_until
import standin_ws

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from spatialpin_ros.ros.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from spatialpin_interfaces.action import ExecuteTask  # noqa: E402
from spatialpin_interfaces.msg import TaskProposal  # noqa: E402

from scene_publisher import BLUE, RED, STACKED, ScenePublisher  # noqa: E402
from spatialpin_ros.core.robot_description import load_robot  # noqa: E402
from spatialpin_ros.core.waiting import wait_until  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402

ACTION = "/arm_controller/follow_joint_trajectory"
ROBOT = load_robot()                 # the default robot's description
JOINTS = ROBOT.joint_names
HOME = list(ROBOT.home) + list(ROBOT.gripper.open)


@pytest.fixture(scope="module")
def arm(rclpy_context):
    standin_ws.require("control_msgs")
    from joint_trajectory_controller import JointTrajectoryControllerStandIn, Tolerances
    from spatialpin_ros.ros.manipulation_node import ManipulationNode
    tol = Tolerances(path={n: 0.1 for n in ROBOT.arm_joints}, goal={n: 0.01 for n in JOINTS},
                     stopped_velocity=0.05)
    ctrl = JointTrajectoryControllerStandIn(JOINTS, HOME, name="arm_controller", tolerances=tol)
    manip = ManipulationNode(parameter_overrides=[
        Parameter("use_follow_joint_trajectory", value=True),
        Parameter("follow_joint_trajectory_action", value=ACTION),
        Parameter("follow_joint_trajectory_timeout_s", value=3.0),
        Parameter("goal_time_tolerance_s", value=1.0),
        Parameter("velocity_scale", value=1.0),
        Parameter("slip_retry", value=False),
        Parameter("scene_loaded_topic", value=""),
        Parameter("verify_timeout_s", value=5.0)])
    client = Node("fjt_task_client")
    perception = ScenePublisher(client, "fjt")
    action = ActionClient(client, ExecuteTask, "/spatialpin/execute_task")
    ex = MultiThreadedExecutor(num_threads=5)
    for n in (ctrl, manip, client):
        ex.add_node(n)
    assert spin_until(ex, lambda: manip.scene is not None and manip.current_q() is not None,
                      timeout=20)
    assert manip._fjt is not None, "the node did not make a FollowJointTrajectory client"
    yield ctrl, manip, action, ex, perception
    ex.shutdown()
    for n in (client, manip, ctrl):
        n.destroy_node()


@pytest.fixture
def fresh(arm):
    """The arm at home and the blocks where they started, before each test."""
    ctrl, manip, action, ex, perception = arm
    assert spin_until(ex, lambda: not ctrl.active(), timeout=5)
    ctrl.teleport(HOME)
    perception.objects = [RED, BLUE]
    # The node has seen the arm at home (a loaded executor may still hand it older states).
    assert spin_until(ex, lambda: at(manip, HOME), timeout=10)
    return arm


def at(manip, q, atol=1e-4) -> bool:
    """The node's newest joint state has the arm at ``q`` (arm joints first)."""
    now = manip.current_q()
    return now is not None and np.allclose(now, q[:len(now)], atol=atol)


def send(action, ex, task, execute=True):
    return send_goal(action, ex, ExecuteTask.Goal(task=task, execute=execute))


STACK = TaskProposal(action="stack", object_id="obj_0", target_id="obj_1")


def test_stack_through_follow_joint_trajectory(fresh):
    ctrl, manip, action, ex, perception = fresh
    n_ended, n_over = len(ctrl.ended), ctrl.overlaps
    handle, res_fut, fb = send(action, ex, STACK)

    def arm_done():  # perception sees the block stacked once the controller reports success
        if len(ctrl.ended) > n_ended and ctrl.ended[-1][0] == "succeeded":
            perception.objects = [STACKED, BLUE]
        return res_fut.done()
    assert spin_until(ex, arm_done, timeout=90)
    res = res_fut.result().result
    assert ctrl.ended[n_ended:] == [("succeeded", 0, "Goal successfully reached!")]
    assert res.success and res.message.startswith("stacked"), res.message
    assert "verify" in fb
    # The arm is where the trajectory ends (within the goal tolerance), and the client got the
    # controller's feedback.
    last = res.joint_trajectory.points[-1]
    order = [list(res.joint_trajectory.joint_names).index(n) for n in JOINTS]
    assert np.allclose([ctrl.position(n) for n in JOINTS],
                       [last.positions[i] for i in order], atol=0.01)
    assert manip._fjt.feedback is not None and list(manip._fjt.feedback.joint_names) == JOINTS
    assert ctrl.overlaps == n_over


@pytest.mark.parametrize("invalid_goals, expected", [
    ("reject", "rejected the trajectory"),   # ros2_control: refused at the goal request
    ("abort", "INVALID_JOINTS (-2): Can't accept new trajectory. Too many joints specified"),
])
def test_a_goal_the_controller_refuses_ends_the_task_with_the_reason(fresh, invalid_goals,
                                                                      expected):
    ctrl, manip, action, ex, perception = fresh
    # The controller commands the arm's seven joints only (its gripper has another controller):
    # the node's trajectory, arm and fingers, is not for it.
    ctrl.command_joints, ctrl.invalid_goals = list(ROBOT.arm_joints), invalid_goals
    n_accepted, q0 = ctrl.accepted, [ctrl.position(n) for n in JOINTS]
    try:
        handle, res_fut, fb = send(action, ex, STACK)
        assert spin_until(ex, res_fut.done, timeout=60)
    finally:
        ctrl.command_joints, ctrl.invalid_goals = list(JOINTS), "reject"
    res = res_fut.result().result
    assert not res.success and expected in res.message, res.message
    assert "verify" not in fb
    assert ctrl.accepted == n_accepted  # nothing ran
    assert np.allclose([ctrl.position(n) for n in JOINTS], q0, atol=1e-6)
    if invalid_goals == "reject":
        assert "Too many joints" in ctrl.refused[-1]


def test_path_tolerance_violation_aborts_the_task_and_the_node_goes_on(fresh):
    ctrl, manip, action, ex, perception = fresh
    n_ended, n_over = len(ctrl.ended), ctrl.overlaps
    ctrl.block(after_s=0.6)  # the arm stops (a collision) 0.6 s into the motion
    handle, res_fut, fb = send(action, ex, STACK)
    assert spin_until(ex, res_fut.done, timeout=60)
    res = res_fut.result().result
    assert ctrl.ended[n_ended][:2] == ("aborted", -4)
    assert not res.success, res.message
    assert "PATH_TOLERANCE_VIOLATED (-4)" in res.message and "path tolerance" in res.message
    assert "verify" not in fb
    # The node serves the next goal: the same stack, executed to the end this time.
    ctrl.teleport(HOME)
    n_ended = len(ctrl.ended)
    handle, res_fut, fb = send(action, ex, STACK)
    assert spin_until(ex, lambda: len(ctrl.ended) > n_ended, timeout=60)
    assert ctrl.ended[n_ended][0] == "succeeded"
    assert spin_until(ex, res_fut.done, timeout=30)  # not stacked: perception saw no change
    assert ctrl.overlaps == n_over


def test_cancel_stops_the_arm_where_it_is(fresh):
    ctrl, manip, action, ex, perception = fresh
    n_ended, n_accepted, n_over = len(ctrl.ended), ctrl.accepted, ctrl.overlaps
    handle, res_fut, fb = send(action, ex, STACK)
    assert spin_until(ex, lambda: ctrl.accepted > n_accepted, timeout=60)
    spin_until(ex, lambda: False, timeout=1.0)  # moving
    q_moving = [ctrl.position(n) for n in JOINTS]
    assert not np.allclose(q_moving, HOME, atol=1e-3)
    handle.cancel_goal_async()
    assert spin_until(ex, res_fut.done, timeout=10)
    res = res_fut.result().result
    assert not res.success and "cancelled during execution" in res.message, res.message
    assert ctrl.ended[n_ended][0] == "canceled"
    assert not ctrl.active()
    q1 = [ctrl.position(n) for n in JOINTS]
    spin_until(ex, lambda: False, timeout=0.5)
    assert np.allclose([ctrl.position(n) for n in JOINTS], q1, atol=1e-3)  # held
    assert ctrl.overlaps == n_over


def test_another_client_taking_the_arm_ends_the_task(fresh):
    """Someone else sends the controller a goal mid-motion: the controller preempts the node's
    goal (cancels it with INVALID_GOAL, as ros2_control does) and the task ends with that
    reason."""
    from control_msgs.action import FollowJointTrajectory
    ctrl, manip, action, ex, perception = fresh
    n_accepted = ctrl.accepted
    handle, res_fut, fb = send(action, ex, STACK)
    assert spin_until(ex, lambda: ctrl.accepted > n_accepted, timeout=60)
    spin_until(ex, lambda: False, timeout=0.5)
    other = ActionClient(perception.node, FollowJointTrajectory, ACTION)
    q = [ctrl.position(n) for n in JOINTS]
    other.send_goal_async(move_goal(0.05, 0.5, start=q))
    assert spin_until(ex, res_fut.done, timeout=20)
    res = res_fut.result().result
    assert not res.success and res.message.startswith(
        "the arm's controller cancelled the trajectory: INVALID_GOAL (-1): Current goal "
        "cancelled due to new incoming action."), res.message
    assert "verify" not in fb
    assert spin_until(ex, lambda: not ctrl.active(), timeout=5)


@pytest.mark.parametrize("moves", [1, 2])
def test_an_arm_moved_while_planning_is_planned_for_again(fresh, monkeypatch, moves):
    """The arm moves (someone jogs it) while the task is planned: the node plans once more
    from where it is; moved again, it sends nothing (a trajectory never starts away from the
    arm)."""
    ctrl, manip, action, ex, perception = fresh
    plan_once = manip._plan
    calls = []

    def plan_then_move(ctx, scene, req):
        plan = plan_once(ctx, scene, req)
        calls.append(1)
        if len(calls) <= moves:
            q = [ctrl.position(n) for n in JOINTS]
            q[0] += 0.1 * len(calls)
            ctrl.teleport(q)
            assert manip.q_since(manip._now(), 5.0) is not None
            assert wait_until(lambda: at(manip, q), 5.0)   # the executor spins elsewhere
        return plan
    monkeypatch.setattr(manip, "_plan", plan_then_move)
    n_accepted, n_ended = ctrl.accepted, len(ctrl.ended)
    handle, res_fut, fb = send(action, ex, STACK)
    assert spin_until(ex, res_fut.done, timeout=90)
    res = res_fut.result().result
    assert len(calls) == 2
    if moves == 2:
        assert not res.success and "it moved while planning, twice; nothing was sent" in \
            res.message, res.message
        assert ctrl.accepted == n_accepted
    else:
        assert ctrl.accepted == n_accepted + 1
        assert ctrl.ended[n_ended][0] == "succeeded", ctrl.ended[n_ended:]
        first = res.joint_trajectory.points[0].positions
        i = list(res.joint_trajectory.joint_names).index(JOINTS[0])
        assert abs(first[i] - (HOME[0] + 0.1)) < 0.02


def test_no_server_is_an_outcome_not_a_hang(arm):
    from control_msgs.action import FollowJointTrajectory
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from spatialpin_ros.ros.follow_joint_trajectory import (ArmStatus,
                                                            FollowJointTrajectoryClient)
    ctrl, manip, action, ex, perception = arm
    client = FollowJointTrajectoryClient(manip, FollowJointTrajectory, "/nobody/here",
                                         timeout_s=0.5, goal_time_tolerance_s=0.5)
    msg = JointTrajectory(joint_names=JOINTS, points=[JointTrajectoryPoint(positions=HOME)])
    out = client.send(msg, 1.0)
    assert out.status is ArmStatus.NO_SERVER and "/nobody/here" in out.describe()
    assert not client.busy() and client.cancel() is out


# -- the stand-in controller's own semantics (what the node is tested against) ----------------
def raw_goal(arm, goal, timeout=10):
    """Send a FollowJointTrajectory goal straight to the stand-in: (accepted, status, result,
    feedback list)."""
    ctrl, manip, action, ex, perception = arm
    if not hasattr(raw_goal, "client"):
        from control_msgs.action import FollowJointTrajectory
        raw_goal.client = ActionClient(manip, FollowJointTrajectory, ACTION)
    feedback = []
    fut = raw_goal.client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(
        f.feedback))
    assert spin_until(ex, fut.done, timeout=5)
    if not fut.result().accepted:
        return False, None, None, feedback
    res = fut.result().get_result_async()
    assert spin_until(ex, res.done, timeout=timeout)
    return True, res.result().status, res.result().result, feedback


def move_goal(dq=0.3, duration=1.0, start=HOME, stamp=None):
    """A two-point goal moving panda_joint1 by ``dq`` in ``duration`` s."""
    from control_msgs.action import FollowJointTrajectory
    from trajectory_msgs.msg import JointTrajectoryPoint
    end = list(start)
    end[0] += dq
    g = FollowJointTrajectory.Goal()
    g.trajectory.joint_names = JOINTS
    g.trajectory.points = [
        JointTrajectoryPoint(positions=list(start), time_from_start=conv.sec_to_duration(0.0)),
        JointTrajectoryPoint(positions=end, time_from_start=conv.sec_to_duration(duration))]
    if stamp is not None:
        g.trajectory.header.stamp = stamp
    return g


@pytest.mark.parametrize("bad, reason", [
    ("no_names", "Empty joint names"), ("unknown_joint", "doesn't match the controller"),
    ("no_points", "Empty trajectory"), ("times", "not strictly increasing"),
    ("sizes", "Mismatch between joint_names size"), ("past", "ends in the past")])
def test_the_controller_refuses_bad_goals_with_the_reason(fresh, bad, reason):
    ctrl = fresh[0]
    g = move_goal()
    tr = g.trajectory
    if bad == "no_names":
        tr.joint_names = []
    elif bad == "unknown_joint":
        tr.joint_names = JOINTS[:-1] + ["shoulder_pan_joint"]
    elif bad == "no_points":
        tr.points = []
    elif bad == "times":
        tr.points[1].time_from_start = conv.sec_to_duration(0.0)
    elif bad == "sizes":
        tr.points[1].positions = tr.points[1].positions[:3]
    else:
        now = fresh[1].get_clock().now().nanoseconds * 1e-9
        tr.header.stamp = conv.sec_to_stamp(now - 10.0)
    accepted, *_ = raw_goal(fresh, g)
    assert not accepted and reason in ctrl.refused[-1]


def test_the_controller_follows_reports_feedback_and_succeeds(fresh):
    accepted, status, result, feedback = raw_goal(fresh, move_goal(0.3, 1.0))
    assert accepted and result.error_code == 0 and status == 4  # SUCCEEDED
    assert abs(fresh[0].position(JOINTS[0]) - (HOME[0] + 0.3)) < 0.01
    for fb in feedback:
        assert list(fb.joint_names) == JOINTS
        assert np.allclose(np.subtract(fb.desired.positions, fb.actual.positions),
                           fb.error.positions)
    # Feedback came during the motion, not only at its end.
    assert any(0 < fb.desired.positions[0] - HOME[0] < 0.3 for fb in feedback)


@pytest.mark.parametrize("goal_time, code", [(0.2, -5), (3.0, 0)])
def test_goal_time_tolerance_decides_whether_a_lagging_arm_fails(fresh, goal_time, code):
    from control_msgs.msg import JointTolerance
    ctrl = fresh[0]
    g = move_goal(0.3, 0.5)
    g.path_tolerance = [JointTolerance(name=n, position=-1.0) for n in JOINTS]  # erased
    g.goal_time_tolerance = conv.sec_to_duration(goal_time)
    ctrl.gain = 3.0  # a slow arm: about 0.15 rad behind at the end, 0.9 s to settle
    try:
        accepted, status, result, _ = raw_goal(fresh, g)
    finally:
        ctrl.gain = 40.0
    assert accepted and result.error_code == code, result.error_string
    if code:
        assert status == 6 and "goal_time_tolerance" in result.error_string  # ABORTED


def test_a_plan_waits_for_a_joint_state_newer_than_the_goal(rclpy_context):
    """Joint states that stopped (a driver down, a stale message queue) are no start for a plan:
    ``q_since`` waits for one stamped after planning began and gives up after the timeout."""
    from sensor_msgs.msg import JointState
    from spatialpin_ros.ros.manipulation_node import ManipulationNode
    node = ManipulationNode(parameter_overrides=[Parameter("scene_loaded_topic", value="")])
    try:
        now = node._now()
        old = JointState(name=list(JOINTS), position=list(HOME))
        old.header.stamp = conv.sec_to_stamp(now - 5.0)
        node._on_joints(old)
        assert node.current_q() is not None                 # known, but from before the goal
        assert node.q_since(now, 0.1) is None               # never newer: no start
        fresh = JointState(name=list(JOINTS), position=list(HOME))
        fresh.header.stamp = conv.sec_to_stamp(now + 0.01)
        node._on_joints(fresh)
        q = node.q_since(now, 0.1)
        assert q is not None and np.allclose(q, HOME[:len(q)])
    finally:
        node.destroy_node()
