"""vision_msgs/Detection3DArray output of the perception node (node tier). Without a ROS 2
distribution, vision_msgs is the test-only stand-in built by colcon (standin_ws.py) from the
published definition: one detection per perceived object, the same id, box and label as its
ScenePriors prior."""

import numpy as np
import pytest

from conftest import spin_until
import standin_ws

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.paths import resolve_scene_file  # noqa: E402
from spatialpin_ros.sim.scene_spec import load_scene_file  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402


def test_the_perception_node_publishes_detection3d_array(rclpy_context):
    standin_ws.require("vision_msgs")
    from vision_msgs.msg import Detection3DArray
    from spatialpin_ros.ros.perception_node import PerceptionNode
    from test_perception_node import Camera  # the same fake camera
    with SimWorld(load_scene_file(resolve_scene_file("three_blocks"))) as world:
        frame = world.render()
    node = PerceptionNode(parameter_overrides=[Parameter("max_rate_hz", value=20.0)])
    assert node.pub_det is not None, "vision_msgs importable, yet no Detection3DArray publisher"
    cam = Camera(node)
    got = []
    cam.create_subscription(Detection3DArray, node.p.detections_topic, got.append, 2)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(cam)
    try:
        cam.pub_pose.publish(PoseStamped(header=Header(frame_id="world"),
                                         pose=conv.pose_to_msg(frame.camera_pose)))
        assert spin_until(ex, lambda: node._camera_pose_msg is not None, timeout=5)
        cam.send(frame)
        assert spin_until(ex, lambda: got and "scene" in cam.got, timeout=15)
    finally:
        ex.shutdown()
        cam.destroy_node()
        node.destroy_node()
    scene = conv.scene_from_msg(cam.got["scene"])
    det = got[-1]
    assert det.header.frame_id == scene.frame_id == "world"
    assert det.header.stamp == cam.got["scene"].header.stamp
    assert len(scene.objects) == 3
    assert [d.id for d in det.detections] == [o.id for o in scene.objects]
    for d, o in zip(det.detections, scene.objects):
        c = d.bbox.center
        assert np.allclose([c.position.x, c.position.y, c.position.z], o.pose.position, atol=1e-6)
        assert np.allclose([c.orientation.x, c.orientation.y, c.orientation.z,
                            c.orientation.w], o.pose.quaternion, atol=1e-6)
        assert np.allclose([d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], o.size, atol=1e-6)
        hyp = d.results[0]
        assert hyp.hypothesis.class_id == o.label
        assert hyp.hypothesis.score == pytest.approx(o.confidence, abs=1e-6)  # float32 in the prior
        assert hyp.pose.pose == c
