"""The "models" perception backend on the CPU with tiny random models built offline.

Each part loads its tiny checkpoint from a local directory (as a real one from the hub) and runs
its whole path: device pre-processing (checked against the transformers image processors), the
model, post-processing (checked against the processors' post-processing), then the lifting of
masks to 3D priors through the geometric backend's code on simulator frames.

Random weights give meaningless outputs. Where a test needs boxes and masks on the objects it uses
tiny models with a few hand-set weights (see tiny_perception_models: the detector predicts
grid-cell boxes, SAM whole-box masks, the depth model a constant depth) and a box threshold of 0,
so that the path from detections to priors is exercised end to end; what they check is the
plumbing and the format, not recognition quality.
"""

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from spatialpin_ros.core.errors import ModelLoadError, PerceptionError, SpatialPinError  # noqa: E402
from spatialpin_ros.core.types import (SHAPES, CameraModel, ObjectPrior,  # noqa: E402
                                       PerceptionStatus, Pose, Scene)
from spatialpin_ros.perception import available_backends, make_backend  # noqa: E402
from spatialpin_ros.perception.geometric import GeometricBackend  # noqa: E402
from spatialpin_ros.perception.model_utils import upload_image  # noqa: E402
from spatialpin_ros.perception.models import (ModelBackend, OpenVocabDetector,  # noqa: E402
                                              PromptableSegmenter, TransformersDepth,
                                              intrinsics, parse_object_lines)
from spatialpin_ros.sim.scene_spec import CameraSpec, random_scene  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402

import tiny_perception_models as tiny  # noqa: E402

