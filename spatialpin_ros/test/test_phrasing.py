"""Questions as people ask them (issue 11): units, grounding of free noun phrases, intents,
superlatives, counts, directions, refusals with examples, and that no question raises."""

import math

import numpy as np
import pytest


from spatialpin_ros.reasoning.engine import SpatialQA
from spatialpin_ros.reasoning.measures import clock_hour, surface_gap
from spatialpin_ros.reasoning.query import QuestionError, QuestionFailure, parse_question
from spatialpin_ros.reasoning.resolve import AmbiguousReference, UnknownObject, resolve, select
from spatialpin_ros.reasoning.units import UnitError, convert, find_unit, unit

from reasoning_scene import CAM, make_scene, obj as obj  # noqa: E402,F401


@pytest.fixture
def scene():
    return make_scene(7)


# ------------------------------------------------------------------------------------ units
@pytest.mark.parametrize("value, src, dst, want", [
    (1.0, "m", "cm", 100.0), (1.0, "m", "mm", 1000.0), (1.0, "m", "in", 1 / 0.0254),
    (1.0, "m", "ft", 1 / 0.3048), (12.0, "in", "ft", 1.0), (30.48, "cm", "ft", 1.0),
    (250.0, "mm", "m", 0.25), (180.0, "deg", "rad", math.pi), (1.0, "rad", "deg", 180 / math.pi),
    (2.0, "inches", "centimeters", 5.08), (0.5, "metres", "millimetres", 500.0),
    (90.0, "degrees", "radians", math.pi / 2),
])
def test_each_unit_conversion(value, src, dst, want):
    assert convert(value, src, dst) == pytest.approx(want)
    assert convert(convert(value, src, dst), dst, src) == pytest.approx(value)


def test_units_of_different_quantities_do_not_convert():
    with pytest.raises(UnitError, match="cannot convert"):
        convert(1.0, "m", "deg")
    with pytest.raises(UnitError, match="unknown unit"):
        unit("furlongs")


@pytest.mark.parametrize("text, sym, rest", [
    ("how far is a from b in centimeters", "cm", "how far is a from b"),
    ("how far is a from b, in cm", "cm", "how far is a from b"),
    ("how tall is a (in inches)", "in", "how tall is a"),
    ("how many feet apart are a and b", "ft", "how many units apart are a and b"),
    ("what is the angle between a and b in radians", "rad", "what is the angle between a and b"),
    ("how far is a from b in mm horizontally", "mm", "how far is a from b horizontally"),
    ("how far is a from my car", None, "how far is a from my car"),
])
def test_find_unit(text, sym, rest):
    u, t = find_unit(text)
    assert (u.symbol if u else None, t) == (sym, rest)


# ------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text, kind, name, refs, unit_", [
    ("Measure the distance between the red cube and the blue box in centimeters.", "metric",
     "distance", 2, "cm"),
    ("Can you tell me how tall the green can is, in inches?", "metric", "height", 1, "in"),
    ("Could you confirm whether the box that is red is left of the light blue cylinder?",
     "relation", "left_of", 2, ""),
    ("From the viewer's perspective, is the red-colored block in front of the blue one?",
     "relation", "in_front_of", 2, ""),
    ("In the image, which is further left, the dark blue crate or the green bottle?", "choice",
     "left_of", 2, ""),
    ("Which is lower, the yellow block or the green can?", "choice", "below", 2, ""),
    ("Which one is behind the other, the red ball or the blue box?", "choice", "behind", 2, ""),
    ("Is the green can wider than the yellow cube?", "relation", "wider", 2, ""),
    ("Which looks heavier, the blue box or the red marble?", "choice", "heavier", 2, ""),
    ("Is the red ball to the left or to the right of the blue box?", "side", "left_right", 2, ""),
    ("How much higher is the top of the yellow block than the green can in mm?", "metric",
     "top_difference", 2, "mm"),
    ("What is the gap between the green cylinder and the blue box?", "metric", "gap", 2, ""),
    ("How many feet is the red ball from the robot?", "metric", "distance_to_robot", 1, "ft"),
    ("What is the diameter of the green can?", "metric", "diameter", 1, ""),
    ("If you are at the red ball, where is the green can?", "angle", "direction", 2, ""),
    ("Which object is closest to the robot?", "superlative", "closest_robot", 0, ""),
    ("What is the tallest red object?", "superlative", "tallest", 0, ""),
    ("Which object is nearest to the blue box?", "superlative", "closest_to", 1, ""),
    ("How many red things are there?", "count", "count", 0, ""),
    ("Are there any cylinders on the table?", "exists", "exists", 0, ""),
    ("Is there a red ball on the table?", "exists", "exists", 0, ""),
    ("Which object is the closest one to the camera?", "superlative", "closest_camera", 0, ""),
    ("How much taller is the green can than the blue box, in cm?", "metric",
     "height_difference", 2, "cm"),
    ("How many objects are to the left of the blue box?", "count_relative", "left_of", 1, ""),
    ("What is the angle between the red block and obj_1 in radians?", "angle", "yaw_relative",
     2, "rad"),
])
def test_free_phrasings_are_typed(text, kind, name, refs, unit_):
    q = parse_question(text)
    assert (q.kind, q.name, len(q.refs), q.asked_unit) == (kind, name, refs, unit_)


