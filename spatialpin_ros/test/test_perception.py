"""The perception core (no ROS): backend registry, geometric backend, D435 noise model, metrics."""

import dataclasses
import math

import cv2
import numpy as np
import pytest

from spatialpin_ros.core.errors import ImageError, SpatialPinError
from spatialpin_ros.core.types import ObjectPrior, PerceptionStatus, Pose
from spatialpin_ros.perception import available_backends, make_backend
from spatialpin_ros.perception.base import PerceptionBackend, Segmentation, Segmenter
from spatialpin_ros.core.geometry import fit_rectangle_yaw
from spatialpin_ros.perception.geometric import GeometricBackend
from spatialpin_ros.perception.tracking import ObjectTracker
from spatialpin_ros.perception import metrics
from spatialpin_ros.sim.depth_noise import D435NoiseParams, apply_d435_noise
from spatialpin_ros.sim.scene_spec import parse_scene, random_scene
from spatialpin_ros.sim.world import SimWorld

# Two boxes of different colours touching (1 mm apart along the red box's x axis), a box
# stacked on the red one, and a cylinder.
_C, _S = math.cos(math.radians(30)), math.sin(math.radians(30))
_OFF = 0.030 + 0.025 + 0.001
SCENE = {
    "camera": {"width": 640, "height": 480, "fov_deg": 58, "eye": [1.15, 0.1, 0.6],
               "target": [0.5, 0.0, 0.02]},
    "objects": [
        {"name": "red_block", "shape": "box", "size": [0.06, 0.045, 0.05], "color": "red",
         "position": [0.5, 0.04, 0.025], "yaw_deg": 30},
        {"name": "blue_block", "shape": "box", "size": [0.05, 0.05, 0.04], "color": "blue",
         "position": [0.5 + _OFF * _C, 0.04 + _OFF * _S, 0.02], "yaw_deg": 30},
        {"name": "green_block", "shape": "box", "size": [0.035, 0.035, 0.03], "color": "green",
         "position": [0.5, 0.04], "on_top_of": "red_block", "yaw_deg": 10},
        {"name": "yellow_cylinder", "shape": "cylinder", "size": [0.05, 0.05, 0.08],
         "color": "yellow", "position": [0.55, -0.13, 0.04]},
    ],
}


@pytest.fixture(scope="module")
def sim():
    """The hand-written scene rendered once: (frame, ground truth, noisy frame)."""
    spec = parse_scene(SCENE, name="touching_and_stacked")
    with SimWorld(spec) as world:
        frame, seg = world.render(with_segmentation=True)
        gt = world.ground_truth(seg)
    noisy = dataclasses.replace(frame, depth=apply_d435_noise(frame.depth, frame.rgb,
                                                              np.random.default_rng(7)))
    return frame, gt, noisy


@pytest.fixture(scope="module")
def sim_bodies():
    """The perfect frame and each object's true pixels by colour name."""
    spec = parse_scene(SCENE, name="touching_and_stacked")
    with SimWorld(spec) as world:
        frame, seg = world.render(with_segmentation=True)
        bodies = {o.spec.color_name: seg == o.body for o in world.objects}
    return frame, bodies


def by_color(scene):
    out = {}
    for o in scene.objects:
        assert o.color_name not in out, f"two {o.color_name} objects: {scene.objects}"
        out[o.color_name] = o
    return out


def frame_rotation(frame) -> np.ndarray:
    """The camera's optical axes (columns x right, y down, z forward) in the world."""
    return frame.camera_pose.rotation.as_matrix()


def size_errors(pred: ObjectPrior, gt: ObjectPrior) -> np.ndarray:
    """Per-axis relative size errors, x/y matched up to a swap (the better)."""
    p, g = np.abs(pred.size), np.abs(gt.size)
    e1, e2 = np.abs(p - g) / g, np.abs(p[[1, 0, 2]] - g) / g
    return e1 if e1.max() <= e2.max() else e2


# -- registry -------------------------------------------------------------------------------------

