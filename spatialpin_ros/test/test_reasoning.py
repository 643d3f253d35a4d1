"""Spatial question answering core (no ROS): parsing, references, geometric answers, VLM reply
validation and fallback, ZeroVLM views, registration."""

import math

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, look_at
from spatialpin_ros.reasoning.engine import ReplyError, SpatialQA, parse_reply
from spatialpin_ros.reasoning.facts import scene_facts
from spatialpin_ros.reasoning.query import QuestionError, parse_question
from spatialpin_ros.reasoning.resolve import AmbiguousReference, UnknownObject, resolve
from spatialpin_ros.reasoning.views import render_view, view_pose, zerovlm_views

from reasoning_scene import make_scene, obj as box  # noqa: E402


@pytest.fixture
def scene():
    return make_scene(5)


@pytest.mark.parametrize("text, kind, name, refs", [
    ("How far is the red block from the blue block?", "metric", "distance", 2),
    ("what's the distance between the red box and the green can", "metric", "distance", 2),
    ("How much space is there between the red box and the blue cube?", "metric", "gap", 2),
    ("What is the horizontal distance between the red box and the green can?", "metric", "horizontal_distance", 2),
    ("how tall is the green cylinder", "metric", "height", 1),
    ("What is the width of the blue box?", "metric", "width", 1),
    ("How far away is the yellow block from the camera?", "metric", "distance_to_camera", 1),
    ("Is the red block to the left of the blue block?", "relation", "left_of", 2),
    ("is the yellow block on top of the blue one?", "relation", "on_top_of", 2),
    ("Is the green cylinder behind the blue block?", "relation", "behind", 2),
    ("Is the red ball closer to the camera than obj_2?", "relation", "closer_to_camera", 2),
    ("Which is taller, the red block or the green cylinder?", "choice", "taller", 2),
    ("What is the angle between the red block and the blue block?", "angle", "yaw_relative", 2),
    ("How much should I rotate the red block to align it with the blue block?", "angle",
     "align_rotation", 2),
    ("In which direction is the green cylinder from the red block?", "angle", "direction", 2),
    ("How far did the camera move between the two views?", "two_view", "camera_translation", 0),
    ("By how many degrees did the camera rotate?", "two_view", "camera_rotation", 0),
    ("How far did the red block move?", "two_view", "object_displacement", 1),
])
def test_parsing(text, kind, name, refs):
    q = parse_question(text)
    assert (q.kind, q.name, len(q.refs)) == (kind, name, refs)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 10000, "__import__('os').system('rm -rf /')",
                                 "what is the meaning of life?", "print(open('/etc/passwd'))"])
def test_bad_questions_are_refused_and_never_run(bad):
    with pytest.raises(QuestionError):
        parse_question(bad)


def test_references(scene):
    assert resolve("the blue block", scene).id == "obj_1"
    assert resolve("obj_2", scene).id == "obj_2"
    assert resolve("the green can", scene).id == "obj_2"
    assert resolve("the tallest object", scene).id == "obj_2"
    assert resolve("the red ball", scene).id == "obj_4"
    assert resolve("the left red object", scene).id == "obj_0"  # viewer's left is -y
    assert resolve("the top block", scene).id == "obj_3"
    with pytest.raises(AmbiguousReference, match="obj_0.*obj_4"):
        resolve("the red one", scene)
    with pytest.raises(UnknownObject, match="the scene has: obj_0"):
        resolve("the purple unicorn", scene)


def test_geometric_answers(scene):
    qa = SpatialQA()
    a = qa.ask("How far is the red block from the blue block?", scene)
    assert a.success and a.unit == "m" and a.value == pytest.approx(math.hypot(0.3, 0.005))
    assert a.object_ids == ["obj_0", "obj_1"] and "center" in a.explanation
    a = qa.ask("What is the gap between the blue block and the green cylinder?", scene)
    assert a.value == pytest.approx(0.2 - 0.04 - 0.02, abs=1e-6)
    assert qa.ask("Is the red block left of the blue block?", scene).value == 1.0
    assert qa.ask("Is the blue block left of the red block?", scene).value == 0.0
    assert qa.ask("Is the green cylinder in front of the blue block?", scene).value == 1.0
    assert qa.ask("Is the yellow block on top of the blue block?", scene).value == 1.0
    assert qa.ask("Is the red block on top of the blue block?", scene).value == 0.0
    assert qa.ask("Is the yellow block above the blue block?", scene).value == 1.0
    assert qa.ask("How tall is the green cylinder?", scene).value == pytest.approx(0.10)
    assert qa.ask("How far is the green cylinder from the camera?", scene).value == \
        pytest.approx(np.linalg.norm(np.array([0.2, 0.1, 0.05]) - [1, 0, 0.5]))
    a = qa.ask("Which is bigger, the blue block or the red ball?", scene)
    assert a.object_ids[0] == "obj_1"
    a = qa.ask("What is the angle between the red block and the blue block?", scene)
    assert a.unit == "deg" and a.value == pytest.approx(30.0)
    a = qa.ask("How much should I rotate the yellow block to align it with the red block?", scene)
    assert a.value == pytest.approx(20.0) and "counter-clockwise" in a.answer
    a = qa.ask("What is the angle between the green cylinder and the blue block?", scene)
    assert a.success and math.isnan(a.value) and "symmetric" in a.answer


