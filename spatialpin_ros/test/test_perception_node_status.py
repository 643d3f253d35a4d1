"""The perception node in-process (node tier): every processed frame gives a ScenePriors whose
status says how perception went (an empty scene for a wall, for missing depth, for an unreadable
image), the node keeps answering, and a frame without any camera pose is perceived in the support
plane's frame. The node runs with the simulator graph's remappings, so the camera here publishes
on the simulator's topics."""

import math
import re

import numpy as np
import pytest
import yaml

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from spatialpin_ros.core.types import CameraModel  # noqa: E402
from spatialpin_ros.graph import GRAPHS, PERCEPTION, PERCEPTION_ON_SIM  # noqa: E402
from spatialpin_ros.paths import config_file, resolve_scene_file  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.perception_node import PARAMS, PerceptionNode  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402
from spatialpin_ros.sim.scene_spec import load_scene_file  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402

SIM = yaml.safe_load(config_file("sim.yaml").read_text())["sim"]["ros__parameters"]


class Camera(Node):
    """Publishes frames on the simulator's camera topics and records what perception says."""

    def __init__(self):
        super().__init__("status_camera")
        sd = qos_profile_sensor_data
        self.pub_c = self.create_publisher(Image, SIM["color_topic"], sd)
        self.pub_d = self.create_publisher(Image, SIM["depth_topic"], sd)
        self.pub_i = self.create_publisher(CameraInfo, SIM["camera_info_topic"], sd)
        self.pub_pose = self.create_publisher(PoseStamped, SIM["camera_pose_topic"], LATCHED)
        self.scenes, self.status = [], []
        self.create_subscription(ScenePriors, "/spatialpin/scene_priors", self.scenes.append,
                                 LATCHED)
        self.create_subscription(String, "/spatialpin/perception/status",
                                 lambda m: self.status.append(m.data), 10)
        self._sec = 1000

    def send(self, frame, depth=None, color=None, encoding="32FC1", depth_msg=None,
             camera=None, edit_info=None):
        """Publish one frame (``color``, ``depth_msg``: Image messages replacing the frame's;
        depth in ``encoding``; ``camera``: the CameraModel of the camera_info, which
        ``edit_info`` may change); its stamp."""
        self._sec += 1  # distinct stamps: each frame is a new pair
        header = Header(frame_id="camera_color_optical_frame")
        header.stamp.sec = self._sec
        c = conv.image_to_msg(frame.rgb, "rgb8", header) if color is None else color
        c.header = header
        self.pub_c.publish(c)
        d = depth_msg or conv.depth_to_msg(frame.depth if depth is None else depth, encoding)
        d.header = header
        self.pub_d.publish(d)
        info = conv.camera_info_to_msg(camera or frame.camera, header)
        if edit_info is not None:
            edit_info(info)
        self.pub_i.publish(info)
        return header.stamp


@pytest.fixture(scope="module")
def setup(rclpy_context):
    with SimWorld(load_scene_file(resolve_scene_file("two_blocks"))) as w:
        frame = w.render()
        truth = w.ground_truth()
    node = PerceptionNode(cli_args=["--ros-args", *PERCEPTION_ON_SIM.remap_args()],
                          parameter_overrides=[Parameter("max_rate_hz", value=20.0),
                                               Parameter("publish_cloud", value=False)])
    cam = Camera()
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(cam)
    cam.pub_pose.publish(PoseStamped(header=Header(frame_id="world"),
                                     pose=conv.pose_to_msg(frame.camera_pose)))
    assert spin_until(ex, lambda: node._camera_pose_msg is not None, timeout=5)
    yield node, cam, ex, frame, truth
    ex.shutdown()
    cam.destroy_node()
    node.destroy_node()


