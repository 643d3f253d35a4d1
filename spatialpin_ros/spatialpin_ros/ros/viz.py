"""Scene priors as rviz messages: MarkerArray (boxes, labels, named axes), PointCloud2 (xyz + rgb)
and, where vision_msgs is installed, Detection3DArray."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from spatialpin_ros.core.colors import PALETTE
from spatialpin_ros.core.types import Scene
from spatialpin_ros.ros.conversions import pose_to_msg

AXIS_COLORS = ((1.0, 0.2, 0.2), (0.2, 1.0, 0.2), (0.3, 0.5, 1.0))


def scene_markers(scene: Scene, stamp: Time, ns: str = "spatialpin") -> MarkerArray:
    """One translucent box, one text label and three axis arrows per object; a DELETEALL first
    so objects that disappeared vanish from rviz."""
    header = Header(frame_id=scene.frame_id, stamp=stamp)
    markers = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    for i, o in enumerate(scene.objects):
        rgb = PALETTE.get(o.color_name, (0.7, 0.7, 0.7))
        box = Marker(header=header, ns=f"{ns}/boxes", id=i, type=Marker.CUBE,
                     action=Marker.ADD, pose=pose_to_msg(o.pose),
                     scale=Vector3(x=float(o.size[0]), y=float(o.size[1]), z=float(o.size[2])),
                     color=ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=0.45))
        if o.shape == "cylinder":
            box.type = Marker.CYLINDER
        elif o.shape == "sphere":
            box.type = Marker.SPHERE
        text = Marker(header=header, ns=f"{ns}/labels", id=i, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=f"{o.id}: {o.label}",
                      scale=Vector3(z=0.025), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        text.pose.position.x, text.pose.position.y = float(o.center[0]), float(o.center[1])
        text.pose.position.z = float(o.center[2] + o.size[2] / 2 + 0.03)
        markers += [box, text]
        R = o.pose.rotation.as_matrix()
        for k in range(3):
            tip = o.center + R[:, k] * (o.size[k] / 2 + 0.03)
            arrow = Marker(header=header, ns=f"{ns}/axes", id=3 * i + k, type=Marker.ARROW,
                           action=Marker.ADD, scale=Vector3(x=0.004, y=0.008, z=0.01),
                           color=ColorRGBA(r=AXIS_COLORS[k][0], g=AXIS_COLORS[k][1],
                                           b=AXIS_COLORS[k][2], a=1.0))
            arrow.points = [Point(x=float(o.center[0]), y=float(o.center[1]),
                                  z=float(o.center[2])),
                            Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))]
            markers.append(arrow)
            if k < len(o.axis_names):
                lab = Marker(header=header, ns=f"{ns}/axis_names", id=3 * i + k,
                             type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                             text=o.axis_names[k], scale=Vector3(z=0.015),
                             color=arrow.color)
                lab.pose.position.x, lab.pose.position.y, lab.pose.position.z = map(float, tip)
                markers.append(lab)
    return MarkerArray(markers=markers)


def point_cloud(points: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised PointCloud2 with x, y, z (float32) and rgb (packed float32) fields.

    ``points``: (N, 3) metres in ``header.frame_id``; ``rgb``: (N, 3) uint8."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    col = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    packed = ((col[:, 0] << 16) | (col[:, 1] << 8) | col[:, 2]).view(np.float32)
    data = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    data["x"], data["y"], data["z"], data["rgb"] = pts[:, 0], pts[:, 1], pts[:, 2], packed
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(("x", "y", "z", "rgb"))]
    return PointCloud2(header=header, height=1, width=len(pts), fields=fields,
                       is_bigendian=False, point_step=16, row_step=16 * len(pts),
                       data=data.tobytes(), is_dense=True)


def cloud_from_msg(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float32 points and (N, 3) uint8 colours from a cloud made by ``point_cloud``."""
    data = np.frombuffer(bytes(msg.data), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                  ("rgb", "<f4")])
    pts = np.stack([data["x"], data["y"], data["z"]], axis=1)
    c = data["rgb"].view(np.uint32)
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=1).astype(np.uint8)
    return pts, rgb