def test_frame_phrases_are_not_names():
    q = parse_question("Is the red block left of the blue box from the camera's point of view?")
    assert q.refs == ["the red block", "the blue box"] and q.perspective == "viewer"
    q = parse_question("In the image, is the red block left of the blue box?")
    assert q.refs == ["the red block", "the blue box"] and q.perspective == "image"


@pytest.mark.parametrize("text", ["What brand is the red box?", "Who put the blue box there?",
                                  "What is the weight of the red box in kilograms?",
                                  "Write me a poem about the green can."])
def test_untyped_questions_say_so(text):
    with pytest.raises(QuestionError) as e:
        parse_question(text)
    assert e.value.reason is QuestionFailure.UNTYPED


# ------------------------------------------------------------------------------------ grounding
def test_noun_phrases_resolve(scene):
    v = None
    assert resolve("the light blue cylinder", scene, v).id == "obj_5"  # cyan
    assert resolve("the dark blue crate", scene, v).id == "obj_1"
    assert resolve("the turquoise bottle", scene, v).id == "obj_5"
    assert resolve("the blue-colored box", scene, v).id == "obj_1"
    assert resolve("the box that is blue", scene, v).id == "obj_1"
    assert resolve("the cube colored yellow", scene, v).id == "obj_3"
    assert resolve("the red marble", scene, v).id == "obj_4"
    assert resolve("the green container", scene, v).id == "obj_2"
    assert resolve("the red box on the left", scene, v).id == "obj_0"  # viewer's left is -y
    assert resolve("the red cube furthest to the right", scene, v).id == "obj_6"
    assert resolve("obj_3", scene, v).id == "obj_3"
    with pytest.raises(AmbiguousReference, match="obj_0.*obj_6"):
        resolve("the red box", scene, v)
    with pytest.raises(UnknownObject, match="no object matches"):
        resolve("the purple unicorn", scene, v)
    assert [o.id for o in select("red things", scene)] == ["obj_0", "obj_4", "obj_6"]
    assert [o.id for o in select("cylinders", scene)] == ["obj_2", "obj_5"]


# ------------------------------------------------------------------------------------ answers
def test_answers_follow_the_unit_asked(scene):
    qa = SpatialQA()
    m = qa.ask("How tall is the green can?", scene)
    for q, u, scale in [("How tall is the green can in centimeters?", "cm", 100.0),
                        ("How many millimeters tall is the green can?", "mm", 1000.0),
                        ("How tall is the green can in inches?", "in", 1 / 0.0254),
                        ("What is the height of the green can in feet?", "ft", 1 / 0.3048)]:
        a = qa.ask(q, scene)
        assert a.success and a.unit == u and a.value == pytest.approx(m.value * scale), q
        assert f" {u}." in a.answer
    a = qa.ask("What is the angle between the red cube on the left and the blue box in radians?",
               scene)
    assert a.unit == "rad" and a.value == pytest.approx(math.radians(30.0))