def test_refusals_say_why(scene):
    qa = SpatialQA()
    for q, why in [("How far is the pink dragon from the blue block?", "no object matches"),
                   ("How far is the red one from the blue block?", "could be any of"),
                   ("", "empty"), ("x" * 10000, "limit"),
                   ("How far did the camera move?", "reference_scene_id")]:
        a = qa.ask(q, scene)
        assert not a.success and why in a.message, (q, a.message)
    assert "no scene" in qa.ask("How tall is the red block?", None).message
    assert "unknown backend" in qa.ask("How tall is the blue block?", scene, backend="x").message


def test_two_views_with_known_poses(scene):
    moved = scene.replace(
        objects=[o if o.id != "obj_2" else box("obj_2", "green", "cylinder", [0.2, 0.25, 0.05],
                                               [0.04, 0.04, 0.1]) for o in scene.objects],
        camera_pose=look_at([1.0, 0.3, 0.5], [0.0, 0.0, 0.0]))
    qa = SpatialQA()
    a = qa.ask("How far did the green cylinder move?", moved, scene)
    assert a.value == pytest.approx(0.15)
    a = qa.ask("How far did the camera move between the two views?", moved, scene)
    assert a.value == pytest.approx(0.3)
    a = qa.ask("By what angle did the camera rotate?", moved, scene)
    assert 10 < a.value < 25


def test_facts_block(scene):
    text = scene_facts(scene)
    assert "obj_3 (yellow box, box): center (0.000, 0.100, 0.080)" in text
    assert "down: obj_1" in text.split("obj_3 (")[1].split("\n")[0]
    assert "local axes" in text and "Camera at" in text


class FakeVLM:
    name = "fake"

    def __init__(self, text=None, error=None):
        self.text, self.error, self.calls = text, error, []

    def generate(self, system, prompt, images=(), max_tokens=256, temperature=0.0):
        self.calls.append((system, prompt, list(images)))
        if self.error:
            raise self.error
        from types import SimpleNamespace
        return SimpleNamespace(text=self.text)


def test_vlm_reply_validation(scene):
    q = parse_question("How far is the red block from the blue block?")
    a = parse_reply('Sure! {"answer": "30 cm", "value": 30, "unit": "cm", '
                    '"object_ids": ["obj_0", "obj_1"]}', q, scene)
    assert a.value == pytest.approx(0.30) and a.unit == "m"
    for bad, why in [('{"answer": "far", "value": null, "unit": "m"}', "no number"),
                     ("I think about 30 cm", "no JSON"),
                     ('{"answer": "x", "value": 1, "unit": "m", "object_ids": ["obj_9"]}',
                      "not in the scene"),
                     ('{"answer": "x", "value": -2, "unit": "m"}', "negative"),
                     ('{"answer": "x", "value": 2, "unit": "furlong"}', "unknown unit")]:
        with pytest.raises(ReplyError, match=why):
            parse_reply(bad, q, scene)
    rel = parse_question("Is the red block left of the blue block?")
    assert parse_reply('{"answer": "Yes, it is.", "value": null}', rel, scene).value == 1.0


