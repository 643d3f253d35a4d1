"""Graph tier: the simulation node runs in its own process (as `spatialpin bringup sim` starts
it) and this test process receives its images over DDS and checks their geometry."""

import time

import numpy as np
import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402

from spatialpin_ros.bringup import Bringup  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402


def test_images_from_the_sim_process_back_project_onto_the_table(rclpy_context, tmp_path):
    frames = []
    latest = {}
    node = Node("graph_probe")
    sd = qos_profile_sensor_data
    node.create_subscription(Image, "/camera/color/image_raw", lambda m: frames.append(m), sd)
    node.create_subscription(Image, "/camera/aligned_depth_to_color/image_raw",
                             lambda m: latest.__setitem__("depth", m), sd)
    node.create_subscription(CameraInfo, "/camera/color/camera_info",
                             lambda m: latest.__setitem__("info", m), sd)
    node.create_subscription(ScenePriors, "/spatialpin/sim/ground_truth",
                             lambda m: latest.__setitem__("gt", m), LATCHED)
    node.create_subscription(PoseStamped, "/spatialpin/sim/camera_pose",
                             lambda m: latest.__setitem__("pose", m), LATCHED)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    with Bringup("sim", ["seed:=8"], echo=False, log_dir=str(tmp_path)) as b:
        ok = spin_until(ex, lambda: len(frames) >= 3 and {"depth", "info", "gt", "pose"} <= set(latest),
                        timeout=60)
        assert ok, f"no frames from the sim process; exited: {b.failed()}; log: " + \
            (tmp_path / "sim.log").read_text()[-2000:]
        t0, n0 = time.monotonic(), len(frames)
        spin_until(ex, lambda: False, timeout=2.0)
        rate = (len(frames) - n0) / (time.monotonic() - t0)
    ex.shutdown()
    node.destroy_node()
    assert rate > 1.0, f"camera rate {rate:.2f} Hz across processes"
    cam = conv.camera_model_from_msg(latest["info"])
    pose = conv.pose_from_msg(latest["pose"].pose)
    depth = conv.depth_from_msg(latest["depth"])
    pts = pose.transform_points(cam.backproject(depth)).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    gt = conv.scene_from_msg(latest["gt"])
    # Points within the table's extent and away from objects lie on the plane z = 0.
    on_table = (np.abs(pts[:, 1]) < 0.45) & (pts[:, 0] > -0.2) & (pts[:, 0] < 1.2)
    for o in gt.objects:
        on_table &= np.linalg.norm(pts[:, :2] - o.pose.position[:2], axis=1) > \
            0.6 * np.linalg.norm(o.size[:2]) + 0.02
    below_objects = pts[on_table & (pts[:, 2] < 0.02)]
    assert len(below_objects) > 10000
    assert np.percentile(np.abs(below_objects[:, 2]), 99) < 0.005


def test_ask_a_question_of_the_perceived_simulation(rclpy_context, tmp_path):
    """sim -> perception -> spatial_qa, each in its own process; this process asks over ROS."""
    from spatialpin_interfaces.srv import AskSpatial

    node = Node("graph_asker")
    scenes = []
    node.create_subscription(ScenePriors, "/spatialpin/scene_priors",
                             lambda m: scenes.append(m), LATCHED)
    truth = {}
    node.create_subscription(ScenePriors, "/spatialpin/sim/ground_truth",
                             lambda m: truth.__setitem__("gt", m), LATCHED)
    cli = node.create_client(AskSpatial, "/spatialpin/ask")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    with Bringup("sim_perception", ["scene_file:=two_blocks"], echo=False,
                 log_dir=str(tmp_path)) as b:
        ok = spin_until(ex, lambda: len(scenes) >= 2 and "gt" in truth and cli.service_is_ready(),
                        timeout=90)
        assert ok, f"graph not up; exited: {b.failed()}; logs: " + " | ".join(
            p.read_text()[-800:] for p in tmp_path.glob("*.log"))
        fut = cli.call_async(AskSpatial.Request(
            question="How far is the red block from the blue block?"))
        assert spin_until(ex, fut.done, timeout=20)
        res = fut.result()
    ex.shutdown()
    node.destroy_node()
    gt = conv.scene_from_msg(truth["gt"])
    true_d = float(np.linalg.norm(gt.get("red_block").center - gt.get("blue_block").center))
    assert res.success, res.message
    assert res.unit == "m" and abs(res.value - true_d) < 0.02, (res.value, true_d)
    assert len(res.object_ids) == 2 and "center" in res.explanation