def answer(ex, cam, stamp, timeout=15.0):
    """The ScenePriors published for the frame stamped ``stamp``, and the status lines since."""
    n = len(cam.status)

    def got():
        return any(m.header.stamp == stamp for m in cam.scenes) and len(cam.status) > n
    assert spin_until(ex, got, timeout=timeout), f"no ScenePriors for the frame; {cam.status[-3:]}"
    return [m for m in cam.scenes if m.header.stamp == stamp][-1], cam.status[n:]


def wall_depth(frame, distance=0.6):
    """Depth of a vertical wall ``distance`` in front of the camera (along the world's -x,
    where the simulator's camera looks) and nothing else: no table in view."""
    cam, pose = frame.camera, frame.camera_pose
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones(u.shape)], -1)
    dx = pose.rotation.apply(rays.reshape(-1, 3))[:, 0].reshape(u.shape)
    assert np.all(dx < 0)
    return (-distance / dx).astype(np.float32)  # z along the ray = the ray's parameter


def test_graph_remaps_the_realsense_defaults_to_the_simulators_camera():
    declared = {k: PARAMS[k].default for k in ("color_topic", "depth_topic", "camera_info_topic")}
    assert declared["color_topic"] == "/camera/camera/color/image_raw"
    assert declared["depth_topic"] == "/camera/camera/aligned_depth_to_color/image_raw"
    assert declared["camera_info_topic"] == "/camera/camera/color/camera_info"
    yaml_params = yaml.safe_load(config_file("perception.yaml").read_text())
    for k, v in declared.items():
        assert yaml_params["perception"]["ros__parameters"][k] == v
    assert dict(PERCEPTION_ON_SIM.remappings) == {declared[k]: SIM[k] for k in declared}
    for name, nodes in GRAPHS.items():
        has_sim = any(s.name == "sim" for s in nodes)
        for s in nodes:
            if s.name == "perception":
                assert s is (PERCEPTION_ON_SIM if has_sim else PERCEPTION), name


def test_backend_gets_the_geometric_parameters(rclpy_context):
    node = PerceptionNode(parameter_overrides=[
        Parameter("geometric.flat_items", value="drop"),
        Parameter("geometric.max_object_size", value=0.4),
        Parameter("geometric.min_object_height", value=0.01),
        Parameter("geometric.edge_cuts", value=False),
        Parameter("geometric.sink_tolerance", value=0.02),
        Parameter("geometric.carry_margin", value=0.005),
        Parameter("geometric.top_circle_ratio", value=1.5),
        Parameter("geometric.join_share", value=0.6)])
    try:
        prm = node.backend.params
        assert (prm.selection.carry_margin, prm.shapes.top_circle_ratio,
                prm.selection.join_share) == (0.005, 1.5, 0.6)
        assert (prm.flat_items, prm.selection.max_object_size, prm.min_object_height) == (
            "drop", 0.4, 0.01)
        assert (prm.colour_split.edge_cuts, prm.selection.sink_tolerance) == (False, 0.02)
        res = node.set_parameters([Parameter("geometric.edge_cuts", value=True),
                                   Parameter("geometric.edge_step", value=15.0)])
        assert all(r.successful for r in res)
        assert (prm.colour_split.edge_cuts, prm.colour_split.edge_step) == (True, 15.0)
        assert prm.plane_frame == "support_plane"
        res = node.set_parameters([Parameter("geometric.flat_items", value="list")])
        assert res[0].successful and prm.flat_items == "list"
        res = node.set_parameters([Parameter("geometric.flat_items", value="keep")])
        assert not res[0].successful and prm.flat_items == "list"
    finally:
        node.destroy_node()
    with pytest.raises(ValueError, match="flat_items"):
        PerceptionNode(parameter_overrides=[Parameter("geometric.flat_items", value="keep")])