def test_make_backend_default_is_geometric_and_unknown_names_fail():
    b = make_backend()
    assert isinstance(b, GeometricBackend) and isinstance(b, PerceptionBackend)
    assert "geometric" in available_backends()
    with pytest.raises(ValueError, match="unknown perception backend 'nope'.*geometric"):
        make_backend("nope")
    with pytest.raises(ValueError, match="min_heigth"):
        make_backend("geometric", min_heigth=0.01)
    # stage parameters are set by name too (the foreground threshold is the segmentation's)
    assert make_backend("geometric", min_height=0.01).params.segmentation.min_height == 0.01
    assert make_backend("geometric", min_object_height=0.02).params.min_object_height == 0.02


# -- the geometric backend on the hand-written scene --------------------------------------------

@pytest.mark.parametrize("noisy", [False, True], ids=["perfect", "d435"])
def test_support_plane_is_the_table(sim, noisy):
    frame = sim[2] if noisy else sim[0]
    scene = GeometricBackend().perceive(frame)
    a, b, c, d = scene.support_plane
    assert c > 0 and math.degrees(math.acos(min(c, 1.0))) < 1.0, scene.support_plane
    assert abs(d) < 0.005, f"table plane {1000 * d:.1f} mm off z = 0"


D435_STACK = ("with D435 noise the touching and stacked boxes are not reliable: noise seeds 1, 2, "
              "3, 5 and 7 (this test's) give all four boxes right since the colour-edge cuts of "
              "2026-12-06, but with seed 4 the red box is fitted as an 8.6 cm cylinder and with "
              "seed 6 the red and blue boxes are one 9.3 cm object")


@pytest.mark.parametrize("noisy", [False, pytest.param(True, marks=pytest.mark.xfail(
    strict=False, reason=D435_STACK))], ids=["perfect", "d435"])
def test_touching_and_stacked_boxes_stay_apart_with_full_extents(sim, noisy):
    frame, gt, noisy_frame = sim
    scene = GeometricBackend().perceive(noisy_frame if noisy else frame, scene_id="t")
    assert scene.scene_id == "t" and scene.frame_id == "world"
    assert len(scene.objects) == 4, [o.label for o in scene.objects]
    pred = by_color(scene)
    truth = {o.color_name: o for o in gt.objects}
    assert set(pred) == set(truth)
    for color, g in truth.items():
        p = pred[color]
        err = np.linalg.norm(p.center - g.center)
        assert err < 0.015, f"{color}: centre {100 * err:.1f} cm off"
        assert size_errors(p, g).max() < 0.15, f"{color}: size {p.size} vs {g.size}"
    # the stacked box rests on the red one: its bottom is the red box's top, not the table
    green = pred["green"]
    assert green.center[2] - green.size[2] / 2 == pytest.approx(0.05, abs=0.006)


def test_shapes_labels_and_attributes(sim):
    scene = GeometricBackend().perceive(sim[0])
    pred = by_color(scene)
    cyl = pred["yellow"]
    assert cyl.shape == "cylinder" and cyl.yaw_symmetric
    assert cyl.label == "tall yellow cylinder"
    for color in ("red", "blue", "green"):
        o = pred[color]
        assert o.shape == "box" and not o.yaw_symmetric, o
        assert o.label.endswith(f"{color} box")
        assert o.axis_names[2] == "up"
        assert set(o.axis_names[:2]) <= {"left", "right", "front", "back", "front-left",
                                         "front-right", "back-left", "back-right"}
        assert o.num_points > 100 and 0 < o.confidence <= 1
        x, y, w, h = o.roi
        assert w > 5 and h > 5 and 0 <= x < 640 and 0 <= y < 480
    # axes are named as the viewer sees them. The camera looks along (-0.99, -0.15) (9 deg off
    # -x), so its right is (-0.15, 0.99). The red and blue boxes (yaw 30 deg) have one axis 21
    # deg from the camera's line of sight ("front" or "back", by the way the reported pose
    # points it) and the other 12 deg from its right ("right" or "left").
    R_wc = frame_rotation(sim[0])
    for color in ("red", "blue"):
        o = pred[color]
        R = o.pose.rotation.as_matrix()
        toward_camera = -R_wc[:, 2] * [1, 1, 0]
        toward_camera /= np.linalg.norm(toward_camera)
        x_name = "front" if R[:, 0] @ toward_camera > 0 else "back"
        y_name = "right" if R[:, 1] @ R_wc[:, 0] > 0 else "left"
        assert o.axis_names == [x_name, y_name, "up"], (color, o.axis_names, o.pose.yaw())


