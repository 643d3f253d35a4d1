"""Conversions between ROS messages and the core types (numpy arrays and dataclasses).

Images: colour as rgb8 / bgr8 / rgba8 / bgra8 / mono8; depth as 32FC1 (metres) or 16UC1
(millimetres). Anything else raises ImageError, with the encoding named.

Every message is input from the network: poses and scenes are validated here (finite numbers, a
non-zero quaternion, ids of bounded length) and a bad one raises ``MessageError`` with the reason,
which the receiving node logs before it carries on. Text from a message that is echoed back or
logged goes through ``bounded`` (the one place that cuts it to a few hundred characters).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose as PoseMsg, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from spatialpin_interfaces.msg import ObjectPrior as ObjectPriorMsg
from spatialpin_interfaces.msg import ScenePriors
from spatialpin_interfaces.msg import TaskProposal as TaskProposalMsg
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from spatialpin_ros.core.errors import ImageError, SpatialPinError
from spatialpin_ros.core.top_face import TopFace
from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.core.types import CameraModel, ObjectPrior, PerceptionStatus, Pose, Scene
# The image decoders are pure numpy and duck-typed (also used on messages read from MCAP files
# without ROS); their one home is the core's frame_sources.
from spatialpin_ros.perception.frame_sources import (COLOR_ENCODINGS,  # noqa: F401 (re-export)
                                                     DEPTH_ENCODINGS)
from spatialpin_ros.perception.frame_sources import depth_from_image as depth_from_msg  # noqa: F401
from spatialpin_ros.perception.frame_sources import rgb_from_image as rgb_from_msg  # noqa: F401


#: Most characters of any one input (an id, a question, a message) echoed back or logged.
MAX_ECHO_CHARS = 200
#: Longest scene or object id accepted in a ScenePriors message.
MAX_ID_CHARS = 256


class MessageError(SpatialPinError, ValueError):
    """A message's content is malformed (a zero or non-finite quaternion, NaN, an over-long id);
    the message names the field."""


def bounded(text, limit: int = MAX_ECHO_CHARS, one_line: bool = True) -> str:
    """``text`` (any value, as ``str``) cut to ``limit`` characters with an ellipsis and its full
    length, for echoing an input back to its sender or into a log line:
    ``bounded("x" * 100000)`` -> ``"xxx…(100000 chars)"``. With ``one_line`` newlines are shown
    as ``\\n``, so one input is one log line."""
    text = str(text)
    if len(text) > limit:
        text = f"{text[:limit]}…({len(text)} chars)"
    return text.replace("\r", "\\r").replace("\n", "\\n") if one_line else text


# -- time ------------------------------------------------------------------------------------
def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def duration_to_sec(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9


def sec_to_duration(t: float) -> Duration:
    sec = int(math.floor(t))
    return Duration(sec=sec, nanosec=min(999_999_999, int(round((t - sec) * 1e9))))


# -- geometry --------------------------------------------------------------------------------
def pose_to_msg(pose: Pose) -> PoseMsg:
    p, q = pose.position, pose.quaternion
    return PoseMsg(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                   orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                          w=float(q[3])))


def pose_from_msg(msg: PoseMsg, what: str = "pose") -> Pose:
    """A core Pose from a geometry_msgs Pose; MessageError (a ValueError) naming ``what`` for a
    non-finite position or a zero or non-finite quaternion (e.g. an unset orientation)."""
    o, p = msg.orientation, msg.position
    xyz, q = [p.x, p.y, p.z], [o.x, o.y, o.z, o.w]
    if not all(math.isfinite(v) for v in xyz):
        raise MessageError(f"{what} has a non-finite position {xyz}")
    if not all(math.isfinite(v) for v in q) or math.sqrt(sum(v * v for v in q)) < 1e-6:
        raise MessageError(f"{what} has a zero or non-finite quaternion (x, y, z, w) = {q}")
    return Pose(xyz, q)


# -- camera ----------------------------------------------------------------------------------
def camera_info_to_msg(cam: CameraModel, header: Header) -> CameraInfo:
    msg = CameraInfo(header=header, width=cam.width, height=cam.height,
                     distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def camera_model_from_msg(msg: CameraInfo) -> CameraModel:
    """Intrinsics from a CameraInfo (K; distortion is assumed already removed)."""
    k = list(msg.k)
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if (msg.width == 0 or msg.height == 0 or not all(map(math.isfinite, (fx, fy, cx, cy)))
            or fx <= 0 or fy <= 0):
        raise ImageError(f"camera_info is empty or invalid (size {msg.width}x{msg.height}, "
                         f"fx={fx}, fy={fy}, cx={cx}, cy={cy})")
    return CameraModel(width=msg.width, height=msg.height, fx=k[0], fy=k[4], cx=k[2], cy=k[5],
                       frame_id=msg.header.frame_id or "camera_color_optical_frame")


# -- images ----------------------------------------------------------------------------------
def image_to_msg(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """An Image message from an (H, W[, C]) array in the given encoding."""
    arr = np.ascontiguousarray(arr)
    msg = Image(header=header or Header(), height=arr.shape[0], width=arr.shape[1],
                encoding=encoding, is_bigendian=0)
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


def depth_to_msg(depth: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """A depth Image in 32FC1 (metres) or 16UC1 (millimetres) from float metres."""
    if encoding == "32FC1":
        return image_to_msg(depth.astype(np.float32), encoding, header)
    if encoding == "16UC1":
        mm = np.clip(np.nan_to_num(depth, nan=0.0) * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
        return image_to_msg(mm, encoding, header)
    raise ImageError(f"unsupported depth encoding {encoding!r}; expected one of {DEPTH_ENCODINGS}")


# -- scene priors ----------------------------------------------------------------------------
def object_prior_to_msg(o: ObjectPrior) -> ObjectPriorMsg:
    x, y, w, h = (int(v) for v in o.roi)
    return ObjectPriorMsg(
        id=o.id, label=o.label, confidence=float(o.confidence), color_name=o.color_name,
        shape=o.shape, pose=pose_to_msg(o.pose),
        size=Vector3(x=float(o.size[0]), y=float(o.size[1]), z=float(o.size[2])),
        roi=RegionOfInterest(x_offset=max(x, 0), y_offset=max(y, 0), width=max(w, 0),
                             height=max(h, 0)),
        num_points=int(o.num_points), axis_names=list(o.axis_names),
        yaw_symmetric=bool(o.yaw_symmetric), container=bool(o.container),
        inner_depth=float(o.inner_depth), hidden=float(o.hidden),
        **_top_face_fields(o.top_face))


def _top_face_fields(t: Optional[TopFace]) -> dict:
    if t is None:
        return {}
    return dict(top_points=int(t.points), top_height=float(t.height),
                top_solid=float(t.solid), top_cells=int(t.cells),
                top_outline=[float(v) for v in np.asarray(t.polygon, dtype=float).ravel()])


def _top_face_of(m: ObjectPriorMsg, what: str) -> Optional[TopFace]:
    """The message's top face; None when not perceived. MessageError for a malformed one."""
    if int(getattr(m, "top_points", 0)) <= 0:
        return None
    xy = np.asarray(m.top_outline, dtype=float)
    vals = [m.top_height, m.top_solid, *xy]
    if len(xy) % 2 or not all(math.isfinite(v) for v in vals) or not 0 <= m.top_solid <= 1:
        raise MessageError(f"{what} has a malformed top face (outline of {len(xy)} numbers, "
                           f"solid share {m.top_solid})")
    return TopFace(height=float(m.top_height), polygon=xy.reshape(-1, 2),
                   solid=float(m.top_solid), cells=int(m.top_cells), points=int(m.top_points))


