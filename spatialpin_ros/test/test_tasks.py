"""Task proposal (no ROS): feasibility, steering, VLM proposals checked against the scene,
Self-BLEU."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at
from spatialpin_ros.reasoning.tasks import (GeometricProposer, VLMProposer, bleu, check_stack,
                                            parse_tasks, self_bleu, stack_pose)


def obj(id_, color, shape, center, size, yaw=0.0):
    return ObjectPrior(id_, f"{color} {shape}", Pose.from_yaw(center, yaw), size, shape=shape,
                       color_name=color)


@pytest.fixture
def scene():
    objs = [obj("obj_0", "red", "box", [0.5, -0.15, 0.02], [0.04, 0.04, 0.04], 0.3),
            obj("obj_1", "blue", "box", [0.5, 0.1, 0.025], [0.07, 0.07, 0.05]),
            obj("obj_2", "green", "box", [0.6, 0.0, 0.03], [0.11, 0.10, 0.06]),   # too wide
            obj("obj_3", "yellow", "sphere", [0.45, 0.2, 0.025], [0.05, 0.05, 0.05]),
            obj("obj_4", "white", "box", [0.4, -0.2, 0.015], [0.02, 0.02, 0.03]),  # small top
            obj("obj_5", "gray", "box", [1.2, 0.0, 0.02], [0.04, 0.04, 0.04])]    # unreachable
    return Scene("s", objs, CameraModel.from_fov(640, 480, 58), look_at([1.2, 0, 0.6],
                                                                        [0.5, 0, 0]))


def test_feasibility_reasons(scene):
    assert check_stack(scene, "obj_0", "obj_1") is None
    assert "too wide for the gripper" in check_stack(scene, "obj_2", "obj_1")
    assert "would roll" in check_stack(scene, "obj_3", "obj_1")
    assert "no flat top" in check_stack(scene, "obj_0", "obj_3")
    assert "too small" in check_stack(scene, "obj_0", "obj_4")
    assert "outside its reach" in check_stack(scene, "obj_5", "obj_1")
    assert "no object 'obj_9'" in check_stack(scene, "obj_9", "obj_1")
    assert "itself" in check_stack(scene, "obj_1", "obj_1")
    on_top = scene.replace(objects=scene.objects + [
        obj("obj_6", "pink", "box", [0.5, 0.1, 0.07], [0.04, 0.04, 0.04]),      # on obj_1
        obj("obj_7", "cyan", "box", [0.5, -0.15, 0.055], [0.03, 0.03, 0.03])])  # on obj_0
    assert "already carries obj_6" in check_stack(on_top, "obj_0", "obj_1")
    assert "carries obj_7" in check_stack(on_top, "obj_0", "obj_2")


def test_stability_rule_is_physical_and_shared_with_the_planner(scene):
    from spatialpin_ros.core.stacking import Infeasible, check_support, tip_angle
    wide = obj("obj_8", "black", "box", [0.5, 0.25, 0.06], [0.08, 0.08, 0.12])
    tall_ok = obj("obj_6", "pink", "box", [0.4, 0.25, 0.0425], [0.048, 0.064, 0.085])
    tall_bad = obj("obj_7", "cyan", "box", [0.45, 0.25, 0.06], [0.037, 0.044, 0.12])
    s2 = scene.replace(objects=scene.objects + [wide, tall_ok, tall_bad])
    # 8.5 cm tall, 4.8 cm wide: survives atan((2.4 - 0.5) / 4.25) = 24 degrees: accepted.
    assert check_stack(s2, "obj_6", "obj_8") is None
    assert math.degrees(tip_angle(tall_ok, 0.0, wide)) == pytest.approx(24.1, abs=0.2)
    # 12 cm tall, 3.7 cm wide: only 13 degrees: refused, by the proposer and the planner alike.
    why = check_stack(s2, "obj_7", "obj_8")
    assert why.startswith("unstable") and "13 degrees" in why
    with pytest.raises(Infeasible) as e:
        check_support(tall_bad, wide)
    assert e.value.code == "unstable" and e.value.reason == why


def test_free_spot_keeps_clear_of_everything(scene):
    from spatialpin_ros.core.stacking import footprint, free_spot, polygon_gap
    a = scene.get("obj_0")
    xy = free_spot(scene.objects, a, keep_away=[scene.get("obj_1")], keep_away_margin=0.1)
    assert xy is not None and np.linalg.norm(xy - a.center[:2]) > 0.08
    placed = footprint(a, xy=xy)
    for o in scene.objects:
        if o.id != "obj_0":
            need = 0.1 if o.id == "obj_1" else 0.02
            assert polygon_gap(placed, footprint(o)) >= need - 1e-9
    # A table full of objects has no free spot.
    crowd = [obj(f"c{i}_{j}", "gray", "box", [x, y, 0.02], [0.06, 0.06, 0.04])
             for i, x in enumerate(np.arange(0.3, 0.75, 0.07))
             for j, y in enumerate(np.arange(-0.35, 0.36, 0.07))]
    assert free_spot(crowd + [a], a) is None


def test_geometric_proposals_are_feasible_and_steerable(scene):
    tasks = GeometricProposer().propose(scene, 0)
    stacks = [t for t in tasks if t.action == "stack"]
    assert stacks and all(check_stack(scene, t.object_id, t.target_id) is None for t in stacks)
    assert ("obj_0", "obj_1") in {(t.object_id, t.target_id) for t in stacks}
    t = next(t for t in stacks if (t.object_id, t.target_id) == ("obj_0", "obj_1"))
    assert t.place_pose.position[2] == pytest.approx(0.05 + 0.02 + 0.005)
    places = [t for t in tasks if t.action == "pick_and_place"]
    assert places and all(t.place_pose is not None for t in places)
    first = GeometricProposer().propose(scene, 3, "put something on the green block")
    assert first and first[0].target_id == "obj_2"  # too wide to grasp, fine to stack on
    steered = GeometricProposer().propose(scene, 1, "stack the red block on the blue one")
    assert (steered[0].object_id, steered[0].target_id) == ("obj_0", "obj_1")
    assert len(GeometricProposer().propose(scene, 2)) == 2


def test_vlm_proposals_are_validated(scene):
    reply = ('{"tasks": [{"description": "put the red block on the blue block", "action": '
             '"stack", "object_id": "obj_0", "target_id": "obj_1"}, {"description": "x", '
             '"action": "stack", "object_id": "obj_2", "target_id": "obj_1"}, {"action": '
             '"assemble", "object_id": "obj_0"}, {"action": "stack", "object_id": "obj_42", '
             '"target_id": "obj_1"}]}')
    valid, rejected = parse_tasks(reply, scene)
    assert [(t.object_id, t.target_id) for t in valid] == [("obj_0", "obj_1")]
    assert len(rejected) == 3 and any("unknown action" in r for r in rejected)
    client = SimpleNamespace(generate=lambda *a, **k: SimpleNamespace(text=reply))
    p = VLMProposer(client, "openai")
    tasks = p.propose(scene, 5)
    assert len(tasks) == 1 and tasks[0].source == "openai" and "dropped 3" in p.last_message
    garbage = SimpleNamespace(generate=lambda *a, **k: SimpleNamespace(text="Stack them all!"))
    p = VLMProposer(garbage, "openai")
    tasks = p.propose(scene, 2)
    assert len(tasks) == 2 and tasks[0].source == "geometric" and "no valid task" in p.last_message


def test_self_bleu():
    same = ["stack the red block on the blue block"] * 3
    varied = ["stack the red block on the blue block", "push the ball toward the robot",
              "move the green cylinder to the left edge"]
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(varied) < 0.3
    assert bleu("a b c d".split(), ["a b c d".split()]) == pytest.approx(1.0)


def test_objects_seen_whole_are_proposed_before_partly_hidden_ones(scene):
    """A stack that moves, or builds on, an object partly out of sight (its box may go on
    behind what hides it) comes after every stack whose objects are seen whole, whatever its
    score; an object whose hidden share is unknown (-1) counts as seen."""
    stacks = [t for t in GeometricProposer().propose(scene, 0) if t.action == "stack"]
    best = stacks[0]
    hidden = scene.get(best.object_id)
    hidden.hidden = 0.3
    again = [t for t in GeometricProposer().propose(scene, 0) if t.action == "stack"]
    assert len(again) == len(stacks)
    touches = [i for i, t in enumerate(again) if hidden.id in (t.object_id, t.target_id)]
    whole = [i for i, t in enumerate(again) if hidden.id not in (t.object_id, t.target_id)]
    assert touches and whole and max(whole) < min(touches)
    hidden.hidden = 0.05                         # a little of the outline: still seen whole
    assert [t.description for t in GeometricProposer().propose(scene, 0)
            if t.action == "stack"] == [t.description for t in stacks]


def test_targets_whose_box_reaches_into_a_neighbour_come_after_those_standing_apart(scene):
    """Two solids cannot interpenetrate: a target whose perceived box reaches more than 1 cm
    into a neighbour's beside it took in a strip of it (its centre and top are uncertain), and
    the stacks on it come after the others, whatever their score. Boxes that touch and overlap
    by a few millimetres are no sign of that."""
    from spatialpin_ros.core.stacking import footprint, penetration
    from spatialpin_ros.reasoning.tasks import _target_overlaps
    stacks = [t for t in GeometricProposer().propose(scene, 0) if t.action == "stack"]
    assert not any(_target_overlaps(scene, t) for t in stacks)
    target = scene.get(stacks[0].target_id)
    # a neighbour touching the best target, its box 4 mm into the target's: no change
    x = target.center[0] + target.size[0] / 2 + 0.02 - 0.004
    near = obj("obj_6", "pink", "box", [x, target.center[1], 0.02], [0.04, 0.04, 0.04])
    assert 0.003 < penetration(footprint(near), footprint(target)) < 0.005
    scene.objects.append(near)
    same = [t for t in GeometricProposer().propose(scene, 0) if t.action == "stack"
            and "obj_6" not in (t.object_id, t.target_id)]
    assert [t.description for t in same] == [t.description for t in stacks]
    # 2 cm into it: the stacks on that target come last
    near.pose = Pose.from_yaw([x - 0.016, target.center[1], 0.02], 0.0)
    again = [t for t in GeometricProposer().propose(scene, 0) if t.action == "stack"
             and "obj_6" not in (t.object_id, t.target_id)]
    assert sorted(t.description for t in again) == sorted(t.description for t in stacks)
    onto = [i for i, t in enumerate(again) if t.target_id == target.id]
    rest = [i for i, t in enumerate(again) if t.target_id != target.id]
    assert onto and rest and max(rest) < min(onto)
