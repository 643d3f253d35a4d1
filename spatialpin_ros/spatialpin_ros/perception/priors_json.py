"""Scene priors as JSON (schema ``spatialpin.priors/1``) and back. ROS-free.

One document per perceived frame; the schema is documented with an example in
``docs/perceive.md``. Units: metres, quaternions (x, y, z, w); poses are in the world frame
``world_frame`` (``"support_plane"`` when the camera pose was unknown and perception built a
gravity frame from the table). Object masks are COCO compressed RLE over the full image
(``{"size": [H, W], "counts": str}``, readable by ``pycocotools.mask.decode``), null when the
backend gave none.

A frame on which perception raised (no table in view, depth not in metres) is written with
``"status": "error"``, an ``"error": {"type", "message"}`` entry and no objects;
:func:`scene_from_json` refuses such a document (there is no scene).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from spatialpin_ros.core.masks import decode_rle, encode_rle
from spatialpin_ros.core.top_face import TopFace
from spatialpin_ros.core.types import CameraModel, ObjectPrior, PerceptionStatus, Pose, Scene

SCHEMA = "spatialpin.priors/1"
ERROR_STATUS = "error"


def _f(x: float, nd: int = 6) -> Optional[float]:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def _vec(v, nd: int = 6) -> list:
    return [_f(x, nd) for x in np.asarray(v, dtype=float).ravel()]


def camera_to_json(cam: CameraModel) -> dict:
    return {"width": int(cam.width), "height": int(cam.height), "fx": _f(cam.fx), "fy": _f(cam.fy),
            "cx": _f(cam.cx), "cy": _f(cam.cy), "frame_id": cam.frame_id}


def camera_from_json(d: dict) -> CameraModel:
    return CameraModel(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]),
                       float(d["cx"]), float(d["cy"]),
                       d.get("frame_id") or "camera_color_optical_frame")


def pose_to_json(pose: Optional[Pose]) -> Optional[dict]:
    if pose is None:
        return None
    return {"position": _vec(pose.position), "quaternion_xyzw": _vec(pose.quaternion, 8)}


def pose_from_json(d: Optional[dict]) -> Optional[Pose]:
    if d is None:
        return None
    return Pose(d["position"], d["quaternion_xyzw"])


def object_to_json(o: ObjectPrior, height: int, width: int) -> dict:
    """One object prior; ``mask_rle`` is its mask over the full ``height`` x ``width`` image."""
    m = o.full_mask(height, width)
    return {
        "id": o.id, "label": o.label, "shape": o.shape, "color_name": o.color_name,
        "container": bool(o.container), "inner_depth_m": _f(o.inner_depth),
        "center_m": _vec(o.pose.position), "quaternion_xyzw": _vec(o.pose.quaternion, 8),
        "size_m": _vec(o.size), "roi_xywh": [int(v) for v in o.roi],
        "confidence": _f(o.confidence, 4), "num_points": int(o.num_points),
        "axis_names": list(o.axis_names), "yaw_symmetric": bool(o.yaw_symmetric),
        "rgb": None if o.rgb is None else [int(v) for v in o.rgb],
        "mask_rle": None if m is None else encode_rle(m),
        "top_face": _top_to_json(o.top_face),
        "hidden": _f(o.hidden, 3),
    }


def _top_to_json(t: Optional[TopFace]) -> Optional[dict]:
    if t is None:
        return None
    return {"height_m": _f(t.height), "solid": _f(t.solid, 3), "cells": int(t.cells),
            "points": int(t.points),
            "outline_xy_m": [_vec(p) for p in t.polygon]}   # about the box centre, its yaw


def _top_from_json(d: Optional[dict]) -> Optional[TopFace]:
    if not d:
        return None
    return TopFace(height=float(d["height_m"]), polygon=np.asarray(d["outline_xy_m"], float),
                   solid=float(d["solid"]), cells=int(d.get("cells", 0)),
                   points=int(d.get("points", 0)))


def object_from_json(d: dict) -> ObjectPrior:
    roi = tuple(int(v) for v in d.get("roi_xywh") or (0, 0, 0, 0))
    mask = None
    if d.get("mask_rle") is not None:
        full = decode_rle(d["mask_rle"])
        x, y, w, h = roi
        mask = np.zeros((h, w), dtype=bool)  # the roi may reach past the image border
        part = full[y:y + h, x:x + w]
        mask[: part.shape[0], : part.shape[1]] = part
    return ObjectPrior(
        id=d["id"], label=d.get("label", ""),
        pose=Pose(d["center_m"], d.get("quaternion_xyzw") or [0, 0, 0, 1]),
        size=np.asarray(d["size_m"], dtype=float), shape=d.get("shape") or "other",
        color_name=d.get("color_name", ""), confidence=float(d.get("confidence", 1.0)),
        roi=roi, num_points=int(d.get("num_points", 0)),
        axis_names=list(d.get("axis_names") or []),
        yaw_symmetric=bool(d.get("yaw_symmetric", False)),
        rgb=None if d.get("rgb") is None else tuple(int(v) for v in d["rgb"]),
        container=bool(d.get("container", False)),
        inner_depth=float(d.get("inner_depth_m") or 0.0), mask=mask,
        top_face=_top_from_json(d.get("top_face")), hidden=float(d.get("hidden", -1.0)))


def scene_to_json(scene: Scene, source: str = "", frame: str = "",
                  timing_ms: Optional[dict] = None, extra: Optional[dict] = None) -> dict:
    """The JSON document (a dict of JSON types) of one perceived frame."""
    H, W = scene.camera.height, scene.camera.width
    doc: dict[str, Any] = {
        "schema": SCHEMA, "source": source, "frame": frame or scene.scene_id,
        "stamp": _f(scene.stamp, 9), "status": scene.status.value,
        "status_message": scene.status_message, "camera": camera_to_json(scene.camera),
        "camera_pose": pose_to_json(scene.camera_pose), "world_frame": scene.frame_id,
        "support_plane": _vec(scene.support_plane),
        "objects": [object_to_json(o, H, W) for o in scene.objects],
        "flat_items": [object_to_json(o, H, W) for o in scene.flat_items],
        "timing_ms": {k: _f(v, 2) for k, v in (timing_ms or {}).items()},
    }
    if extra:
        doc.update(extra)
    return doc


def error_to_json(error: BaseException, camera: Optional[CameraModel], source: str = "",
                  frame: str = "", stamp: float = 0.0, camera_pose: Optional[Pose] = None,
                  world_frame: str = "", timing_ms: Optional[dict] = None) -> dict:
    """The document of a frame that was read but on which perception raised ``error``."""
    return {
        "schema": SCHEMA, "source": source, "frame": frame, "stamp": _f(stamp, 9),
        "status": ERROR_STATUS, "status_message": str(error).splitlines()[0] if str(error) else "",
        "error": {"type": type(error).__name__, "message": str(error)},
        "camera": None if camera is None else camera_to_json(camera),
        "camera_pose": pose_to_json(camera_pose), "world_frame": world_frame,
        "support_plane": None, "objects": [], "flat_items": [],
        "timing_ms": {k: _f(v, 2) for k, v in (timing_ms or {}).items()},
    }


def scene_from_json(doc: dict) -> Scene:
    """The Scene of a ``spatialpin.priors/1`` document. ValueError for another schema or an
    ``"error"`` document (perception raised on that frame: there is no scene)."""
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document (schema {schema!r})")
    if doc.get("status") == ERROR_STATUS:
        raise ValueError(f"frame {doc.get('frame')!r} has no scene: perception failed: "
                         f"{doc.get('status_message', '')}")
    return Scene(
        scene_id=doc.get("frame", ""),
        objects=[object_from_json(o) for o in doc.get("objects", [])],
        camera=camera_from_json(doc["camera"]),
        camera_pose=pose_from_json(doc["camera_pose"]) or Pose(),
        support_plane=np.asarray(doc.get("support_plane") or np.zeros(4), dtype=float),
        stamp=float(doc.get("stamp") or 0.0), frame_id=doc.get("world_frame") or "world",
        flat_items=[object_from_json(o) for o in doc.get("flat_items", [])],
        status=PerceptionStatus(doc.get("status", "ok")),
        status_message=doc.get("status_message", ""))
