"""How a top-down or side grasp holds the object (ROS-free): the fingers' closing command
(``until_stopped``), and whether the held object swings or pivots about the two contacts
(``swings``, ``pivots``), which the task planner uses to slow the transport or refuse a grasp
(``planning.pick_place``)."""

from __future__ import annotations

import dataclasses

from spatialpin_ros.core.types import ObjectPrior
from spatialpin_ros.planning.grasps import Grasp

#: Each finger's closing target (m) of ``until_stopped``: just short of the fully closed end
#: stop, so that the finger motor does not drive into the joint's limit (at exactly 0, a block
#: put on a plate stuck to an opened finger and was carried off in the end-to-end test).
STOP_SHORT = 0.001


def until_stopped(g: Grasp) -> Grasp:
    """``g`` with its fingers commanded (nearly) closed, ``STOP_SHORT``: they close until the
    object stops them (as a force-limited parallel gripper grasps) rather than to a target a
    few millimetres inside the perceived sides, which stops short of an object perceived too
    wide (depth noise, a box fitted to a blob) and presses it lightly or not at all; the hand
    check then reads a held object from any gap the fingers keep beyond that
    (``recovery.hand_check``). A pinch already closed fully stays so."""
    return dataclasses.replace(g, finger_target=min(g.finger_target, STOP_SHORT))


def lever(g: Grasp, obj: ObjectPrior) -> float:
    """Height (m) of the grasp above the object's centre of mass (its box's centre)."""
    return float(g.pose.position[2] - obj.center[2])


def swings(g: Grasp, obj: ObjectPrior, swing_ratio: float) -> bool:
    """Whether the object may swing in the hand: held by a pinch (fingers closed fully on a
    wall or a thin part) or high above its centre of mass, more than ``swing_ratio`` times
    the grasp's width."""
    return g.pinch or lever(g, obj) > swing_ratio * max(float(g.width), 1e-3)


#: A grasp narrower than this share of the object's narrowest side holds a narrow part of it
#: (a neck, a knob).
NARROW_PART = 0.6


def pivots(g: Grasp, obj: ObjectPrior, max_ratio: float) -> bool:
    """Whether a grasp (not a pinch of a wall) holds the object so far above its centre of
    mass for its width that the object turns about the line through the two contacts: more
    than ``max_ratio`` times the width, or more than the width on a narrow part of the object
    (``NARROW_PART``: a bottle by its neck)."""
    if g.pinch:
        return False
    w = max(float(g.width), 1e-3)
    narrow = w < NARROW_PART * float(min(obj.size[:2]))
    return lever(g, obj) > (1.0 if narrow else max_ratio) * w
