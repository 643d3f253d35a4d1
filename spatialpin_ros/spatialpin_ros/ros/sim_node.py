"""Simulation node: a headless PyBullet world with the configured arm (``robot``), tabletop
objects and an RGB-D camera, published as a RealSense would.

Publishes colour (rgb8), aligned depth (32FC1 metres or 16UC1 millimetres) and camera_info at
``camera_rate_hz``; ``/joint_states``; the true object boxes on the ground-truth topic (for
scoring only); the camera's optical-frame pose as a latched PoseStamped (and as a static TF
where tf2_ros exists). Executes JointTrajectory messages (arm and gripper) at their timestamps.
A Trigger service reloads the scene from the ``scene_file`` / ``seed`` parameters; each load
(start-up included) is announced as a latched std_msgs/Header stamped when it was done, so that
a consumer can tell frames of the current scene (stamped later) from older ones.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Optional

from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from sensor_msgs.msg import Image, JointState
from spatialpin_interfaces.msg import ScenePriors
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from spatialpin_ros.core.errors import SceneSpecError, SpatialPinError
from spatialpin_ros.core.types import Pose
from spatialpin_ros.paths import resolve_scene_file
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.node_main import run_node
from spatialpin_ros.ros.params import Param, declare_params, numbers, one_of, positive
from spatialpin_ros.sim.scene_spec import SceneSpec, load_scene_file, random_scene
from spatialpin_ros.sim.world import SimWorld

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: QoS of the graph's services: requests are queued, not dropped, up to this many at once (the
#: ROS default keeps only the last 10, so the 11th of 20 simultaneous calls is never answered).
SERVICE_QOS = QoSProfile(depth=256, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)

PARAMS = {
    "scene_file": Param("", "YAML scene file (absolute, or a name under config/scenes); empty = "
                        "a random tabletop drawn from 'seed'"),
    "seed": Param(0, "Seed of the random tabletop used when scene_file is empty"),
    "robot": Param("panda", "Robot description of the simulated arm: a name under "
                   "config/robots/ (panda, xarm6) or a YAML file", read_only=True),
    "robot_description": Param("", "URDF text of the arm; empty: the file its YAML names",
                               read_only=True),
    "mix": Param("primitives", "What the random tabletop is made of: 'primitives' (coloured "
                 "boxes, cylinders and balls; the default), 'meshes' (textured everyday meshes: "
                 "bowls, cups, mugs, plates, bottles, cans, printed food boxes, pybullet_data "
                 "objects) or 'mixed'", one_of("primitives", "meshes", "mixed")),
    "camera_pose": Param([], "Camera optical-frame pose in the world frame [x, y, z, qx, qy, qz, "
                         "qw]; empty = the scene's eye/target", numbers(7)),
    "camera_rate_hz": Param(3.0, "Rate of colour, depth and camera_info (Hz); one 640x480 render "
                            "takes about 0.1 s (0.2 s with shadows) on one CPU core", positive),
    "joint_state_rate_hz": Param(50.0, "Rate of /joint_states (Hz)", positive),
    "physics_rate_hz": Param(240.0, "Physics steps per simulated second", positive),
    "real_time_factor": Param(1.0, "Simulated seconds per wall-clock second", positive),
    "render_shadows": Param(False, "Render shadows in the camera image (twice the render time)"),
    "depth_encoding": Param("32FC1", "Depth image encoding: 32FC1 (metres) or 16UC1 (mm)",
                            one_of("32FC1", "16UC1")),
    "publish_ground_truth": Param(True, "Publish the true object boxes (for scoring only)"),
    "world_frame": Param("world", "World frame id (z up, origin at the robot base on the table)"),
    "camera_frame": Param("camera_color_optical_frame", "Camera optical frame id"),
    "color_topic": Param("/camera/color/image_raw", "Colour image topic"),
    "depth_topic": Param("/camera/aligned_depth_to_color/image_raw", "Aligned depth topic"),
    "camera_info_topic": Param("/camera/color/camera_info", "Camera info topic"),
    "joint_states_topic": Param("/joint_states", "Joint states topic"),
    "joint_trajectory_topic": Param("/joint_trajectory_controller/joint_trajectory",
                                    "JointTrajectory command topic (arm and gripper)"),
    "ground_truth_topic": Param("/spatialpin/sim/ground_truth",
                                "True scene (ScenePriors), for scoring only"),
    "camera_pose_topic": Param("/spatialpin/sim/camera_pose",
                               "Latched camera optical-frame pose (PoseStamped, world frame)"),
    "reset_service": Param("/spatialpin/sim/reset", "Trigger service that reloads the scene"),
    "reset_notice_topic": Param("/spatialpin/sim/scene_loaded",
                                "Latched std_msgs/Header stamped when the scene was last loaded "
                                "(start-up or reset); frames stamped later show that scene"),
}


def _with_world_lock(fn):
    """Run a SimNode callback holding the node's ``world_lock``."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with self.world_lock:
            return fn(self, *args, **kwargs)
    return wrapper


