"""Task proposal through real VLMs, end to end: ``VLMProposer`` with ``TransformersVLM``
in-process and ``OpenAICompatibleClient`` against a real ``transformers serve`` process. The
prompt carries SpatialPIN's task instructions, the 3D block and the user's instruction; each
proposal in the reply is checked against the scene (an impossible one is dropped with the
planner's reason); a reply that is not a task list falls back to the geometric proposals.

Models: tiny LLaVAs built offline by tiny_vlm.py (a fixed-reply one and the random one, which
answers gibberish). All traffic goes to 127.0.0.1.
"""

import json

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at
from spatialpin_ros.reasoning.tasks import TASK_SYSTEM_PROMPT, VLMProposer, self_bleu
from spatialpin_ros.vlm import OpenAICompatibleClient, TransformersVLM
from test_vlm_qa import RecordingVLM
from tiny_vlm import build_fixed_reply_vlm, build_tiny_vlm, serve_missing_packages, serve_models

TASKS_REPLY = json.dumps({"tasks": [
    {"description": "put the red box on top of the blue box", "action": "stack",
     "object_id": "obj_0", "target_id": "obj_1"},
    {"description": "balance the blue box on the ball", "action": "stack",
     "object_id": "obj_1", "target_id": "obj_2"},
    {"description": "slide the red box out of the way", "action": "pick_and_place",
     "object_id": "obj_0", "target_id": ""}]})
INSTRUCTION = "tidy up the red things"


def _obj(id_, color, shape, center, size):
    return ObjectPrior(id_, f"{color} {shape}", Pose.from_yaw(center, 0.0), size, shape=shape,
                       color_name=color)


@pytest.fixture(scope="module")
def scene():
    objs = [_obj("obj_0", "red", "box", [0.5, -0.15, 0.02], [0.04, 0.04, 0.04]),
            _obj("obj_1", "blue", "box", [0.5, 0.1, 0.025], [0.07, 0.07, 0.05]),
            _obj("obj_2", "yellow", "sphere", [0.4, 0.2, 0.025], [0.05, 0.05, 0.05])]
    return Scene("s", objs, CameraModel.from_fov(160, 120, 58),
                 look_at([1.2, 0, 0.6], [0.5, 0, 0]))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("task_vlms")
    return {"tasks": build_fixed_reply_vlm(root / "tasks", TASKS_REPLY),
            "garbage": build_tiny_vlm(root / "garbage")}


def _check(proposer: VLMProposer, rec: RecordingVLM, tasks, image, backend: str) -> None:
    (call,) = rec.calls
    assert call.system == TASK_SYSTEM_PROMPT
    assert "obj_0 (red box, box)" in call.prompt and "obj_2 (yellow sphere" in call.prompt
    assert f"The user asks: {INSTRUCTION}" in call.prompt
    assert len(call.images) == 1 and np.array_equal(call.images[0], image)
    assert call.error is None and call.reply.text == TASKS_REPLY
    # The stack on the ball is dropped with the planner's own reason; the others are kept.
    assert [(t.action, t.object_id, t.target_id) for t in tasks] == [
        ("stack", "obj_0", "obj_1"), ("pick_and_place", "obj_0", "")]
    assert all(t.source == backend for t in tasks)
    assert tasks[0].description == "put the red box on top of the blue box"
    assert tasks[0].place_pose.position[2] == pytest.approx(0.05 + 0.02 + 0.005)
    assert "dropped 1" in proposer.last_message and "no flat top" in proposer.last_message
    assert 0.0 <= self_bleu([t.description for t in tasks]) < 0.5   # free-form descriptions


def test_transformers_backend_proposes_checked_tasks(models, scene, image):
    client = TransformersVLM(models["tasks"], device="cpu")
    try:
        rec = RecordingVLM(client)
        p = VLMProposer(rec, "transformers")
        tasks = p.propose(scene, 5, INSTRUCTION, image=image)
        _check(p, rec, tasks, image, "transformers")
    finally:
        client.close()


def test_garbage_reply_falls_back_to_geometric_proposals(models, scene, image):
    client = TransformersVLM(models["garbage"], device="cpu")
    try:
        p = VLMProposer(client, "transformers")
        tasks = p.propose(scene, 3, image=image)
        assert tasks and all(t.source == "geometric" for t in tasks)
        assert "no valid task" in p.last_message
    finally:
        client.close()


def test_openai_backend_through_transformers_serve(tmp_path_factory, models, scene, image):
    missing = serve_missing_packages()
    if missing:
        pytest.skip(f"`transformers serve` cannot start: missing packages {missing}")
    with serve_models(tmp_path_factory.mktemp("serve_tasks")) as base_url:
        rec = RecordingVLM(OpenAICompatibleClient(base_url, model=models["tasks"],
                                                  timeout_s=30.0))
        p = VLMProposer(rec, "openai")
        tasks = p.propose(scene, 5, INSTRUCTION, image=image)
        _check(p, rec, tasks, image, "openai")
        assert rec.calls[0].reply.model.startswith(models["tasks"])
