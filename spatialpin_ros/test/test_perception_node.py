"""The perception node in-process (node tier): frames in, ScenePriors, markers and cloud out;
bad input is reported and the node keeps running."""

import numpy as np
import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros import viz  # noqa: E402
from spatialpin_ros.ros.perception_node import PerceptionNode  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402
from spatialpin_ros.sim.scene_spec import load_scene_file  # noqa: E402
from spatialpin_ros.paths import resolve_scene_file  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402


class Camera(Node):
    """Publishes one simulated frame on the perception node's camera topics (its parameters;
    by default realsense-ros's), and listens to the outputs."""

    def __init__(self, node: PerceptionNode):
        super().__init__("fake_camera")
        sd = qos_profile_sensor_data
        self.pub_c = self.create_publisher(Image, node.p.color_topic, sd)
        self.pub_d = self.create_publisher(Image, node.p.depth_topic, sd)
        self.pub_i = self.create_publisher(CameraInfo, node.p.camera_info_topic, sd)
        self.pub_pose = self.create_publisher(PoseStamped, "/spatialpin/sim/camera_pose", LATCHED)
        self.got = {}
        self.create_subscription(ScenePriors, "/spatialpin/scene_priors",
                                 lambda m: self.got.__setitem__("scene", m), LATCHED)
        self.create_subscription(MarkerArray, "/spatialpin/markers",
                                 lambda m: self.got.__setitem__("markers", m), LATCHED)
        self.create_subscription(PointCloud2, "/spatialpin/scene_cloud",
                                 lambda m: self.got.__setitem__("cloud", m), 2)
        self.status = []
        from std_msgs.msg import String
        self.create_subscription(String, "/spatialpin/perception/status",
                                 lambda m: self.status.append(m.data), 10)

    def send(self, frame, depth=None):
        header = Header(frame_id="camera_color_optical_frame",
                        stamp=self.get_clock().now().to_msg())
        self.pub_c.publish(conv.image_to_msg(frame.rgb, "rgb8", header))
        d = frame.depth if depth is None else depth
        self.pub_d.publish(conv.depth_to_msg(d, "32FC1", header))
        self.pub_i.publish(conv.camera_info_to_msg(frame.camera, header))


@pytest.fixture(scope="module")
def setup(rclpy_context):
    world = SimWorld(load_scene_file(resolve_scene_file("tabletop")))
    frame = world.render()
    truth = world.ground_truth()
    world.close()
    node = PerceptionNode(parameter_overrides=[Parameter("max_rate_hz", value=20.0)])
    cam = Camera(node)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(cam)
    cam.pub_pose.publish(PoseStamped(header=Header(frame_id="world"),
                                     pose=conv.pose_to_msg(frame.camera_pose)))
    yield node, cam, ex, frame, truth
    ex.shutdown()
    cam.destroy_node()
    node.destroy_node()


def test_frames_become_scene_priors_markers_and_cloud(setup):
    node, cam, ex, frame, truth = setup
    assert spin_until(ex, lambda: node._camera_pose_msg is not None, timeout=5)
    cam.send(frame)
    assert spin_until(ex, lambda: {"scene", "markers"} <= set(cam.got), timeout=10)
    scene = conv.scene_from_msg(cam.got["scene"])
    assert scene.frame_id == "world" and scene.scene_id.startswith("scene_")
    assert abs(len(scene.objects) - len(truth.objects)) <= 1
    for t in truth.objects:  # every true object has a prior within 3 cm
        d = min(np.linalg.norm(o.pose.position - t.pose.position) for o in scene.objects)
        assert d < 0.03, f"{t.id} missed by {d:.3f} m"
    np.testing.assert_allclose(scene.support_plane[:3], [0, 0, 1], atol=0.02)
    assert len(cam.got["markers"].markers) > 3 * len(scene.objects)
    assert scene.scene_id in node.scenes


def test_empty_table_is_a_scene_with_no_objects(setup):
    node, cam, ex, frame, _ = setup
    with SimWorld(load_scene_file(resolve_scene_file("two_blocks"))) as w:
        for o in w.objects:  # take the objects away
            import pybullet as pb
            pb.removeBody(o.body, physicsClientId=w.client)
        w.objects = []
        w.set_camera(w.camera_spec, frame.camera_pose)
        empty = w.render()
    done, n_status = node.frames_done, len(cam.status)
    cam.send(empty)
    assert spin_until(ex, lambda: node.frames_done > done, timeout=10)
    scene = node.scenes[next(reversed(node.scenes))]
    assert scene.objects == [] and abs(scene.support_plane[2]) > 0.95
    assert spin_until(ex, lambda: any(m.startswith(f"ok: {scene.scene_id}, 0 objects")
                                      for m in cam.status[n_status:]), timeout=5)


