"""Spatial QA through real VLMs, end to end: prompt building, image passing, reply parsing and
fallback of ``SpatialQA`` with ``TransformersVLM`` in-process and ``OpenAICompatibleClient``
against a real ``transformers serve`` process.

The models are tiny LLaVAs built offline by tiny_vlm.py: "oracle" models whose greedy output is a
fixed string (``build_fixed_reply_vlm``), and the plain random one, which answers gibberish. All
network traffic goes to 127.0.0.1.
"""

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at
from spatialpin_ros.reasoning.engine import SYSTEM_PROMPT, SpatialQA
from spatialpin_ros.vlm import OpenAICompatibleClient, TransformersVLM, VLMClient, VLMError, VLMReply
from tiny_vlm import build_fixed_reply_vlm, build_tiny_vlm, free_port, serve_missing_packages, serve_models

QUESTION = "How far is the red box from the blue box?"
GOOD_REPLY = ('{"answer": "They are 31 cm apart.", "value": 31, "unit": "cm", '
              '"object_ids": ["obj_0", "obj_1"]}')
NO_NUMBER_REPLY = '{"answer": "far", "value": null, "unit": "m"}'
GEO_DISTANCE = math.hypot(0.3, 0.005)  # centres of obj_0 and obj_1 below
CAMERA = CameraModel.from_fov(160, 120, 58)
# The 3D block's line heads for every object, with the centres (what the VLM must be told).
FACT_LINES = ["- obj_0 (red box, box): center (0.000, -0.200, 0.025)",
              "- obj_1 (blue box, box): center (0.000, 0.100, 0.030)",
              "- obj_2 (green cylinder, cylinder): center (0.200, 0.100, 0.050)"]


# ---------------------------------------------------------------------------------- helpers

@dataclass
class Call:
    system: str
    prompt: str
    images: list
    max_tokens: int
    reply: Optional[VLMReply] = None
    error: Optional[BaseException] = None


class RecordingVLM(VLMClient):
    """Wraps a real client: records what the engine sends, delegates ``generate`` unchanged."""

    def __init__(self, inner: VLMClient):
        self.inner = inner
        self.name = inner.name
        self.calls: list[Call] = []

    def generate(self, system, prompt, images=(), max_tokens=256, temperature=0.0):
        call = Call(system, prompt, [np.array(im, copy=True) for im in images], max_tokens)
        self.calls.append(call)
        try:
            call.reply = self.inner.generate(system, prompt, images, max_tokens=max_tokens,
                                             temperature=temperature)
        except Exception as e:
            call.error = e
            raise
        return call.reply


def _obj(id_, color, shape, center, size, yaw_deg=0.0):
    return ObjectPrior(id_, f"{color} {shape}", Pose.from_yaw(center, math.radians(yaw_deg)), size,
                       shape=shape, color_name=color, yaw_symmetric=shape == "cylinder")


def _check_request(call: Call, image: np.ndarray, n_images: int = 1) -> None:
    """The engine sent the JSON-asking system prompt, the question, every object's 3D line and
    the image itself first."""
    assert call.system == SYSTEM_PROMPT and "JSON object" in call.system
    assert f"Question: {QUESTION}" in call.prompt
    for line in FACT_LINES:
        assert line in call.prompt, (line, call.prompt)
    assert "Expected unit: m." in call.prompt
    assert len(call.images) == n_images
    assert call.images[0].shape == image.shape and call.images[0].dtype == np.uint8
    np.testing.assert_array_equal(call.images[0], image)


def _check_vlm_answer(a, backend: str) -> None:
    assert a.success, a.message
    assert a.backend == backend and a.message == ""
    assert a.value == pytest.approx(0.31)  # 31 cm in the reply, converted to metres
    assert a.unit == "m" and a.answer == "They are 31 cm apart."
    assert a.object_ids == ["obj_0", "obj_1"]
    assert "center" in a.explanation  # the geometric facts behind it