TOP_DOWN_HEIGHT = 0.8    # metres above the table (TABLE_TOP_Z = 0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny checkpoints: random ("depth", "detector", "sam"), hand-set ("grid_detector",
    "full_sam", "flat_depth": 1.0 m everywhere) and a relative-depth one."""
    root = tmp_path_factory.mktemp("tiny_models")
    paths = tiny.build_all(root / "random")
    paths["grid_detector"] = tiny.build_tiny_owlv2(root / "grid_owlv2", grid_boxes=True)
    paths["full_sam"] = tiny.build_tiny_sam(root / "full_sam", full_masks=True)
    paths["flat_depth"] = tiny.build_tiny_depth(root / "flat_depth", constant_depth=1.0)
    return paths


@pytest.fixture(scope="module")
def frames():
    """A random tabletop (seed 1) seen obliquely, and the same scene seen straight down from
    TOP_DOWN_HEIGHT: (oblique RGB-D frame, top-down RGB-D frame)."""
    spec = random_scene(1)
    world = SimWorld(spec)
    try:
        oblique = world.render()
        world.set_camera(CameraSpec(width=640, height=480, fov_deg=58.0,
                                    eye=(0.6, 0.0, TOP_DOWN_HEIGHT), target=(0.6, 0.0, 0.0),
                                    up=(1.0, 0.0, 0.0)))
        top = world.render()
    finally:
        world.close()
    return oblique, top


def backend(models, **kw):
    args = dict(depth_model=models["depth"], detector_model=models["grid_detector"],
                segmenter_model=models["full_sam"], box_threshold=0.0, device="cpu")
    args.update(kw)
    return make_backend("models", **args)


# -- registry and configuration ------------------------------------------------------------------

def test_models_backend_is_registered_and_builds_a_geometric_backend(models):
    assert "models" in available_backends() and "geometric" in available_backends()
    b = backend(models, min_height=0.006, workspace_x=None)
    assert isinstance(b, ModelBackend) and isinstance(b, GeometricBackend)
    assert b.name == "models"
    assert b.params.segmentation.min_height == 0.006 and b.params.workspace_x is None
    assert isinstance(b.depth_estimator, TransformersDepth)
    assert b.detector.names[:3] == ("box", "block", "cube")
    with pytest.raises(ValueError, match="min_heigth"):
        backend(models, min_heigth=0.01)


def test_defaults_are_the_real_checkpoints():
    import inspect

    sig = inspect.signature(ModelBackend)
    assert sig.parameters["depth_model"].default == \
        "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"
    assert sig.parameters["detector_model"].default == "google/owlv2-base-patch16-ensemble"
    assert sig.parameters["segmenter_model"].default == "facebook/sam-vit-base"
    assert sig.parameters["box_threshold"].default == 0.3


# -- depth ------------------------------------------------------------------------------------------

def test_depth_preprocessing_matches_the_dpt_processor_and_output_is_metres(models, frames):
    rgb = frames[0].rgb
    d = TransformersDepth(models["depth"], device="cpu")
    ours = d.preprocess(upload_image(rgb, d.device))
    ref = d.processor(images=rgb, return_tensors="pt")["pixel_values"]
    assert ours.shape == ref.shape == (1, 3, 56, 70)    # 480x640 -> keep aspect, multiple of 14
    assert float((ours - ref).abs().mean()) < 0.03      # torch vs PIL bicubic
    depth = d.estimate(rgb, frames[0].camera)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth >= 0).all() and depth.max() <= 20.0
    # the processor's own post-processing of the same model output agrees
    with torch.inference_mode():
        out = d.model(pixel_values=ours)
        ref_depth = d.processor.post_process_depth_estimation(
            out, target_sizes=[(480, 640)])[0]["predicted_depth"].numpy()
    np.testing.assert_allclose(depth, ref_depth, rtol=1e-4, atol=1e-4)


def test_depth_scale_alignment_puts_the_plane_at_the_given_distance(models, frames):
    top = frames[1]
    d = TransformersDepth(models["flat_depth"], device="cpu", plane_distance=TOP_DOWN_HEIGHT)
    depth = d.estimate(top.rgb, top.camera)
    assert d.last["scale"] == pytest.approx(TOP_DOWN_HEIGHT / 1.0, rel=1e-3)
    assert np.median(depth) == pytest.approx(TOP_DOWN_HEIGHT, rel=1e-3)
    # no camera: intrinsics from the field of view
    assert d.estimate(top.rgb).shape == (480, 640)


# -- detection and segmentation -------------------------------------------------------------------

def test_detector_matches_owlv2_post_processing_and_names_come_from_the_list(models, frames):
    rgb = frames[0].rgb
    # the grid detector: the random box head saturates and gives degenerate (dropped) boxes
    det = OpenVocabDetector(models["grid_detector"], device="cpu", box_threshold=0.0,
                            names=["red box", "mug", "blue ball"])
    x = det.preprocess(upload_image(rgb, det.device))
    ref_x = det.processor(images=rgb, return_tensors="pt")["pixel_values"]
    assert x.shape == ref_x.shape == (1, 3, 64, 64)
    assert float((x - ref_x).abs().mean()) < 0.03        # torch vs scipy bilinear zoom
    found = det.detect(rgb)
    assert 1 <= len(found) <= det.max_detections
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (len(found), 4)
    assert set(found.names) <= {"red box", "mug", "blue ball"}
    assert (np.diff(found.scores) <= 1e-6).all() and ((found.scores >= 0) & (found.scores <= 1)).all()
    # the transformers forward + post-processing on the same pixels gives the same best box
    queries = [det.query_template.format(n) for n in det.names]
    tok = det.tokenizer(queries, padding="max_length", max_length=16, truncation=True,
                        return_tensors="pt")
    with torch.inference_mode():
        out = det.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                        pixel_values=x)
    ref = det.processor.post_process_object_detection(out, threshold=0.0,
                                                      target_sizes=[(480, 640)])[0]
    best = int(ref["scores"].argmax())
    assert found.scores[0] == pytest.approx(float(ref["scores"][best]), abs=1e-5)
    assert found.names[0] == det.names[int(ref["labels"][best])]
    ref_box = ref["boxes"][best].numpy().clip([0, 0, 0, 0], [640, 480, 640, 480])
    np.testing.assert_allclose(found.boxes[0], ref_box, atol=0.05)
    # a threshold above every score: nothing
    det.box_threshold = 1.0
    assert len(det.detect(rgb)) == 0


def test_boxes_are_valid_and_nms_drops_duplicates(models, frames):
    det = OpenVocabDetector(models["grid_detector"], device="cpu", box_threshold=0.0,
                            max_detections=16)
    found = det.detect(frames[0].rgb)
    assert len(found) >= 10                             # grid cells do not overlap
    # the random head's degenerate boxes are dropped, whatever their score
    assert len(OpenVocabDetector(models["detector"], device="cpu", box_threshold=0.0)
               .detect(frames[0].rgb)) == 0
    w = found.boxes[:, 2] - found.boxes[:, 0]
    h = found.boxes[:, 3] - found.boxes[:, 1]
    assert (w >= 1).all() and (h >= 1).all()
    assert (found.boxes[:, [0, 2]] <= 640).all() and (found.boxes[:, [1, 3]] <= 480).all()
    from spatialpin_ros.perception.models_detect import box_iou, fast_nms
    b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert fast_nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [True, False, True]
    assert float(box_iou(b[:1], b[:1])) == pytest.approx(1.0)


def test_sam_masks_match_the_sam_processor_post_processing(models, frames):
    from transformers import SamProcessor

    rgb = frames[0].rgb
    sam = PromptableSegmenter(models["sam"], device="cpu", box_margin=None)
    boxes = np.array([[170, 180, 260, 310], [250, 180, 345, 260]], dtype=np.float32)
    masks, iou = sam.segment_boxes(rgb, boxes)
    assert masks.shape == (2, 480, 640) and masks.dtype == bool and iou.shape == (2,)
    proc = SamProcessor(image_processor=sam.processor)
    inp = proc(images=rgb, input_boxes=[boxes.tolist()], return_tensors="pt")
    x = sam.preprocess(upload_image(rgb, sam.device))
    assert x.shape == inp["pixel_values"].shape == (1, 3, 64, 64)
    assert float((x - inp["pixel_values"]).abs().mean()) < 0.03
    with torch.inference_mode():
        out = sam.model(pixel_values=x, input_boxes=inp["input_boxes"], multimask_output=False)
    ref = proc.post_process_masks(out.pred_masks, inp["original_sizes"],
                                  inp["reshaped_input_sizes"])[0][:, 0].numpy()
    assert ref.shape == masks.shape
    assert (ref == masks).mean() > 0.99
    assert sam.segment_boxes(rgb, np.zeros((0, 4)))[0].shape == (0, 480, 640)


def test_sam_masks_are_clipped_to_their_box(models, frames):
    sam = PromptableSegmenter(models["full_sam"], device="cpu", box_margin=0.1)
    box = np.array([[100, 200, 200, 300]], dtype=np.float32)
    masks, _ = sam.segment_boxes(frames[0].rgb, box)
    ys, xs = np.nonzero(masks[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (90, 210, 190, 310)


def test_gpu_speed_ups_compute_the_same_functions(models):
    """SAM attention without the materialised bias, device rel-pos indices, cached position
    embedding interpolation: same outputs as transformers' own code."""
    from transformers import DepthAnythingForDepthEstimation, SamModel

    from spatialpin_ros.perception.model_utils import cache_position_interpolation
    from spatialpin_ros.perception.sam_attention import (use_device_rel_pos,
                                                         use_fast_rel_pos_attention)

    ref, fast = (SamModel.from_pretrained(models["sam"]).eval() for _ in range(2))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():      # random attention weights (the tiny init is near zero there)
        for (name, p), (_, q) in zip(ref.named_parameters(), fast.named_parameters()):
            if "attn" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
                q.copy_(p)
    assert use_device_rel_pos(fast) == 2 and use_fast_rel_pos_attention(fast) == 2
    for la, lb in zip(ref.vision_encoder.layers, fast.vision_encoder.layers):
        side = la.window_size or 4                     # windowed and global layers
        h = torch.randn(3, side, side, 32, generator=gen)
        with torch.inference_mode():
            a, b = la.attn(h)[0], lb.attn(h)[0]
        assert float((a - b).abs().max()) < 1e-4 * float(a.abs().max())
    d_ref, d_fast = (DepthAnythingForDepthEstimation.from_pretrained(models["depth"]).eval()
                     for _ in range(2))
    assert cache_position_interpolation(d_fast) == 1
    x = torch.randn(1, 3, 56, 70, generator=gen)
    with torch.inference_mode():
        for _ in range(2):                             # computed, then from the cache
            assert torch.equal(d_ref(pixel_values=x).predicted_depth,
                               d_fast(pixel_values=x).predicted_depth)


