"""The manipulation node in-process with the sim and perception nodes (node tier): plan only,
bad tasks refused with reasons and nothing sent, cancel, and a real stack checked on a fresh
perceived scene."""

import time

import numpy as np
import pytest

from conftest import send_goal, spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from spatialpin_ros.ros.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from spatialpin_interfaces.action import ExecuteTask  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors, TaskProposal  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from spatialpin_ros.core.plan_status import PlanStatus  # noqa: E402
from spatialpin_ros.graph import PERCEPTION_ON_SIM  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.manipulation_node import ManipulationNode  # noqa: E402
from spatialpin_ros.ros.perception_node import PerceptionNode  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED, SimNode  # noqa: E402


PLAN_MARKERS: list = []
RESET: list = []


@pytest.fixture(scope="module")
def graph(rclpy_context):
    sim = SimNode(parameter_overrides=[Parameter("scene_file", value="three_blocks"),
                                       Parameter("camera_rate_hz", value=4.0)])
    # The perception node's RealSense-named camera inputs, remapped to the simulator's camera.
    perception = PerceptionNode(cli_args=["--ros-args", *PERCEPTION_ON_SIM.remap_args()])
    manip = ManipulationNode()
    client = Node("task_client")
    scenes = []
    client.create_subscription(ScenePriors, "/spatialpin/scene_priors",
                               lambda m: scenes.append(m), LATCHED)
    sent = []
    client.create_subscription(JointTrajectoryMsg, "/joint_trajectory_controller/joint_trajectory",
                               lambda m: sent.append(m), 10)
    client.create_subscription(MarkerArray, "/spatialpin/plan_markers",
                               lambda m: PLAN_MARKERS.append(m), LATCHED)
    RESET[:] = [client.create_client(Trigger, "/spatialpin/sim/reset")]
    action = ActionClient(client, ExecuteTask, "/spatialpin/execute_task")
    ex = MultiThreadedExecutor(num_threads=4)
    for n in (sim, perception, manip, client):
        ex.add_node(n)
    assert spin_until(ex, lambda: scenes and manip.scene is not None
                      and manip.current_q() is not None, timeout=30)
    yield sim, manip, action, ex, scenes, sent
    ex.shutdown()
    for n in (client, manip, perception, sim):
        n.destroy_node()


def ids_by_color(scenes):
    scene = conv.scene_from_msg(scenes[-1])
    return {o.color_name: o.id for o in scene.objects}, scene


def run_goal(action, ex, task, execute, cancel_after=None, timeout=60):
    handle, res_fut, feedback = send_goal(action, ex, ExecuteTask.Goal(task=task,
                                                                        execute=execute))
    if cancel_after is not None:
        spin_until(ex, lambda: cancel_after in feedback, timeout=timeout)
        handle.cancel_goal_async()
    assert spin_until(ex, res_fut.done, timeout=timeout)
    return res_fut.result().result, feedback


def test_plan_only_sends_nothing(graph):
    sim, manip, action, ex, scenes, sent = graph
    ids, scene = ids_by_color(scenes)
    n_sent = len(sent)
    task = TaskProposal(action="stack", object_id=ids["red"], target_id=ids["blue"])
    res, fb = run_goal(action, ex, task, execute=False)
    assert res.success, res.message
    assert res.status == PlanStatus.OK.value  # the typed outcome travels in the result
    assert len(res.joint_trajectory.points) > 10 and len(res.ee_path.poses) > 10
    assert res.planning_time > 0 and "plan" in fb
    spin_until(ex, lambda: False, timeout=0.5)
    assert len(sent) == n_sent
    # The plan for rviz: the path by stage, the grasp arrow, and the red block on the blue one.
    assert spin_until(ex, lambda: PLAN_MARKERS, timeout=5)
    ms = {m.ns: m for m in PLAN_MARKERS[-1].markers}
    path = ms["spatialpin_plan/path"]
    assert path.type == Marker.LINE_STRIP and len(path.points) == len(path.colors) > 10
    assert ms["spatialpin_plan/grasp"].type == Marker.ARROW
    goal = ms["spatialpin_plan/goals"]
    blue = scene.get(ids["blue"])
    assert np.hypot(goal.pose.position.x - blue.center[0],
                    goal.pose.position.y - blue.center[1]) < 0.02
    assert goal.pose.position.z > blue.center[2] + blue.size[2] / 2


