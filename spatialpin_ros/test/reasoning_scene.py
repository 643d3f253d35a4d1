"""The hand-made scene of the reasoning tests (no ROS): coloured boxes, cylinders and a ball
seen by a camera that looks from +x toward the origin, so the viewer's right is +y and "front"
is +x."""

import math

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at

CAM = look_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.0])

#: (id, colour, shape, centre (m), size (m), yaw (deg)); obj_3 stands on obj_1.
OBJECTS = [
    ("obj_0", "red", "box", [0.0, -0.2, 0.025], [0.05, 0.04, 0.05], 30.0),
    ("obj_1", "blue", "box", [0.0, 0.1, 0.03], [0.08, 0.06, 0.06], 0.0),
    ("obj_2", "green", "cylinder", [0.2, 0.1, 0.05], [0.04, 0.04, 0.10], 0.0),
    ("obj_3", "yellow", "box", [0.0, 0.1, 0.08], [0.04, 0.04, 0.04], 10.0),
    ("obj_4", "red", "sphere", [-0.1, 0.3, 0.03], [0.06, 0.06, 0.06], 0.0),
    ("obj_5", "cyan", "cylinder", [0.3, -0.1, 0.03], [0.05, 0.05, 0.06], 0.0),
    ("obj_6", "red", "box", [0.1, 0.2, 0.02], [0.04, 0.04, 0.04], 0.0),
]


def obj(id_, color, shape, center, size, yaw_deg=0.0):
    return ObjectPrior(id_, f"{color} {shape}", Pose.from_yaw(center, math.radians(yaw_deg)),
                       size, shape=shape, color_name=color,
                       yaw_symmetric=shape in ("cylinder", "sphere"))


def make_scene(n: int = len(OBJECTS)) -> Scene:
    """The first ``n`` objects of :data:`OBJECTS` in one scene."""
    return Scene("s", [obj(*o) for o in OBJECTS[:n]], CameraModel.from_fov(640, 480, 58), CAM,
                 [0, 0, 1, 0])
