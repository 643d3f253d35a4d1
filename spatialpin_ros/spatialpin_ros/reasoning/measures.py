"""Measures of objects and of pairs of objects that answers are built from: footprints (round
objects as circles), surface gaps, volumes, axes, viewer-relative dimensions, relations between
two objects, and clock bearings. Metres, degrees, world frame (z up)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.stacking import polygon_gap
from spatialpin_ros.core.types import ObjectPrior
from spatialpin_ros.reasoning.viewer import ViewerFrame

ON_TOP_TOLERANCE = 0.02   # m between one object's bottom and the other's top
NEXT_TO_GAP = 0.05        # m: surfaces closer than this are "next to" each other
CIRCLE_VERTICES = 32      # a round footprint as a polygon of this many corners
ROBOT_BASE = np.zeros(3)  # the robot's base: the world origin


def is_round(o: ObjectPrior) -> bool:
    return o.shape in ("cylinder", "sphere")


def radius(o: ObjectPrior) -> float:
    """Horizontal radius (m) of a round object: half the mean of its two horizontal sizes."""
    return float(o.size[0] + o.size[1]) / 4.0


def footprint(o: ObjectPrior) -> np.ndarray:
    """(K, 2) corners of the object's outline seen from above (world x, y): the box's 4, or a
    circle of CIRCLE_VERTICES for cylinders and spheres."""
    if is_round(o):
        t = np.linspace(0, 2 * math.pi, CIRCLE_VERTICES, endpoint=False)
        return o.center[:2] + radius(o) * np.stack([np.cos(t), np.sin(t)], axis=1)
    c = o.corners()
    return cv2.convexHull(c[:, :2].astype(np.float32)).reshape(-1, 2).astype(float)


def surface_gap(a: ObjectPrior, b: ObjectPrior) -> float:
    """Shortest distance (m) between two objects' surfaces, 0 when they touch or overlap:
    spheres as spheres, cylinders as upright cylinders, boxes as gravity-aligned boxes."""
    if a.shape == "sphere" and b.shape == "sphere":
        return max(0.0, float(np.linalg.norm(a.center - b.center)) - float(np.mean(a.size)) / 2
                   - float(np.mean(b.size)) / 2)
    if is_round(a) and is_round(b):
        h = max(0.0, float(np.linalg.norm(a.center[:2] - b.center[:2])) - radius(a) - radius(b))
    else:
        h = polygon_gap(footprint(a), footprint(b))
    a0, a1 = a.center[2] - a.size[2] / 2, a.center[2] + a.size[2] / 2
    b0, b1 = b.center[2] - b.size[2] / 2, b.center[2] + b.size[2] / 2
    v = max(0.0, max(a0, b0) - min(a1, b1))
    return math.hypot(h, v)


def volume(o: ObjectPrior) -> float:
    """Volume (m^3) of the object's primitive: box, cylinder [d, d, h] or sphere [d, d, d]."""
    if o.shape == "sphere":
        return math.pi / 6 * float(np.mean(o.size)) ** 3
    if o.shape == "cylinder":
        return math.pi / 4 * float(o.size[0] * o.size[1] * o.size[2])
    return float(np.prod(o.size))


def top(o: ObjectPrior) -> float:
    """Height (m) of the object's top."""
    return float(o.center[2] + o.size[2] / 2)


def long_axis_yaw(o: ObjectPrior) -> float:
    """Yaw (radians) of the box's longer horizontal axis."""
    R = o.pose.rotation.as_matrix()
    ax = R[:, 0] if o.size[0] >= o.size[1] else R[:, 1]
    return math.atan2(ax[1], ax[0])


def fold_axis_angle(d: float) -> float:
    """An angle between two undirected axes, folded into [0, 90] degrees."""
    return abs((d + 90.0) % 180.0 - 90.0)


def signed_axis_angle(d: float) -> float:
    """An angle between undirected axes folded into (-90, 90] degrees."""
    return (d + 90.0) % 180.0 - 90.0