# -- the backend: masks to 3D priors ----------------------------------------------------------------

def _check_scene(scene, frame, names):
    assert isinstance(scene, Scene)
    assert scene.camera == frame.camera and scene.frame_id == frame.world_frame
    assert scene.support_plane.shape == (4,)
    for o in scene.objects:                    # the geometric backend's message-ready format
        assert isinstance(o, ObjectPrior) and isinstance(o.pose, Pose)
        assert isinstance(o.id, str) and o.id.startswith("obj_")
        assert o.label in names and isinstance(o.color_name, str) and o.color_name
        assert o.shape in SHAPES and o.size.shape == (3,) and (o.size > 0).all()
        assert isinstance(o.confidence, float) and 0.0 <= o.confidence <= 1.0
        assert len(o.roi) == 4 and all(isinstance(v, int) for v in o.roi)
        assert len(o.axis_names) == 3 and isinstance(o.num_points, int)


def test_perceive_rgbd_frame_lifts_masks_to_priors_like_the_geometric_backend(models, frames):
    frame = frames[0]
    b = backend(models, object_names=["red box", "cup"])
    scene = b.perceive(frame, scene_id="t")
    _check_scene(scene, frame, {"red box", "cup"})
    assert len(scene.objects) >= 1
    assert b.last["depth_estimated"] is False
    assert b.last["detections"]["num_candidates"] >= 1
    geo = make_backend("geometric").perceive(frame)
    assert np.allclose(scene.support_plane, geo.support_plane, atol=1e-6)
    for name in ObjectPrior.__dataclass_fields__:   # same field types as the geometric ones
        a, g = getattr(scene.objects[0], name), getattr(geo.objects[0], name)
        assert type(a) is type(g), name
    # no detection above the threshold: an empty scene, not an error
    b.detector.box_threshold = 1.0
    assert b.perceive(frame).objects == []