@pytest.mark.parametrize("noisy", [False, True], ids=["perfect", "d435"])
def test_yaw_of_a_30_degree_box(sim, noisy):
    frame, gt, noisy_frame = sim
    truth = {o.color_name: o for o in gt.objects}
    red = by_color(GeometricBackend().perceive(noisy_frame if noisy else frame))["red"]
    err = metrics.yaw_error(red, truth["red"])
    assert err is not None and math.degrees(err) < 5.0, math.degrees(err)


def test_ids_are_stable_across_frames_and_reset(sim):
    frame, _, _ = sim
    backend = GeometricBackend()
    ids = []
    for seed in (1, 2):  # two noisy frames of the same scene
        f = dataclasses.replace(frame, depth=apply_d435_noise(frame.depth, frame.rgb,
                                                              np.random.default_rng(seed)))
        ids.append({o.color_name: o.id for o in backend.perceive(f).objects})
    assert ids[0] == ids[1]
    assert sorted(ids[0].values()) == [f"obj_{i}" for i in range(4)]
    backend.reset()
    assert {o.color_name: o.id for o in backend.perceive(frame).objects} == ids[0]


def test_tracker_follows_objects_not_list_order():
    def prior(x, color):
        return ObjectPrior(id="", label=color, pose=Pose([x, 0, 0.02]), size=[0.04] * 3,
                           color_name=color)

    tr = ObjectTracker(gate=0.05)
    first = tr.assign([prior(0.4, "red"), prior(0.6, "blue")])
    assert [o.id for o in first] == ["obj_0", "obj_1"]
    # reversed order, moved by 1 cm: same ids; a far-away new object gets a new id
    second = tr.assign([prior(0.61, "blue"), prior(0.41, "red"), prior(0.9, "red")])
    assert [o.id for o in second] == ["obj_1", "obj_0", "obj_2"]


def test_empty_or_nan_depth_gives_an_empty_scene_with_a_clear_status(sim):
    frame = sim[0]
    backend = GeometricBackend()
    for bad in (np.zeros_like(frame.depth), np.full_like(frame.depth, np.nan)):
        scene = backend.perceive(dataclasses.replace(frame, depth=bad), scene_id="bad")
        assert scene.status is PerceptionStatus.NO_VALID_DEPTH
        assert "valid" in scene.status_message
        assert scene.objects == [] and scene.scene_id == "bad" and scene.frame_id == "world"
    # depth in millimetres is malformed input: an ImageError (a TypeError), not a status
    with pytest.raises(ImageError, match="millimetres") as e:
        backend.perceive(dataclasses.replace(frame, depth=frame.depth * 1000))
    assert isinstance(e.value, TypeError) and isinstance(e.value, SpatialPinError)


def test_without_a_camera_pose_the_scene_is_in_the_tables_gravity_frame(sim):
    frame, gt, _ = sim
    scene = GeometricBackend().perceive(dataclasses.replace(frame, camera_pose=None))
    assert scene.status is PerceptionStatus.OK
    assert scene.frame_id == "support_plane" and scene.camera_pose is not None
    np.testing.assert_allclose(scene.support_plane, [0, 0, 1, 0], atol=0.01)
    # the camera is as high above the table as in the world (0.6 m), objects keep their heights
    assert scene.camera_pose.position[2] == pytest.approx(frame.camera_pose.position[2], abs=0.01)
    pred, truth = by_color(scene), {o.color_name: o for o in gt.objects}
    # without a pose there are no workspace bounds: the simulator's white robot, standing
    # behind the objects at the top of the image, is an object too (measured: 5 objects)
    assert set(truth) <= set(pred) and set(pred) - set(truth) <= {"white"}, set(pred)
    for color, g in truth.items():
        assert pred[color].center[2] == pytest.approx(g.center[2], abs=0.006), color
        assert size_errors(pred[color], g).max() < 0.15, color
    # distances between objects do not depend on the frame
    d_pred = np.linalg.norm(pred["red"].center - pred["yellow"].center)
    d_true = np.linalg.norm(truth["red"].center - truth["yellow"].center)
    assert d_pred == pytest.approx(d_true, abs=0.01)


