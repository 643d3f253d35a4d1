"""The spatial QA node in-process (node tier): /spatialpin/ask over ROS, history, bad input."""

import math

import numpy as np
import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from spatialpin_interfaces.srv import AskSpatial  # noqa: E402

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at  # noqa
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402
from spatialpin_ros.ros.spatial_qa_node import SpatialQANode  # noqa: E402


def make_scene(scene_id, red_y=-0.2):
    objs = [ObjectPrior("obj_0", "red box", Pose.from_yaw([0.5, red_y, 0.025], 0.3),
                        [0.05, 0.04, 0.05], shape="box", color_name="red"),
            ObjectPrior("obj_1", "blue box", Pose.from_yaw([0.5, 0.1, 0.03], 0.0),
                        [0.08, 0.06, 0.06], shape="box", color_name="blue")]
    return Scene(scene_id, objs, CameraModel.from_fov(640, 480, 58),
                 look_at([1.2, 0.0, 0.5], [0.5, 0, 0]), [0, 0, 1, 0])


@pytest.fixture(scope="module")
def graph(rclpy_context):
    qa = SpatialQANode(parameter_overrides=[
        Parameter("openai.base_url", value="http://127.0.0.1:9/v1"),  # nothing listens there
        Parameter("openai.timeout_s", value=2.0)])
    client_node = Node("asker")
    pub = client_node.create_publisher(ScenePriors, "/spatialpin/scene_priors", LATCHED)
    cli = client_node.create_client(AskSpatial, "/spatialpin/ask")
    ex = SingleThreadedExecutor()
    ex.add_node(qa)
    ex.add_node(client_node)
    yield qa, pub, cli, ex
    ex.shutdown()
    client_node.destroy_node()
    qa.destroy_node()


def ask(cli, ex, question, scene_id="", ref="", backend=""):
    fut = cli.call_async(AskSpatial.Request(question=question, scene_id=scene_id,
                                            reference_scene_id=ref, backend=backend))
    assert spin_until(ex, fut.done, timeout=15)
    return fut.result()


def test_no_scene_yet(graph):
    qa, pub, cli, ex = graph
    assert cli.wait_for_service(timeout_sec=5)
    r = ask(cli, ex, "How far is the red box from the blue box?")
    assert not r.success and "no scene yet" in r.message and math.isnan(r.value)


def test_answers_over_ros(graph):
    qa, pub, cli, ex = graph
    pub.publish(conv.scene_to_msg(make_scene("scene_1")))
    assert spin_until(ex, lambda: "scene_1" in qa.records)
    r = ask(cli, ex, "How far is the red box from the blue box?")
    assert r.success and r.unit == "m" and r.value == pytest.approx(0.3, abs=0.01)
    assert list(r.object_ids) == ["obj_0", "obj_1"] and "center" in r.explanation
    r = ask(cli, ex, "Is the red box left of the blue box?", scene_id="scene_1")
    assert r.success and r.value == 1.0 and r.answer.startswith("Yes")


def test_two_views_by_id(graph):
    qa, pub, cli, ex = graph
    pub.publish(conv.scene_to_msg(make_scene("scene_2", red_y=-0.1)))
    assert spin_until(ex, lambda: "scene_2" in qa.records)
    r = ask(cli, ex, "How far did the red box move?", scene_id="scene_2", ref="scene_1")
    assert r.success and r.value == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("question, kw, why", [
    ("", {}, "empty"),
    ("x" * 10000, {}, "limit"),
    ("How far is the green dragon from the blue box?", {}, "no object matches"),
    ("How tall is the red box?", {"scene_id": "nope"}, "unknown scene id"),
    ("How far did the red box move?", {"ref": "nope"}, "unknown reference scene id"),
    ("import os; os.system('true')", {}, "not understood"),
])
def test_bad_requests_fail_with_a_reason(graph, question, kw, why):
    qa, pub, cli, ex = graph
    pub.publish(conv.scene_to_msg(make_scene("scene_8")))
    assert spin_until(ex, lambda: "scene_8" in qa.records)
    r = ask(cli, ex, question, **kw)
    assert not r.success and why in r.message


def test_server_down_falls_back_with_a_flag(graph):
    qa, pub, cli, ex = graph
    pub.publish(conv.scene_to_msg(make_scene("scene_9")))
    assert spin_until(ex, lambda: "scene_9" in qa.records)
    r = ask(cli, ex, "How tall is the blue box?", backend="openai")
    assert r.success and r.value == pytest.approx(0.06)
    assert "openai backend failed" in r.message and "geometric" in r.message
    r = ask(cli, ex, "How tall is the blue box?", backend="transformers")
    assert r.success and "transformers.model" in r.message
    assert qa.requests >= 2  # the node kept serving


def test_propose_tasks_service(graph):
    from spatialpin_interfaces.srv import ProposeTasks
    qa, pub, cli, ex = graph
    pub.publish(conv.scene_to_msg(make_scene("scene_7")))
    assert spin_until(ex, lambda: "scene_7" in qa.records)
    client_node = [n for n in ex.get_nodes() if n.get_name() == "asker"][0]
    prop = client_node.create_client(ProposeTasks, "/spatialpin/propose_tasks")
    assert prop.wait_for_service(timeout_sec=5)
    fut = prop.call_async(ProposeTasks.Request(scene_id="scene_7", max_tasks=3,
                                               instruction="put the red box on the blue box"))
    assert spin_until(ex, fut.done)
    r = fut.result()
    assert r.success and 1 <= len(r.tasks) <= 3
    t = r.tasks[0]
    assert (t.action, t.object_id, t.target_id) == ("stack", "obj_0", "obj_1")
    assert t.place_pose.position.z == pytest.approx(0.06 + 0.025 + 0.005)
    fut = prop.call_async(ProposeTasks.Request(scene_id="nope"))
    assert spin_until(ex, fut.done)
    assert not fut.result().success and "unknown scene id" in fut.result().message


def test_find_objects_fails_clearly_without_a_server(graph):
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger
    qa, pub, cli, ex = graph
    client_node = [n for n in ex.get_nodes() if n.get_name() == "asker"][0]
    find = client_node.create_client(Trigger, "/spatialpin/find_objects")
    assert find.wait_for_service(timeout_sec=5)
    fut = find.call_async(Trigger.Request())
    assert spin_until(ex, fut.done)
    assert not fut.result().success and "no colour image" in fut.result().message
    from spatialpin_ros.ros.spatial_qa_node import PARAMS
    # The node's own colour topic (realsense-ros 4.x name; the simulator graphs remap it).
    img = client_node.create_publisher(Image, PARAMS["color_topic"].default, 10)
    img.publish(conv.image_to_msg(np.zeros((48, 64, 3), np.uint8), "rgb8"))
    assert spin_until(ex, lambda: len(qa._images) > 0)
    fut = find.call_async(Trigger.Request())
    assert spin_until(ex, fut.done, timeout=20)
    assert not fut.result().success and "openai failed" in fut.result().message
