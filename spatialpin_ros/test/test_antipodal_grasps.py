"""Grasps sampled on perceived points (planning.antipodal, planning.object_cloud): synthetic
clouds of what a camera in front of the object sees (its front half and its top), so the
results are known without a simulator."""

import math

import numpy as np
import pytest

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.planning.antipodal import axis_by_height, cloud_grasps, completed, looks_round
from spatialpin_ros.planning.grasps import Hand
from spatialpin_ros.planning.object_cloud import SceneCloud

HAND = Hand(finger_open=0.04, fingertip_below_tcp=0.0072, wrist_lower=-2.9, wrist_upper=2.9,
            wrist_home=0.78, wrist_sign=-1.0, wrist_heading=0.0, finger_thickness=0.0265,
            finger_width=0.021)
CAMERA_DIR = np.array([-1.0, 0.0])  # the camera stands on -x: it sees the -x half


def revolved(cx, cy, profile, n_ang=90, dz=0.002, seen=True):
    """Points of a surface of revolution: ``profile(z)`` -> radius (None: no surface), the
    half facing the camera when ``seen``, plus the top disc of each radius step."""
    pts = []
    zs = np.arange(dz / 2, 0.3, dz)
    for z in zs:
        r = profile(z)
        if r is None:
            continue
        for a in np.linspace(0, 2 * math.pi, n_ang, endpoint=False):
            d = np.array([math.cos(a), math.sin(a)])
            if seen and d @ CAMERA_DIR < -0.05:
                continue
            pts.append([cx + r * d[0], cy + r * d[1], z])
    return np.array(pts)


def disc(cx, cy, r, z, step=0.003, r_in=0.0):
    g = np.arange(-r, r + 1e-9, step)
    xx, yy = np.meshgrid(g, g)
    rr = np.hypot(xx, yy)
    sel = (rr <= r) & (rr >= r_in)
    return np.c_[cx + xx[sel], cy + yy[sel], np.full(sel.sum(), z)]


def prior(oid, center, size, shape="cylinder", container=False, yaw=0.0):
    return ObjectPrior(oid, oid, Pose.from_yaw(center, yaw), np.array(size), shape=shape,
                       container=container, inner_depth=0.05 if container else 0.0)


def bottle_points(cx=0.5, cy=0.0, R=0.035, rn=0.011, H=0.2):
    body = revolved(cx, cy, lambda z: R if z < 0.6 * H else (
        rn + (R - rn) * max(0.0, (0.82 * H - z) / (0.22 * H)) if z < 0.82 * H else
        (rn if z <= H else None)))
    return np.concatenate([body, disc(cx, cy, rn, H)])


def test_a_bottle_is_grasped_by_its_neck_not_across_its_perceived_cylinder():
    pts = bottle_points()
    p = prior("bottle", [0.5, 0.0, 0.1], [0.07, 0.07, 0.2])
    grasps = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))
    best = grasps[0]
    assert best.kind == "cloud"
    assert best.width < 0.03              # the neck (2.2 cm), not the 7 cm cylinder
    assert best.width > 0.018
    assert np.linalg.norm(best.pose.position[:2] - [0.5, 0.0]) < 0.004
    # The fingers are commanded inside the neck, so that they press on it.
    assert 2 * best.finger_target < 0.022
    assert best.pose.position[2] > 0.2 - 0.03


def test_the_hidden_back_is_completed_so_a_can_measures_its_full_diameter():
    R = 0.033
    pts = np.concatenate([revolved(0.5, 0.1, lambda z: R if z <= 0.12 else None),
                          disc(0.5, 0.1, R, 0.12)])
    p = prior("can", [0.5, 0.1, 0.06], [0.066, 0.066, 0.12])
    best = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))[0]
    assert best.width == pytest.approx(2 * R, abs=0.004)
    assert best.preshape > best.width / 2


def test_an_off_centre_neck_is_found_by_its_own_circle():
    # The fitted cylinder's axis is 7 mm off the neck's: each layer is completed about the
    # centre of its own circle.
    pts = bottle_points(cx=0.507)
    p = prior("bottle", [0.5, 0.0, 0.1], [0.07, 0.07, 0.2])
    axis = axis_by_height(p, pts)
    top = pts[:, 2] > 0.185
    assert np.allclose(axis[top], [0.507, 0.0], atol=0.002)
    best = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))[0]
    assert best.width < 0.027
    assert np.linalg.norm(best.pose.position[:2] - [0.507, 0.0]) < 0.004


