"""Tight true boxes of irregular mesh bodies (scoring only: the pipeline never reads them).

A pybullet_data mesh body (a random_urdfs blob, the mug) rests tilted on the table, and its box
taken at load time and carried rigidly with the body is loose once it tilts: its lowest corner
lies centimetres below the mesh's lowest point. A task check built on that box ("the object's
bottom is on the target's top") then fails an object that rests exactly where it should. The
true box of such a body is instead the tight gravity-aligned box of its collision hull at its
current pose, the same kind of box perception reports for an irregular object.

Frames: hull points are in the body's base frame (metres); boxes are in the world frame.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pybullet as pb

from spatialpin_ros.core.types import Pose

#: Fewer collision vertices than this: a primitive collision shape (box, cylinder), whose
#: oriented box is already tight.
MIN_HULL_VERTICES = 8


def collision_hull_points(client: int, body: int, lo, hi) -> Optional[np.ndarray]:
    """The collision mesh's vertices (N, 3) in the body's base frame, or None for a body
    without a mesh collision shape or with links. ``lo``, ``hi``: the body's AABB (world)
    taken at load time, at (0, 0, 5) with no rotation; the vertices are shifted onto its centre
    (the URDFs place their collision mesh without rotation; the margin is symmetric)."""
    if pb.getNumJoints(body, physicsClientId=client) > 0:
        return None
    n, verts = pb.getMeshData(body, -1, physicsClientId=client)
    if n < MIN_HULL_VERTICES:
        return None
    v = np.asarray(verts, dtype=float).reshape(-1, 3)
    centre = (np.asarray(lo, float) + np.asarray(hi, float)) / 2 - np.array([0.0, 0.0, 5.0])
    return v + (centre - (v.min(0) + v.max(0)) / 2)


def gravity_aligned_box(base: Pose, hull: np.ndarray) -> tuple[Pose, np.ndarray]:
    """Tight box (centre pose, full extents) around ``hull`` placed at ``base``, upright, turned
    to the yaw of whichever body axis (x or y) lies flattest."""
    R = base.rotation.as_matrix()
    axis = R[:, 0] if abs(R[2, 0]) <= abs(R[2, 1]) else R[:, 1]
    frame = Pose.from_yaw([0.0, 0.0, 0.0], float(np.arctan2(axis[1], axis[0])))
    local = frame.inverse().transform_points(base.transform_points(hull))
    lo, hi = local.min(0), local.max(0)
    return Pose(frame.transform_points(((lo + hi) / 2)[None])[0], frame.quaternion), hi - lo