def test_vlm_backend_prompt_and_fallback(scene):
    from spatialpin_ros.core.errors import SpatialPinError
    good = FakeVLM('{"answer": "0.3 m", "value": 0.31, "unit": "m", "object_ids": []}')
    qa = SpatialQA(vlms={"openai": good})
    img = np.zeros((48, 64, 3), np.uint8)
    a = qa.ask("How far is the red block from the blue block?", scene, backend="openai",
               image=img)
    assert a.success and a.value == pytest.approx(0.31) and a.backend == "openai"
    assert a.object_ids == ["obj_0", "obj_1"] and not a.message
    system, prompt, images = good.calls[0]
    assert "JSON" in system and "obj_0 (red box, box): center" in prompt and len(images) == 1
    garbage = FakeVLM("The distance is quite far, I would say.")
    a = SpatialQA(vlms={"openai": garbage}).ask(
        "How far is the red block from the blue block?", scene, backend="openai", image=img)
    assert a.success and a.value == pytest.approx(math.hypot(0.3, 0.005))
    assert "answered by the geometric backend" in a.message and "no JSON" in a.message
    down = FakeVLM(error=SpatialPinError("server at http://127.0.0.1:9/v1 is down"))
    a = SpatialQA(vlms={"openai": down}).ask("How tall is the blue block?", scene,
                                             backend="openai", image=img)
    assert a.success and "is down" in a.message and a.backend == "geometric (fallback)"


def test_zerovlm_views(scene):
    rng = np.random.default_rng(0)
    pts = np.concatenate([o.center + rng.uniform(-0.02, 0.02, (300, 3)) for o in scene.objects])
    cols = np.tile(np.array([[200, 50, 50]], np.uint8), (len(pts), 1))
    cam = CameraModel.from_fov(320, 240, 58)
    scene = scene.replace(camera=cam)
    for name in ("left", "right", "top", "30"):
        pose = view_pose(scene, name)
        img = render_view(pts, cols, cam, pose)
        assert img.shape == (240, 320, 3) and (img == [200, 50, 50]).all(-1).sum() > 100
        boxed = render_view(pts, cols, cam, pose, scene)  # wireframes and ids drawn in
        assert (boxed != img).any(-1).sum() > 100
    left, right = view_pose(scene, "left"), view_pose(scene, "right")
    assert left.position[1] < 0 < right.position[1] or left.position[1] > 0 > right.position[1]
    views, prompt = zerovlm_views(scene, (pts, cols), np.zeros((240, 320, 3), np.uint8),
                                  ["left", "right", "top"], stitch_views=True)
    assert views[0].shape == (480, 640, 3) and "top-left tile is the original" in prompt
    with pytest.raises(ValueError):
        view_pose(scene, "sideways")


def test_registration_recovers_camera_motion():
    import dataclasses
    from spatialpin_ros.reasoning.geometric import _rotation_angle_deg
    from spatialpin_ros.reasoning.registration import (camera_motion, plane_frame_pose,
                                                       register_scenes)
    from spatialpin_ros.sim.scene_spec import random_scene
    from spatialpin_ros.sim.world import SimWorld
    spec = random_scene(3)
    views = []
    with SimWorld(spec) as w:
        for eye in (spec.camera.eye, np.add(spec.camera.eye, [0.05, 0.15, -0.05])):
            w.set_camera(spec.camera, look_at(eye, spec.camera.target))
            f, truth = w.render(), w.ground_truth()
            P = plane_frame_pose(f.depth, f.camera)  # no pose known: a gravity frame
            T = P @ f.camera_pose.inverse()
            objs = [dataclasses.replace(o, pose=T @ o.pose) for o in truth.objects]
            cloud = P.transform_points(f.camera.backproject(f.depth)).reshape(-1, 3)
            views.append((truth.replace(objects=objs, camera_pose=P), cloud, f.camera_pose))
    T12 = register_scenes(views[0][0], views[0][1], views[1][0], views[1][1])
    est = camera_motion(views[0][0], views[1][0], T12)
    true = views[0][2].inverse() @ views[1][2]
    assert np.linalg.norm(est.position) == pytest.approx(np.linalg.norm(true.position), rel=0.05)
    assert _rotation_angle_deg(est.rotation.as_matrix()) == pytest.approx(
        _rotation_angle_deg(true.rotation.as_matrix()), abs=1.0)


def test_a_wrong_perceived_shape_is_bridged_by_a_unique_colour_and_said(scene):
    a = SpatialQA().ask("How tall is the yellow can?", scene)  # obj_3 is a yellow box
    assert a.success and a.object_ids == ["obj_3"] and "only yellow object" in a.message
    a = SpatialQA().ask("How tall is the red can?", scene)  # two red objects: refuse
    assert not a.success and "no object matches" in a.message