@pytest.mark.parametrize("case, why, status", [("missing", "no object", "error"),
                                               ("small", "too small", "error"),
                                               ("unreachable", "reach", "unreachable")])
def test_bad_tasks_fail_with_a_reason_and_send_nothing(graph, case, why, status):
    sim, manip, action, ex, scenes, sent = graph
    ids, scene = ids_by_color(scenes)
    n_sent = len(sent)
    if case == "missing":
        task = TaskProposal(action="stack", object_id="obj_99", target_id=ids["blue"])
    elif case == "small":  # the red block onto the 2.5 cm yellow cube
        task = TaskProposal(action="stack", object_id=ids["red"], target_id=ids["yellow"])
    else:
        task = TaskProposal(action="pick_and_place", object_id=ids["red"])
        task.place_pose.position.x, task.place_pose.position.z = 1.6, 0.03
        task.place_pose.orientation.w = 1.0
    res, _ = run_goal(action, ex, task, execute=True)
    assert not res.success and why in res.message, res.message
    # Refused before planning by the task's rule (error), or by the planner (its status).
    assert res.status == PlanStatus(status).value
    assert len(sent) == n_sent


def test_cancel_during_execution_stops_the_arm(graph):
    sim, manip, action, ex, scenes, sent = graph
    ids, _ = ids_by_color(scenes)
    task = TaskProposal(action="stack", object_id=ids["red"], target_id=ids["blue"])
    stops = sim.stops_obeyed
    res, fb = run_goal(action, ex, task, execute=True, cancel_after="execute")
    assert not res.success and "cancel" in res.message
    # The stop reaches the arm (the result may come first: the stop is a message on its way).
    assert spin_until(ex, lambda: sim.stops_obeyed > stops, timeout=5)
    spin_until(ex, lambda: False, timeout=0.3)  # let it come to rest

    def arm_q():  # the simulated arm itself: joint-state messages may lag under load
        with sim.world_lock:
            return sim.world.joint_state()[1][:7]
    q1 = arm_q()
    spin_until(ex, lambda: False, timeout=1.0)
    assert np.abs(arm_q() - q1).max() < 0.02  # held, not moving on
    with sim.world_lock:
        assert not sim.world.trajectory_active
    # Back home with the scene reloaded, for the next test: through the sim's reset service, so
    # that the reset runs in the sim's own callbacks, never alongside its physics.
    fut = RESET[0].call_async(Trigger.Request())
    assert spin_until(ex, fut.done, timeout=10) and fut.result().success


def test_stack_is_executed_and_verified_on_a_fresh_scene(graph):
    sim, manip, action, ex, scenes, sent = graph
    # Wait for a scene of the reset table: all three blocks in view (earlier frames may show the
    # arm where the cancel stopped it, hiding a block).
    assert spin_until(ex, lambda: {"red", "blue", "yellow"} <= set(ids_by_color(scenes)[0]),
                      timeout=30)
    ids, _ = ids_by_color(scenes)
    task = TaskProposal(action="stack", object_id=ids["red"], target_id=ids["blue"])
    res, fb = run_goal(action, ex, task, execute=True, timeout=90)
    assert res.success, res.message
    assert res.message.startswith("stacked") and "verify" in fb
    with sim.world_lock:
        truth = sim.world.ground_truth()  # scoring only
    red, blue = truth.get("red_block"), truth.get("blue_block")
    assert np.linalg.norm(red.center[:2] - blue.center[:2]) < 0.02
    assert abs((red.center[2] - red.size[2] / 2) - (blue.center[2] + blue.size[2] / 2)) < 0.01
