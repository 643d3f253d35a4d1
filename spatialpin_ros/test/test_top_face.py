"""The perceived top face (``core.top_face``): flat solid tops carry, rims and narrow caps do not,
and the stacking rules (``core.stacking`` through ``core.task_kinds.check_kind``) use it; on
perceived everyday meshes, hollow things are told from solid ones by their own points."""

import dataclasses

import numpy as np
import pytest

from spatialpin_ros.core.stacking import Infeasible, polygon_area, support_area
from spatialpin_ros.core.task_kinds import TaskKind, check_kind
from spatialpin_ros.core.top_face import describe_top
from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.paths import *  # noqa: F401,F403

RNG = np.random.default_rng(3)


def _noisy(P, sigma=0.002):
    return P + RNG.normal(0.0, sigma, P.shape) * [0.3, 0.3, 1.0]


def box_points(cx, cy, sx, sy, h, step=0.002):
    """A box's top face and its two sides facing a camera at -x (what a camera sees)."""
    xs, ys = np.arange(-sx / 2, sx / 2, step), np.arange(-sy / 2, sy / 2, step)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    top = np.stack([X.ravel(), Y.ravel(), np.full(X.size, h)], 1)
    zs = np.arange(0.0, h, step)
    Ys, Zs = np.meshgrid(ys, zs, indexing="ij")
    side = np.stack([np.full(Ys.size, -sx / 2), Ys.ravel(), Zs.ravel()], 1)
    return _noisy(np.concatenate([top, side]) + [cx, cy, 0.0])


def cup_points(cx, cy, r, h, wall=0.004, step=0.002):
    """A cup seen from above and the side: its rim, its outer wall facing the camera and the
    far inner wall; the inside's bottom hidden by the front wall."""
    a = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    rim = np.concatenate([np.stack([rr * np.cos(a), rr * np.sin(a), np.full_like(a, h)], 1)
                          for rr in np.arange(r - wall, r + 1e-9, step)])
    zs = np.arange(0.0, h, step)
    A, Z = np.meshgrid(a, zs, indexing="ij")
    outer = np.stack([r * np.cos(A), r * np.sin(A), Z], 1).reshape(-1, 3)
    outer = outer[outer[:, 0] < 0]
    inner = np.stack([(r - wall) * np.cos(A), (r - wall) * np.sin(A), Z], 1).reshape(-1, 3)
    inner = inner[(inner[:, 0] > 0) & (inner[:, 2] > h - 0.05)]
    return _noisy(np.concatenate([rim, outer, inner]) + [cx, cy, 0.0])


def cyl(id_, center_xy, d, h, top=None):
    return ObjectPrior(id_, id_, Pose.from_yaw([*center_xy, h / 2], 0.0), [d, d, h],
                       shape="cylinder", color_name="red", top_face=top)


def test_flat_solid_top_carries_and_a_rim_does_not():
    P = box_points(0.5, 0.1, 0.08, 0.06, 0.07)
    top = describe_top(P, P[:, 2])
    assert top is not None and top.supports() and top.solid > 0.9
    assert abs(top.height - 0.07) < 0.005
    assert 0.8 * 0.08 * 0.06 < top.area < 1.3 * 0.08 * 0.06
    C = cup_points(0.5, 0.1, 0.04, 0.09)
    rim = describe_top(C, C[:, 2])
    assert rim is not None and not rim.supports() and rim.solid < 0.6
    assert describe_top(C[:10], C[:10, 2]) is None          # too few points: unknown


def test_stack_refuses_a_hollow_or_narrow_top_the_box_hides():
    can = ObjectPrior("can", "can", Pose.from_yaw([0.5, -0.1, 0.05], 0.0), [0.06, 0.06, 0.1],
                      shape="cylinder")
    C = cup_points(0.5, 0.1, 0.04, 0.09)
    cup_as_solid = cyl("cup", (0.5, 0.1), 0.08, 0.09,
                       describe_top(C, C[:, 2]).about((0.5, 0.1), 0.0))
    with pytest.raises(Infeasible) as e:
        check_kind(TaskKind.STACK, can, cup_as_solid)
    assert e.value.code == "no_flat_top"
    check_kind(TaskKind.STACK, can, dataclasses.replace(cup_as_solid, top_face=None))
    # A bottle fitted as a 7 cm cylinder: its points show a 2.6 cm cap on top.
    B = np.concatenate([box_points(0.5, 0.1, 0.026, 0.026, 0.21),
                        box_points(0.5, 0.1, 0.07, 0.07, 0.15)])
    bottle = cyl("bottle", (0.5, 0.1), 0.07, 0.21, describe_top(B, B[:, 2]).about((0.5, 0.1),
                                                                                  0.0))
    assert bottle.top_face.supports() and bottle.top_face.width < 0.04
    assert len(support_area(bottle)) >= 3
    with pytest.raises(Infeasible) as e:
        check_kind(TaskKind.STACK, can, bottle)
    assert e.value.code in ("target_too_small", "unstable")
    # A solid top as wide as the box: the rules are the box's.
    S = box_points(0.5, 0.1, 0.08, 0.08, 0.09)
    solid = ObjectPrior("box", "box", Pose.from_yaw([0.5, 0.1, 0.045], 0.0), [0.08, 0.08, 0.09],
                        shape="box", top_face=describe_top(S, S[:, 2]).about((0.5, 0.1), 0.0))
    check_kind(TaskKind.STACK, can, solid)
    # The top face moves with the object (a target moved out of the way first).
    moved = dataclasses.replace(solid, pose=Pose.from_yaw([0.3, -0.2, 0.045], 1.0))
    check_kind(TaskKind.STACK, can, moved)
    assert abs(polygon_area(support_area(moved)) - polygon_area(support_area(solid))) < 1e-4