def test_superlatives_and_counts(scene):
    qa = SpatialQA()
    robot = qa.ask("Which object is closest to the robot?", scene)
    want = min(scene.objects, key=lambda o: np.linalg.norm(o.center))
    assert robot.object_ids == [want.id]
    cam = qa.ask("Which item is nearest to the camera?", scene)
    assert cam.object_ids == [min(scene.objects, key=lambda o: np.linalg.norm(
        o.center - CAM.position)).id]
    assert qa.ask("What is the tallest object?", scene).object_ids == ["obj_2"]
    assert qa.ask("Which red object is the tallest?", scene).object_ids == ["obj_4"]
    assert qa.ask("Which is the leftmost object?", scene).object_ids == ["obj_0"]
    assert qa.ask("What is the nearest object to the blue box?", scene).object_ids[0] == "obj_3"
    assert qa.ask("How many red things are there?", scene).value == 3.0
    assert qa.ask("How many purple blocks are on the table?", scene).value == 0.0
    assert qa.ask("Are there any cylinders?", scene).value == 1.0
    # left of the blue box (viewer's left is -y): obj_0 and obj_5
    a = qa.ask("How many objects are to the left of the blue box?", scene)
    assert a.value == 2.0 and set(a.object_ids) == {"obj_0", "obj_5", "obj_1"}


def test_directions_sides_and_comparisons(scene):
    qa = SpatialQA()
    a = qa.ask("If you are at the blue box, where is the green can?", scene)
    assert "6 o'clock" in a.answer and a.value == pytest.approx(-90.0)  # toward the camera
    assert clock_hour(90.0) == 12 and clock_hour(0.0) == 3 and clock_hour(180.0) == 9
    a = qa.ask("Is the red ball to the left or to the right of the blue box?", scene)
    assert "to the right of" in a.answer and a.value == 0.0
    assert qa.ask("Is the blue box wider than the yellow cube?", scene).value == 1.0
    a = qa.ask("Which is thinner, the blue box or the green can?", scene)
    assert a.object_ids[0] == "obj_2"
    a = qa.ask("How much higher is the top of the yellow block than the top of the green can "
               "in cm?", scene)
    assert a.unit == "cm" and a.value == pytest.approx(0.0, abs=1e-6)
    a = qa.ask("How much higher is the top of the green can than the red cube on the left?",
               scene)
    assert a.value == pytest.approx(0.10 - 0.05)


def test_cylinders_gap_as_cylinders():
    a = obj("a", "red", "cylinder", [0.0, 0.0, 0.05], [0.1, 0.1, 0.1])
    b = obj("b", "blue", "cylinder", [0.1, 0.1, 0.05], [0.1, 0.1, 0.1])
    assert surface_gap(a, b) == pytest.approx(math.hypot(0.1, 0.1) - 0.1)
    box_a = obj("a", "red", "box", [0.0, 0.0, 0.05], [0.1, 0.1, 0.1])
    box_b = obj("b", "blue", "box", [0.1, 0.1, 0.05], [0.1, 0.1, 0.1])
    assert surface_gap(box_a, box_b) == 0.0  # their boxes touch at a corner
    s1 = obj("a", "red", "sphere", [0.0, 0.0, 0.05], [0.1, 0.1, 0.1])
    s2 = obj("b", "red", "sphere", [0.0, 0.3, 0.05], [0.1, 0.1, 0.1])
    assert surface_gap(s1, s2) == pytest.approx(0.2)


def test_untyped_refusal_gives_examples_from_the_scene(scene):
    a = SpatialQA().ask("What brand is the red cube?", scene)
    assert not a.success and "question not understood" in a.message
    assert "the red block" in a.message and "How many blocks are there?" in a.message


def test_no_question_raises(scene):
    """Word salads from the parser's own vocabulary and from noise: always an Answer."""
    rng = np.random.default_rng(0)
    vocab = ("is the a red blue cube box can of or which how many far tall left right than to "
             "from in cm inches camera robot me that top closest tallest where if at are there "
             "and obj_1 obj_9 ' , ? ( ) _ - 3 degrees direction between gap o'clock").split()
    qa = SpatialQA()
    for _ in range(400):
        words = rng.choice(vocab, size=int(rng.integers(1, 14)))
        a = qa.ask(" ".join(words), scene)
        assert isinstance(a.success, bool) and (a.success or a.message)
    for text in ["\x00\x01", "💥" * 20, "?" * 499, "obj_" * 100, "how many " * 40]:
        a = qa.ask(text, scene)
        assert a.success or a.message