def test_a_wall_gives_no_support_plane_and_the_next_frame_is_perceived(setup):
    node, cam, ex, frame, truth = setup
    msg, status = answer(ex, cam, cam.send(frame, depth=wall_depth(frame)))
    assert msg.status == ScenePriors.STATUS_NO_SUPPORT_PLANE, (msg.status, msg.status_message)
    assert msg.status_message and len(msg.objects) == 0 and len(msg.flat_items) == 0
    assert msg.header.frame_id == "world"
    assert any(s.startswith("error: no_support_plane") for s in status), status
    first_id = msg.scene_id
    msg, status = answer(ex, cam, cam.send(frame))
    assert msg.status == ScenePriors.STATUS_OK and msg.scene_id != first_id
    assert len(msg.objects) == len(truth.objects)
    assert any(s.startswith(f"ok: {msg.scene_id}, {len(msg.objects)} objects") for s in status)
    assert msg.scene_id in node.scenes and first_id not in node.scenes


def test_all_zero_depth_gives_no_valid_depth(setup):
    node, cam, ex, frame, _ = setup
    msg, status = answer(ex, cam, cam.send(frame, depth=np.zeros_like(frame.depth)))
    assert msg.status == ScenePriors.STATUS_NO_VALID_DEPTH, (msg.status, msg.status_message)
    assert len(msg.objects) == 0 and msg.status_message
    assert any(s.startswith("error: no_valid_depth") for s in status), status


def _set_k(**values):
    """A camera_info edit setting K's entries (fx, fy, cx, cy) and the size."""
    def edit(info):
        k = list(info.k)
        for name, i in (("fx", 0), ("cx", 2), ("fy", 4), ("cy", 5)):
            if name in values:
                k[i] = values[name]
        info.k = k
        info.width = values.get("width", info.width)
    return edit


@pytest.mark.parametrize("bad", ["header_smaller_than_data", "every_header_smaller_than_data",
                                 "encoding", "data_too_short", "depth_encoding",
                                 "nan_focal_length", "inf_principal_point", "zero_size_info"])
def test_unreadable_images_give_bad_image_with_the_reason(setup, bad):
    """Issue 15, item 9: headers declaring 320x240 over 640x480 data (colour, depth and
    camera_info alike) were read as a garbled crop: "ok, 0 objects"."""
    node, cam, ex, frame, _ = setup
    color = conv.image_to_msg(frame.rgb, "rgb8")
    depth, camera, edit = None, None, None
    if bad.endswith("header_smaller_than_data"):  # 640x480 pixels under a 320x240 header
        color.width, color.height, color.step = 320, 240, 320 * 3
        why = "longer than its header says"
        if bad.startswith("every"):
            depth = conv.depth_to_msg(frame.depth, "32FC1")
            depth.width, depth.height, depth.step = 320, 240, 320 * 4
            camera = CameraModel.from_fov(320, 240, 58)
    elif bad == "encoding":
        color.encoding = "yuv422"
        why = "yuv422"
    elif bad == "depth_encoding":  # signed 16-bit depth
        depth = conv.depth_to_msg(frame.depth, "16UC1")
        depth.encoding = why = "16SC1"
    elif bad in ("nan_focal_length", "inf_principal_point", "zero_size_info"):
        edit = {"nan_focal_length": _set_k(fx=math.nan),
                "inf_principal_point": _set_k(cx=math.inf),
                "zero_size_info": _set_k(width=0)}[bad]
        why = "camera_info"
    else:  # a header larger than the data
        color.width, color.height, color.step = 1280, 960, 1280 * 3
        why = "too short"
    errors, ids = node.errors, set(node.scenes)
    stamp = cam.send(frame, color=color, depth_msg=depth, camera=camera, edit_info=edit)
    msg, status = answer(ex, cam, stamp)
    assert msg.status == ScenePriors.STATUS_BAD_IMAGE, (msg.status, len(msg.objects))
    assert why in msg.status_message and len(msg.status_message) <= 500
    assert len(msg.objects) == 0 and msg.scene_id.startswith("scene_")
    assert msg.header.stamp == stamp and node.errors == errors + 1
    assert any(s.startswith("error: bad_image") and why in s for s in status), status
    assert set(node.scenes) == ids  # an unreadable frame is no scene to remember
    msg, _ = answer(ex, cam, cam.send(frame))  # the node still answers
    assert msg.status == ScenePriors.STATUS_OK and len(msg.objects) > 0


