"""``spatialpin perceive`` (no ROS): a simulated frame written as a folder of pairs, as one pair,
and as an MCAP recording with sensor_msgs topics; the priors JSON and its round trip; bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spatialpin_ros.cli import main
from spatialpin_ros.core.masks import decode_rle
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.perception import frame_sources as fs
from spatialpin_ros.perception.priors_json import SCHEMA, scene_from_json, scene_to_json
from spatialpin_ros.sim.scene_spec import parse_scene
from spatialpin_ros.sim.world import SimWorld

SCENE = {
    "camera": {"width": 640, "height": 480, "fov_deg": 58, "eye": [1.1, 0.05, 0.55],
               "target": [0.5, 0.0, 0.02]},
    "objects": [
        {"name": "red_block", "shape": "box", "size": [0.06, 0.045, 0.05], "color": "red",
         "position": [0.5, 0.08, 0.025], "yaw_deg": 30},
        {"name": "blue_block", "shape": "box", "size": [0.05, 0.05, 0.04], "color": "blue",
         "position": [0.45, -0.08, 0.02], "yaw_deg": 0},
        {"name": "yellow_cylinder", "shape": "cylinder", "size": [0.05, 0.05, 0.08],
         "color": "yellow", "position": [0.6, -0.02, 0.04]},
    ],
}


@pytest.fixture(scope="module")
def sim():
    """(frame, ground-truth scene) of the scene above, rendered once."""
    with SimWorld(parse_scene(SCENE, name="perceive_cli")) as world:
        frame, seg = world.render(with_segmentation=True)
        return frame, world.ground_truth(seg)


def write_pair(folder: Path, frame, pose: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "color.png"), frame.rgb[..., ::-1])
    mm = np.clip(np.nan_to_num(frame.depth) * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
    cv2.imwrite(str(folder / "depth.png"), mm)
    meta = {"K": frame.camera.K.tolist(), "depth_unit": "mm", "width": frame.camera.width,
            "height": frame.camera.height}
    if pose:
        meta["camera_pose"] = frame.camera_pose.as_xyz_quat()
    (folder / "meta.json").write_text(json.dumps(meta))


def check_doc(doc: dict, out: Path, cam: CameraModel) -> None:
    """Schema, masks (non-empty, inside their roi, full image size) and the overlay."""
    assert doc["schema"] == SCHEMA and doc["status"] == "ok", doc.get("status_message")
    assert doc["camera"]["width"] == cam.width and doc["camera"]["fx"] == pytest.approx(cam.fx)
    assert len(doc["support_plane"]) == 4
    assert doc["objects"], "no objects perceived"
    for o in doc["objects"] + doc["flat_items"]:
        assert len(o["center_m"]) == 3 and len(o["quaternion_xyzw"]) == 4
        assert len(o["size_m"]) == 3 and len(o["roi_xywh"]) == 4
        assert o["mask_rle"] is not None, f"{o['id']} has no mask"
        m = decode_rle(o["mask_rle"])
        assert m.shape == (cam.height, cam.width)
        x, y, w, h = o["roi_xywh"]
        inside = np.zeros_like(m)
        inside[y:y + h, x:x + w] = True
        assert m.sum() > 0 and not (m & ~inside).any(), f"{o['id']}: mask outside its roi"
    png = cv2.imread(str(out / f"{doc['frame']}.png"))
    assert png is not None and png.shape[2] == 3


def test_folder_of_pairs_with_and_without_camera_pose(sim, tmp_path, capsys):
    frame, gt = sim
    root = tmp_path / "frames"
    write_pair(root / "posed", frame, pose=True)
    write_pair(root / "unposed", frame, pose=False)
    out = tmp_path / "out"
    assert main(["perceive", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1] posed: ok" in printed and "[2] unposed: ok" in printed, printed
    summary = json.loads((out / "summary.json").read_text())
    assert [f["frame"] for f in summary["frames"]] == ["posed", "unposed"]
    assert summary["num_unreadable"] == 0 and summary["latency_ms"]["perceive"]["max"] > 0
    docs = {n: json.loads((out / f"{n}.json").read_text()) for n in ("posed", "unposed")}
    for doc in docs.values():
        check_doc(doc, out, frame.camera)
    # With the camera pose the priors are in the world frame, near the truth.
    assert docs["posed"]["world_frame"] == "world"
    centres = np.array([o["center_m"] for o in docs["posed"]["objects"]])
    for g in gt.objects:
        assert np.linalg.norm(centres - g.center, axis=1).min() < 0.03, g.label
    # Without it, in a gravity frame of the table (no workspace bounds, so the robot's base may
    # show up too): the same objects with the same heights.
    assert docs["unposed"]["world_frame"] != "world"
    for o in docs["posed"]["objects"]:
        same = [u for u in docs["unposed"]["objects"] if u["color_name"] == o["color_name"]]
        assert same, f"{o['label']} not found without the camera pose"
        assert min(abs(u["size_m"][2] - o["size_m"][2]) for u in same) < 0.01, o["label"]


def test_backend_that_needs_a_pose_gets_the_tables_frame(sim, tmp_path):
    from spatialpin_ros.core.errors import PerceptionError
    from spatialpin_ros.perception import register_backend
    from spatialpin_ros.perception.geometric import GeometricBackend

    class NeedsPose(GeometricBackend):
        def perceive(self, frame, scene_id=""):
            if frame.camera_pose is None:
                raise PerceptionError("the frame has no camera pose")
            return super().perceive(frame, scene_id)

    register_backend("test_needs_pose", NeedsPose)
    write_pair(tmp_path / "f" / "a", sim[0], pose=False)
    out = tmp_path / "o"
    assert main(["perceive", str(tmp_path / "f"), "--out", str(out),
                 "--backend", "test_needs_pose"]) == 0
    doc = json.loads((out / "a.json").read_text())
    assert doc["world_frame"] == "support_plane" and doc["status"] == "ok" and doc["objects"]
    # the camera is above the table's plane z = 0
    assert doc["camera_pose"]["position"][2] > 0.3
    np.testing.assert_allclose(doc["support_plane"], [0, 0, 1, 0], atol=0.02)


def test_priors_json_round_trip(sim, tmp_path):
    frame, _ = sim
    write_pair(tmp_path / "f" / "a", frame, pose=True)
    assert main(["perceive", str(tmp_path / "f"), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "a.json").read_text())
    scene = scene_from_json(doc)
    assert scene.objects and all(o.mask is not None for o in scene.objects)
    again = scene_to_json(scene, source=doc["source"], frame=doc["frame"],
                          timing_ms=doc["timing_ms"])
    assert again == doc

    # A hand-made scene: masks cut by the image border, no mask, flat items, status.
    cam = CameraModel(40, 30, 50.0, 50.0, 19.5, 14.5, "cam")
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:] = True
    objs = [ObjectPrior("obj_0", "red box", Pose([0.1, 0.2, 0.03], [0, 0, 0.3, 1]),
                        [0.05, 0.04, 0.06], "box", "red", 0.9, (30, 25, 12, 10), 120,
                        ["front", "left", "up"], False, (200, 10, 10), mask=mask),
            ObjectPrior("obj_1", "bowl", Pose([0.3, 0, 0.02]), [0.1, 0.1, 0.04], "cylinder",
                        container=True, inner_depth=0.03, roi=(0, 0, 5, 5))]
    s = Scene("s", objs, cam, Pose([0, 0, 0.5], [1, 0, 0, 0]), np.array([0, 0, 1.0, 0]),
              stamp=12.5, frame_id="world", flat_items=[objs[1]], status="ok")
    back = scene_from_json(json.loads(json.dumps(scene_to_json(s))))
    assert back.objects[0].mask.shape == (10, 12)
    assert np.array_equal(back.objects[0].mask[:5, :10], mask[:5, :10])  # the visible part
    assert back.objects[1].mask is None and back.objects[1].container
    assert back.objects[1].inner_depth == pytest.approx(0.03)
    assert back.objects[0].rgb == (200, 10, 10) and back.objects[0].axis_names[0] == "front"
    np.testing.assert_allclose(back.objects[0].pose.quaternion, objs[0].pose.quaternion,
                               atol=1e-7)
    assert back.stamp == 12.5 and back.flat_items[0].label == "bowl"
    with pytest.raises(ValueError, match="schema"):
        scene_from_json({"schema": "other/1"})


def test_one_pair_with_float_depth_and_intrinsics(sim, tmp_path):
    frame, _ = sim
    cv2.imwrite(str(tmp_path / "shot_color.png"), frame.rgb[..., ::-1])
    np.save(tmp_path / "shot_depth.npy", frame.depth.astype(np.float32))
    c = frame.camera
    out = tmp_path / "out"
    assert main(["perceive", "--color", str(tmp_path / "shot_color.png"),
                 "--depth", str(tmp_path / "shot_depth.npy"),
                 "--intrinsics", f"{c.fx},{c.fy},{c.cx},{c.cy}", "--out", str(out),
                 "--camera-pose", ",".join(map(str, frame.camera_pose.as_xyz_quat())),
                 "-p", "min_height:=0.005"]) == 0
    doc = json.loads((out / "shot.json").read_text())
    check_doc(doc, out, c)
    assert doc["world_frame"] == "world"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"] == {"min_height": 0.005}


# -- MCAP ----------------------------------------------------------------------------------------
TIME = "int32 sec\nuint32 nanosec\n"
HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
SEP = "\n" + "=" * 80 + "\n"
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
             "uint8 is_bigendian\nuint32 step\nuint8[] data\n"
             + SEP + "MSG: std_msgs/Header\n" + HEADER + SEP + "MSG: builtin_interfaces/Time\n"
             + TIME)
INFO_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\n"
            "float64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\n"
            "uint32 binning_y\nsensor_msgs/RegionOfInterest roi\n"
            + SEP + "MSG: std_msgs/Header\n" + HEADER + SEP + "MSG: builtin_interfaces/Time\n"
            + TIME + SEP + "MSG: sensor_msgs/RegionOfInterest\nuint32 x_offset\nuint32 y_offset\n"
            "uint32 height\nuint32 width\nbool do_rectify\n")


def _header(t: float, frame_id: str) -> dict:
    return {"stamp": {"sec": int(t), "nanosec": int(round((t % 1) * 1e9))}, "frame_id": frame_id}


COMPRESSED_DEF = ("std_msgs/Header header\nstring format\nuint8[] data\n"
                  + SEP + "MSG: std_msgs/Header\n" + HEADER + SEP
                  + "MSG: builtin_interfaces/Time\n" + TIME)


def write_mcap(path: Path, frame, stamps: list[float], depth_delay: float = 0.01,
               color_topic: str = fs.DEFAULT_COLOR_TOPIC, compressed: bool = False,
               info: bool = True) -> None:
    """Colour (bgr8, or JPEG on ``<topic>/compressed``), depth (16UC1, ``depth_delay`` s later)
    and camera_info per stamp, as realsense-ros publishes them."""
    from mcap_ros2.writer import Writer
    h, w = frame.rgb.shape[:2]
    bgr = np.ascontiguousarray(frame.rgb[..., ::-1])
    mm = np.clip(frame.depth * 1000.0 + 0.5, 0, 65535).astype("<u2")
    c = frame.camera
    with open(path, "wb") as f:
        wr = Writer(f)
        img = wr.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
        info_schema = wr.register_msgdef("sensor_msgs/msg/CameraInfo", INFO_DEF)
        jpeg_schema = wr.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
        jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        for t in stamps:
            ns = int(t * 1e9)
            opt = "camera_color_optical_frame"
            if compressed:
                wr.write_message(color_topic + "/compressed", jpeg_schema, {
                    "header": _header(t, opt), "format": "bgr8; jpeg compressed bgr8",
                    "data": jpeg}, ns)
            else:
                wr.write_message(color_topic, img, {
                    "header": _header(t, opt), "height": h, "width": w, "encoding": "bgr8",
                    "is_bigendian": 0, "step": w * 3, "data": bgr.tobytes()}, ns)
            if info:
                wr.write_message(fs.DEFAULT_INFO_TOPIC, info_schema, {
                    "header": _header(t, opt), "height": h, "width": w,
                    "distortion_model": "plumb_bob", "d": [0.0] * 5,
                    "k": [c.fx, 0, c.cx, 0, c.fy, c.cy, 0, 0, 1],
                    "r": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                    "p": [c.fx, 0, c.cx, 0, 0, c.fy, c.cy, 0, 0, 0, 1, 0], "binning_x": 0,
                    "binning_y": 0, "roi": {"x_offset": 0, "y_offset": 0, "height": 0,
                                            "width": 0, "do_rectify": False}}, ns)
            td = t + depth_delay
            wr.write_message(fs.DEFAULT_DEPTH_TOPIC, img, {
                "header": _header(td, opt), "height": h, "width": w, "encoding": "16UC1",
                "is_bigendian": 0, "step": w * 2, "data": mm.tobytes()}, int(td * 1e9))
        wr.finish()


def test_mcap_recording(sim, tmp_path, capsys):
    frame, _ = sim
    bag = tmp_path / "rec.mcap"
    write_mcap(bag, frame, [100.0, 100.2, 100.4, 100.6])
    out = tmp_path / "out"
    assert main(["perceive", str(bag), "--out", str(out), "--every", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [f["frame"] for f in summary["frames"]] == ["rec_00000", "rec_00001"]
    assert [f["depth_dt_s"] for f in summary["frames"]] == pytest.approx([0.01, 0.01])
    doc = json.loads((out / "rec_00001.json").read_text())
    check_doc(doc, out, frame.camera)
    assert doc["stamp"] == pytest.approx(100.4)
    assert doc["camera"]["frame_id"] == "camera_color_optical_frame"
    # colour and depth too far apart: nothing pairs
    assert main(["perceive", str(bag), "--out", str(out), "--max-dt", "0.001"]) == 2
    assert "within --max-dt 0.001" in capsys.readouterr().err


def test_mcap_compressed_colour_and_camera_info_file(sim, tmp_path, capsys):
    frame, _ = sim
    bag = tmp_path / "jpeg.mcap"
    write_mcap(bag, frame, [5.0], compressed=True, info=False)
    c = frame.camera
    info = tmp_path / "camera_info.yaml"  # as camera_calibration writes it
    info.write_text(f"image_width: {c.width}\nimage_height: {c.height}\ncamera_name: d435\n"
                    f"camera_matrix:\n  rows: 3\n  cols: 3\n  data: [{c.fx}, 0, {c.cx}, 0, "
                    f"{c.fy}, {c.cy}, 0, 0, 1]\ndistortion_model: plumb_bob\n")
    out = tmp_path / "out"
    assert main(["perceive", str(bag), "--camera-info", str(info), "--out", str(out)]) == 0
    assert "using /camera/camera/color/image_raw/compressed" in capsys.readouterr().err
    check_doc(json.loads((out / "jpeg_00000.json").read_text()), out, c)


def test_image_decoders_are_shared_with_the_ros_glue():
    conv = pytest.importorskip("spatialpin_ros.ros.conversions")
    assert conv.rgb_from_msg is fs.rgb_from_image and conv.depth_from_msg is fs.depth_from_image


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_exits_2_with_one_line(sim, tmp_path, capsys):
    frame, _ = sim

    def run(*argv) -> str:
        assert main(["perceive", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spatialpin perceive: ") and "\n" not in err, err
        return err

    assert "file not found" in run("--color", str(tmp_path / "nope.png"), "--depth",
                                   str(tmp_path / "nope_depth.png"), "--intrinsics", "1,1,1,1")
    assert "not found" in run(str(tmp_path / "missing_folder"))
    (tmp_path / "empty").mkdir()
    assert "no colour/depth pairs" in run(str(tmp_path / "empty"))
    # flat pairs but no intrinsics
    flat = tmp_path / "flat"
    flat.mkdir()
    cv2.imwrite(str(flat / "a_color.png"), frame.rgb[..., ::-1])
    cv2.imwrite(str(flat / "a_depth.png"), np.zeros(frame.depth.shape, np.uint16))
    assert "no intrinsics" in run(str(flat))
    assert "fx,fy,cx,cy" in run(str(flat), "--intrinsics", "500,500")
    assert "name:=value" in run(str(flat), "--intrinsics", "500,500,320,240", "-p", "oops")
    assert "min_heigth" in run(str(flat), "--intrinsics", "500,500,320,240",
                               "-p", "min_heigth:=0.01")
    # an MCAP without the camera topics lists the topics it has
    bag = tmp_path / "other.mcap"
    write_mcap(bag, frame, [1.0], color_topic="/cam/rgb")
    err = run(str(bag))
    assert f"colour topic {fs.DEFAULT_COLOR_TOPIC} is not in other.mcap" in err
    assert "/cam/rgb (sensor_msgs/msg/Image)" in err and fs.DEFAULT_DEPTH_TOPIC in err


def test_empty_depth_is_reported_per_frame_not_fatal(sim, tmp_path):
    frame, _ = sim
    root = tmp_path / "f"
    write_pair(root / "good", frame, pose=False)
    (root / "blank").mkdir()
    cv2.imwrite(str(root / "blank" / "color.png"), frame.rgb)
    cv2.imwrite(str(root / "blank" / "depth.png"), np.zeros(frame.depth.shape, np.uint16))
    (root / "blank" / "meta.json").write_text((root / "good" / "meta.json").read_text())
    (root / "broken").mkdir()
    (root / "broken" / "color.png").write_bytes(b"not a png")
    (root / "broken" / "depth.png").write_bytes(b"not a png")
    (root / "broken" / "meta.json").write_text((root / "good" / "meta.json").read_text())
    out = tmp_path / "out"
    assert main(["perceive", str(root), "--out", str(out)]) == 1  # one frame unreadable
    summary = {f["frame"]: f for f in json.loads((out / "summary.json").read_text())["frames"]}
    assert summary["good"]["status"] == "ok"
    assert summary["broken"]["status"] == "unreadable" and "cannot read" in summary[
        "broken"]["error"]
    blank = json.loads((out / "blank.json").read_text())
    assert blank["status"] != "ok" and blank["objects"] == [] and blank["status_message"]
    assert (out / "blank.png").is_file()