@pytest.mark.parametrize("missing", [0.0, np.nan])
def test_rgb_only_frames_go_through_the_depth_model(models, frames, missing):
    top = frames[1]
    rgb_only = dataclasses.replace(top, depth=np.full_like(top.depth, missing))
    b = backend(models, depth_model=models["flat_depth"], plane_distance=TOP_DOWN_HEIGHT,
                workspace_x=None, workspace_y=None)
    calls = []
    orig = b.depth_estimator._forward
    b.depth_estimator._forward = lambda img: calls.append(1) or orig(img)
    scene = b.perceive(rgb_only)
    assert calls == [1] and b.last["depth_estimated"] is True
    assert b.last["depth_scale"] == pytest.approx(TOP_DOWN_HEIGHT, rel=1e-3)
    # the flat estimated depth, scaled to the camera height, puts the table at z = 0
    assert scene.support_plane[:3] @ [0, 0, 1] > 0.999
    assert scene.support_plane[3] == pytest.approx(0.0, abs=2e-3)
    _check_scene(scene, rgb_only, set(b.object_names))


@pytest.mark.parametrize("rgb_only", [False, True])
def test_overlapped_lifting_gives_the_sequential_priors(models, frames, rgb_only):
    """The GPU frame pipeline (depth-only half of the lifting while the segmenter runs; in order
    on the CPU) and the sequential path (models first, then the lifting) give the same priors."""
    frame = frames[1]
    kw = dict(depth_model=models["flat_depth"], plane_distance=TOP_DOWN_HEIGHT,
              workspace_x=None, workspace_y=None)
    if rgb_only:
        frame = dataclasses.replace(frame, depth=np.zeros_like(frame.depth))
    a = backend(models, overlap_lifting=True, **kw)
    b = backend(models, overlap_lifting=False, **kw)
    sa, sb = a.perceive(frame), b.perceive(frame)
    assert a.last["overlapped"] is True and b.last["overlapped"] is False
    assert a.last["depth_estimated"] is rgb_only
    assert {"prepare", "finish", "total"} <= set(a.last["model_timing_ms"])
    assert np.allclose(sa.support_plane, sb.support_plane)
    assert len(sa.objects) == len(sb.objects) >= (0 if rgb_only else 1)  # flat depth: none
    for oa, ob in zip(sa.objects, sb.objects):
        assert (oa.label, oa.shape, oa.roi, oa.confidence) == (ob.label, ob.shape, ob.roi,
                                                               ob.confidence)
        assert np.allclose(oa.pose.position, ob.pose.position)
        assert np.allclose(oa.size, ob.size)