def test_a_bottle_left_as_other_is_completed_round_about_its_own_axis():
    # Perception fitted a box to the visible (camera-side, -x) half: its centre leans 1.5 cm
    # toward the camera. The layers' circles say where the axis is; layers too thin to fit a
    # circle take the other layers' axis, not the leaning box centre.
    pts = bottle_points()
    sparse_neck = (pts[:, 2] > 0.184) & (pts[:, 2] < 0.192)
    pts = np.concatenate([pts[~sparse_neck], pts[sparse_neck][::12]])
    p = prior("bottle", [0.485, 0.0, 0.1], [0.045, 0.07, 0.2], shape="other")
    assert looks_round(p, pts)
    axis = axis_by_height(p, pts)
    assert np.allclose(axis, [0.5, 0.0], atol=0.003)
    best = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))[0]
    assert np.linalg.norm(best.pose.position[:2] - [0.5, 0.0]) < 0.004


def test_a_box_left_as_other_does_not_look_round():
    # The two faces a camera sees of a box's corner: no circle fits them within the noise.
    g = np.arange(-0.04, 0.04, 0.003)
    zs = np.arange(0.002, 0.1, 0.004)
    face_a = np.array([[0.5 - 0.04, y, z] for y in g for z in zs])
    face_b = np.array([[x, -0.04, z] for x in g + 0.5 for z in zs])
    p = prior("box", [0.5, 0.0, 0.05], [0.08, 0.08, 0.1], shape="other")
    assert not looks_round(p, np.concatenate([face_a, face_b]))


def test_a_bowl_too_wide_to_hold_across_gets_rim_grasps_closed_on_the_wall():
    R, H, wall = 0.075, 0.06, 0.005
    outer = revolved(0.5, 0.0, lambda z: R if z <= H else None)
    inner = revolved(0.5, 0.0, lambda z: R - wall if 0.01 < z <= H else None, seen=False)
    inner = inner[(inner[:, :2] - [0.5, 0.0]) @ CAMERA_DIR < 0.02]  # the far inner wall
    pts = np.concatenate([outer, inner, disc(0.5, 0.0, R, H, r_in=R - wall),
                          disc(0.5, 0.0, R - wall, 0.01)])
    p = prior("bowl", [0.5, 0.0, H / 2], [2 * R, 2 * R, H], container=True)
    grasps = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))
    assert grasps, "a rim grasp was expected"
    best = grasps[0]
    assert best.kind == "rim"
    assert best.width < 0.02
    assert best.finger_target == 0.0      # pinch the wall: close fully
    r = np.linalg.norm(best.pose.position[:2] - [0.5, 0.0])
    assert R - wall - 0.01 < r < R + 0.005
    assert "rim" in " ".join(g.kind for g in grasps[:4])


def test_a_box_is_grasped_across_its_narrow_side():
    # A 10 x 5 x 8 cm box turned 30 degrees; its top and two visible sides.
    yaw = math.radians(30)
    L, W, H = 0.10, 0.05, 0.08
    g = np.arange(-0.5, 0.5001, 0.03)
    top = np.array([[a * L, b * W, H] for a in g for b in g])
    side1 = np.array([[-L / 2, b * W, z] for b in g for z in np.arange(0.005, H, 0.004)])
    side2 = np.array([[a * L, -W / 2, z] for a in g for z in np.arange(0.005, H, 0.004)])
    local = np.concatenate([top, side1, side2])
    c, s = math.cos(yaw), math.sin(yaw)
    pts = np.c_[0.5 + c * local[:, 0] - s * local[:, 1], 0.1 + s * local[:, 0] + c * local[:, 1],
                local[:, 2]]
    p = prior("box", [0.5, 0.1, H / 2], [L, W, H], shape="box", yaw=yaw)
    best = cloud_grasps(HAND, p, pts, np.zeros((0, 3)))[0]
    assert best.width == pytest.approx(W, abs=0.006)
    closing = np.array([math.sin(best.yaw), -math.cos(best.yaw)])
    narrow = np.array([-s, c])
    assert abs(closing @ narrow) > math.cos(math.radians(20))


