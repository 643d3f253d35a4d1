"""Core types: poses, cameras, object priors and scenes, trajectories (no ROS)."""

import math

import numpy as np
import pytest

from spatialpin_ros.core.errors import ImageError, TrajectoryError
from spatialpin_ros.core.trajectory import JointLimits, JointTrajectory
from spatialpin_ros.core.types import (CameraModel, ObjectPrior, PerceptionStatus, Pose,
                                       RGBDFrame, Scene, look_at)


def test_pose_inverse_and_compose():
    rng = np.random.default_rng(0)
    p = Pose(rng.normal(size=3), rng.normal(size=4))
    pts = rng.normal(size=(10, 3))
    np.testing.assert_allclose(p.inverse().transform_points(p.transform_points(pts)), pts,
                               atol=1e-12)
    np.testing.assert_allclose((p @ p.inverse()).matrix(), np.eye(4), atol=1e-12)


def test_pose_rejects_bad_values():
    with pytest.raises(ValueError):
        Pose([0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError):
        Pose.from_xyz_quat([1, 2, 3])
    assert Pose.from_xyz_quat([1, 2, 3, 0, 0, 0, 1]).as_xyz_quat() == [1, 2, 3, 0, 0, 0, 1]


def test_yaw():
    assert Pose.from_yaw([0, 0, 0], 0.7).yaw() == pytest.approx(0.7)


def test_look_at_is_an_optical_frame():
    pose = look_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.0])
    R = pose.rotation.as_matrix()
    forward = np.array([-1.0, 0.0, -0.5]) / math.sqrt(1.25)
    np.testing.assert_allclose(R[:, 2], forward, atol=1e-12)  # z forward
    np.testing.assert_allclose(R[:, 0], [0, 1, 0], atol=1e-12)  # x right: +y when looking along -x
    assert R[2, 1] < 0  # y points down
    with pytest.raises(ValueError):
        look_at([0, 0, 1], [0, 0, 0])  # looking along up


def test_camera_backproject_project_round_trip():
    cam = CameraModel.from_fov(64, 48, 60.0)
    assert cam.fy == pytest.approx(48 / (2 * math.tan(math.radians(30))))
    depth = np.full((48, 64), 2.0, np.float32)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    pts = cam.backproject(depth)
    assert np.isnan(pts[0, 0]).all() and np.isnan(pts[1, 1]).all()
    uv = cam.project(pts[5:7, 10:12].reshape(-1, 3))
    np.testing.assert_allclose(uv, [[10, 5], [11, 5], [10, 6], [11, 6]], atol=1e-4)
    with pytest.raises(ImageError):
        cam.backproject(np.zeros((10, 10)))


def test_rgbd_frame_validates_shapes():
    cam = CameraModel.from_fov(8, 6, 60.0)
    with pytest.raises(ImageError):
        RGBDFrame(np.zeros((6, 8, 3), np.float32), np.zeros((6, 8)), cam)
    with pytest.raises(ImageError):
        RGBDFrame(np.zeros((6, 8, 3), np.uint8), np.zeros((5, 8)), cam)