def test_rgbd_frames_skip_the_depth_model_unless_asked(models, frames):
    top = frames[1]
    b = backend(models, depth_model=models["flat_depth"], workspace_x=None, workspace_y=None)
    calls = []
    orig = b.depth_estimator._forward
    b.depth_estimator._forward = lambda img: calls.append(1) or orig(img)
    b.perceive(top)
    assert calls == []
    b.always_estimate_depth = True
    scene = b.perceive(top)
    assert calls == [1]
    # unscaled flat depth of 1.0 m: the table appears 0.2 m below its true height
    assert scene.support_plane[3] == pytest.approx(0.2, abs=2e-3)


def test_rgb_only_without_a_depth_model_is_a_clear_perception_status(models, frames):
    b = backend(models, depth_model=None)
    rgb_only = dataclasses.replace(frames[0], depth=np.zeros_like(frames[0].depth))
    scene = b.perceive(rgb_only)          # an empty scene saying why, not an exception
    assert scene.status is PerceptionStatus.NO_VALID_DEPTH and scene.objects == []
    assert "depth pixels are valid" in scene.status_message
    with pytest.raises(PerceptionError, match="camera pose"):
        b.perceive(dataclasses.replace(frames[0], camera_pose=None))


def test_field_of_view_intrinsics(models, frames):
    assert intrinsics(640, 480, None, 58.0) == CameraModel.from_fov(640, 480, 58.0)
    assert intrinsics(640, 480, frames[0].camera) is frames[0].camera
    with pytest.raises(PerceptionError, match="camera_info"):
        intrinsics(320, 240, frames[0].camera)
    b = backend(models, fov_deg=58.0)
    scene = b.perceive(frames[0])
    f = 240 / math.tan(math.radians(29.0))
    assert scene.camera.fx == pytest.approx(f) and scene.camera.cx == pytest.approx(319.5)


# -- object names ------------------------------------------------------------------------------------

def test_parse_spatialpin_object_lines():
    reply = """Here are the objects:
Object 1: mug of color red, texture glossy at location left
- **Object 2:** box of color blue, texture matte at location center.
Object 3: apple of color none, texture smooth at location right
Object 4: red block of color red, texture matte at location top
object 5: Bowl of colour White, texture ceramic, at location bottom right
Object 6: mug of color red, texture glossy at location right
Something else entirely."""
    assert parse_object_lines(reply) == ["red mug", "blue box", "apple", "red block",
                                         "white bowl"]
    assert parse_object_lines("") == []