@pytest.mark.parametrize("case", ["16UC1_100x_too_small", "32FC1_in_millimetres"])
def test_depth_in_the_wrong_scale_is_refused_with_the_median_it_has(setup, case):
    """Issue 15, item 9: 16UC1 depth 100x too small (the table a centimetre away) gave "ok, 0
    objects"; it is refused as bad_image saying the scale looks wrong, with the median seen."""
    node, cam, ex, frame, _ = setup
    scale = 0.01 if case == "16UC1_100x_too_small" else 1000.0
    encoding = "16UC1" if scale < 1 else "32FC1"
    errors, ids = node.errors, set(node.scenes)
    msg, status = answer(ex, cam, cam.send(frame, depth=frame.depth * scale, encoding=encoding))
    assert msg.status == ScenePriors.STATUS_BAD_IMAGE, (msg.status, len(msg.objects))
    assert "depth scale looks wrong" in msg.status_message, msg.status_message
    seen = float(re.search(r"median valid depth is ([0-9.]+) m", msg.status_message).group(1))
    median = float(np.median(frame.depth[frame.depth > 0])) * scale  # the frame's median, m
    assert seen == pytest.approx(median, rel=0.2, abs=0.001), msg.status_message
    assert len(msg.objects) == 0 and node.errors == errors + 1 and set(node.scenes) == ids
    assert any(s.startswith("error: bad_image: depth scale looks wrong") for s in status), status
    msg, _ = answer(ex, cam, cam.send(frame, encoding="16UC1"))  # millimetres: fine
    assert msg.status == ScenePriors.STATUS_OK and len(msg.objects) > 0, msg.status_message


def test_a_frame_without_any_camera_pose_is_perceived_in_the_support_plane_frame(setup):
    node, cam, ex, frame, truth = setup
    saved, node._camera_pose_msg = node._camera_pose_msg, None
    try:
        msg, status = answer(ex, cam, cam.send(frame))
    finally:
        node._camera_pose_msg = saved
    assert msg.status == ScenePriors.STATUS_OK, msg.status_message
    assert msg.header.frame_id == "support_plane"
    scene = conv.scene_from_msg(msg)
    # x, y follow the camera here, so no workspace bounds: the robot's base may be one more
    assert len(truth.objects) <= len(scene.objects) <= len(truth.objects) + 1
    np.testing.assert_allclose(scene.support_plane[:3], [0, 0, 1], atol=0.02)
    for t in truth.objects:  # each block at its height, with its size
        assert min(abs(o.center[2] - t.center[2]) + abs(o.size[2] - t.size[2])
                   + np.abs(np.sort(o.size[:2]) - np.sort(t.size[:2])).max()
                   for o in scene.objects) < 0.025, t.id
    # the camera stands as high above the table as in the world
    assert scene.camera_pose.position[2] == pytest.approx(frame.camera_pose.position[2], abs=0.02)
    assert any(s.startswith(f"ok: {msg.scene_id}") and "support_plane" in s for s in status)


def test_without_pose_from_plane_a_missing_pose_is_an_error_status(setup):
    node, cam, ex, frame, _ = setup
    saved, node._camera_pose_msg = node._camera_pose_msg, None
    node.p.pose_from_plane = False
    n, errors = len(cam.status), node.errors
    try:
        cam.send(frame)
        assert spin_until(ex, lambda: node.errors > errors and len(cam.status) > n, timeout=10)
    finally:
        node._camera_pose_msg, node.p.pose_from_plane = saved, True
    assert any(s.startswith("error: no camera pose") for s in cam.status[n:]), cam.status[n:]
