"""Side grasps of tall objects (planning.side_grasps), the fallback where no steady top-down
grasp exists: their geometry on synthetic points and boxes, the planner using them only then,
each robot, and a tall bottle picked from the side and put down next to a block in the
simulator (judged on the simulator's truth)."""

import math
from pathlib import Path

import numpy as np
import pytest

from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.core.types import CameraModel, Pose, Scene
from spatialpin_ros.planning.side_grasps import side_grasps, width_at
from test_antipodal_grasps import HAND, bottle_points, disc, prior, revolved

BASE = (0.0, 0.0)
CAMERA = CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0)
TALL = prior("tall", [0.45, 0.1, 0.13], [0.04, 0.04, 0.26], shape="box")
BLOCK = prior("blk", [0.5, -0.12, 0.025], [0.05, 0.05, 0.05], shape="box")
PLACE = Pose.from_yaw([0.45, -0.02, 0.13], 0.0)


def test_a_tall_bottle_is_held_from_the_side_across_its_body():
    """A 23 cm bottle, 6 cm across, seen from one side: the TCP comes in horizontally from the
    robot's side at the bottle's axis, just above its centre of mass, across the body (6 cm,
    measured on the points with the back completed), the fingers clear of the table; the
    pre-grasp is backed off horizontally."""
    pts = bottle_points(cx=0.5, cy=0.1, R=0.03, H=0.23)
    p = prior("bottle", [0.5, 0.1, 0.115], [0.06, 0.06, 0.23])
    grasps, why = side_grasps(HAND, p, pts, 0.0, BASE)
    assert grasps and why == ""
    g = grasps[0]
    R = g.pose.rotation.as_matrix()
    assert g.kind == "side"
    assert abs(R[2, 2]) < 1e-6 and abs(R[2, 1]) < 1e-6 and abs(abs(R[2, 0]) - 1) < 1e-6
    bearing = np.array([0.5, 0.1]) / np.linalg.norm([0.5, 0.1])
    assert R[:2, 2] @ bearing > 0.999            # pointing at the axis, from the robot
    assert np.linalg.norm(g.pose.position[:2] - [0.5, 0.1]) < 0.004
    z = g.pose.position[2]
    assert 0.115 <= z <= 0.115 + 0.02            # just above the centre of mass
    assert z - HAND.finger_width / 2 > 0.03      # fingers clear of the table
    assert abs(g.width - 0.06) < 0.006
    assert g.preshape <= HAND.finger_open and g.preshape > g.width / 2
    assert 0.0 < g.finger_target < g.width / 2
    back = g.pose.position - g.pregrasp.position
    assert abs(back[2]) < 1e-9 and abs(np.linalg.norm(back) - 0.10) < 1e-9
    assert back[:2] @ bearing > 0.099            # backed off towards the robot
    assert g.lift.position[2] - z == pytest.approx(0.10)
    for h in grasps:                              # every one between the centre and the top
        assert 0.115 - 1e-9 <= h.pose.position[2] <= 0.23 - HAND.finger_width / 2


def test_the_width_is_measured_at_the_grasp_height():
    """On the points, the body is 6 cm across and the neck 2.2 cm; from the box, a box's
    width across the closing direction."""
    pts = bottle_points(cx=0.5, cy=0.0, R=0.03, H=0.23)
    p = prior("bottle", [0.5, 0.0, 0.115], [0.06, 0.06, 0.23])
    from spatialpin_ros.planning.antipodal import surface
    full = surface(p, pts)[1]
    body, _ = width_at(p, full, 0.0, 0.1, 0.01)
    neck, _ = width_at(p, full, 0.0, 0.21, 0.01)
    assert abs(body - 0.06) < 0.006 and abs(neck - 0.022) < 0.006
    assert width_at(TALL, None, 0.0, 0.13, 0.01)[0] == pytest.approx(0.04)
    assert width_at(TALL, None, math.pi / 4, 0.13, 0.01)[0] == pytest.approx(0.04 * math.sqrt(2))
    assert width_at(TALL, None, 0.0, 0.3, 0.01) is None
    # A box is approached across a face first.
    g = side_grasps(HAND, TALL, None, 0.0, BASE)[0][0]
    assert g.width == pytest.approx(0.04) and g.yaw == pytest.approx(0.0)


def test_no_side_grasp_of_a_short_or_a_wide_object():
    short = prior("short", [0.5, 0.0, 0.02], [0.04, 0.04, 0.04], shape="box")
    grasps, why = side_grasps(HAND, short, None, 0.0, BASE)
    assert not grasps and "too short" in why
    wide = prior("wide", [0.5, 0.0, 0.1], [0.09, 0.09, 0.2])
    grasps, why = side_grasps(HAND, wide, None, 0.0, BASE)
    assert not grasps and "9.0 cm across" in why