def _check_fallback(a, backend: str, *why: str) -> None:
    assert a.success and a.backend == "geometric (fallback)"
    assert a.message.startswith(f"{backend} backend failed (")
    assert a.message.endswith("answered by the geometric backend")
    for w in why:
        assert w in a.message, (w, a.message)
    assert a.value == pytest.approx(GEO_DISTANCE) and a.unit == "m"


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def scene():
    objs = [_obj("obj_0", "red", "box", [0.0, -0.2, 0.025], [0.05, 0.04, 0.05], 30.0),
            _obj("obj_1", "blue", "box", [0.0, 0.1, 0.03], [0.08, 0.06, 0.06]),
            _obj("obj_2", "green", "cylinder", [0.2, 0.1, 0.05], [0.04, 0.04, 0.10])]
    return Scene("s", objs, CAMERA, look_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.0]), [0, 0, 1, 0])


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(7).integers(0, 256, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cloud(scene):
    """Points filling each object's box, in its colour: (points (N, 3) world, colours (N, 3) uint8)."""
    rng = np.random.default_rng(0)
    rgb = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    pts = [o.center + rng.uniform(-0.5, 0.5, (400, 3)) * o.size for o in scene.objects]
    cols = [np.tile(np.array([rgb[o.color_name]], np.uint8), (400, 1)) for o in scene.objects]
    return np.concatenate(pts), np.concatenate(cols)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vlms")
    return {"good": build_fixed_reply_vlm(root / "good", GOOD_REPLY),
            "no_number": build_fixed_reply_vlm(root / "no_number", NO_NUMBER_REPLY),
            "garbage": build_tiny_vlm(root / "garbage")}


@pytest.fixture(scope="module")
def local(models):
    clients = {k: TransformersVLM(p, device="cpu") for k, p in models.items()}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """One unpinned `transformers serve` on 127.0.0.1: it loads the model directory each request names."""
    missing = serve_missing_packages()
    if missing:
        pytest.skip(f"`transformers serve` cannot start: missing packages {missing}")
    try:
        with serve_models(tmp_path_factory.mktemp("serve")) as base_url:
            yield base_url
    except RuntimeError as e:
        pytest.fail(str(e))


# ---------------------------------------------------------------------------------- tests

def test_fixed_reply_models_reply_exactly(local, image):
    for name, want in (("good", GOOD_REPLY), ("no_number", NO_NUMBER_REPLY)):
        for prompt, imgs in (("anything at all", [image]), (QUESTION, [image, image[:40, :50]]), ("x", [])):
            r = local[name].generate("a system prompt", prompt, imgs, max_tokens=64)
            assert r.text == want and r.completion_tokens == 2  # the reply token, then EOS
    assert local["garbage"].generate("", QUESTION, [image], max_tokens=8).text != GOOD_REPLY


def test_geometric_answer_differs_from_the_model(scene):
    a = SpatialQA().ask(QUESTION, scene)
    assert a.success and a.value == pytest.approx(GEO_DISTANCE) and abs(a.value - 0.31) > 0.005


def test_transformers_backend(local, scene, image):
    rec = RecordingVLM(local["good"])
    a = SpatialQA(vlms={"transformers": rec}).ask(QUESTION, scene, backend="transformers", image=image)
    _check_vlm_answer(a, "transformers")
    (call,) = rec.calls
    _check_request(call, image)
    assert call.reply.text == GOOD_REPLY and call.max_tokens == 256


def test_transformers_backend_garbage_reply_falls_back(local, scene, image):
    rec = RecordingVLM(local["garbage"])
    a = SpatialQA(vlms={"transformers": rec}, max_tokens=24).ask(QUESTION, scene, backend="transformers",
                                                                image=image)
    _check_fallback(a, "transformers", "invalid reply")
    (call,) = rec.calls
    _check_request(call, image)
    assert call.error is None and call.reply.completion_tokens >= 1
    assert repr(call.reply.text[:20])[:-1] in a.message  # the offending reply is quoted


def test_openai_backend_through_transformers_serve(server, models, scene, image):
    rec = RecordingVLM(OpenAICompatibleClient(server, model=models["good"], timeout_s=30.0))
    a = SpatialQA(vlms={"openai": rec}).ask(QUESTION, scene, backend="openai", image=image)
    _check_vlm_answer(a, "openai")
    (call,) = rec.calls
    _check_request(call, image)
    assert call.reply.text == GOOD_REPLY
    assert call.reply.model.startswith(models["good"])  # answered by the server, which names "<path>@main"
    assert call.reply.prompt_tokens > 16 and call.reply.completion_tokens == 2


@pytest.mark.parametrize("model, why", [("no_number", "the reply has no number"),
                                        ("garbage", "invalid reply")])
def test_openai_backend_invalid_reply_falls_back(server, models, scene, image, model, why):
    rec = RecordingVLM(OpenAICompatibleClient(server, model=models[model], timeout_s=30.0))
    a = SpatialQA(vlms={"openai": rec}, max_tokens=24).ask(QUESTION, scene, backend="openai", image=image)
    _check_fallback(a, "openai", "invalid reply", why)
    (call,) = rec.calls
    _check_request(call, image)
    assert call.error is None and call.reply.model.startswith(models[model])
    if model == "no_number":
        assert call.reply.text == NO_NUMBER_REPLY and '{"answer": "far"' in a.message


def test_openai_backend_server_down_falls_back_fast(scene, image):
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    rec = RecordingVLM(OpenAICompatibleClient(base_url, model="any", timeout_s=5.0))
    t0 = time.monotonic()
    a = SpatialQA(vlms={"openai": rec}).ask(QUESTION, scene, backend="openai", image=image)
    assert time.monotonic() - t0 < 3.0
    _check_fallback(a, "openai", base_url, "down or unreachable")
    (call,) = rec.calls
    assert isinstance(call.error, VLMError) and call.error.reason == "unreachable"
    _check_request(call, image)


def test_single_view_adds_a_zerovlm_view(local, scene, image, cloud):
    rec = RecordingVLM(local["good"])
    qa = SpatialQA(vlms={"transformers": rec}, views="single")
    a = qa.ask(QUESTION, scene, backend="transformers", image=image, cloud=cloud)
    _check_vlm_answer(a, "transformers")
    (call,) = rec.calls
    _check_request(call, image, n_images=2)
    view = call.images[1]
    assert view.shape == (CAMERA.height, CAMERA.width, 3) and view.dtype == np.uint8
    assert not np.array_equal(view, image)
    red = (np.abs(view.astype(int) - [220, 30, 30]).sum(-1) < 10).sum()
    assert red > 20  # the red box's points, rendered from the new viewpoint
    assert "3D single-view image generated from the original image" in call.prompt
    assert "seen from the left" in call.prompt
    # No cloud: no view can be rendered, only the image goes.
    a = qa.ask(QUESTION, scene, backend="transformers", image=image)
    assert a.success and len(rec.calls[1].images) == 1
    assert "single-view image" not in rec.calls[1].prompt


def test_multi_view_sends_one_stitched_image(local, scene, image, cloud):
    rec = RecordingVLM(local["good"])
    a = SpatialQA(vlms={"transformers": rec}, views="multi").ask(QUESTION, scene, backend="transformers",
                                                                image=image, cloud=cloud)
    _check_vlm_answer(a, "transformers")
    (call,) = rec.calls
    (grid,) = call.images
    assert grid.shape == (2 * image.shape[0], 2 * image.shape[1], 3)
    np.testing.assert_array_equal(grid[:image.shape[0], :image.shape[1]], image)  # top-left: the original
    assert "stitched from four views" in call.prompt
    for line in FACT_LINES:
        assert line in call.prompt


# ---------------------------------------------------------------------------------- untyped questions
UNTYPED = "What brand is the red box, and would a child like it?"


def _check_hand_off(a, call: Call, backend: str, image: np.ndarray) -> None:
    """The untyped question went to the model with the 3D block; the answer is the model's."""
    assert a.success and a.backend == backend
    assert "could not type this question" in a.message and f"{backend} backend" in a.message
    assert "3D information block" in a.message
    assert a.answer == "They are 31 cm apart." and a.object_ids == ["obj_0", "obj_1"]
    assert f"Question: {UNTYPED}" in call.prompt and "not typed by the geometric parser" in call.prompt
    for line in FACT_LINES:
        assert line in call.prompt, line
    np.testing.assert_array_equal(call.images[0], image)


def test_untyped_question_is_refused_by_the_geometric_backend(local, scene):
    a = SpatialQA(vlms={"transformers": local["good"]}).ask(UNTYPED, scene)
    assert not a.success and "question not understood" in a.message and "the red block" in a.message


def test_untyped_question_goes_to_the_transformers_vlm(local, scene, image):
    rec = RecordingVLM(local["good"])
    a = SpatialQA(vlms={"transformers": rec}).ask(UNTYPED, scene, backend="transformers", image=image)
    (call,) = rec.calls
    _check_hand_off(a, call, "transformers", image)


def test_untyped_question_goes_to_the_openai_vlm(server, models, scene, image):
    rec = RecordingVLM(OpenAICompatibleClient(server, model=models["good"], timeout_s=30.0))
    a = SpatialQA(vlms={"openai": rec}).ask(UNTYPED, scene, backend="openai", image=image)
    (call,) = rec.calls
    _check_hand_off(a, call, "openai", image)


def test_untyped_question_with_a_failing_vlm_is_refused_with_both_reasons(local, scene, image):
    rec = RecordingVLM(local["garbage"])
    a = SpatialQA(vlms={"transformers": rec}, max_tokens=24).ask(UNTYPED, scene, backend="transformers",
                                                                image=image)
    assert not a.success and len(rec.calls) == 1
    assert "question not understood" in a.message and "transformers backend was asked too" in a.message
