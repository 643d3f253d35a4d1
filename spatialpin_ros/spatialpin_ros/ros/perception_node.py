"""Perception node: colour + aligned depth + camera_info in, 3D scene priors out.

Inputs are paired by approximate time (message_filters where installed, else the core's
ApproxTimeSync) with sensor-data QoS. A timer at ``max_rate_hz`` processes only the newest pair,
so a 30 Hz camera never queues work. The camera's optical-frame pose in the world frame comes
from the ``camera_pose`` parameter, else from a PoseStamped topic, else from TF (where tf2_ros
exists). Outputs: ScenePriors (reliable, transient-local), a MarkerArray, a PointCloud2 of the
scene, and vision_msgs/Detection3DArray where vision_msgs is installed. The last
``scene_history`` scenes are kept by id. Scene ids are ``<prefix>_<token>_<n>``: the token is
drawn at start-up (``scene_id_token``), so ids never repeat across restarts of the node.

Robot self-filter: with a robot model (``self_filter.urdf``) the robot's own links, posed from
``/joint_states`` (the state nearest the frame's stamp), are rendered from the camera and their
pixels (grown by a margin) get depth 0 before segmenting, so the arm in view is never an object.
Frames without a camera pose in the world frame (the robot's) cannot be filtered (logged once).

Every processed frame gives one ScenePriors. A frame the backend cannot perceive (no valid depth,
no table in view) gives the backend's empty scene with its ``status`` and ``status_message``;
input the node cannot read at all (an unsupported encoding, data that does not match its header,
colour, depth and camera_info of different sizes) gives an empty ScenePriors with status
``bad_image`` and the reason. Either way the status topic says what happened and the node keeps
running. Without any camera pose (and ``pose_from_plane``) the backend perceives in the support
plane's gravity frame ``plane_frame``.

Default topics are those of realsense-ros 4.x (namespace and name ``camera``:
``/camera/camera/color/image_raw``, ...); the simulator graphs remap them to the simulator's.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import traceback
from collections import OrderedDict, deque
from typing import Optional

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from spatialpin_interfaces.msg import ScenePriors
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from spatialpin_ros.core.errors import ImageError, PerceptionError, SpatialPinError
from spatialpin_ros.core.history import put_newest
from spatialpin_ros.core.sync import ApproxTimeSync
from spatialpin_ros.core.types import CameraModel, PerceptionStatus, Pose, RGBDFrame, Scene
from spatialpin_ros.perception import make_backend
from spatialpin_ros.perception.depth_scale import check_depth_scale
from spatialpin_ros.perception.self_filter import RobotSelfFilter
from spatialpin_ros.reasoning.registration import plane_frame_pose
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.node_main import run_node
from spatialpin_ros.ros import viz
from spatialpin_ros.ros.params import declare_params
from spatialpin_ros.ros.perception_params import PARAMS  # noqa: F401 (the node's parameters)
from spatialpin_ros.ros.sim_node import LATCHED


#: Joint states kept to find the one nearest a frame's stamp (50 Hz: 2 s).
JOINT_STATE_HISTORY = 100

#: Longest reason (characters) in a status line or a ScenePriors' status_message.
MAX_REASON = 500


class PerceptionNode(Node):
    """Turns RGB-D frames into ScenePriors with a pluggable backend."""

    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.backend = make_backend(p.backend, **self._backend_params())
        self._plane_backend = None  # made on first use: no robot-frame workspace bounds
        self.scenes: "OrderedDict[str, Scene]" = OrderedDict()
        self.frames_in = 0
        self.frames_done = 0
        self.errors = 0
        self.last_error = ""
        self.timing = {"core_ms": [], "node_ms": []}
        self._pending: Optional[dict] = None
        self._camera_pose_msg: Optional[Pose] = None
        self._counter = 0
        self.scene_token = p.scene_id_token or secrets.token_hex(3)
        self.self_filter: Optional[RobotSelfFilter] = None
        self.self_filtered = 0  # frames whose robot pixels were cleared
        self._joint_states: "deque[tuple[float, dict]]" = deque(maxlen=JOINT_STATE_HISTORY)
        self._warned: set = set()
        self._make_self_filter()

        self.pub_scene = self.create_publisher(ScenePriors, p.scene_priors_topic, LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, p.markers_topic, LATCHED)
        self.pub_cloud = self.create_publisher(PointCloud2, p.cloud_topic, 2)
        self.pub_status = self.create_publisher(String, p.status_topic, 10)
        self.pub_det = self._make_detections_publisher()
        self._tf_buffer = self._make_tf() if p.use_tf else None
        if p.camera_pose_topic:
            self.create_subscription(PoseStamped, p.camera_pose_topic, self._on_camera_pose,
                                     LATCHED)
        self._subscribe_inputs()
        if p.backend == "models" and p.models_names_source != "parameter":
            self.create_subscription(String, p.models_object_names_topic, self._on_object_names,
                                     LATCHED)
        self.add_post_set_parameters_callback(self._on_params_set)
        self.create_timer(1.0 / p.max_rate_hz, self._on_timer)
        self.get_logger().info(
            f"perception backend '{p.backend}', at most {p.max_rate_hz:g} Hz, scene ids "
            f"{p.scene_id_prefix}_{self.scene_token}_<n>, robot self-filter "
            + ("on" if self.self_filter is not None else "off"))

    # -- robot self-filter ---------------------------------------------------------------------
    def _make_self_filter(self) -> None:
        """Load the robot model and subscribe to joint states, when a URDF is configured."""
        p = self.p
        urdf = p.self_filter_urdf
        base = Pose.from_xyz_quat(p.self_filter_base_pose) if p.self_filter_base_pose else None
        if not urdf and p.self_filter_robot:
            from spatialpin_ros.core.robot_description import load_robot
            d = load_robot(p.self_filter_robot)
            urdf = d.urdf_path
            if base is None and any(d.base_position):
                base = Pose(d.base_position, [0.0, 0.0, 0.0, 1.0])
        if not urdf:
            return
        # A model that cannot be loaded stops the node (exit 2 with the reason): the arm would
        # otherwise be perceived as objects.
        self.self_filter = RobotSelfFilter(urdf, float(p.self_filter_margin_m),
                                           int(p.self_filter_margin_px), base)
        self.create_subscription(JointState, p.self_filter_joint_states_topic,
                                 self._on_joint_state, 10)

    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            self.get_logger().warning("ignored a joint state with names and positions of "
                                      "different lengths", throttle_duration_sec=5.0)
            return
        self._joint_states.append((conv.stamp_to_sec(msg.header.stamp),
                                   dict(zip(msg.name, msg.position))))

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _filter_robot(self, frame: RGBDFrame) -> RGBDFrame:
        """``frame`` with the robot's pixels at depth 0 (unchanged when the filter is off or
        cannot run: no camera pose in the world frame, no joint states yet)."""
        sf, p = self.self_filter, self.p
        if sf is None or not p.self_filter_enabled:
            return frame
        if frame.camera_pose is None or frame.world_frame != p.world_frame:
            self._warn_once("pose", "robot self-filter: frames without a camera pose in "
                            f"'{p.world_frame}' (the robot's frame) are not filtered")
            return frame
        if not self._joint_states:
            self._warn_once("joints", "robot self-filter: no joint states yet on "
                            f"'{p.self_filter_joint_states_topic}'; frames are not filtered "
                            "until they come")
            return frame
        states = list(self._joint_states)  # the one nearest the frame's stamp, else the latest
        k = (min(range(len(states)), key=lambda k: abs(states[k][0] - frame.stamp))
             if frame.stamp and states[-1][0] else -1)
        if sf.set_joint_positions(states[k][1]) == 0:
            self._warn_once("names", "robot self-filter: the joint states name none of the "
                            f"model's joints ({', '.join(sf.joint_names[:3])}, ...)")
            return frame
        sf.margin_m, sf.margin_px = float(p.self_filter_margin_m), int(p.self_filter_margin_px)
        out, n = sf.apply(frame)
        self.self_filtered += n > 0
        return out

    # -- inputs --------------------------------------------------------------------------------
    def _subscribe_inputs(self) -> None:
        p, sd = self.p, qos_profile_sensor_data
        if p.rgb_only:
            self._latest_info = None
            self.create_subscription(
                CameraInfo, p.camera_info_topic,
                lambda m: setattr(self, "_latest_info", m), sd)
            self.create_subscription(
                Image, p.color_topic,
                lambda m: self._on_synced({"color": m, "depth": None,
                                           "info": self._latest_info}), sd)
            return
        try:
            import message_filters
        except ImportError:
            message_filters = None
        if message_filters is not None:
            subs = [message_filters.Subscriber(self, Image, p.color_topic, qos_profile=sd),
                    message_filters.Subscriber(self, Image, p.depth_topic, qos_profile=sd),
                    message_filters.Subscriber(self, CameraInfo, p.camera_info_topic,
                                               qos_profile=sd)]
            self._sync = message_filters.ApproximateTimeSynchronizer(
                subs, p.sync_queue_size, p.sync_slop_s)
            self._sync.registerCallback(
                lambda c, d, i: self._on_synced({"color": c, "depth": d, "info": i}))
            return
        self._sync = ApproxTimeSync(["color", "depth", "info"], p.sync_slop_s,
                                    int(p.sync_queue_size), self._on_synced)
        for key, typ, topic in (("color", Image, p.color_topic), ("depth", Image, p.depth_topic),
                                ("info", CameraInfo, p.camera_info_topic)):
            self.create_subscription(
                typ, topic,
                lambda m, k=key: self._sync.add(k, conv.stamp_to_sec(m.header.stamp), m), sd)

    def _on_synced(self, msgs: dict) -> None:
        self.frames_in += 1
        self._pending = msgs  # newest wins; the timer processes at most max_rate_hz

    def _on_object_names(self, msg: String) -> None:
        keep = list(self.p.models_object_names) if self.p.models_names_source == "both" else []
        names = None
        for b in (self.backend, self._plane_backend):
            if b is not None and hasattr(b, "set_object_names_from_text"):
                try:
                    names = b.set_object_names_from_text(msg.data, keep)
                except (SpatialPinError, ValueError, TypeError) as e:
                    self.get_logger().error(f"ignored an object list: {e}")
                    return
        if names is not None:
            self.get_logger().info(f"looking for: {', '.join(names)}")

    def _on_camera_pose(self, msg: PoseStamped) -> None:
        try:
            self._camera_pose_msg = conv.pose_from_msg(msg.pose)
        except ValueError as e:  # a zero or non-finite quaternion
            self.get_logger().error(f"ignored a camera pose: {e}", throttle_duration_sec=5.0)

    def _make_tf(self):
        try:
            from tf2_ros.buffer import Buffer
            from tf2_ros.transform_listener import TransformListener
        except ImportError:
            return None
        buf = Buffer()
        self._tf_listener = TransformListener(buf, self)
        return buf

    def _make_detections_publisher(self):
        try:
            from vision_msgs.msg import Detection3DArray
        except ImportError:
            return None
        return self.create_publisher(Detection3DArray, self.p.detections_topic, 2)

    def camera_pose(self, frame_id: str) -> Pose:
        """The camera's optical frame in the world frame, from the first source that has it."""
        if self.p.camera_pose:
            return Pose.from_xyz_quat(self.p.camera_pose)
        if self._camera_pose_msg is not None:
            return self._camera_pose_msg
        if self._tf_buffer is not None:
            try:
                t = self._tf_buffer.lookup_transform(self.p.world_frame, frame_id,
                                                     rclpy.time.Time())
                tr, q = t.transform.translation, t.transform.rotation
                return Pose([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w])
            except Exception as e:  # tf2 raises several exception types
                raise SpatialPinError(f"no TF from {self.p.world_frame} to {frame_id}: {e}")
        raise SpatialPinError("no camera pose: set the camera_pose parameter, publish on "
                              f"'{self.p.camera_pose_topic or '(unset camera_pose_topic)'}', "
                              "provide TF, or enable pose_from_plane")

    # -- processing ----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        msgs, self._pending = self._pending, None
        if msgs is None:
            return
        try:
            self.process(msgs)
        except Exception as e:  # noqa: BLE001 - no message's content may end the node
            self._report_error(f"unexpected {type(e).__name__}: {e}")
            self.get_logger().error(f"frame skipped, unexpected error:\n{traceback.format_exc()}",
                                    throttle_duration_sec=5.0)

    def process(self, msgs: dict) -> Optional[Scene]:
        """Perceive one paired frame and publish its ScenePriors and status line. Returns the
        backend's scene (empty with a status when it could not perceive the frame), or None for
        input that could not be read (an empty ``bad_image`` ScenePriors went out) and for a
        frame with no camera pose while ``pose_from_plane`` is off (a status line only)."""
        t0 = time.perf_counter()
        color = msgs["color"]
        try:
            frame = self.frame_from_msgs(color, msgs["depth"], msgs["info"])
        except (ImageError, ValueError, TypeError, LookupError) as e:  # unreadable input
            return self._publish_bad_image(msgs, str(e))
        except SpatialPinError as e:  # no camera pose
            self._report_error(str(e))
            return None
        t1 = time.perf_counter()
        try:
            frame = self._filter_robot(frame)
            scene = self._perceive(frame)
        except ImageError as e:  # e.g. depth in millimetres as 32FC1
            return self._publish_bad_image(msgs, str(e))
        except (SpatialPinError, ValueError, TypeError, LookupError) as e:
            self._report_error(str(e))
            return None
        t2 = time.perf_counter()
        scene.scene_id = self._next_scene_id()
        if frame.camera_pose is not None:
            scene.frame_id = frame.world_frame
        elif not scene.frame_id:
            scene.frame_id = self.p.plane_frame
        self.publish(scene, color.header.stamp, frame)
        if scene.status is not PerceptionStatus.OK:
            self._report_error(f"{scene.status.value}: {scene.status_message}")
            return scene
        self.remember(scene)
        self.frames_done += 1
        flat = f", {len(scene.flat_items)} flat items" if scene.flat_items else ""
        self.pub_status.publish(String(data=(
            f"ok: {scene.scene_id}, {len(scene.objects)} objects{flat} in frame "
            f"{scene.frame_id}, {1000 * (t2 - t1):.0f} ms")))
        self.timing["core_ms"].append(1000 * (t2 - t1))
        self.timing["node_ms"].append(1000 * (time.perf_counter() - t0))
        del self.timing["core_ms"][:-200], self.timing["node_ms"][:-200]
        return scene

    def _next_scene_id(self) -> str:
        """``<prefix>_<token>_<n>``: the start-up token keeps ids unique across restarts."""
        self._counter += 1
        return f"{self.p.scene_id_prefix}_{self.scene_token}_{self._counter}"

    def _report_error(self, reason: str) -> None:
        """Count a frame without a usable scene and say why on the status topic."""
        self.errors += 1
        self.last_error = reason[:MAX_REASON]
        self.pub_status.publish(String(data=f"error: {self.last_error}"))
        self.get_logger().error(f"frame not perceived: {self.last_error}",
                                throttle_duration_sec=5.0)

    def _publish_bad_image(self, msgs: dict, reason: str) -> None:
        """An empty ScenePriors with status bad_image and the reason, in the frame's stamp."""
        color, info = msgs["color"], msgs["info"]
        msg = ScenePriors(header=Header(frame_id=self.p.world_frame, stamp=color.header.stamp),
                          scene_id=self._next_scene_id(),
                          status=ScenePriors.STATUS_BAD_IMAGE, status_message=reason[:MAX_REASON])
        if isinstance(info, CameraInfo):
            msg.camera_info = info
        msg.camera_pose.orientation.w = 1.0
        self.pub_scene.publish(msg)
        self._report_error(f"{ScenePriors.STATUS_BAD_IMAGE}: {reason}")

    def _perceive(self, frame: RGBDFrame) -> Scene:
        """The backend's scene of ``frame``. A frame without a camera pose goes to the backend
        as it is (it perceives in the support plane's gravity frame); a backend that needs a
        pose gets the table's gravity frame computed here."""
        backend = self._backend_for(frame)
        if frame.camera_pose is not None:
            return backend.perceive(frame)
        try:
            return backend.perceive(frame)
        except PerceptionError as e:
            if "pose" not in str(e).lower() or not np.any(frame.depth > 0):
                raise
        posed = dataclasses.replace(frame, camera_pose=plane_frame_pose(frame.depth, frame.camera))
        return backend.perceive(posed)

    def _backend_params(self) -> dict:
        """Constructor arguments of the chosen backend, from the node's parameters."""
        p = self.p
        if p.backend == "geometric":
            return {"flat_items": p.geometric_flat_items,
                    "max_object_size": float(p.geometric_max_object_size),
                    "min_object_height": float(p.geometric_min_object_height),
                    "edge_cuts": bool(p.geometric_edge_cuts),
                    "edge_step": float(p.geometric_edge_step),
                    "sink_tolerance": float(p.geometric_sink_tolerance),
                    "carry_margin": float(p.geometric_carry_margin),
                    "top_circle_ratio": float(p.geometric_top_circle_ratio),
                    "corner_share": float(p.geometric_corner_share),
                    "join_share": float(p.geometric_join_share),
                    "keep_freed_memory": bool(p.geometric_keep_freed_memory),
                    "plane_frame": p.plane_frame}
        if p.backend != "models":
            return {}
        return {"depth_model": p.models_depth_model, "detector_model": p.models_detector_model,
                "segmenter_model": p.models_segmenter_model,
                "object_names": list(p.models_object_names), "device": p.models_device,
                "box_threshold": float(p.models_box_threshold),
                "cuda_graphs": bool(p.models_cuda_graphs),
                "overlap_lifting": bool(p.models_overlap_lifting), "fov_deg": float(p.models_fov_deg),
                "lifting": str(p.models_lifting),
                "lifting_compile": bool(p.models_lifting_compile),
                "plane_distance": float(p.models_plane_distance) or None}

    def _on_params_set(self, params) -> None:
        """Runtime changes of the geometric.* parameters reach the backends."""
        for prm in params:
            if not prm.name.startswith("geometric.") or self.p.backend != "geometric":
                continue
            key = prm.name.split(".", 1)[1]
            value = prm.value if isinstance(prm.value, (str, bool)) else float(prm.value)
            for b in (self.backend, self._plane_backend):
                if b is not None and hasattr(getattr(b, "params", None), "set"):
                    b.params.set(key, value)

    def _backend_for(self, frame: RGBDFrame):
        """The backend, or for frames in the support-plane frame one without the workspace
        bounds (given in the robot's world frame) and with its own object ids."""
        if frame.world_frame != self.p.plane_frame:
            return self.backend
        if self._plane_backend is None:
            try:
                self._plane_backend = make_backend(self.p.backend, workspace_x=None,
                                                   workspace_y=None, **self._backend_params())
            except (TypeError, ValueError):
                self._plane_backend = make_backend(self.p.backend, **self._backend_params())
        return self._plane_backend

    def frame_from_msgs(self, color: Image, depth: Image, info: CameraInfo) -> RGBDFrame:
        """An RGBDFrame from messages, ``camera_pose`` None (frame ``plane_frame``) when no
        source has a pose and ``pose_from_plane`` is on. ImageError with the reason for input
        that cannot be read; SpatialPinError when no camera pose is available."""
        rgb = conv.rgb_from_msg(color)
        if info is not None:
            cam = conv.camera_model_from_msg(info)
        else:  # RGB-only camera with no camera_info: intrinsics from the field of view
            cam = CameraModel.from_fov(rgb.shape[1], rgb.shape[0], float(self.p.models_fov_deg),
                                       frame_id=color.header.frame_id or "camera")
        if depth is None:  # RGB-only: the backend estimates depth
            d = np.zeros(rgb.shape[:2], np.float32)
        else:
            d = conv.depth_from_msg(depth)
        if rgb.shape[:2] != (cam.height, cam.width) or d.shape != (cam.height, cam.width):
            raise conv.ImageError(
                f"colour {rgb.shape[1]}x{rgb.shape[0]}, depth {d.shape[1]}x{d.shape[0]} and "
                f"camera_info {cam.width}x{cam.height} differ: is depth aligned to colour?")
        scale = check_depth_scale(d, float(self.p.depth_min_median_m))
        if not scale.ok:  # metres expected: 16UC1 depth 100x too small comes out "0 objects"
            raise conv.ImageError(scale.reason)
        try:
            pose, world = self.camera_pose(color.header.frame_id or cam.frame_id), \
                self.p.world_frame
        except SpatialPinError:
            if not self.p.pose_from_plane or depth is None:
                raise
            pose, world = None, self.p.plane_frame
        return RGBDFrame(rgb=rgb, depth=d, camera=cam, camera_pose=pose,
                         stamp=conv.stamp_to_sec(color.header.stamp), world_frame=world)

    def remember(self, scene: Scene) -> None:
        put_newest(self.scenes, scene.scene_id, scene, self.p.scene_history)

    def publish(self, scene: Scene, stamp, frame: RGBDFrame) -> None:
        self.pub_scene.publish(conv.scene_to_msg(scene, stamp))
        if self.p.publish_markers:
            self.pub_markers.publish(viz.scene_markers(scene, stamp))
        posed = frame.camera_pose is not None or scene.status is PerceptionStatus.OK
        if self.p.publish_cloud and posed and self.pub_cloud.get_subscription_count() > 0:
            s = int(self.p.cloud_stride)
            pts = scene.camera_pose.transform_points(
                frame.camera.subsampled(s).backproject(frame.depth[::s, ::s]))
            rgb = frame.rgb[::s, ::s]
            ok = np.isfinite(pts[..., 2])
            self.pub_cloud.publish(viz.point_cloud(pts[ok], rgb[ok],
                                                   Header(frame_id=scene.frame_id, stamp=stamp)))
        if self.pub_det is not None:
            det = viz.detections_3d(scene, stamp)
            if det is not None:
                self.pub_det.publish(det)


def main(args=None) -> int:
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