def lamp_points(cx=0.45, cy=0.1):
    """A 20 cm tall object: a 4 cm stem up to 15 cm, under a 10 cm cap."""
    return np.concatenate([revolved(cx, cy, lambda z: 0.02 if z < 0.15 else (
        0.05 if z <= 0.2 else None)), disc(cx, cy, 0.05, 0.2)])


def test_an_object_too_wide_at_the_top_is_measured_narrow_lower_down():
    lamp = prior("lamp", [0.45, 0.1, 0.1], [0.1, 0.1, 0.2])
    grasps, _ = side_grasps(HAND, lamp, lamp_points(), 0.0, BASE)
    assert grasps and all(abs(g.width - 0.04) < 0.005 for g in grasps)
    assert all(g.pose.position[2] + HAND.finger_width / 2 < 0.15 for g in grasps)


def test_an_object_too_wide_at_the_top_is_picked_by_its_stem(panda, monkeypatch):
    """The same object planned: top-down it is too wide everywhere (refused so without side
    grasps); from the side the fingers close on the stem, below the cap, the hand found clear
    of the object's points (its perceived cylinder is 10 cm across at every height)."""
    from spatialpin_ros.planning import pick_place, plan_pick_and_place
    from spatialpin_ros.planning.object_cloud import SceneCloud
    lamp = prior("lamp", [0.45, 0.1, 0.1], [0.1, 0.1, 0.2])
    scene = Scene("s", [lamp, BLOCK], CAMERA, Pose())
    kw = dict(place_pose=Pose.from_yaw([0.45, -0.02, 0.1], 0.0),
              points=SceneCloud.from_points(lamp_points(), scene))
    plan = plan_pick_and_place(panda, scene, "lamp", **kw)
    assert plan.success, plan.reason
    g = plan.grasp
    assert g.kind == "side" and g.hand_clear and abs(g.width - 0.04) < 0.005
    assert g.pose.position[2] + 0.0105 < 0.15
    monkeypatch.setattr(pick_place, "side_grasps", lambda *a, **k: ([], "off"))
    plan = plan_pick_and_place(panda, scene, "lamp", **kw)
    assert plan.status is PlanStatus.TOO_WIDE and "side grasps tried: off" in plan.reason


def test_hand_boxes_are_measured_in_the_tcp_frame(panda):
    """The Panda's hand stands behind the fingertips (TCP z < 0), across the closing axis
    (y) wider than the open fingers; measuring leaves the model as it was."""
    from spatialpin_ros.planning.side_grasps import hand_boxes
    before = panda.fk(panda.home).position
    boxes = hand_boxes(panda)
    assert len(boxes) == 2 and all(hi[2] < -0.02 for _, hi in boxes)
    assert any(lo[1] < -0.08 and hi[1] > 0.08 for lo, hi in boxes)
    assert np.allclose(panda.fk(panda.home).position, before)


@pytest.fixture(scope="module")
def panda():
    from spatialpin_ros.planning import RobotModel
    r = RobotModel("panda")
    yield r
    r.close()


def test_a_steady_top_down_grasp_is_still_taken(panda):
    """A block and a can have steady top-down grasps: no side grasp, no rise stage."""
    from spatialpin_ros.planning import plan_pick_and_place
    can = prior("can", [0.45, 0.1, 0.06], [0.066, 0.066, 0.12])
    for obj in (prior("blk2", [0.45, 0.1, 0.025], [0.05, 0.05, 0.05], shape="box"), can):
        plan = plan_pick_and_place(panda, Scene("s", [obj, BLOCK], CAMERA, Pose()), obj.id,
                                   place_pose=Pose.from_yaw([0.45, -0.02, obj.center[2]], 0.0))
        assert plan.success, plan.reason
        assert plan.grasp.kind == "box"
        assert "rise" not in [n for n, _, _ in plan.stages]
        assert plan.grasp.pose.rotation.as_matrix()[2, 2] < -0.999   # pointing down


def test_a_tall_narrow_box_is_picked_from_the_side_and_set_down_upright(panda):
    """Its top-down grasp (4 cm wide, 10.5 cm above its centre) would pivot: planned from the
    side instead, with the hand's orientation kept from the grasp to the placement, the retreat
    backwards, then up."""
    from spatialpin_ros.planning import plan_pick_and_place
    from spatialpin_ros.planning.recovery import describe_grasp
    plan = plan_pick_and_place(panda, Scene("s", [TALL, BLOCK], CAMERA, Pose()), "tall",
                               place_pose=PLACE)
    assert plan.success, plan.reason
    g, pl = plan.grasp, plan.placement
    assert g.kind == "side" and describe_grasp(plan).startswith("from the side at 13.0 cm")
    names = [n for n, _, _ in plan.stages]
    assert names[-4:] == ["release", "retreat", "rise", "home"]
    # The object keeps its pose in the hand: upright where it is put down.
    T = g.pose.inverse().matrix() @ TALL.pose.matrix()
    placed = pl.pose.matrix() @ T
    assert placed[2, 2] > 0.9999
    assert np.allclose(placed[:3, 3], PLACE.position + [0, 0, 0.005], atol=1e-6)
    # Straight moves: in horizontally, up, down, back horizontally, up.
    t0, t1 = plan.stage("descend")
    sel = (plan.trajectory.times >= t0) & (plan.trajectory.times <= t1)
    path = plan.ee_path[sel]
    assert np.ptp(path[:, 2]) < 0.003 and np.ptp(path[:, 0]) > 0.09
    t0, t1 = plan.stage("retreat")
    sel = (plan.trajectory.times >= t0) & (plan.trajectory.times <= t1)
    assert np.ptp(plan.ee_path[sel][:, 2]) < 0.003


