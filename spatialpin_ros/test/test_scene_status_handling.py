"""Node tier: an empty ScenePriors with a status other than "ok" (no support plane) never replaces
the last good scene of the spatial QA and manipulation nodes; asking about its id is refused with
the status and reason."""

import math

import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from spatialpin_ros.ros.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from spatialpin_interfaces.action import ExecuteTask  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors, TaskProposal  # noqa: E402
from spatialpin_interfaces.srv import AskSpatial, ProposeTasks  # noqa: E402

from spatialpin_ros.core.types import CameraModel, ObjectPrior, PerceptionStatus, Pose, Scene  # noqa
from spatialpin_ros.core.types import look_at  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.manipulation_node import ManipulationNode  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402
from spatialpin_ros.ros.spatial_qa_node import SpatialQANode  # noqa: E402

REASON = "no plane with enough inliers in the valid depth (12% of the image)"
QUESTION = "How far is the red box from the blue box?"


def camera():
    return CameraModel.from_fov(640, 480, 58), look_at([1.2, 0.0, 0.5], [0.5, 0, 0])


def good_scene(scene_id):
    objs = [ObjectPrior("obj_0", "red box", Pose.from_yaw([0.5, -0.2, 0.025], 0.3),
                        [0.05, 0.04, 0.05], shape="box", color_name="red"),
            ObjectPrior("obj_1", "blue box", Pose.from_yaw([0.5, 0.1, 0.03], 0.0),
                        [0.08, 0.06, 0.06], shape="box", color_name="blue")]
    return Scene(scene_id, objs, *camera(), [0, 0, 1, 0], stamp=10.0)


def empty_scene(scene_id, stamp=11.0):
    return Scene(scene_id, [], *camera(), stamp=stamp,
                 status=PerceptionStatus.NO_SUPPORT_PLANE, status_message=REASON)


@pytest.fixture(scope="module")
def nodes(rclpy_context):
    qa = SpatialQANode(parameter_overrides=[
        Parameter("openai.base_url", value="http://127.0.0.1:9/v1"),  # nothing listens there
        Parameter("openai.timeout_s", value=2.0)])
    manip = ManipulationNode()
    client = Node("status_asker")
    pub = client.create_publisher(ScenePriors, "/spatialpin/scene_priors", LATCHED)
    ask = client.create_client(AskSpatial, "/spatialpin/ask")
    propose = client.create_client(ProposeTasks, "/spatialpin/propose_tasks")
    action = ActionClient(client, ExecuteTask, "/spatialpin/execute_task")
    ex = MultiThreadedExecutor(num_threads=2)
    for n in (qa, manip, client):
        ex.add_node(n)
    yield qa, manip, pub, ask, propose, action, ex
    ex.shutdown()
    for n in (client, manip, qa):
        n.destroy_node()


def call(ex, cli, req, timeout=15):
    assert cli.wait_for_service(timeout_sec=5)
    fut = cli.call_async(req)
    assert spin_until(ex, fut.done, timeout=timeout)
    return fut.result()


def test_only_empty_scenes_yet_says_why(nodes):
    qa, manip, pub, ask, propose, action, ex = nodes
    pub.publish(conv.scene_to_msg(empty_scene("scene_0", stamp=9.0)))
    assert spin_until(ex, lambda: "scene_0" in qa.unusable and "scene_0" in manip.unusable)
    assert not qa.records and manip.scene is None
    r = call(ex, ask, AskSpatial.Request(question=QUESTION))
    assert not r.success and math.isnan(r.value)
    assert "no scene yet" in r.message and "'scene_0'" in r.message
    assert "no_support_plane" in r.message and REASON in r.message


def test_an_empty_scene_does_not_replace_the_last_good_one(nodes):
    qa, manip, pub, ask, propose, action, ex = nodes
    pub.publish(conv.scene_to_msg(good_scene("scene_1")))
    assert spin_until(ex, lambda: "scene_1" in qa.records and manip.scene is not None)
    pub.publish(conv.scene_to_msg(empty_scene("scene_2")))
    assert spin_until(ex, lambda: "scene_2" in qa.unusable and "scene_2" in manip.unusable)
    assert list(qa.records) == ["scene_1"] and manip.scene.scene_id == "scene_1"
    # The latest scene for answers is still the good one.
    r = call(ex, ask, AskSpatial.Request(question=QUESTION))
    assert r.success, r.message
    assert r.value == pytest.approx(0.3, abs=0.01) and list(r.object_ids) == ["obj_0", "obj_1"]
    r = call(ex, propose, ProposeTasks.Request())
    assert r.success and r.tasks and all(t.scene_id == "scene_1" for t in r.tasks)


def test_asking_about_an_empty_scene_gives_its_status_and_reason(nodes):
    qa, manip, pub, ask, propose, action, ex = nodes
    for req in (AskSpatial.Request(question=QUESTION, scene_id="scene_2"),
                AskSpatial.Request(question="How far did the red box move?", scene_id="scene_1",
                                   reference_scene_id="scene_2")):
        r = call(ex, ask, req)
        assert not r.success and math.isnan(r.value)
        assert "'scene_2'" in r.message and "no_support_plane" in r.message, r.message
        assert REASON in r.message
    r = call(ex, propose, ProposeTasks.Request(scene_id="scene_2"))
    assert not r.success and not r.tasks
    assert "no_support_plane" in r.message and REASON in r.message
    # An id never seen is still just unknown.
    r = call(ex, ask, AskSpatial.Request(question=QUESTION, scene_id="scene_99"))
    assert not r.success and "unknown scene id 'scene_99'" in r.message


def test_a_task_on_an_empty_scene_is_refused_with_its_status(nodes):
    qa, manip, pub, ask, propose, action, ex = nodes
    assert action.wait_for_server(timeout_sec=10)
    task = TaskProposal(action="stack", object_id="obj_0", target_id="obj_1", scene_id="scene_2")
    fut = action.send_goal_async(ExecuteTask.Goal(task=task, execute=False))
    assert spin_until(ex, fut.done, timeout=10)
    handle = fut.result()
    assert handle.accepted
    res = handle.get_result_async()
    assert spin_until(ex, res.done, timeout=10)
    result = res.result().result
    assert not result.success
    assert "'scene_2'" in result.message and "no_support_plane" in result.message
    assert REASON in result.message
    assert not manip.sent_trajectories
