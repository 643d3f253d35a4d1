"""The simulation node in-process (node tier): topics, ground truth, reset, trajectories."""

import numpy as np
import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg  # noqa: E402

from spatialpin_ros.core.trajectory import JointTrajectory  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED, SimNode  # noqa: E402
from spatialpin_ros.core.robot_description import load_robot  # noqa: E402

PANDA = load_robot("panda")
ARM_JOINTS, PANDA_HOME = PANDA.arm_joints, PANDA.home


class Probe(Node):
    def __init__(self):
        super().__init__("probe")
        self.msgs = {}
        self.errors = []
        sd = qos_profile_sensor_data
        self.create_subscription(Image, "/camera/color/image_raw", self._keep("color"), sd)
        self.create_subscription(Image, "/camera/aligned_depth_to_color/image_raw",
                                 self._keep("depth"), sd)
        self.create_subscription(CameraInfo, "/camera/color/camera_info", self._keep("info"), sd)
        self.create_subscription(JointState, "/joint_states", self._keep("joints"), 10)
        self.create_subscription(ScenePriors, "/spatialpin/sim/ground_truth", self._keep("gt"),
                                 LATCHED)
        self.traj_pub = self.create_publisher(JointTrajectoryMsg,
                                              "/joint_trajectory_controller/joint_trajectory", 10)
        self.reset = self.create_client(Trigger, "/spatialpin/sim/reset")

    def _keep(self, key):
        return lambda m: self.msgs.__setitem__(key, m)


@pytest.fixture(scope="module")
def graph(rclpy_context):
    sim = SimNode(parameter_overrides=[Parameter("seed", value=5),
                                       Parameter("camera_rate_hz", value=4.0),
                                       Parameter("depth_encoding", value="16UC1")])
    probe = Probe()
    ex = SingleThreadedExecutor()
    ex.add_node(sim)
    ex.add_node(probe)
    yield sim, probe, ex
    ex.shutdown()
    probe.destroy_node()
    sim.destroy_node()


def test_publishes_camera_joint_states_and_ground_truth(graph):
    sim, probe, ex = graph
    assert spin_until(ex, lambda: {"color", "depth", "info", "joints", "gt"} <= set(probe.msgs))
    color, depth, info = probe.msgs["color"], probe.msgs["depth"], probe.msgs["info"]
    assert color.encoding == "rgb8" and depth.encoding == "16UC1"
    assert (color.width, color.height) == (640, 480) == (info.width, info.height)
    assert color.header.frame_id == "camera_color_optical_frame"
    d = conv.depth_from_msg(depth)
    assert 0.2 < np.median(d[d > 0]) < 3.0
    cam = conv.camera_model_from_msg(info)
    assert cam.fx == pytest.approx(sim.world.camera.fx)
    gt = conv.scene_from_msg(probe.msgs["gt"])
    assert [o.id for o in gt.objects] == [o.spec.name for o in sim.world.objects]
    assert gt.frame_id == "world" and all(o.num_points > 0 for o in gt.objects[:1])
    assert set(ARM_JOINTS) <= set(probe.msgs["joints"].name)


def test_trajectory_over_the_topic_reaches_its_last_point(graph):
    sim, probe, ex = graph
    q0 = np.array(PANDA_HOME)
    q1 = q0 + np.array([0.3, -0.2, 0.2, 0.3, -0.3, 0.2, 0.4])
    traj = JointTrajectory(list(ARM_JOINTS), [0.0, 1.0], np.stack([q0, q1]), np.zeros((2, 7)))
    probe.traj_pub.publish(conv.trajectory_to_msg(traj))
    assert spin_until(ex, lambda: sim.world.trajectory_active, timeout=5)

    def arrived():
        js = probe.msgs["joints"]
        q = np.array([js.position[js.name.index(n)] for n in ARM_JOINTS])
        return not sim.world.trajectory_active and np.abs(q - q1).max() < 0.01
    assert spin_until(ex, arrived, timeout=15)


def test_bad_trajectories_are_logged_and_the_node_keeps_running(graph):
    sim, probe, ex = graph
    bad_names = JointTrajectory(["panda_joint1", "wrist"], [0, 1], [[0, 0], [0.1, 0.1]])
    bad_times = JointTrajectory(["panda_joint1"], [0, 1, 1], [[0], [0.1], [0.2]])
    for t in (bad_names, bad_times):
        probe.traj_pub.publish(conv.trajectory_to_msg(t))
    n0 = sim.frames_published
    assert spin_until(ex, lambda: sim.frames_published >= n0 + 2, timeout=10)
    assert not sim.world.trajectory_active


def test_reset_reloads_and_refuses_bad_scene_files(graph, tmp_path):
    sim, probe, ex = graph
    bad = tmp_path / "bad.yaml"
    bad.write_text("objects: [{name: x, shape: box, size: [1, 1], position: [0, 0, 0]}]\n")
    names_before = [o.spec.name for o in sim.world.objects]
    sim.set_parameters([Parameter("scene_file", value=str(bad))])
    fut = probe.reset.call_async(Trigger.Request())
    assert spin_until(ex, fut.done)
    assert not fut.result().success and "size" in fut.result().message
    assert [o.spec.name for o in sim.world.objects] == names_before  # kept the old scene

    sim.set_parameters([Parameter("scene_file", value="two_blocks")])
    fut = probe.reset.call_async(Trigger.Request())
    assert spin_until(ex, fut.done)
    assert fut.result().success, fut.result().message
    assert [o.spec.name for o in sim.world.objects] == ["red_block", "blue_block"]


def test_invalid_parameter_changes_are_refused(graph):
    sim, _, _ = graph
    res = sim.set_parameters([Parameter("depth_encoding", value="8UC1")])[0]
    assert not res.successful and "depth_encoding" in res.reason
    res = sim.set_parameters([Parameter("camera_pose", value=[1.0, 2.0])])[0]
    assert not res.successful