def test_perceived_everyday_tops():
    """On the everyday scene (D435 noise), the bowl and the mug have no top that carries, the
    food boxes have. The truth only names the objects for the test."""
    from spatialpin_ros.perception import make_backend
    from spatialpin_ros.sim.depth_noise import apply_d435_noise
    from spatialpin_ros.sim.scene_spec import load_scene_file
    from spatialpin_ros.sim.world import SimWorld
    from test_everyday_tasks import SCENES
    backend = make_backend("geometric")
    with SimWorld(load_scene_file(SCENES / "everyday.yaml")) as w:
        f = w.render()
        f = dataclasses.replace(f, depth=apply_d435_noise(f.depth, f.rgb,
                                                          np.random.default_rng(0)))
        scene = backend.perceive(f)
        truth = w.truth()
    seen = {}
    for o in scene.objects:
        t = min(truth, key=lambda t: np.linalg.norm(t.pose.position[:2] - o.center[:2]))
        if np.linalg.norm(t.pose.position[:2] - o.center[:2]) < 0.03 and o.top_face is not None:
            seen[t.name] = o.top_face
    for name in ("bowl", "mug"):
        if name in seen:
            assert not seen[name].supports(), (name, seen[name])
    for name in ("cereal_box", "tea_box"):
        assert name in seen and seen[name].supports(), (name, seen.get(name))
    assert "bowl" in seen or "mug" in seen


def test_top_face_travels_in_the_message_and_the_json():
    """The reasoning and manipulation nodes get the top face over ROS (ScenePriors), and
    ``spatialpin perceive``'s JSON keeps it: the same rules then apply there."""
    from spatialpin_ros.core.errors import SpatialPinError
    from spatialpin_ros.perception.priors_json import object_from_json, object_to_json
    from spatialpin_ros.ros.conversions import object_prior_from_msg, object_prior_to_msg
    C = cup_points(0.5, 0.1, 0.04, 0.09)
    cup = cyl("cup", (0.5, 0.1), 0.08, 0.09, describe_top(C, C[:, 2]).about((0.5, 0.1), 0.0))
    for back in (object_prior_from_msg(object_prior_to_msg(cup)),
                 object_from_json(object_to_json(cup, 480, 640))):
        t = back.top_face
        assert t is not None and not t.supports()
        assert abs(t.solid - cup.top_face.solid) < 1e-3
        assert np.allclose(t.polygon, cup.top_face.polygon, atol=1e-5)
    plain = object_prior_from_msg(object_prior_to_msg(dataclasses.replace(cup, top_face=None)))
    assert plain.top_face is None
    bad = object_prior_to_msg(cup)
    bad.top_outline = [0.1, 0.2, 0.3]
    with pytest.raises(SpatialPinError):
        object_prior_from_msg(bad)


def test_stack_is_centred_on_the_seen_top_not_on_a_box_grown_over_a_strip_behind():
    """A target's box that took in a strip of a lower object behind it (here 2 cm of a 4 cm
    tall neighbour's top edge beside a 7 cm tall box) is 2 cm too long and its centre 1 cm
    off; the top seen at the top height is the box's own, and the stack is centred on it."""
    from spatialpin_ros.core.stacking import support_centre
    from spatialpin_ros.planning.grasps import stack_poses
    P = box_points(0.5, 0.1, 0.06, 0.06, 0.07)
    strip = box_points(0.54, 0.1, 0.02, 0.06, 0.04)        # x 0.53 .. 0.55, lower
    pts = np.concatenate([P, strip[strip[:, 2] > 0.035]])
    grown_c = (0.51, 0.1)                                   # the box fitted over both
    top = describe_top(pts, pts[:, 2]).about(grown_c, 0.0)
    target = ObjectPrior("t", "t", Pose.from_yaw([*grown_c, 0.035], 0.0), [0.08, 0.06, 0.07],
                         shape="box", top_face=top)
    assert np.linalg.norm(support_centre(target) - [0.5, 0.1]) < 0.003
    can = ObjectPrior("can", "can", Pose.from_yaw([0.4, -0.1, 0.03], 0.0), [0.04, 0.04, 0.06],
                      shape="cylinder")
    pose = stack_poses(can, target)[0][0][0]
    assert np.linalg.norm(pose.position[:2] - [0.5, 0.1]) < 0.003
    # Without a seen top, the box's centre.
    bare = dataclasses.replace(target, top_face=None)
    assert np.allclose(support_centre(bare), grown_c)
    assert np.allclose(stack_poses(can, bare)[0][0][0].position[:2], grown_c)