@pytest.mark.parametrize("name", ["xarm6", "kuka_iiwa"])
def test_each_robot_plans_a_side_grasp_or_says_it_tried(name):
    """The other arms: a side grasp where one is reachable, else the refusal stays
    (unstable_grasp), its reason naming the side grasps tried."""
    from spatialpin_ros.planning import RobotModel, plan_pick_and_place
    r = RobotModel(name)
    try:
        plan = plan_pick_and_place(r, Scene("s", [TALL, BLOCK], CAMERA, Pose()), "tall",
                                   place_pose=PLACE)
    finally:
        r.close()
    if plan.success:
        assert plan.grasp.kind == "side"
    else:
        assert plan.status is PlanStatus.UNSTABLE_GRASP
        assert "side grasps tried" in plan.reason, plan.reason


BOTTLE_SCENE = """
name: tall_bottle
camera: {width: 640, height: 480, fov_deg: 58, eye: [1.1, 0.0, 0.68], target: [0.52, 0.0, 0.03]}
objects:
  - {name: water_bottle, shape: mesh, mesh: bottle, size: [0.06, 0.06, 0.23], color: cyan,
     text: AQUA, position: [0.45, 0.1, 0.0]}
  - {name: red_block, shape: box, size: [0.05, 0.05, 0.05], color: red,
     position: [0.5, -0.12, 0.0]}
"""


def test_a_tall_bottle_is_picked_from_the_side_and_put_next_to_a_block(panda, tmp_path: Path,
                                                                      monkeypatch):
    """In the simulator: a 23 cm bottle, 6 cm across, whose only top-down grasp that fits is
    its neck (refused: unstable_grasp before side grasps), is picked from the side and put
    down upright next to the block."""
    from spatialpin_ros.core.task_kinds import TaskKind
    from spatialpin_ros.perception import make_backend
    from spatialpin_ros.planning import pick_place
    from spatialpin_ros.reasoning.tasks import GeometricProposer
    from spatialpin_ros.sim.scene_spec import load_scene_file
    from spatialpin_ros.sim.world import SimWorld
    from spatialpin_ros.sim_tasks import SimTaskRunner
    f = tmp_path / "tall_bottle.yaml"
    f.write_text(BOTTLE_SCENE)
    with SimWorld(load_scene_file(f)) as w:
        runner = SimTaskRunner(w, make_backend("geometric"), panda, max_clearing=0)
        scene = runner.perceive()
        tasks = [t for t in GeometricProposer().propose(scene, 0)
                 if t.kind == TaskKind.PLACE_NEXT_TO.value
                 and "cyan" in scene.get(t.object_id).label]
        assert tasks
        t = tasks[0]
        with monkeypatch.context() as m:   # without side grasps: refused
            m.setattr(pick_place, "side_grasps", lambda *a, **k: ([], "off"))
            plan = runner.plan(scene, TaskKind.PLACE_NEXT_TO, t.object_id, t.target_id,
                               t.place_pose)
            assert plan.status is PlanStatus.UNSTABLE_GRASP and "side grasps tried: off" in \
                plan.reason, plan.reason
        run = runner.run(scene, t)
        truth = {o.id: o for o in w.ground_truth().objects}
    assert run.status == PlanStatus.OK and run.check.ok, run.reason
    assert run.grasp.startswith("from the side"), run.grasp
    assert all(h.held for h in run.hand)
    bottle, block = truth["water_bottle"], truth["red_block"]
    assert bottle.pose.rotation.as_matrix()[2, 2] > math.cos(math.radians(5))   # upright
    assert abs(bottle.center[2] - 0.115) < 0.005                                 # on the table
    assert np.linalg.norm(bottle.center[:2] - tasks[0].place_pose.position[:2]) < 0.03
    assert np.linalg.norm(bottle.center[:2] - block.center[:2]) < 0.12
    assert np.linalg.norm(block.center[:2] - [0.5, -0.12]) < 0.005             # not pushed
