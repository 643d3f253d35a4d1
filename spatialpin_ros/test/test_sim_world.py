"""The simulated world (PyBullet, no ROS): camera geometry, arm tracking, bad input."""

import numpy as np
import pytest

from spatialpin_ros.core.errors import SceneSpecError, TrajectoryError
from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.core.types import Pose
from spatialpin_ros.sim.scene_spec import load_scene_file, parse_scene, random_scene
from spatialpin_ros.paths import resolve_scene_file
from spatialpin_ros.core.robot_description import load_robot
from spatialpin_ros.sim.world import SimWorld

PANDA = load_robot("panda")
ARM_JOINTS, PANDA_HOME = PANDA.arm_joints, PANDA.home


def surface_distance(obj, points: np.ndarray) -> np.ndarray:
    """Unsigned distance (m) from world points to the true surface of a box/cylinder/sphere."""
    loc = obj.pose.inverse().transform_points(points)
    h = obj.size / 2
    if obj.shape == "box":
        q = np.abs(loc) - h
        return np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0))
    if obj.shape == "cylinder":
        d = np.stack([np.hypot(loc[:, 0], loc[:, 1]) - h[0], np.abs(loc[:, 2]) - h[2]], 1)
        return np.abs(np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(1), 0))
    return np.abs(np.linalg.norm(loc, axis=1) - h[0])


def check_geometry(world: SimWorld, frame, seg) -> tuple[float, float]:
    """Worst 99th-percentile distance of back-projected table and object pixels to their true
    surfaces, using only the published camera model and pose."""
    pts = frame.camera_pose.transform_points(frame.camera.backproject(frame.depth))
    table = pts[(seg == world.table) & (frame.depth > 0)]
    table_err = np.abs(table[:, 2]).max()
    truth = world.ground_truth(seg)
    worst = 0.0
    for sim_obj, gt in zip(world.objects, truth.objects):
        m = (seg == sim_obj.body) & (frame.depth > 0)
        if m.sum() > 20 and gt.shape != "other":  # meshes have no analytic surface
            worst = max(worst, float(np.percentile(surface_distance(gt, pts[m]), 99)))
    return float(table_err), worst


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_back_projection_matches_true_surfaces(seed):
    with SimWorld(random_scene(seed)) as w:
        frame, seg = w.render(with_segmentation=True)
        table_err, obj_err = check_geometry(w, frame, seg)
    assert table_err < 0.005, f"table points {table_err * 1000:.2f} mm off the plane"
    assert obj_err < 0.005, f"object points {obj_err * 1000:.2f} mm off their surfaces"


def test_camera_pose_parameter_overrides_the_scene():
    spec = random_scene(4)
    pose = Pose([1.0, -0.3, 0.7], [0.0, 0.0, 0.0, 1.0])
    from spatialpin_ros.core.types import look_at
    pose = look_at([1.0, -0.3, 0.7], [0.5, 0.0, 0.0])
    with SimWorld(spec, camera_pose=pose) as w:
        assert np.allclose(w.camera_pose.position, [1.0, -0.3, 0.7])
        frame, seg = w.render(with_segmentation=True)
        table_err, obj_err = check_geometry(w, frame, seg)
    assert table_err < 0.005 and obj_err < 0.005


def test_stacked_and_urdf_objects_settle_as_described():
    spec = load_scene_file(resolve_scene_file("tabletop"))
    with SimWorld(spec) as w:
        truth = {o.id: o for o in w.ground_truth().objects}
        top = truth["yellow_block"].pose.position[2] - truth["yellow_block"].size[2] / 2
        below = truth["green_block"].pose.position[2] + truth["green_block"].size[2] / 2
        assert abs(top - below) < 0.003  # resting on the green block
        duck = truth["duck"]
        assert duck.shape == "other" and np.all(duck.size > 0.01)
        assert abs(duck.pose.position[2] - duck.size[2] / 2) < 0.01  # on the table
        frame, seg = w.render(with_segmentation=True)
        table_err, obj_err = check_geometry(w, frame, seg)  # boxes, cylinder, sphere
    assert frame.rgb.shape == (480, 640, 3) and frame.depth.dtype == np.float32
    assert table_err < 0.005 and obj_err < 0.005


def test_unknown_urdf_is_a_clear_error():
    spec = parse_scene({"objects": [{"name": "x", "urdf": "no_such_robot.urdf",
                                     "position": [0.5, 0, 0]}]})
    with pytest.raises(SceneSpecError, match="unknown URDF 'no_such_robot.urdf'"):
        SimWorld(spec)


def test_trajectory_ends_within_0_01_rad_of_its_last_point():
    with SimWorld(random_scene(1)) as w:
        q0 = np.array(PANDA_HOME)
        q1 = q0 + np.array([0.5, 0.3, -0.4, 0.4, 0.6, -0.3, 0.8])
        names = PANDA.joint_names
        traj = JointTrajectory(names, [0.0, 2.0, 4.0],
                               np.stack([np.r_[q0, 0.04, 0.04], np.r_[q1, 0.01, 0.01],
                                         np.r_[q1 * 0.9 + q0 * 0.1, 0.02, 0.02]]))
        w.run_trajectory(traj)
        _, q, _, _ = w.joint_state()
        err = np.abs(q[: len(names)] - traj.positions[-1])
    assert err[:7].max() < 0.01, f"arm joint errors {np.round(err[:7], 4)}"
    assert err[7:].max() < 0.002


def test_bad_trajectories_are_rejected_and_change_nothing():
    with SimWorld(random_scene(1)) as w:
        before = w.joint_state()[1]
        bad = [
            JointTrajectory(["panda_joint1", "elbow"], [0, 1], [[0, 0], [0.1, 0]]),
            JointTrajectory(["panda_joint1"], [0, 1, 0.5], [[0], [0.1], [0.2]]),
            JointTrajectory(["panda_joint4"], [0, 1], [[-2.0], [0.5]]),  # beyond its upper limit
            JointTrajectory(["panda_joint1"], [0, 0.01], [[0.0], [1.0]]),  # 100 rad/s
        ]
        for traj in bad:
            with pytest.raises(TrajectoryError):
                w.start_trajectory(traj)
        w.step(240)
        assert not w.trajectory_active
        np.testing.assert_allclose(w.joint_state()[1], before, atol=2e-3)
