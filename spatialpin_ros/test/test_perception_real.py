"""The geometric backend on real and hard input (no ROS): a real YCB-Video frame without a camera
pose, textured boxes that must stay whole, input with no table or no depth, containers and thin
flat things.

Synthetic frames are ray-cast here with numpy (a table plane z = 0 and yawed boxes, seen by a
pinhole camera 45 degrees above the table), so that every pixel's colour and depth are exact.
"""

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spatialpin_ros.core.errors import ImageError
from spatialpin_ros.core.types import (CameraModel, PerceptionStatus, RGBDFrame, Scene,
                                       look_at)
from spatialpin_ros.perception.geometric import GeometricBackend
from spatialpin_ros.perception.mask_metrics import score_masks, truth_masks_from_labels

YCB_FRAME = Path(__file__).parent / "data" / "ycb_0002_000001"
# The source tree's scene files (an installed share gets new ones only at the next build).
SCENES = Path(__file__).resolve().parents[1] / "config" / "scenes"

TABLE_RGB = (150, 120, 90)


# -- a small analytic RGB-D renderer ------------------------------------------------------------

def texture(rng: np.random.Generator, kind: str, size: int = 128) -> np.ndarray:
    """A high-contrast texture (size, size, 3) uint8: random colour cells, stripes or text."""
    if kind == "noise":
        cells = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
        return cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST)
    if kind == "stripes":
        a, b = rng.integers(180, 256, 3), rng.integers(0, 80, 3)
        on = ((np.arange(size) // 10) % 2)[None, :, None] > 0
        return np.ascontiguousarray(np.broadcast_to(np.where(on, a, b), (size, size, 3)),
                                    dtype=np.uint8)
    img = np.full((size, size, 3), 245, np.uint8)                  # dark print on white
    for i, word in enumerate(("SALE", "50%", "OFF!", "NEW")):
        cv2.putText(img, word, (4, 28 + 30 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                    tuple(int(c) for c in rng.integers(0, 120, 3)), 3)
    return img


def render(boxes, eye=(0.15, 0.0, 0.45), target=(0.6, 0.0, 0.0), width=640, height=480,
           fov_deg=58.0) -> RGBDFrame:
    """Ray-cast the table (z = 0, world frame) and boxes standing on it, seen from ``eye``
    (default: 45 degrees above the table, 0.64 m from the target). Each box is a dict with
    ``xy`` (its footprint centre), ``size`` (3,), ``yaw`` (radians) and either ``rgb`` (one
    colour) or ``tex`` (6 texture images, faces -x, +x, -y, +y, -z, +z). Depth is exact, in
    metres along the optical axis; the frame carries the camera pose."""
    cam = CameraModel.from_fov(width, height, fov_deg)
    pose = look_at(eye, target)
    R, o = pose.rotation.as_matrix(), pose.position
    ru, rv = cam.pixel_rays()
    d = np.stack([ru, rv, np.ones_like(ru)], -1) @ R.T            # world rays with optical z = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = -o[2] / d[..., 2]
    on_table = np.isfinite(t_table) & (t_table > 0)
    tbest = np.where(on_table, t_table, np.inf)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[on_table] = TABLE_RGB
    for b in boxes:
        h = np.asarray(b["size"], float) / 2
        c = np.array([b["xy"][0], b["xy"][1], h[2]])
        cy, sy = math.cos(b.get("yaw", 0.0)), math.sin(b.get("yaw", 0.0))
        Rb = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
        ol, dl = Rb.T @ (o - c), d @ Rb                             # in the box's frame
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-h - ol) / dl, (h - ol) / dl
        tmin = np.nanmax(np.minimum(t1, t2), axis=-1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (tmax >= tmin) & (tmin > 0) & (tmin < tbest)
        tbest[hit] = tmin[hit]
        if "rgb" in b:
            rgb[hit] = b["rgb"]
            continue
        p = ol + tmin[..., None] * dl
        axis = np.argmax(np.abs(p) / h, axis=-1)
        face = 2 * axis + (np.take_along_axis(p, axis[..., None], -1)[..., 0] > 0)
        for f in range(6):
            m = hit & (face == f)
            if m.any():
                a1, a2 = [k for k in range(3) if k != f // 2]
                tex = b["tex"][f]
                n = tex.shape[0]
                s = np.clip(((p[m][:, a1] / (2 * h[a1]) + 0.5) * n).astype(int), 0, n - 1)
                t = np.clip(((p[m][:, a2] / (2 * h[a2]) + 0.5) * n).astype(int), 0, n - 1)
                rgb[m] = tex[t, s]
    depth = np.where(np.isfinite(tbest), tbest, 0.0).astype(np.float32)
    return RGBDFrame(rgb=rgb, depth=depth, camera=cam, camera_pose=pose)


def plane_depth(camera: CameraModel, eye, target, plane_z: float) -> tuple[np.ndarray, object]:
    """Depth of the horizontal plane z = plane_z seen from ``eye`` looking at ``target`` (0
    where the ray misses it), and the camera pose."""
    pose = look_at(eye, target)
    ru, rv = camera.pixel_rays()
    d = np.stack([ru, rv, np.ones_like(ru)], -1) @ pose.rotation.as_matrix().T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (plane_z - pose.position[2]) / d[..., 2]
    return np.where(np.isfinite(t) & (t > 0), t, 0.0).astype(np.float32), pose


def assert_empty_with(scene: Scene, status: PerceptionStatus) -> None:
    assert isinstance(scene, Scene)
    assert scene.status is status, (scene.status, scene.status_message)
    assert scene.objects == [] and scene.flat_items == []
    assert scene.status_message, "a status other than OK must say why"


# -- a real frame: YCB-Video 0002/000001, no camera pose ----------------------------------------

@pytest.fixture(scope="module")
def ycb():
    meta = json.loads((YCB_FRAME / "meta.json").read_text())
    rgb = np.asarray(Image.open(YCB_FRAME / "color.png").convert("RGB"))
    depth = np.asarray(Image.open(YCB_FRAME / "depth.png")).astype(np.float32) / 1000.0
    labels = np.asarray(Image.open(YCB_FRAME / "labels.png"))
    K = np.asarray(meta["K"])
    cam = CameraModel(meta["width"], meta["height"], K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    frame = RGBDFrame(rgb=rgb, depth=depth, camera=cam)          # no camera pose
    backend = GeometricBackend()
    scene = backend.perceive(frame, scene_id="ycb")
    truth = truth_masks_from_labels(labels, [o["id"] for o in meta["objects"]])
    return frame, scene, truth, meta


def test_ycb_frame_objects_found_as_one_piece_each(ycb):
    frame, scene, truth, meta = ycb
    H, W = frame.camera.height, frame.camera.width
    assert scene.status is PerceptionStatus.OK, scene.status_message
    assert scene.frame_id == "support_plane"
    pred = [o.full_mask(H, W) for o in scene.objects]
    assert all(m is not None for m in pred), "every object carries a mask"
    score = score_masks(pred, truth)
    found = {meta["objects"][m.truth_index]["name"]: round(m.iou, 2) for m in score.iou_matches}
    # Measured (lead's backend as of this test): 6 of 6 with IoU >= 0.5 (banana 0.82, mustard
    # 0.77, wood block 0.67, marker 0.53, pudding box 0.80, meat can 0.73), 0 false objects,
    # 0 split, 0 merged. The bound leaves one object of margin.
    assert score.num_one_piece >= 5, found
    assert score.num_false <= 1, (score.false_preds, [o.label for o in scene.objects])


def test_ycb_frame_masks_lie_in_their_rois(ycb):
    frame, scene, _, _ = ycb
    assert scene.objects
    for o in scene.objects:
        x, y, w, h = o.roi
        assert o.mask is not None and o.mask.shape == (h, w), (o.label, o.roi)
        assert o.mask.any(), f"{o.label}: empty mask"
        assert 0 <= x and 0 <= y and x + w <= frame.camera.width and y + h <= frame.camera.height
        full = o.full_mask(frame.camera.height, frame.camera.width)
        assert full.sum() == o.mask.sum()                       # nothing of it outside the roi
        rows, cols = np.nonzero(o.mask)                          # the roi is about its box
        assert np.ptp(rows) + 1 >= 0.8 * h and np.ptp(cols) + 1 >= 0.8 * w, (o.label, o.roi)


def test_ycb_frame_without_pose_is_in_the_plane_gravity_frame(ycb):
    frame, scene, _, _ = ycb
    n, d = scene.support_plane[:3], scene.support_plane[3]
    np.testing.assert_allclose(n, [0, 0, 1], atol=0.02)
    assert abs(d) < 0.01
    assert scene.camera_pose is not None and scene.camera_pose.position[2] > 0.3  # above the table
    for o in scene.objects:
        height = float(n @ o.center + d)
        assert height > 0.005, f"{o.label}: centre {height:.3f} m above the table"
        assert o.center[2] - o.size[2] / 2 > -0.02, f"{o.label}: below the table"


# -- texture never splits an object --------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_textured_box_is_one_object(seed):
    """Every face carries random colour cells, stripes or printed words (high contrast): still
    exactly one object, with the box's size."""
    rng = np.random.default_rng(seed)
    kinds = ("noise", "stripes", "text")
    tex = [texture(rng, kinds[(f + seed) % 3]) for f in range(6)]
    size = (0.09, 0.07, 0.08)
    frame = render([{"xy": (0.6, 0.0), "size": size, "yaw": 0.4 + 0.3 * seed, "tex": tex}])
    assert frame.rgb[frame.depth > 0].std() > 20
    for f in (frame, dataclasses.replace(frame, camera_pose=None)):
        scene = GeometricBackend().perceive(f)
        assert scene.status is PerceptionStatus.OK
        assert len(scene.objects) == 1, [(o.label, o.size.round(3)) for o in scene.objects]
        o = scene.objects[0]
        assert sorted(o.size[:2]) == pytest.approx(sorted(size[:2]), abs=0.01)
        assert o.size[2] == pytest.approx(size[2], abs=0.01)
        assert scene.flat_items == []
        if f.camera_pose is not None:
            assert np.linalg.norm(o.center[:2] - [0.6, 0.0]) < 0.01


def test_a_box_with_a_differently_printed_top_is_one_object():
    """Uniform blue sides and a uniform red top: two uniform, distinct, contiguous colour regions
    on one convex surface. Geometry says one object."""
    faces = [np.full((8, 8, 3), (30, 30, 200), np.uint8)] * 5 + [
        np.full((8, 8, 3), (220, 40, 40), np.uint8)]
    frame = render([{"xy": (0.6, 0.0), "size": (0.09, 0.07, 0.08), "yaw": 0.4, "tex": faces}])
    scene = GeometricBackend().perceive(frame)
    assert len(scene.objects) == 1, [o.label for o in scene.objects]


# -- bad input: a clear status and an empty scene, never an exception ------------------------

@pytest.fixture(scope="module")
def table_frame():
    """A red box on the table, 45 degrees from above, with the camera pose."""
    return render([{"xy": (0.6, 0.0), "size": (0.09, 0.07, 0.08), "yaw": 0.4,
                    "rgb": (200, 40, 40)}])


def test_a_wall_filling_the_view_is_no_support_plane(table_frame):
    cam = table_frame.camera
    wall = np.full((cam.height, cam.width), 1.2, np.float32)      # fronto-parallel, 1.2 m
    rgb = np.full((cam.height, cam.width, 3), 200, np.uint8)
    # the camera looks horizontally at the wall: no plane within reach of gravity's up
    level = look_at((0.0, 0.0, 0.4), (1.0, 0.0, 0.4))
    scene = GeometricBackend().perceive(RGBDFrame(rgb, wall, cam, level), scene_id="wall")
    assert_empty_with(scene, PerceptionStatus.NO_SUPPORT_PLANE)
    assert scene.scene_id == "wall" and scene.frame_id == "world"
    assert scene.camera_pose is not None


def test_a_wall_without_a_camera_pose_gives_a_valid_empty_scene(table_frame):
    """Without a pose a fronto-parallel plane filling the view is the same depth image as an
    empty table seen straight from above: either answer is right, but no objects, no
    exception, and a status."""
    cam = table_frame.camera
    wall = np.full((cam.height, cam.width), 1.2, np.float32)
    rgb = np.full((cam.height, cam.width, 3), 200, np.uint8)
    scene = GeometricBackend().perceive(RGBDFrame(rgb, wall, cam))
    assert scene.status in (PerceptionStatus.OK, PerceptionStatus.NO_SUPPORT_PLANE)
    assert scene.objects == [] and scene.flat_items == []
    assert scene.frame_id == "support_plane" and scene.camera_pose is not None


@pytest.mark.parametrize("with_pose", [True, False], ids=["pose", "no_pose"])
def test_a_camera_looking_up_at_a_ceiling_is_no_support_plane(table_frame, with_pose):
    cam = table_frame.camera
    depth, pose = plane_depth(cam, eye=(0.0, 0.0, 0.5), target=(1.0, 0.0, 1.5), plane_z=1.5)
    assert (depth > 0).all()                                       # the ceiling fills the view
    frame = RGBDFrame(table_frame.rgb, depth, cam, pose if with_pose else None)
    scene = GeometricBackend().perceive(frame)
    assert_empty_with(scene, PerceptionStatus.NO_SUPPORT_PLANE)
    assert scene.frame_id == ("world" if with_pose else "support_plane")


@pytest.mark.parametrize("bad", ["zeros", "nan"])
@pytest.mark.parametrize("with_pose", [True, False], ids=["pose", "no_pose"])
def test_no_valid_depth_is_a_status(table_frame, bad, with_pose):
    depth = np.zeros_like(table_frame.depth) if bad == "zeros" else \
        np.full_like(table_frame.depth, np.nan)
    frame = dataclasses.replace(table_frame, depth=depth,
                                camera_pose=table_frame.camera_pose if with_pose else None)
    scene = GeometricBackend().perceive(frame, scene_id="s")
    assert_empty_with(scene, PerceptionStatus.NO_VALID_DEPTH)
    assert "valid" in scene.status_message
    assert scene.scene_id == "s" and scene.camera is table_frame.camera


@pytest.mark.parametrize("value", [0, 255], ids=["black", "saturated"])
@pytest.mark.parametrize("with_pose", [True, False], ids=["pose", "no_pose"])
def test_a_black_or_saturated_image_still_perceives_the_geometry(table_frame, value, with_pose):
    frame = dataclasses.replace(table_frame, rgb=np.full_like(table_frame.rgb, value),
                                camera_pose=table_frame.camera_pose if with_pose else None)
    scene = GeometricBackend().perceive(frame)
    assert isinstance(scene, Scene) and scene.status is PerceptionStatus.OK
    assert len(scene.objects) == 1, [o.label for o in scene.objects]
    o = scene.objects[0]
    assert o.size[2] == pytest.approx(0.08, abs=0.01)
    assert o.color_name and o.rgb is not None


def test_malformed_depth_raises_an_image_error(table_frame):
    backend = GeometricBackend()
    with pytest.raises(ImageError, match="millimetres"):
        backend.perceive(dataclasses.replace(table_frame, depth=table_frame.depth * 1000))
    bad = dataclasses.replace(table_frame)
    bad.depth = table_frame.depth[:, :600]                          # wrong shape after checks
    with pytest.raises(ImageError, match="does not match"):
        backend.perceive(bad)


# -- containers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    from spatialpin_ros.sim.scene_spec import load_scene_file
    from spatialpin_ros.sim.world import SimWorld
    mp = pytest.MonkeyPatch()
    mp.setenv("SPATIALPIN_MESH_CACHE", str(tmp_path_factory.mktemp("meshes")))
    try:
        with SimWorld(load_scene_file(SCENES / "containers.yaml")) as world:
            frame = world.render()
            truth = world.truth()
    finally:
        mp.undo()
    scene = GeometricBackend().perceive(frame)
    return scene, truth


def _nearest(scene: Scene, position: np.ndarray):
    return min(scene.objects, key=lambda o: np.linalg.norm(o.center[:2] - position[:2]))


@pytest.mark.parametrize("name", ["blue_bowl", "white_cup", "tray"])
def test_containers_are_reported_with_their_inner_depth(containers, name):
    scene, truth = containers
    t = next(t for t in truth if t.name == name)
    assert t.container and t.inner_depth > 0
    o = _nearest(scene, t.pose.position)
    assert np.linalg.norm(o.center[:2] - t.pose.position[:2]) < 0.03, (o.label, o.center)
    # Measured (lead's backend as of this test): bowl 0.041 vs 0.059 true (-30 %), cup 0.047 vs
    # 0.087 (-46 %), tray 0.043 vs 0.040 (+8 %).
    assert o.container, f"{name}: not reported as a container ({o.label})"
    err = abs(o.inner_depth - t.inner_depth) / t.inner_depth
    assert err <= 0.5, f"{name}: inner depth {o.inner_depth:.3f} vs {t.inner_depth:.3f} m"


def test_a_solid_box_is_not_a_container(containers):
    scene, truth = containers
    t = next(t for t in truth if t.name == "red_box")
    o = _nearest(scene, t.pose.position)
    assert np.linalg.norm(o.center[:2] - t.pose.position[:2]) < 0.03
    assert not o.container and o.inner_depth == 0.0, o


# -- flat items --------------------------------------------------------------------------------

SHEET = {"xy": (0.55, 0.1), "size": (0.2, 0.14, 0.005), "yaw": 0.2, "rgb": (240, 240, 240)}
BOX = {"xy": (0.62, -0.08), "size": (0.06, 0.05, 0.07), "yaw": 0.3, "rgb": (40, 40, 200)}


@pytest.mark.parametrize("thickness", [
    pytest.param(0.005, marks=pytest.mark.xfail(strict=False, reason=(
        "a 5 mm sheet is below the segmentation's foreground threshold (SegmentationParams."
        "min_height = 6 mm): it is in neither objects nor flat_items (measured: flat_items "
        "empty at 3 and 5 mm, found from 8 mm up)"))),
    0.010],
    ids=["5mm", "10mm"])
def test_a_thin_sheet_is_a_flat_item_not_an_object(thickness):
    sheet = dict(SHEET, size=(0.2, 0.14, thickness))
    frame = render([sheet, BOX])
    scene = GeometricBackend().perceive(frame)
    assert [o.shape for o in scene.objects] == ["box"], [o.label for o in scene.objects]
    assert np.linalg.norm(scene.objects[0].center[:2] - BOX["xy"]) < 0.02
    assert len(scene.flat_items) == 1, [o.label for o in scene.flat_items]
    flat = scene.flat_items[0]
    assert np.linalg.norm(flat.center[:2] - sheet["xy"]) < 0.02
    assert sorted(flat.size[:2]) == pytest.approx(sorted(sheet["size"][:2]), abs=0.015)
    assert flat.size[2] < 0.022
    dropped = GeometricBackend(flat_items="drop").perceive(frame)
    assert len(dropped.objects) == 1 and dropped.flat_items == []
    with pytest.raises(ValueError, match="flat_items"):
        GeometricBackend(flat_items="keep")