def test_without_a_camera_pose_the_support_plane_gives_the_frame(setup):
    node, cam, ex, frame, truth = setup
    saved, node._camera_pose_msg = node._camera_pose_msg, None
    try:
        done = node.frames_done
        cam.send(frame)
        assert spin_until(ex, lambda: node.frames_done > done, timeout=10)
    finally:
        node._camera_pose_msg = saved
    scene = node.scenes[next(reversed(node.scenes))]
    assert scene.frame_id == "support_plane"
    heights = sorted(round(o.size[2], 2) for o in scene.objects)
    true_heights = sorted(round(o.size[2], 2) for o in truth.objects)
    assert abs(len(heights) - len(true_heights)) <= 1
    assert np.median([o.center[2] for o in scene.objects]) == pytest.approx(
        np.median([o.center[2] for o in truth.objects]), abs=0.02)


def test_cloud_round_trip(setup):
    node, cam, ex, frame, truth = setup
    cam.got.pop("cloud", None)
    cam.send(frame)
    assert spin_until(ex, lambda: "cloud" in cam.got, timeout=10)
    pts, rgb = viz.cloud_from_msg(cam.got["cloud"])
    assert len(pts) > 5000 and np.all(np.isfinite(pts))
    assert np.median(np.abs(pts[:, 2])) < 0.05  # mostly table


def test_scene_history_is_bounded(setup):
    node, cam, ex, frame, _ = setup
    node.p.scene_history = 3
    for _ in range(5):
        n = node.frames_done
        cam.send(frame)
        assert spin_until(ex, lambda: node.frames_done > n, timeout=10)
    assert len(node.scenes) == 3
    ids = list(node.scenes)
    assert ids == sorted(ids, key=lambda s: int(s.rsplit("_", 1)[1]))


@pytest.mark.parametrize("bad", ["encoding", "nan_depth", "empty_depth", "size_mismatch",
                                 "no_plane"])
def test_bad_frames_are_reported_and_the_node_keeps_running(setup, bad):
    node, cam, ex, frame, _ = setup
    errors = node.errors
    if bad == "encoding":  # a colour encoding the node does not read
        header = Header(frame_id="camera_color_optical_frame",
                        stamp=cam.get_clock().now().to_msg())
        msg = conv.image_to_msg(frame.rgb, "rgb8", header)
        msg.encoding = "yuv422"
        cam.pub_c.publish(msg)
        cam.pub_d.publish(conv.depth_to_msg(frame.depth, "32FC1", header))
        cam.pub_i.publish(conv.camera_info_to_msg(frame.camera, header))
    elif bad == "nan_depth":
        cam.send(frame, depth=np.full_like(frame.depth, np.nan))
    elif bad == "size_mismatch":
        cam.send(frame, depth=frame.depth[:240, :320])
    elif bad == "no_plane":  # a wall of noise: no support plane anywhere
        rng = np.random.default_rng(0)
        cam.send(frame, depth=rng.uniform(0.3, 3.0, frame.depth.shape).astype(np.float32))
    else:
        cam.send(frame, depth=np.zeros_like(frame.depth))
    n_status = len(cam.status)
    assert spin_until(ex, lambda: node.errors > errors, timeout=10), "the bad frame was accepted"
    assert node.last_error
    assert spin_until(ex, lambda: any(m == f"error: {node.last_error}"
                                      for m in cam.status[n_status:]), timeout=5)
    # the status names the reason, and an empty ScenePriors with that status is published
    expected = {"encoding": "bad_image", "size_mismatch": "bad_image",
                "nan_depth": "no_valid_depth", "empty_depth": "no_valid_depth",
                "no_plane": "no_support_plane"}[bad]
    assert node.last_error.startswith(f"{expected}: "), node.last_error
    assert spin_until(ex, lambda: "scene" in cam.got and cam.got["scene"].status == expected,
                      timeout=5)
    assert len(cam.got["scene"].objects) == 0 and cam.got["scene"].status_message
    done = node.frames_done
    cam.send(frame)  # and a good frame still works
    assert spin_until(ex, lambda: node.frames_done > done, timeout=10)


def _models_backend(paths: dict, depth=None) -> list:
    """Parameters for backend:=models with the tiny models on the CPU (``depth`` replaces the
    depth model)."""
    return [Parameter("backend", value="models"),
            Parameter("models.depth_model", value=depth or paths["depth"]),
            Parameter("models.detector_model", value=paths["detector"]),
            Parameter("models.segmenter_model", value=paths["sam"]),
            Parameter("models.device", value="cpu"), Parameter("models.cuda_graphs", value=False)]