# ----------------------------------------------------------- perspective, height, spelling
@pytest.mark.parametrize("text, kind, name, perspective", [
    ("Is the mug left of the bowl as I see it?", "relation", "left_of", "viewer"),
    ("From my vantage point, is the red cube behind the blue box?", "relation", "behind",
     "viewer"),
    ("Is the red cube left of the blue box from where we are sitting?", "relation", "left_of",
     "viewer"),
    ("On my screen, is the red cube above the blue box?", "relation", "above", "image"),
    ("Is the red cube on top of the blue box?", "relation", "on_top_of", ""),
])
def test_perspective_phrases_are_frames_not_names(text, kind, name, perspective):
    q = parse_question(text)
    assert (q.kind, q.name, q.perspective) == (kind, name, perspective)
    assert all("see" not in r and "screen" not in r for r in q.refs)


@pytest.mark.parametrize("text, name", [
    ("How far apart are the red cube and the blue box if you disregard height?",
     "horizontal_distance"),
    ("Not counting the vertical, how far is the red cube from the blue box?",
     "horizontal_distance"),
    ("Seen from above, how far is the red cube from the blue box?", "horizontal_distance"),
    ("How far does the red cube stick up above the blue box?", "top_difference"),
    ("By how much does the top of the red cube rise over the top of the blue box?",
     "top_difference"),
    ("How far is the red cube from the blue box?", "distance"),
])
def test_height_phrasings(text, name):
    q = parse_question(text)
    assert (q.kind, q.name, q.refs) == ("metric", name, ["the red cube", "the blue box"])


@pytest.mark.parametrize("text, name", [
    ("Is the red cube more tall than the blue box?", "taller"),
    ("Is the red cube less tall than the blue box?", "shorter"),
    ("Is the red cube more wide than the blue box?", "wider"),
    ("Is the red cube less broad than the blue box?", "thinner"),
    ("Is the red cube more big than the blue box?", "bigger"),
    ("Is the red cube less large than the blue box?", "smaller"),
])
def test_analytic_comparatives(text, name):
    """Comparatives with more / less, as non-native speakers and some datasets write them."""
    q = parse_question(text)
    assert (q.kind, q.name, q.refs) == ("relation", name, ["the red cube", "the blue box"])


@pytest.mark.parametrize("text", ["Is there a blue box anywhere?", "Can you spot a red ball?",
                                  "Is a green cylinder visible?", "Do we have any cubes at all?"])
def test_existence_phrasings(text):
    q = parse_question(text)
    assert q.kind == "exists" and q.group


@pytest.mark.parametrize("text, name, refs", [
    ("Is the yelow cilinder left of the red blok?", "left_of",
     ["the yellow cylinder", "the red block"]),
    ("whats the distnace between the red ball and the blue cube", "distance",
     ["the red ball", "the blue cube"]),
])
def test_near_miss_spellings_are_corrected(text, name, refs):
    q = parse_question(text)
    assert (q.name, q.refs) == (name, refs)


def test_spelling_correction_keeps_other_words():
    # "weight" is one letter from "height" but is not a misspelling of it
    with pytest.raises(QuestionError):
        parse_question("What is the weight of the red box in kilograms?")


@pytest.mark.parametrize("text, name", [
    ("What is the rotation of the red block between the two views?", "object_rotation"),
    ("What is the camera's rotation between the two images?", "camera_rotation"),
    ("How much did the viewing direction change between the pictures?", "camera_rotation"),
    ("What is the displacement of the red block between the views?", "object_displacement"),
    ("How far has the red block travelled from the first view to the second?",
     "object_displacement"),
    ("By what angle was the red block turned since the first image?", "object_rotation"),
])
def test_two_view_phrasings(text, name):
    q = parse_question(text)
    assert (q.kind, q.name) == ("two_view", name)
    assert q.refs in ([], ["the red block"])


@pytest.mark.parametrize("text", ["What’s the distance between the red cube and the blue box?",
                                  "whats the distance between the red cube and the blue box",
                                  "What's the distance between the red cube and the blue box?"])
def test_contractions_with_curly_or_no_apostrophe(text):
    q = parse_question(text)
    assert (q.kind, q.name, q.refs) == ("metric", "distance", ["the red cube", "the blue box"])


def test_generic_and_adjective_label_words_are_not_mentions():
    """A perceived "pink object" or "tall white cylinder" must not make "a taller object than"
    read as a third object."""
    from spatialpin_ros.reasoning.query import parse_question
    labels = ["tall white cylinder", "red box", "blue box", "pink object"]
    q = parse_question("Is the pink ball a taller object than the red box?", labels)
    assert (q.kind, q.name, q.refs) == ("relation", "taller", ["the pink ball", "the red box"])