def object_dims(o: ObjectPrior, viewer: ViewerFrame) -> tuple[float, float, float]:
    """(width, depth, height) as the viewer sees them: width is the horizontal box axis closer
    to the viewer's left-right, depth the other one."""
    R = o.pose.rotation.as_matrix()
    if abs(R[:, 0] @ viewer.right) >= abs(R[:, 1] @ viewer.right):
        return float(o.size[0]), float(o.size[1]), float(o.size[2])
    return float(o.size[1]), float(o.size[0]), float(o.size[2])


def clock_hour(bearing_deg: float) -> int:
    """A viewer bearing (0 = right, 90 = away from the camera, counter-clockwise from above) as a
    clock position: 12 = straight ahead (away from the camera), 3 = right, 6 = toward it."""
    h = round((90.0 - bearing_deg) / 30.0) % 12
    return 12 if h == 0 else int(h)


def distance_to(o: ObjectPrior, point: np.ndarray) -> float:
    return float(np.linalg.norm(o.center - np.asarray(point, dtype=float)))


def relation_holds(name: str, a: ObjectPrior, b: ObjectPrior,
                   viewer: ViewerFrame) -> tuple[bool, str]:
    """Whether ``a`` is ``name`` relative to ``b`` (as the viewer sees it), and the facts."""
    v = viewer.to_viewer(b.center - a.center)  # b relative to a: (right, away, up)
    if name in ("left_of", "right_of"):
        return (v[0] > 0) == (name == "left_of"), f"{b.id} is {v[0]:+.3f} m to the right of {a.id}"
    if name in ("in_front_of", "behind"):
        return (v[1] > 0) == (name == "in_front_of"), \
            f"{b.id} is {v[1]:+.3f} m farther back than {a.id}"
    if name in ("above", "below"):
        return (v[2] < 0) == (name == "above"), \
            f"center heights {a.center[2]:.3f} and {b.center[2]:.3f} m"
    for what, point in (("camera", viewer.eye), ("robot", ROBOT_BASE)):
        if name in (f"closer_to_{what}", f"farther_from_{what}"):
            da, db = distance_to(a, point), distance_to(b, point)
            return (da < db) == name.startswith("closer"), \
                f"distances to the {what} {da:.3f} and {db:.3f} m"
    if name in ("bigger", "smaller", "heavier", "lighter"):
        va, vb = volume(a), volume(b)
        return (va > vb) == (name in ("bigger", "heavier")), \
            f"volumes {va * 1e6:.0f} and {vb * 1e6:.0f} cm^3" + (
                " (heavier-looking: the larger volume)" if name in ("heavier", "lighter") else "")
    if name in ("taller", "shorter"):
        return (a.size[2] > b.size[2]) == (name == "taller"), \
            f"heights {a.size[2]:.3f} and {b.size[2]:.3f} m"
    if name in ("wider", "thinner"):
        wa, wb = object_dims(a, viewer)[0], object_dims(b, viewer)[0]
        return (wa > wb) == (name == "wider"), f"widths (left to right) {wa:.3f} and {wb:.3f} m"
    if name == "on_top_of":
        gap_z = (a.center[2] - a.size[2] / 2) - (b.center[2] + b.size[2] / 2)
        overlap, _ = cv2.intersectConvexConvex(footprint(a).astype(np.float32),
                                               footprint(b).astype(np.float32))
        holds = abs(gap_z) < ON_TOP_TOLERANCE and overlap > 1e-6
        return holds, (f"{a.id}'s bottom is {gap_z * 100:+.1f} cm from {b.id}'s top; "
                       f"footprints overlap {overlap * 1e4:.1f} cm^2")
    if name == "next_to":
        g = surface_gap(a, b)
        return g < NEXT_TO_GAP, f"surfaces {g:.3f} m apart"
    raise SpatialPinError(f"unknown relation {name!r}")