def test_switching_to_the_models_backend_is_one_parameter(rclpy_context, tmp_path):
    """The same node with backend:=models (tiny models on the CPU) publishes the same types."""
    from tiny_perception_models import build_all
    paths = build_all(tmp_path, hand_set=True)
    node = PerceptionNode(parameter_overrides=_models_backend(paths) + [
        Parameter("max_rate_hz", value=20.0), Parameter("models.box_threshold", value=0.0),
        Parameter("models.lifting_compile", value=True)])
    cam = Camera(node)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(cam)
    try:
        with SimWorld(load_scene_file(resolve_scene_file("two_blocks"))) as w:
            frame = w.render()
        cam.pub_pose.publish(PoseStamped(header=Header(frame_id="world"),
                                         pose=conv.pose_to_msg(frame.camera_pose)))
        assert spin_until(ex, lambda: node._camera_pose_msg is not None, timeout=5)
        cam.send(frame)
        assert spin_until(ex, lambda: node.frames_done >= 1 or node.errors >= 1, timeout=60)
        assert node.frames_done == 1, node.last_error
        assert spin_until(ex, lambda: "scene" in cam.got, timeout=10)
        scene = conv.scene_from_msg(cam.got["scene"])
        assert type(node.backend).__name__ == "ModelBackend"
        assert node.backend._torch_lift.compile   # the parameter reaches the backend (eager here)
        assert scene.frame_id == "world" and abs(scene.support_plane[2]) > 0.95
    finally:
        ex.shutdown()
        cam.destroy_node()
        node.destroy_node()


def test_rgb_only_camera_without_camera_info(rclpy_context, tmp_path):
    """rgb_only: colour alone, intrinsics from the field of view, depth from the depth model (a
    tiny model that predicts a flat table 0.8 m away, seen by a camera looking straight down)."""
    from spatialpin_ros.core.types import look_at
    from spatialpin_ros.sim.scene_spec import CameraSpec
    from tiny_perception_models import build_all, build_tiny_depth
    paths = build_all(tmp_path, hand_set=True)
    flat = build_tiny_depth(tmp_path / "flat", constant_depth=0.8)
    node = PerceptionNode(parameter_overrides=_models_backend(paths, depth=flat) + [
        Parameter("rgb_only", value=True), Parameter("max_rate_hz", value=20.0),
        Parameter("models.box_threshold", value=0.0), Parameter("models.fov_deg", value=58.0),
        Parameter("models.plane_distance", value=0.8)])
    cam = Camera(node)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(cam)
    try:
        with SimWorld(load_scene_file(resolve_scene_file("two_blocks"))) as w:
            w.set_camera(CameraSpec(width=640, height=480, fov_deg=58.0, eye=(0.6, 0.0, 0.8),
                                    target=(0.6, 0.0, 0.0), up=(1.0, 0.0, 0.0)))
            frame = w.render()
        cam.pub_pose.publish(PoseStamped(header=Header(frame_id="world"),
                                         pose=conv.pose_to_msg(frame.camera_pose)))
        assert spin_until(ex, lambda: node._camera_pose_msg is not None, timeout=5)
        header = Header(frame_id="camera_color_optical_frame",
                        stamp=cam.get_clock().now().to_msg())
        cam.pub_c.publish(conv.image_to_msg(frame.rgb, "rgb8", header))  # no depth, no info
        assert spin_until(ex, lambda: node.frames_done >= 1 or node.errors >= 1, timeout=60)
        assert node.frames_done == 1, node.last_error
        assert node.backend.last["depth_estimated"] is True
        scene = node.scenes[next(reversed(node.scenes))]
        np.testing.assert_allclose(scene.support_plane[:3], [0, 0, 1], atol=0.05)
    finally:
        ex.shutdown()
        cam.destroy_node()
        node.destroy_node()


def test_object_names_from_the_vlm_reach_the_models_backend(rclpy_context, tmp_path):
    from std_msgs.msg import String
    from tiny_perception_models import build_all
    paths = build_all(tmp_path)
    node = PerceptionNode(parameter_overrides=_models_backend(paths) + [
        Parameter("models.names_source", value="both"),
        Parameter("models.object_names", value=["cup"])])
    talker = Node("vlm_stand_in")
    pub = talker.create_publisher(String, "/spatialpin/object_names", LATCHED)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(talker)
    try:
        pub.publish(String(data="Object 1: mug of color red, texture smooth at location left\n"
                                "Object 2: screwdriver of color yellow, texture plastic at location "
                                "right"))
        assert spin_until(ex, lambda: "screwdriver" in " ".join(node.backend.detector.names),
                          timeout=10)
        names = " ".join(node.backend.detector.names)
        assert "mug" in names and "cup" in names  # both: the VLM's and the parameter's
    finally:
        ex.shutdown()
        talker.destroy_node()
        node.destroy_node()