def test_names_from_a_vlm_answer_prompt_the_detector(models, frames):
    b = backend(models)
    names = b.set_object_names_from_text("Object 1: cup of color yellow, texture matte at "
                                         "location left\nObject 2: box of color green, texture "
                                         "matte at location right", keep=["table"])
    assert names == ["table", "yellow cup", "green box"] and b.object_names == tuple(names)
    scene = b.perceive(frames[0])
    assert {o.label for o in scene.objects} <= set(names)

    class FakeVLM:
        def generate(self, system, prompt, images, max_tokens=256):
            assert "Object idx: x of color y, texture z at location w" in prompt
            assert len(images) == 1
            return type("R", (), {"text": "Object 1: ball of color purple, texture smooth at "
                                          "location center"})()

    assert b.find_object_names(FakeVLM(), frames[0].rgb) == ["purple ball"]
    with pytest.raises(ValueError, match="at least one object name"):
        b.set_object_names([" ", ""])


# -- load errors ----------------------------------------------------------------------------------------

def test_load_errors_are_clear(models, tmp_path):
    with pytest.raises(ModelLoadError, match="no such local directory"):
        TransformersDepth(str(tmp_path / "nope"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        OpenVocabDetector(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ModelLoadError, match="holds a 'sam' model.*expected model type "
                                             "'depth_anything'"):
        TransformersDepth(models["sam"], device="cpu")
    with pytest.raises(ModelLoadError, match="holds a 'depth_anything' model.*'owlv2'"):
        make_backend("models", depth_model=models["depth"], detector_model=models["depth"],
                     segmenter_model=models["sam"], device="cpu")
    with pytest.raises(ModelLoadError, match="holds a 'owlv2' model.*'sam'"):
        PromptableSegmenter(models["detector"], device="cpu")
    with pytest.raises(ModelLoadError, match="needs its image processor"):
        TransformersDepth(torch.nn.Linear(2, 2), device="cpu")
    assert issubclass(ModelLoadError, SpatialPinError)


def test_relative_depth_checkpoints_are_refused(tmp_path):
    import json

    path = tiny.build_tiny_depth(tmp_path / "rel")
    cfg = json.loads((tmp_path / "rel" / "config.json").read_text())
    cfg["depth_estimation_type"] = "relative"
    (tmp_path / "rel" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="relative depth"):
        TransformersDepth(path, device="cpu")


@pytest.mark.parametrize("overlap", [False, True])
def test_torch_lifting_gives_the_numpy_priors(models, frames, overlap):
    """``lifting="torch"`` (the masks stay on the models' device; here the CPU) and the numpy
    lifting give the same priors, in the sequential and the overlapped frame paths."""
    frame = frames[1]
    kw = dict(depth_model=models["flat_depth"], plane_distance=TOP_DOWN_HEIGHT,
              workspace_x=None, workspace_y=None, overlap_lifting=overlap)
    a = backend(models, lifting="torch", **kw)
    b = backend(models, lifting="numpy", **kw)
    assert a.torch_lifting and not b.torch_lifting
    sa, sb = a.perceive(frame), b.perceive(frame)
    assert a.last["lifting"] == "torch" and b.last["lifting"] == "numpy"
    assert isinstance(a._last_seg.masks[0], torch.Tensor)
    assert len(sa.objects) == len(sb.objects) >= 1
    for oa, ob in zip(sa.objects, sb.objects):
        assert (oa.label, oa.shape, oa.roi, oa.confidence) == (ob.label, ob.shape, ob.roi,
                                                               ob.confidence)
        assert np.abs(oa.pose.position - ob.pose.position).max() < 1e-6
        assert np.abs(oa.size - ob.size).max() < 1e-6
        assert np.array_equal(oa.mask, ob.mask)
    with pytest.raises(ValueError, match="lifting"):
        backend(models, lifting="gpu")