#: Joint states published at most per physics tick when catching up after a late one.
MAX_BURST = 4


class SimNode(Node):
    """The simulated robot, scene and camera as a ROS node."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim", **kwargs)
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.pub_color = self.create_publisher(Image, p.color_topic, qos_profile_sensor_data)
        self.pub_depth = self.create_publisher(Image, p.depth_topic, qos_profile_sensor_data)
        self.pub_info = self.create_publisher(conv.CameraInfo, p.camera_info_topic,
                                              qos_profile_sensor_data)
        self.pub_joints = self.create_publisher(JointState, p.joint_states_topic, 10)
        self.pub_gt = self.create_publisher(ScenePriors, p.ground_truth_topic, LATCHED)
        self.pub_cam_pose = self.create_publisher(PoseStamped, p.camera_pose_topic, LATCHED)
        self.pub_loaded = self.create_publisher(Header, p.reset_notice_topic, LATCHED)
        # Commands and resets have their own callback groups, so that a busy physics timer
        # (always ready when ticks run late) cannot keep them waiting, and a queue of resets
        # cannot keep a stop command waiting; ``world_lock`` keeps every use of the PyBullet
        # world to one thread at a time. Resets are queued (SERVICE_QOS) and run one at a time,
        # each answered.
        self.world_lock = threading.RLock()
        commands = MutuallyExclusiveCallbackGroup()
        self.create_subscription(JointTrajectoryMsg, p.joint_trajectory_topic,
                                 self._on_trajectory, 10, callback_group=commands)
        self.create_service(Trigger, p.reset_service, self._on_reset, qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self._tf_broadcaster = self._make_tf_broadcaster()

        self.world: Optional[SimWorld] = None
        self._last_command_stamp = 0.0
        self.stops_obeyed = 0
        spec, error = self._scene_from_params()
        if error:
            self.get_logger().error(f"{error}; starting with an empty table")
        from spatialpin_ros.core.robot_description import load_robot
        self.world = SimWorld(spec, time_step=1.0 / p.physics_rate_hz,
                              camera_pose=self._camera_pose_param(),
                              render_shadows=p.render_shadows,
                              robot=load_robot(p.robot, p.robot_description))
        self._publish_camera_pose()
        self._announce_scene_loaded()
        self.frames_published = 0
        self._last_wall = time.monotonic()
        self.create_timer(1.0 / p.joint_state_rate_hz, self._on_physics_timer)
        self.create_timer(1.0 / p.camera_rate_hz, self._on_camera_timer)
        self.get_logger().info(
            f"scene '{spec.name}' with {len(spec.objects)} objects; camera "
            f"{spec.camera.width}x{spec.camera.height} at {p.camera_rate_hz:g} Hz")

    # -- scene -------------------------------------------------------------------------------
    def _scene_from_params(self) -> tuple[SceneSpec, Optional[str]]:
        """The scene named by the parameters, or an empty one and the reason it failed."""
        try:
            if self.p.scene_file:
                return load_scene_file(resolve_scene_file(self.p.scene_file)), None
            return random_scene(int(self.p.seed), mix=str(self.p.mix)), None
        except SceneSpecError as e:
            return SceneSpec(name="empty"), str(e)

    def _camera_pose_param(self) -> Optional[Pose]:
        return Pose.from_xyz_quat(self.p.camera_pose) if self.p.camera_pose else None

    def _make_tf_broadcaster(self):
        try:
            from tf2_ros.static_transform_broadcaster import StaticTransformBroadcaster
        except ImportError:
            return None
        return StaticTransformBroadcaster(self)

    def _publish_camera_pose(self) -> None:
        pose = conv.pose_to_msg(self.world.camera_pose)
        header = Header(frame_id=self.p.world_frame, stamp=self.get_clock().now().to_msg())
        self.pub_cam_pose.publish(PoseStamped(header=header, pose=pose))
        if self._tf_broadcaster is not None:
            from geometry_msgs.msg import TransformStamped
            t = TransformStamped(header=header, child_frame_id=self.p.camera_frame)
            t.transform.translation.x = pose.position.x
            t.transform.translation.y = pose.position.y
            t.transform.translation.z = pose.position.z
            t.transform.rotation = pose.orientation
            self._tf_broadcaster.sendTransform(t)

    def _announce_scene_loaded(self) -> None:
        """Stamped after the load, under the world lock (as every render): a frame stamped later
        was rendered from the new scene."""
        self.pub_loaded.publish(Header(frame_id=self.p.world_frame,
                                       stamp=self.get_clock().now().to_msg()))

    @_with_world_lock
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        spec, error = self._scene_from_params()
        if error:
            response.success, response.message = False, error
            self.get_logger().error(f"reset refused, keeping the current scene: {error}")
            return response
        try:
            self.world.load_scene(spec, camera_pose=self._camera_pose_param())
        except (SpatialPinError, ValueError) as e:
            response.success, response.message = False, str(e)
            self.get_logger().error(f"reset failed: {e}")
            return response
        self._publish_camera_pose()
        self._announce_scene_loaded()
        response.success = True
        response.message = f"loaded scene '{spec.name}' with {len(spec.objects)} objects"
        self.get_logger().info(response.message)
        return response

    # -- arm -----------------------------------------------------------------------------------
    @_with_world_lock
    def _on_trajectory(self, msg: JointTrajectoryMsg) -> None:
        # The newest command wins: a stamped command older than the last one obeyed (messages
        # of very different sizes can arrive out of order) is ignored.
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if stamp and stamp < self._last_command_stamp:
            self.get_logger().warning(
                f"ignored a joint trajectory stamped {self._last_command_stamp - stamp:.3f} s "
                "before the last command")
            return
        if not msg.points:  # as ros2_control's joint_trajectory_controller: stop and hold
            self._last_command_stamp = max(self._last_command_stamp, stamp)
            self.world.cancel_trajectory()
            self.stops_obeyed += 1
            self.get_logger().info("empty trajectory: stopped and holding the current position")
            return
        try:
            traj = conv.trajectory_from_msg(msg)
            self.world.start_trajectory(traj)
        except SpatialPinError as e:
            self.get_logger().error(f"rejected joint trajectory: {e}")
            return
        self._last_command_stamp = max(self._last_command_stamp, stamp)
        self.get_logger().info(
            f"executing trajectory: {len(traj.times)} points over {traj.duration:.2f} s for "
            f"{', '.join(traj.joint_names)}")

    # -- timers --------------------------------------------------------------------------------
    @_with_world_lock
    def _on_physics_timer(self) -> None:
        """Advance the physics to the wall clock and publish joint states. After a late tick
        (a camera render took the thread) the catch-up is done in joint-state periods, each
        published with the time it stands for, so /joint_states stays dense."""
        now = time.monotonic()
        wall = min(now - self._last_wall, 0.5)
        self._last_wall = now
        period = 1.0 / self.p.joint_state_rate_hz
        # At most MAX_BURST states per tick, so that a late tick stays short.
        chunks = max(1, min(MAX_BURST, int(round(wall / period))))
        total = int(round(wall * self.p.real_time_factor / self.world.time_step))
        clock_now = self.get_clock().now()
        done = 0
        for k in range(chunks):
            target = int(round(total * (k + 1) / chunks))
            if target > done:
                self.world.step(target - done)
                done = target
            names, q, v, e = self.world.joint_state()
            msg = JointState(name=names, position=q.tolist(), velocity=v.tolist(),
                             effort=e.tolist())
            behind = wall * (chunks - 1 - k) / chunks
            msg.header.stamp = (clock_now - Duration(nanoseconds=int(behind * 1e9))).to_msg()
            self.pub_joints.publish(msg)

    @_with_world_lock
    def _on_camera_timer(self) -> None:
        want_gt = self.p.publish_ground_truth
        out = self.world.render(with_segmentation=want_gt)
        frame, seg = out if want_gt else (out, None)
        stamp = self.get_clock().now().to_msg()
        header = Header(frame_id=self.p.camera_frame, stamp=stamp)
        self.pub_color.publish(conv.image_to_msg(frame.rgb, "rgb8", header))
        self.pub_depth.publish(conv.depth_to_msg(frame.depth, self.p.depth_encoding, header))
        cam = self.world.camera
        cam.frame_id = self.p.camera_frame
        self.pub_info.publish(conv.camera_info_to_msg(cam, header))
        if want_gt:
            gt = self.world.ground_truth(seg)
            gt.frame_id = self.p.world_frame
            self.pub_gt.publish(conv.scene_to_msg(gt, stamp))
        self.frames_published += 1

    def destroy_node(self) -> None:
        if self.world is not None:
            self.world.close()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(SimNode, args, threads=3)


if __name__ == "__main__":
    raise SystemExit(main())