def test_fingers_keep_clear_of_a_neighbours_points():
    R = 0.03
    can = np.concatenate([revolved(0.5, 0.0, lambda z: R if z <= 0.1 else None),
                          disc(0.5, 0.0, R, 0.1)])
    p = prior("can", [0.5, 0.0, 0.05], [0.06, 0.06, 0.1])
    # A wall of points 1.5 cm from the can on +y: a finger cannot go there.
    wall = np.array([[x, R + 0.015, z] for x in np.arange(0.4, 0.6, 0.004)
                     for z in np.arange(0.01, 0.12, 0.004)])
    grasps = cloud_grasps(HAND, p, can, wall)
    assert grasps
    for gr in grasps:
        closing = np.array([math.sin(gr.yaw), -math.cos(gr.yaw)])
        for side in (1, -1):
            finger = gr.pose.position[:2] + side * (gr.preshape + HAND.finger_thickness / 2) \
                * closing
            assert finger[1] < R + 0.015 - HAND.finger_thickness / 2 + 0.002 or \
                abs(finger[0] - 0.5) > 0.1
    # Walled in on all four sides: BLOCKED (a neighbour to move first), not too wide.
    ring = np.concatenate([wall, wall * [1, -1, 1],
                           np.array([[0.5 + sx * (R + 0.015), y, z] for sx in (1, -1)
                                     for y in np.arange(-0.1, 0.1, 0.004)
                                     for z in np.arange(0.01, 0.12, 0.004)])])
    with pytest.raises(PlanFailure) as e:
        cloud_grasps(HAND, p, can, ring)
    assert e.value.status is PlanStatus.BLOCKED


def test_a_solid_block_wider_than_the_hand_everywhere_is_too_wide():
    g = np.arange(-0.05, 0.0501, 0.004)
    top = np.array([[0.5 + a, b, 0.06] for a in g for b in g])
    sides = np.array([[0.45, b, z] for b in g for z in np.arange(0.005, 0.06, 0.004)])
    p = prior("block", [0.5, 0.0, 0.03], [0.1, 0.1, 0.06], shape="box")
    with pytest.raises(PlanFailure) as e:
        cloud_grasps(HAND, p, np.concatenate([top, sides]), np.zeros((0, 3)))
    assert e.value.status is PlanStatus.TOO_WIDE


def test_completion_is_a_half_turn_for_a_box():
    p = prior("box", [0.5, 0.0, 0.05], [0.1, 0.05, 0.1], shape="box")
    pts = np.array([[0.46, -0.02, 0.05]])
    out = completed(p, pts)
    assert len(out) == 2
    assert np.allclose(out[1], [0.54, 0.02, 0.05])


def _scene(objects):
    return Scene("s", objects, CameraModel(64, 48, 50, 50, 32, 24), Pose(),
                 support_plane=np.array([0, 0, 1.0, 0]))


def test_scene_cloud_assigns_points_to_the_smallest_box_and_moves_them():
    big = prior("big", [0.5, 0.0, 0.05], [0.2, 0.2, 0.1], shape="box")
    small = prior("small", [0.5, 0.0, 0.05], [0.04, 0.04, 0.1], shape="box")
    pts = np.array([[0.5, 0.0, 0.05], [0.58, 0.0, 0.05], [0.9, 0.0, 0.05], [0.7, 0.0, 0.001]])
    cloud = SceneCloud.from_points(pts, _scene([big, small]))
    assert len(cloud.points) == 3                       # the table point is dropped
    assert np.allclose(cloud.of("small"), [[0.5, 0.0, 0.05]])
    assert np.allclose(cloud.of("big"), [[0.58, 0.0, 0.05]])
    assert len(cloud.others("small")) == 2              # big's and the stray point
    moved = cloud.moved("small", small.pose, Pose.from_yaw([0.3, 0.1, 0.05], 0.0))
    assert np.allclose(moved.of("small"), [[0.3, 0.1, 0.05]])
    assert np.allclose(cloud.of("small"), [[0.5, 0.0, 0.05]])  # the original is unchanged