def test_object_prior_and_scene():
    o = ObjectPrior("a", "red box", Pose.from_yaw([1, 0, 0.05], math.pi / 2), [0.2, 0.1, 0.1],
                    shape="box")
    c = o.corners()
    np.testing.assert_allclose(c.min(0), [0.95, -0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(c.max(0), [1.05, 0.1, 0.1], atol=1e-12)
    with pytest.raises(ValueError):
        ObjectPrior("b", "x", Pose(), [1, 1, 1], shape="cube")
    s = Scene("s", [o], CameraModel.from_fov(8, 6, 60), Pose())
    assert s.get("a") is o
    with pytest.raises(KeyError, match="known: a"):
        s.get("zzz")


LIMITS = {"j1": JointLimits(-1.0, 1.0, 2.0), "j2": JointLimits(0.0, 0.04, 0.2)}


def _traj(times, q, names=("j1", "j2"), vel=None):
    return JointTrajectory(list(names), np.array(times, float), np.array(q, float), vel)


def test_trajectory_validation_accepts_good_and_names_the_problem():
    _traj([0, 1, 2], [[0, 0], [0.5, 0.02], [0.8, 0.04]]).validate(["j1", "j2"], LIMITS)
    cases = [
        (_traj([0, 1, 1], [[0, 0], [0.1, 0], [0.2, 0]]), "increase strictly"),
        (_traj([0, 2, 1], [[0, 0], [0.1, 0], [0.2, 0]]), "increase strictly"),
        (_traj([0, 1], [[0, 0], [0.1, 0]], names=("j1", "jX")), "unknown joint"),
        (_traj([0, 1], [[0, 0], [0.1, 0]], names=("j1", "j1")), "duplicate"),
        (_traj([0, 1], [[0, 0], [1.5, 0]]), "limits"),
        (_traj([0, 0.1], [[0, 0], [0.9, 0]]), "velocity"),
        (_traj([0, 1], [[0, 0], [np.nan, 0]]), "non-finite"),
        (_traj([], np.zeros((0, 2))), "no points"),
        (_traj([-1, 1], [[0, 0], [0.1, 0]]), ">= 0"),
    ]
    for traj, reason in cases:
        with pytest.raises(TrajectoryError, match=reason):
            traj.validate(["j1", "j2"], LIMITS)


def test_trajectory_sampling():
    t = _traj([0, 1, 2], [[0, 0], [1, 0], [1, 0]])
    np.testing.assert_allclose(t.sample(0.5), [0.5, 0])
    np.testing.assert_allclose(t.sample(5.0), [1, 0])
    h = _traj([0, 1], [[0, 0], [1, 0]], vel=np.zeros((2, 2)))
    assert h.sample(0.5)[0] == pytest.approx(0.5)  # symmetric Hermite
    assert h.sample(0.1)[0] < 0.1  # eases in from rest


def test_trajectories_join_end_to_start():
    a = _traj([0, 1], [[0, 0], [0.5, 0.02]], vel=np.zeros((2, 2)))
    b = _traj([0, 0.5, 2], [[0.5, 0.02], [0.6, 0.02], [0.2, 0.0]], vel=np.zeros((3, 2)))
    ab = a.then(b)
    np.testing.assert_allclose(ab.times, [0, 1, 1.5, 3])
    np.testing.assert_allclose(ab.positions[-1], [0.2, 0.0])
    assert ab.velocities.shape == (4, 2) and ab.accelerations is None
    with pytest.raises(TrajectoryError, match="does not start where"):
        a.then(_traj([0, 1], [[0.4, 0.02], [0.5, 0.02]]))
    with pytest.raises(TrajectoryError, match="different joints"):
        a.then(_traj([0, 1], [[0.5, 0.02], [0.5, 0.02]], names=("j1", "j3")))


def test_subsampled_camera_back_projects_the_same_points():
    cam = CameraModel.from_fov(64, 48, 60.0, cy=23.0)
    depth = np.random.default_rng(1).uniform(0.5, 2.0, (48, 64)).astype(np.float32)
    full = cam.backproject(depth)[::4, ::4]
    np.testing.assert_allclose(cam.subsampled(4).backproject(depth[::4, ::4]), full, rtol=1e-5)


def test_object_prior_container_and_roi_mask():
    mask = np.zeros((4, 3), dtype=np.uint8)
    mask[1:3, 1] = 1
    o = ObjectPrior("c", "blue bowl", Pose([0.5, 0, 0.03]), [0.15, 0.15, 0.06], container=True,
                    inner_depth=0.05, roi=(8, 5, 3, 4), mask=mask)
    assert o.container and o.inner_depth == 0.05 and o.mask.dtype == bool
    full = o.full_mask(10, 12)
    assert full.shape == (10, 12) and full.sum() == 2 and full[6, 9] and full[7, 9]
    # a roi reaching past the image is clipped
    edge = ObjectPrior("e", "", Pose(), [0.1] * 3, roi=(10, 8, 3, 4), mask=np.ones((4, 3), bool))
    assert edge.full_mask(10, 12).sum() == 2 * 2
    assert ObjectPrior("n", "", Pose(), [0.1] * 3).full_mask(10, 12) is None
    with pytest.raises(ValueError, match="mask"):
        ObjectPrior("bad", "", Pose(), [0.1] * 3, roi=(0, 0, 3, 4), mask=np.ones((3, 4), bool))


def test_scene_status_and_flat_items():
    cam = CameraModel.from_fov(64, 48, 58.0)
    s = Scene("s", [], cam, Pose())
    assert s.status is PerceptionStatus.OK and s.status_message == "" and s.flat_items == []
    empty = Scene("s", [], cam, Pose(), status="no_support_plane", status_message="a wall")
    assert empty.status is PerceptionStatus.NO_SUPPORT_PLANE
    with pytest.raises(ValueError):
        Scene("s", [], cam, Pose(), status="fine")
    sheet = ObjectPrior("flat_0", "white object", Pose([0.5, 0, 0.002]), [0.2, 0.14, 0.004])
    assert Scene("s", [], cam, Pose(), flat_items=[sheet]).flat_items == [sheet]