def _check_id(kind: str, value: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise MessageError(f"{kind} {bounded(value, 40)!r} is {len(value)} characters long; at "
                           f"most {MAX_ID_CHARS} are accepted")


def object_prior_from_msg(m: ObjectPriorMsg) -> ObjectPrior:
    _check_id("object id", m.id)
    what = f"object {bounded(m.id, 40)!r}"
    size = [m.size.x, m.size.y, m.size.z]
    if not all(math.isfinite(v) and v >= 0 for v in size):
        raise MessageError(f"{what} has a negative or non-finite size {size}")
    return ObjectPrior(
        id=m.id, label=m.label, pose=pose_from_msg(m.pose, f"the pose of {what}"),
        size=np.array(size), shape=m.shape or "other",
        color_name=m.color_name, confidence=m.confidence,
        roi=(m.roi.x_offset, m.roi.y_offset, m.roi.width, m.roi.height),
        num_points=m.num_points, axis_names=list(m.axis_names), yaw_symmetric=m.yaw_symmetric,
        container=bool(m.container), inner_depth=float(m.inner_depth),
        top_face=_top_face_of(m, what), hidden=_hidden_of(m, what))


def _hidden_of(m: ObjectPriorMsg, what: str) -> float:
    """The message's hidden share: -1 (not measured) or 0..1; MessageError otherwise."""
    h = float(getattr(m, "hidden", -1.0))
    if not (h == -1.0 or 0.0 <= h <= 1.0):
        raise MessageError(f"{what} has a hidden share {h}; it must be -1 or within 0..1")
    return h


def scene_to_msg(scene: Scene, stamp: Optional[Time] = None) -> ScenePriors:
    header = Header(frame_id=scene.frame_id, stamp=stamp or sec_to_stamp(scene.stamp))
    cam_header = Header(frame_id=scene.camera.frame_id, stamp=header.stamp)
    return ScenePriors(header=header, scene_id=scene.scene_id,
                       objects=[object_prior_to_msg(o) for o in scene.objects],
                       camera_pose=pose_to_msg(scene.camera_pose),
                       camera_info=camera_info_to_msg(scene.camera, cam_header),
                       support_plane=[float(v) for v in scene.support_plane],
                       flat_items=[object_prior_to_msg(o) for o in scene.flat_items],
                       status=scene.status.value, status_message=scene.status_message[:500])


def scene_from_msg(msg: ScenePriors) -> Scene:
    """A core Scene; MessageError or ImageError (both SpatialPinError) with the reason for a
    malformed message: an over-long id, a zero or non-finite quaternion, NaN, a bad camera."""
    _check_id("scene id", msg.scene_id)
    plane = np.array(msg.support_plane, dtype=float)
    if not np.all(np.isfinite(plane)):
        raise MessageError(f"scene {bounded(msg.scene_id, 40)!r} has a non-finite support plane "
                           f"{plane.tolist()}")
    return Scene(scene_id=msg.scene_id,
                 objects=[object_prior_from_msg(o) for o in msg.objects],
                 camera=camera_model_from_msg(msg.camera_info),
                 camera_pose=pose_from_msg(msg.camera_pose, "the camera pose"),
                 support_plane=plane,
                 stamp=stamp_to_sec(msg.header.stamp), frame_id=msg.header.frame_id or "world",
                 flat_items=[object_prior_from_msg(o) for o in msg.flat_items],
                 status=_status_from_msg(msg.status), status_message=msg.status_message)


def _status_from_msg(text: str) -> PerceptionStatus:
    """The status of a ScenePriors message; "" (an older publisher) reads as ok."""
    try:
        return PerceptionStatus(text or "ok")
    except ValueError:
        raise ImageError(f"unknown ScenePriors status {text[:40]!r}; expected one of "
                         f"{[s.value for s in PerceptionStatus]}") from None


# -- trajectories ----------------------------------------------------------------------------

def scene_from_msg_or_log(msg: ScenePriors, logger) -> Optional[Scene]:
    """``scene_from_msg``, or None with the reason logged as an error for a malformed message
    (a node receiving scenes keeps running)."""
    try:
        return scene_from_msg(msg)
    except (SpatialPinError, ValueError, TypeError) as e:
        logger.error(f"ignored a malformed ScenePriors {bounded(msg.scene_id, 40)!r}: "
                     f"{bounded(e, 400)}")
        return None


def scene_status_text(scene: Scene) -> str:
    """How perception went for ``scene``: ``"ok"``, or ``"<status>: <reason>"`` for an empty
    scene perception could not use (no valid depth, no support plane, a bad image)."""
    if scene.status is PerceptionStatus.OK:
        return "ok"
    return f"{scene.status.value}: {scene.status_message or 'no reason given'}"

def trajectory_from_msg(msg: JointTrajectoryMsg) -> JointTrajectory:
    """Core trajectory from a JointTrajectory message (not yet validated: call ``validate``).

    Velocities are used only when every point carries them."""
    n = len(msg.joint_names)
    times = [duration_to_sec(p.time_from_start) for p in msg.points]
    pos = np.full((len(msg.points), n), np.nan)
    for i, p in enumerate(msg.points):
        if len(p.positions) == n:
            pos[i] = p.positions
    vel = None
    if msg.points and all(len(p.velocities) == n for p in msg.points):
        vel = np.array([list(p.velocities) for p in msg.points], dtype=float)
    return JointTrajectory(list(msg.joint_names), np.array(times), pos, vel)


def trajectory_to_msg(traj: JointTrajectory, header: Optional[Header] = None) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg(header=header or Header(), joint_names=list(traj.joint_names))
    for i, t in enumerate(traj.times):
        pt = JointTrajectoryPoint(positions=[float(v) for v in traj.positions[i]],
                                  time_from_start=sec_to_duration(float(t)))
        if traj.velocities is not None:
            pt.velocities = [float(v) for v in traj.velocities[i]]
        if traj.accelerations is not None:
            pt.accelerations = [float(v) for v in traj.accelerations[i]]
        msg.points.append(pt)
    return msg


def task_to_msg(t) -> "TaskProposalMsg":
    """A ``reasoning.tasks.TaskProposal`` as a TaskProposal message (with its kind)."""
    return TaskProposalMsg(description=t.description, action=t.action, kind=t.kind,
                           object_id=t.object_id, target_id=t.target_id,
                           place_pose=pose_to_msg(t.place_pose) if t.place_pose is not None
                           else PoseMsg(), scene_id=t.scene_id)


def task_from_msg(m: "TaskProposalMsg"):
    """A TaskProposal message as a ``reasoning.tasks.TaskProposal``; raises ValueError for an
    unknown action or kind."""
    from spatialpin_ros.core.task_kinds import kind_of
    from spatialpin_ros.reasoning.tasks import TaskProposal
    kind = kind_of(m.action, m.kind)
    return TaskProposal(m.description, m.action, m.object_id, m.target_id,
                        pose_from_msg(m.place_pose, "place_pose"), m.scene_id, kind=kind.value)