def detections_3d(scene: Scene, stamp: Time):
    """vision_msgs/Detection3DArray of the scene, or None where vision_msgs is not installed."""
    try:
        from vision_msgs.msg import (Detection3D, Detection3DArray, ObjectHypothesisWithPose)
    except ImportError:
        return None
    header = Header(frame_id=scene.frame_id, stamp=stamp)
    out = Detection3DArray(header=header)
    for o in scene.objects:
        d = Detection3D(header=header, id=o.id)
        d.bbox.center = pose_to_msg(o.pose)
        d.bbox.size = Vector3(x=float(o.size[0]), y=float(o.size[1]), z=float(o.size[2]))
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = o.label
        hyp.hypothesis.score = float(o.confidence)
        hyp.pose.pose = d.bbox.center
        d.results.append(hyp)
        out.detections.append(d)
    return out


#: Colours of the plan markers: moves that clear the way, planned free-space motions, and the
#: short straight moves near contact.
PLAN_COLORS = {"clear": (1.0, 0.55, 0.1), "planned": (0.2, 0.9, 0.3), "cartesian": (0.3, 0.8, 1.0)}
_PLANNED_STAGES = ("approach", "transport", "home")


def plan_markers(plan, scene: Scene, description: str, frame_id: str, stamp: Time,
                 ns: str = "spatialpin_plan", max_points: int = 400) -> MarkerArray:
    """A planned task (``planning.TaskPlan``) for rviz: the end-effector path as a line
    coloured by stage (orange: clearing the way, green: planned motions, blue: straight moves
    near contact), an arrow down to the grasp, the held object where it will be let go, each
    object moved out of the way at its new place, and the task as text. A DELETEALL first."""
    header = Header(frame_id=frame_id, stamp=stamp)
    markers = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    if plan.ee_path is not None and len(plan.ee_path):
        t = plan.trajectory.times
        idx = np.unique(np.linspace(0, len(plan.ee_path) - 1, min(max_points, len(plan.ee_path)))
                        .round().astype(int))
        line = Marker(header=header, ns=f"{ns}/path", id=0, type=Marker.LINE_STRIP,
                      action=Marker.ADD, scale=Vector3(x=0.004))
        line.pose.orientation.w = 1.0
        for i in idx:
            stage = next((n for n, a, b in plan.stages if a <= t[i] <= b), "")
            kind = ("clear" if stage.startswith("clear_") else
                    "planned" if stage in _PLANNED_STAGES else "cartesian")
            r, g, b = PLAN_COLORS[kind]
            line.points.append(Point(x=float(plan.ee_path[i, 0]), y=float(plan.ee_path[i, 1]),
                                     z=float(plan.ee_path[i, 2])))
            line.colors.append(ColorRGBA(r=r, g=g, b=b, a=1.0))
        markers.append(line)
    if plan.grasp is not None:
        a, b = plan.grasp.pregrasp.position, plan.grasp.pose.position
        arrow = Marker(header=header, ns=f"{ns}/grasp", id=0, type=Marker.ARROW,
                       action=Marker.ADD, scale=Vector3(x=0.006, y=0.012, z=0.015),
                       color=ColorRGBA(r=1.0, g=1.0, b=0.2, a=1.0))
        arrow.points = [Point(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                        Point(x=float(b[0]), y=float(b[1]), z=float(b[2]))]
        markers.append(arrow)
    ids = {o.id: o for o in scene.objects}
    goals = []
    if plan.placement is not None and plan.grasp is not None and plan.grasp.object_id in ids:
        goals.append((plan.grasp.object_id, plan.placement.object_pose, (0.2, 0.9, 0.3),
                      description))
    goals += [(oid, pose, PLAN_COLORS["clear"], f"{oid}: out of the way")
              for oid, pose in plan.cleared if oid in ids]
    for k, (oid, pose, rgb, text) in enumerate(goals):
        o = ids[oid]
        m = Marker(header=header, ns=f"{ns}/goals", id=k, action=Marker.ADD,
                   type={"cylinder": Marker.CYLINDER, "sphere": Marker.SPHERE}.get(
                       o.shape, Marker.CUBE), pose=pose_to_msg(pose),
                   scale=Vector3(x=float(o.size[0]), y=float(o.size[1]), z=float(o.size[2])),
                   color=ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=0.5))
        label = Marker(header=header, ns=f"{ns}/text", id=k, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, text=text[:120], scale=Vector3(z=0.02),
                       color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label.pose.position.x, label.pose.position.y = map(float, pose.position[:2])
        label.pose.position.z = float(pose.position[2] + o.size[2] / 2 + 0.05)
        markers += [m, label]
    return MarkerArray(markers=markers)
