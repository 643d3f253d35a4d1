"""Message conversions (node tier: needs the message packages)."""

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from spatialpin_ros.core.errors import ImageError, SpatialPinError  # noqa: E402
from spatialpin_ros.core.trajectory import JointTrajectory  # noqa: E402
from spatialpin_ros.core.types import (CameraModel, ObjectPrior,  # noqa: E402
                                       PerceptionStatus, Pose, Scene)
from spatialpin_ros.ros import conversions as conv  # noqa: E402

RNG = np.random.default_rng(0)


def test_colour_encodings_round_trip():
    rgb = RNG.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(conv.rgb_from_msg(conv.image_to_msg(rgb, "rgb8")), rgb)
    assert np.array_equal(conv.rgb_from_msg(conv.image_to_msg(rgb[..., ::-1], "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(conv.rgb_from_msg(conv.image_to_msg(rgba, "rgba8")), rgb)
    mono = conv.rgb_from_msg(conv.image_to_msg(rgb[..., 0], "mono8"))
    assert np.array_equal(mono[..., 2], rgb[..., 0])


def test_padded_rows_are_handled():
    rgb = RNG.integers(0, 255, (3, 2, 3), dtype=np.uint8)
    msg = conv.image_to_msg(rgb, "rgb8")
    padded = b"".join(bytes(msg.data[i * 6:(i + 1) * 6]) + b"\0\0" for i in range(3))
    msg.data, msg.step = padded, 8
    assert np.array_equal(conv.rgb_from_msg(msg), rgb)


def test_depth_encodings():
    d = np.array([[0.5, 0.0], [np.nan, 1.234]], np.float32)
    np.testing.assert_allclose(conv.depth_from_msg(conv.depth_to_msg(d, "32FC1")),
                               [[0.5, 0], [0, 1.234]])
    mm = conv.depth_from_msg(conv.depth_to_msg(d, "16UC1"))
    np.testing.assert_allclose(mm, [[0.5, 0], [0, 1.234]], atol=1e-3)
    big = np.array([[1.0]], ">f4")
    msg = Image(height=1, width=1, encoding="32FC1", is_bigendian=1, step=4, data=big.tobytes())
    assert conv.depth_from_msg(msg)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("encoding, fn", [("yuv422", conv.rgb_from_msg),
                                          ("rgb8", conv.depth_from_msg),
                                          ("8UC3", conv.rgb_from_msg)])
def test_wrong_encodings_are_clear_errors(encoding, fn):
    msg = Image(height=2, width=2, encoding=encoding, step=6, data=bytes(12))
    with pytest.raises(ImageError, match="unsupported"):
        fn(msg)


def test_truncated_image_is_a_clear_error():
    msg = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10))
    with pytest.raises(ImageError, match="too short"):
        conv.rgb_from_msg(msg)


def test_scene_round_trip():
    cam = CameraModel.from_fov(640, 480, 58.0, cy=239.0)
    obj = ObjectPrior("obj_1", "red box", Pose.from_yaw([0.5, 0.1, 0.025], 0.3),
                      [0.05, 0.04, 0.05], shape="box", color_name="red", confidence=0.9,
                      roi=(10, 20, 30, 40), num_points=123, axis_names=["front", "left", "up"])
    scene = Scene("s1", [obj], cam, Pose([1, 0, 0.5], [0, 0, 0, 1]),
                  support_plane=[0, 0, 1, 0], stamp=12.5)
    back = conv.scene_from_msg(conv.scene_to_msg(scene))
    assert back.scene_id == "s1" and back.stamp == pytest.approx(12.5)
    assert back.camera == cam
    o = back.objects[0]
    assert (o.id, o.label, o.shape, o.color_name, o.roi, o.num_points) == (
        "obj_1", "red box", "box", "red", (10, 20, 30, 40), 123)
    assert o.axis_names == ["front", "left", "up"]
    np.testing.assert_allclose(o.pose.matrix(), obj.pose.matrix(), atol=1e-9)
    np.testing.assert_allclose(back.support_plane, [0, 0, 1, 0])
    assert back.status is PerceptionStatus.OK and back.flat_items == []


def test_scene_round_trip_carries_containers_flat_items_and_status():
    cam = CameraModel.from_fov(640, 480, 58.0)
    bowl = ObjectPrior("obj_0", "blue bowl", Pose([0.5, 0.1, 0.03]), [0.15, 0.15, 0.06],
                       container=True, inner_depth=0.052)
    sheet = ObjectPrior("flat_0", "white object", Pose([0.6, 0, 0.002]), [0.2, 0.14, 0.004])
    scene = Scene("s2", [bowl], cam, Pose(), flat_items=[sheet])
    back = conv.scene_from_msg(conv.scene_to_msg(scene))
    assert back.objects[0].container and back.objects[0].inner_depth == pytest.approx(0.052)
    assert back.objects[0].hidden == -1.0                 # not measured
    assert not back.flat_items[0].container and back.flat_items[0].id == "flat_0"
    assert back.status is PerceptionStatus.OK
    empty = Scene("s3", [], cam, Pose(), status=PerceptionStatus.NO_SUPPORT_PLANE,
                  status_message="no support plane: a wall")
    back = conv.scene_from_msg(conv.scene_to_msg(empty))
    assert back.status is PerceptionStatus.NO_SUPPORT_PLANE
    assert back.status_message == "no support plane: a wall" and back.objects == []
    msg = conv.scene_to_msg(empty)
    msg.status = ""                                   # an older publisher: ok
    assert conv.scene_from_msg(msg).status is PerceptionStatus.OK
    msg.status = "confused"
    with pytest.raises(ImageError, match="status"):
        conv.scene_from_msg(msg)


def test_camera_info_must_be_valid():
    from sensor_msgs.msg import CameraInfo
    with pytest.raises(ImageError, match="camera_info"):
        conv.camera_model_from_msg(CameraInfo())


def test_trajectory_round_trip():
    t = JointTrajectory(["a", "b"], [0.0, 0.5, 1.25], [[0, 0], [1, 2], [3, 4]],
                        [[0, 0], [1, 1], [0, 0]])
    back = conv.trajectory_from_msg(conv.trajectory_to_msg(t))
    np.testing.assert_allclose(back.times, t.times)
    np.testing.assert_allclose(back.positions, t.positions)
    np.testing.assert_allclose(back.velocities, t.velocities)
    assert conv.duration_to_sec(conv.sec_to_duration(math.pi)) == pytest.approx(math.pi)


def test_the_hidden_share_round_trips_and_a_wrong_one_is_a_clear_error():
    cam = CameraModel.from_fov(640, 480, 58.0)
    box = ObjectPrior("obj_0", "red box", Pose([0.5, 0.1, 0.03]), [0.05, 0.05, 0.06],
                      hidden=0.25)
    msg = conv.scene_to_msg(Scene("s", [box], cam, Pose()))
    assert conv.scene_from_msg(msg).objects[0].hidden == pytest.approx(0.25)
    msg.objects[0].hidden = 1.5
    with pytest.raises(SpatialPinError, match="hidden share"):
        conv.scene_from_msg(msg)
