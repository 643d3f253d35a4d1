"""The fingers close until the object stops them (``hold.until_stopped``): an object
perceived wider than it is, or a part narrower than half its perceived width, is still
squeezed and read as held; a pinched wall stays a pinch (it swings, it does not pivot)."""

import dataclasses
import math

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.planning import RobotModel, plan_pick_and_place
from spatialpin_ros.planning.grasps import Grasp
from spatialpin_ros.planning.hold import STOP_SHORT, pivots, swings, until_stopped
from spatialpin_ros.planning.recovery import HandState, hand_check

CAM = CameraModel.from_fov(64, 48, 58)


def box(oid, center, size, yaw_deg=0.0):
    return ObjectPrior(oid, oid, Pose.from_yaw(center, math.radians(yaw_deg)), size,
                       shape="box")


@pytest.fixture(scope="module")
def robot():
    r = RobotModel("panda")
    yield r
    r.close()


def scene():
    return Scene("t", [box("a", [0.5, 0.12, 0.025], [0.04, 0.06, 0.05]),
                       box("b", [0.5, -0.12, 0.025], [0.07, 0.07, 0.05])], CAM, Pose(),
                 support_plane=np.array([0, 0, 1.0, 0]))


def test_the_fingers_are_commanded_closed(robot):
    plan = plan_pick_and_place(robot, scene(), "a", "b")
    assert plan.success, plan.reason
    assert plan.grasp.finger_target == STOP_SHORT < 0.002
    # The close stage ends with the fingers commanded (nearly) shut.
    g = plan.trajectory.positions[:, robot.dof:]
    i = int(np.searchsorted(plan.trajectory.times, plan.stage("close")[1]))
    assert robot.finger_from_positions(g[i]) == pytest.approx(STOP_SHORT, abs=1e-4)
    # Off, the fingers close the squeeze inside the perceived half-width, as before.
    old = plan_pick_and_place(robot, scene(), "a", "b", close_until_stopped=False)
    squeeze = robot.description.gripper.squeeze
    assert old.grasp.finger_target == pytest.approx(0.02 - squeeze)


def test_a_part_narrower_than_half_its_perceived_width_is_read_as_held():
    """A 1.7 cm part measured 3.3 cm across: fingers closing to half the perceived width stop
    on it at their target, which read as 'nothing between them'; closing until stopped, they
    stop on it 1.7 cm apart: held. Closed on nothing: empty."""
    p = Pose.from_yaw([0.5, 0.0, 0.06], 0.0)
    g = Grasp("x", p, p, p, 0.0, 0.033, 0.032, 0.033 / 4, 0.027, "cloud")
    assert hand_check([0.0085, 0.0085], g).state == HandState.EMPTY
    shut = until_stopped(g)
    assert hand_check([0.0085, 0.0085], shut).state == HandState.HELD
    assert hand_check([STOP_SHORT, STOP_SHORT], shut).state == HandState.EMPTY


def test_a_pinch_stays_a_pinch_when_closed_fully():
    cup = ObjectPrior("cup", "cup", Pose.from_yaw([0.5, 0.0, 0.045], 0.0), [0.08, 0.08, 0.09],
                      shape="cylinder", container=True, inner_depth=0.08)
    can = ObjectPrior("can", "can", Pose.from_yaw([0.5, 0.0, 0.06], 0.0),
                      [0.066, 0.066, 0.12], shape="cylinder")
    p = Pose.from_yaw([0.5, 0.0, 0.064], 0.0)
    rim = Grasp("cup", p, p, p, 0.0, 0.008, 0.015, 0.0, 0.025, "rim", pinch=True)
    assert until_stopped(rim).finger_target == 0.0     # a pinch stays closed fully
    body = Grasp("can", dataclasses.replace(p, position=np.array([0.5, 0.0, 0.095])), p, p,
                 0.0, 0.066, 0.045, 0.028, 0.025, "cloud")
    for g, obj, swing in ((rim, cup, True), (body, can, False)):
        shut = until_stopped(g)
        assert shut.pinch == g.pinch
        assert swings(shut, obj, 2.0) == swing and not pivots(shut, obj, 2.5)
