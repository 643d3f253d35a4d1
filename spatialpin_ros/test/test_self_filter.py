"""Robot self-filter (core, ROS-free): the arm reaching over the table into the camera's view is
perceived as objects without the filter and not with it; the real objects are still found."""

import dataclasses

import numpy as np
import pytest

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.paths import resolve_scene_file
from spatialpin_ros.perception import make_backend
from spatialpin_ros.perception.self_filter import RobotSelfFilter
from spatialpin_ros.planning.robot import RobotModel, top_down_pose
from spatialpin_ros.sim.scene_spec import load_scene_file
from spatialpin_ros.sim.world import SimWorld


@pytest.fixture(scope="module")
def arm_in_view():
    """A tabletop frame with the hand 20 cm above the table in front of the objects, its
    segmentation, the truth and the joint state."""
    with RobotModel("panda") as m:
        q = m.ik(top_down_pose([0.45, 0.0, 0.20], 0.0))
    assert q is not None
    with SimWorld(load_scene_file(resolve_scene_file("tabletop"))) as w:
        w.reset_robot(dict(zip(w.robot_description.arm_joints, q)))
        w.step(10)
        frame, seg = w.render(with_segmentation=True)
        names, qs, _, _ = w.joint_state()
        yield frame, seg == w.robot, w.ground_truth(), dict(zip(names, qs))


def near_truth(scene, truth, tol=0.03):
    true_pts = [t.pose.position for t in truth.objects]
    extras = [o for o in scene.objects
              if min(np.linalg.norm(o.pose.position - t) for t in true_pts) > tol]
    found = [t for t in true_pts
             if any(np.linalg.norm(o.pose.position - t) <= tol for o in scene.objects)]
    return extras, found


def test_the_arm_is_objects_without_the_filter_and_none_with_it(arm_in_view):
    frame, robot_px, truth, joints = arm_in_view
    assert robot_px.sum() > 5000  # the arm is well in view
    backend = make_backend("geometric")
    extras, _ = near_truth(backend.perceive(frame), truth)
    assert len(extras) >= 1  # unfiltered, the arm's links become objects
    with RobotSelfFilter("franka_panda/panda.urdf", margin_m=0.02, margin_px=4) as sf:
        assert sf.set_joint_positions(joints) == 9
        filtered, n = sf.apply(frame)
    assert n >= robot_px.sum()
    assert not np.any(filtered.depth[robot_px] > 0)  # every arm pixel cleared
    kept = filtered.depth > 0  # only cleared, never changed
    assert np.array_equal(filtered.depth[kept], frame.depth[kept]) and n < 2.5 * robot_px.sum()
    extras, found = near_truth(backend.perceive(filtered), truth)
    assert extras == [] and len(found) == len(truth.objects)


def test_the_render_matches_the_simulator_and_something_in_front_stays(arm_in_view):
    frame, robot_px, _, joints = arm_in_view
    with RobotSelfFilter("franka_panda/panda.urdf", margin_m=0.0, margin_px=0) as sf:
        sf.set_joint_positions(joints)
        rendered = sf.render(frame.camera, frame.camera_pose) > 0
        iou = (rendered & robot_px).sum() / (rendered | robot_px).sum()
        assert iou > 0.97
        # A thing held 10 cm in front of the arm (nearer the camera) is kept.
        depth = frame.depth.copy()
        depth[robot_px] -= 0.10
        m = sf.mask(frame.camera, frame.camera_pose, depth)
        assert not m[robot_px].any()
        with pytest.raises(SpatialPinError):
            sf.apply(dataclasses.replace(frame, camera_pose=None))


def test_urdf_errors_and_xml():
    with pytest.raises(SpatialPinError):
        RobotSelfFilter("no/such/robot.urdf")
    xml = ('<robot name="stick"><link name="base"/><link name="tip"><visual><geometry>'
           '<box size="0.1 0.1 0.1"/></geometry></visual></link><joint name="j" '
           'type="revolute"><parent link="base"/><child link="tip"/><axis xyz="0 0 1"/>'
           '<limit lower="-1" upper="1" effort="1" velocity="1"/></joint></robot>')
    with RobotSelfFilter(xml) as sf:
        assert sf.joint_names == ["j"]
        assert sf.set_joint_positions({"j": 0.5, "other": 1.0, "j2": float("nan")}) == 1