def test_an_empty_table_gives_no_objects():
    spec = parse_scene({"camera": SCENE["camera"], "objects": []})
    with SimWorld(spec) as world:
        frame = world.render()
    scene = GeometricBackend().perceive(frame)
    assert scene.objects == []
    assert abs(scene.support_plane[3]) < 0.005


def test_a_plugged_in_segmenter_decides_the_objects(sim_bodies):
    """One mask over the three touching/stacked blocks (and a little table around them) and
    one over the cylinder: two objects, where geometry alone finds four."""
    frame, bodies = sim_bodies
    blocks = bodies["red"] | bodies["blue"] | bodies["green"]
    grow = np.ones((7, 7), np.uint8)
    masks = [cv2.dilate(blocks.astype(np.uint8), grow) > 0,
             cv2.dilate(bodies["yellow"].astype(np.uint8), grow) > 0]

    class Fixed(Segmenter):
        def segment(self, rgb, depth, camera):
            return Segmentation(masks=masks, names=["blocks", "can"], scores=[1.0, 1.0])

    scene = GeometricBackend(segmenter=Fixed()).perceive(frame)
    assert len(scene.objects) == 2, [o.label for o in scene.objects]
    heights = sorted(round(float(o.size[2]), 2) for o in scene.objects)
    assert heights == pytest.approx([0.08, 0.08], abs=0.01)   # blocks stack to 8 cm; the can


@pytest.mark.xfail(strict=False, reason=(
    "a segmenter mask is one object: the left-half mask holds both the robot's base and the "
    "cylinder (what stands above the plane in it), which together are dropped as 'too large "
    "(furniture, a wall)', 0 objects instead of the cylinder; masks are not split by geometry"))
def test_a_coarse_segmenter_mask_keeps_only_what_stands_on_the_table(sim):
    frame, gt, _ = sim

    class HalfImage(Segmenter):  # one mask: the left half of the image
        def segment(self, rgb, depth, camera):
            m = np.zeros(depth.shape, dtype=bool)
            m[:, : camera.width // 2] = True
            return Segmentation(masks=[m], names=["thing"], scores=[1.0])

    scene = GeometricBackend(segmenter=HalfImage()).perceive(frame)
    assert len(scene.objects) == 1                 # the yellow cylinder, the only object there
    assert scene.objects[0].color_name == "yellow"


@pytest.mark.parametrize("seed", [5, pytest.param(17, marks=pytest.mark.xfail(
    strict=False, reason=(
        "random scene 17: the black block (216 visible pixels, mostly hidden behind the gray "
        "block) is not found: 5 of 6 visible objects matched; the gray block is reported "
        "7.7 x 5.7 cm (true 4.8 x 6.5), its centre 1.3 cm toward the black block")))])
def test_random_scenes_are_found(seed):
    """Random tabletops: every visible object matched with IoU >= 0.25, no false ones."""
    with SimWorld(random_scene(seed)) as world:
        frame, seg = world.render(with_segmentation=True)
        gt = world.ground_truth(seg)
    score = metrics.score_scene(GeometricBackend().perceive(frame), gt)
    visible = [s for s, g in zip(score.objects, gt.objects) if g.num_points >= 100]
    assert score.false_positives == 0
    assert len(visible) >= 5 and sum(s.matched for s in visible) == len(visible)


# -- D435 noise model ----------------------------------------------------------------------------

def test_noise_model_is_seeded_and_realistic(sim):
    frame = sim[0]
    a = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(3))
    b = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(3))
    c = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(4))
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert frame.depth.max() > 0 and np.array_equal(frame.depth, sim[0].depth)  # input untouched
    valid = (frame.depth > 0) & (a > 0)
    err = a[valid] - frame.depth[valid]
    z = frame.depth[valid]
    sig = D435NoiseParams().sigma(z)
    ratio = np.std(err / sig)
    assert 0.7 < ratio < 1.4, ratio                     # axial noise as modelled
    assert np.allclose(np.round(a[valid] * 1000), a[valid] * 1000, atol=1e-3)  # 1 mm units


def test_noise_model_drops_pixels_at_depth_edges():
    z = np.full((60, 80), 1.0, dtype=np.float32)
    z[20:40, 30:50] = 0.7                               # a near square in front of a wall
    rgb = np.full((60, 80, 3), 128, dtype=np.uint8)
    out = apply_d435_noise(z, rgb, np.random.default_rng(0))
    far_ring = np.zeros_like(z, dtype=bool)            # wall pixels touching the square
    far_ring[19:41, 29:51] = True
    far_ring[20:40, 30:50] = False
    interior = np.zeros_like(far_ring)
    interior[5:15, 5:25] = True
    assert (out[far_ring] == 0).mean() > 0.95
    assert (out[interior] == 0).mean() < 0.05
    # dark surfaces lose more pixels than mid-grey ones
    dark = apply_d435_noise(z, np.full_like(rgb, 10), np.random.default_rng(0))
    assert (dark[interior] == 0).mean() > 0.2


# -- metrics -------------------------------------------------------------------------------------

def test_box_iou_is_exact_for_yawed_boxes():
    c, s = [0.5, 0.0, 0.02], [0.04, 0.04, 0.04]
    assert metrics.box_iou_3d(c, s, 0.3, c, s, 0.3) == pytest.approx(1.0)
    assert metrics.box_iou_3d(c, s, 0.0, c, s, math.pi / 2) == pytest.approx(1.0, abs=1e-4)
    assert metrics.box_iou_3d(c, s, 0.0, [0.52, 0.0, 0.02], s, 0.0) == pytest.approx(1 / 3)
    assert metrics.box_iou_3d(c, s, 0.0, [0.6, 0.0, 0.02], s, 0.0) == 0.0
    # half the height overlaps
    assert metrics.box_iou_3d(c, s, 0.0, [0.5, 0.0, 0.04], s, 0.0) == pytest.approx(1 / 3)


def test_fallen_objects_are_scored_gravity_aligned():
    # a cylinder (d 5 cm, h 12 cm) lying on its side along world x
    T = np.array([[0, 0, 1, 0.5], [0, 1, 0, 0], [-1, 0, 0, 0.025], [0, 0, 0, 1.0]])
    lying = ObjectPrior(id="g", label="cyl", pose=Pose.from_matrix(T), size=[0.05, 0.05, 0.12],
                        shape="cylinder", yaw_symmetric=True)
    as_box = ObjectPrior(id="p", label="box", pose=Pose.from_yaw([0.5, 0, 0.025], 0.0),
                         size=[0.12, 0.05, 0.05], shape="box")
    assert metrics.object_iou(as_box, lying) == pytest.approx(1.0, abs=1e-3)
    assert metrics.extent_error(as_box, lying) == pytest.approx(0.0, abs=1e-9)


def test_matching_is_one_to_one():
    a = ObjectPrior(id="a", label="", pose=Pose([0.5, 0, 0.02]), size=[0.04] * 3)
    b = ObjectPrior(id="b", label="", pose=Pose([0.505, 0, 0.02]), size=[0.04] * 3)
    m = metrics.match([a, b], [a])
    assert len(m) == 1 and m[0][:2] == (0, 0)


def test_rectangle_yaw_from_an_l_shape():
    t = np.linspace(0, 1, 60)
    yaw = math.radians(25)
    rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    pts = np.concatenate([np.stack([0.06 * t, 0 * t], 1), np.stack([0 * t, 0.04 * t], 1)])
    found, res = fit_rectangle_yaw(pts @ rot.T, d0=0.001)
    assert abs(math.degrees(found) % 90 - 25) < 1.0 and res < 5e-4
