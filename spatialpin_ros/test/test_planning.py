"""Planning core (no ROS): kinematics, collision checking, grasps and placements, OMPL motion
planning with Ruckig timing, failure reasons, and a pick-and-stack executed in the simulator."""

import math
import time

import numpy as np
import pytest

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.core.robot_description import load_robot
from spatialpin_ros.planning import (Infeasible, MotionPlanner, PickPlaceConfig, PlanFailure,
                                     PlanningScene, PlanStatus, RobotModel,
                                     grasp_candidates, limit_violations, plan_pick_and_place,
                                     top_down_pose)
from spatialpin_ros.sim.scene_spec import CameraSpec, ObjectSpec, SceneSpec
from spatialpin_ros.sim.world import SimWorld

CAM = CameraModel.from_fov(64, 48, 58)
#: These tests check the planner on the Panda (its description: config/robots/panda.yaml).
PANDA_HOME = np.array(load_robot("panda").home)


def box(oid, center, size, yaw_deg=0.0, shape="box"):
    return ObjectPrior(oid, oid, Pose.from_yaw(center, math.radians(yaw_deg)), size, shape=shape)


def scene_of(*objects):
    return Scene("test", list(objects), CAM, Pose(), support_plane=np.array([0, 0, 1.0, 0]))


@pytest.fixture(scope="module")
def robot():
    r = RobotModel("panda")
    yield r
    r.close()


@pytest.fixture(scope="module")
def planner(robot):
    return MotionPlanner(robot, seed=5)


@pytest.fixture(scope="module")
def wall_problem(robot):
    """Two top-down configurations on either side of a 30 cm tall wall (no straight path)."""
    wall = box("wall", [0.5, 0.0, 0.15], [0.30, 0.04, 0.30])
    qa = robot.ik(top_down_pose([0.5, 0.25, 0.10], 0.0), PANDA_HOME)
    qb = robot.ik(top_down_pose([0.5, -0.25, 0.10], 0.0), PANDA_HOME)
    assert qa is not None and qb is not None
    return scene_of(wall), qa, qb


# -- kinematics -------------------------------------------------------------------------------
def test_fk_of_home_points_the_gripper_down(robot):
    p = robot.fk(PANDA_HOME)
    assert np.allclose(p.position, [0.307, 0.0, 0.485], atol=0.002)
    assert p.rotation.as_matrix()[:, 2] @ [0, 0, -1] > 0.999  # TCP z axis points down


def test_ik_fk_round_trip(robot):
    rng = np.random.default_rng(3)
    for _ in range(15):
        target = top_down_pose([rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3),
                                rng.uniform(0.02, 0.3)], rng.uniform(-math.pi, math.pi))
        q = robot.ik(target, PANDA_HOME)
        assert q is not None
        assert robot.within_limits(q)
        got = robot.fk(q)
        assert np.linalg.norm(got.position - target.position) < 0.005
        assert math.degrees((got.rotation * target.rotation.inv()).magnitude()) < 3.0
    assert robot.ik(top_down_pose([1.5, 0.0, 0.1], 0.0)) is None  # out of reach


# -- collision checking -----------------------------------------------------------------------
def test_validity_detects_a_box_on_the_arm_path_and_none_at_home(robot):
    qa = robot.ik(top_down_pose([0.45, 0.25, 0.15], 0.0), PANDA_HOME)
    qb = robot.ik(top_down_pose([0.45, -0.25, 0.15], 0.0), PANDA_HOME)
    free = PlanningScene(robot, scene_of())
    assert free.is_valid(PANDA_HOME) and free.collisions(PANDA_HOME) == []
    assert free.is_valid(qa) and free.is_valid(qb) and free.motion_valid(qa, qb)
    free.close()
    # A box where the hand passes halfway.
    mid = robot.fk(0.5 * (qa + qb)).position
    ps = PlanningScene(robot, scene_of(box("obstacle", mid, [0.06, 0.06, 0.06])))
    assert ps.is_valid(PANDA_HOME)
    assert ps.is_valid(qa) and ps.is_valid(qb)
    assert not ps.is_valid(0.5 * (qa + qb))
    assert not ps.motion_valid(qa, qb)
    hit = ps.collisions(0.5 * (qa + qb))
    assert hit and all(other == "obstacle" for _, other, _ in hit)
    ps.close()
    ps = PlanningScene(robot, scene_of())
    # Fingers into the table; the wrist folded onto the forearm; outside the limits.
    into_table = [0.0, 0.626, 0.0, -2.308, 0.0, 2.934, 0.785]
    assert {(a, b) for a, b, _ in ps.collisions(into_table)} == {
        ("panda_leftfinger", "__table__"), ("panda_rightfinger", "__table__")}
    assert not ps.is_valid(into_table)
    folded = [2.09, 1.31, 2.22, -1.66, -1.33, -0.04, 0.86]
    assert [(a, b) for a, b, _ in ps.collisions(folded)] == [("panda_link5", "panda_link7")]
    assert not ps.is_valid(folded)
    assert not ps.is_valid(np.array(PANDA_HOME) + [0, 0, 0, 5.0, 0, 0, 0])
    rng = np.random.default_rng(0)
    Q = PANDA_HOME + rng.normal(0.0, 0.3, (400, 7))
    t = time.perf_counter()
    for q in Q:
        ps.is_valid(q)
    per_check = (time.perf_counter() - t) / len(Q)
    ps.close()
    assert per_check < 0.5e-3, f"{1e3 * per_check:.3f} ms per check (target < 0.2 ms)"


def test_point_cloud_voxels_are_obstacles_except_where_priors_are(robot):
    qa = robot.ik(top_down_pose([0.45, 0.25, 0.15], 0.0), PANDA_HOME)
    qb = robot.ik(top_down_pose([0.45, -0.25, 0.15], 0.0), PANDA_HOME)
    xs, zs = np.meshgrid(np.arange(0.35, 0.60, 0.005), np.arange(0.0, 0.35, 0.005))
    wall = np.stack([xs.ravel(), np.zeros(xs.size), zs.ravel()], 1)  # a wall of points at y=0
    blk = box("blk", [0.5, 0.25, 0.03], [0.05, 0.05, 0.06])
    inside = np.random.default_rng(0).uniform(-0.02, 0.02, (200, 3)) + blk.center
    ps = PlanningScene(robot, scene_of(blk), cloud=np.vstack([wall, inside, [[np.nan] * 3]]),
                       voxel_size=0.02)
    n_cloud = sum(1 for name in ps.bodies if name.startswith("__cloud__"))
    assert n_cloud >= 1
    assert ps.is_valid(PANDA_HOME) and ps.is_valid(qa) and ps.is_valid(qb)
    assert not ps.motion_valid(qa, qb)
    ps.close()
    # Only the prior's own points: nothing is added for them.
    ps = PlanningScene(robot, scene_of(blk), cloud=inside)
    assert not any(name.startswith("__cloud__") for name in ps.bodies)
    ps.close()


def test_every_cloud_voxel_is_an_obstacle(robot):
    # 40 voxels in a row: PyBullet keeps 16 shapes of a compound, so each must be in one.
    import pybullet as pb
    pts = np.array([[0.3 + 0.02 * k + 0.01, 0.2, 0.11] for k in range(40)])
    ps = PlanningScene(robot, scene_of(), cloud=pts, voxel_size=0.02)
    for k in (0, 17, 39):
        x = 0.3 + 0.02 * k + 0.01
        hit = pb.rayTest([x, 0.2, 0.5], [x, 0.2, 0.05], physicsClientId=ps.client)[0]
        assert ps.names.get(hit[0], "").startswith("__cloud__"), f"voxel {k} is missing"
    ps.close()


def test_held_object_moves_with_the_hand_and_is_checked(robot):
    blk = box("blk", [0.5, 0.0, 0.03], [0.04, 0.04, 0.06])
    low_wall = box("wall", [0.5, -0.25, 0.1125], [0.3, 0.08, 0.225])  # top at z = 0.225
    ps = PlanningScene(robot, scene_of(blk, low_wall))
    yaw = math.pi / 2  # fingers close along x
    q_grasp = robot.ik(top_down_pose([0.5, 0.0, 0.035], yaw), PANDA_HOME)
    ps.attach("blk", q_grasp, 0.02)
    q_up = robot.ik(top_down_pose([0.5, 0.0, 0.25], yaw), q_grasp)
    assert np.allclose(ps.held_pose(q_up).position, [0.5, 0.0, 0.245], atol=0.005)
    assert ps.is_valid(q_up)
    # Beside the wall, above its top: the gripper is clear, the held block hangs into it.
    q_near = robot.ik(top_down_pose([0.5, -0.19, 0.25], yaw), q_up)
    assert not ps.is_valid(q_near)
    assert {(a, b) for a, b, _ in ps.collisions(q_near)} == {("held", "wall")}
    ps.detach()
    assert ps.is_valid(q_near)
    ps.close()


# -- grasps and placements --------------------------------------------------------------------
def test_grasp_of_a_yawed_box_closes_across_its_narrow_side(robot):
    prior = box("b", [0.5, 0.1, 0.025], [0.04, 0.06, 0.05], yaw_deg=30)
    g = grasp_candidates(robot.hand, prior)[0]
    R = g.pose.rotation.as_matrix()
    closing = R[:, 1]  # the fingers close along the TCP y axis
    box_x = prior.pose.rotation.as_matrix()[:, 0]
    assert abs(closing @ box_x) > 0.999  # across the 4 cm side
    assert g.width == pytest.approx(0.04)
    assert R[:, 2] @ [0, 0, -1] > 0.999  # top-down
    assert g.finger_target < 0.02 < g.preshape <= 0.04
    assert g.pregrasp.position[2] - g.pose.position[2] == pytest.approx(0.10)
    # A cylinder: any heading, the one closest to the wrist's current heading first.
    cyl = box("c", [0.5, 0.1, 0.04], [0.05, 0.05, 0.08], shape="cylinder")
    assert abs(grasp_candidates(robot.hand, cyl, current_yaw=0.3)[0].yaw - 0.3) < 1e-6


def test_the_fingers_let_go_wider_than_they_came_down(robot):
    # An object perceived narrower than it is stops the closing fingers at or beyond the
    # preshape; opening only to the preshape left it wedged and carried it away. Where the
    # retreat is clear, the release opens RELEASE_EXTRA wider than the preshape.
    from spatialpin_ros.planning.choice import RELEASE_EXTRA
    obj = box("obj", [0.5, 0.0, 0.025], [0.03, 0.03, 0.05])
    tgt = box("tgt", [0.5, 0.18, 0.025], [0.07, 0.07, 0.05])
    plan = plan_pick_and_place(robot, scene_of(obj, tgt), "obj", "tgt")
    assert plan.success, plan.reason
    traj = plan.trajectory
    _, end = plan.stage("release")
    q = traj.sample(end)
    opening = robot.finger_from_positions(q[robot.dof:])
    assert opening == pytest.approx(min(robot.finger_open, plan.grasp.preshape + RELEASE_EXTRA),
                                    abs=1e-3)
    assert opening > plan.grasp.preshape + 0.5 * RELEASE_EXTRA


def test_too_wide_object_is_refused(robot):
    wide = box("wide", [0.5, 0.15, 0.03], [0.10, 0.10, 0.06])
    tgt = box("tgt", [0.5, -0.15, 0.03], [0.12, 0.12, 0.06])
    with pytest.raises(Infeasible) as e:
        grasp_candidates(robot.hand, wide)
    assert e.value.code == "too_wide"
    plan = plan_pick_and_place(robot, scene_of(wide, tgt), "wide", "tgt")
    assert not plan.success and plan.status == "too_wide" and "too wide" in plan.reason
    assert plan.trajectory is None


def test_target_smaller_than_the_object_is_refused(robot):
    obj = box("obj", [0.5, 0.15, 0.03], [0.06, 0.06, 0.06])
    small = box("small", [0.5, -0.15, 0.02], [0.03, 0.03, 0.04])
    plan = plan_pick_and_place(robot, scene_of(obj, small), "obj", "small")
    assert not plan.success and plan.status == "target_too_small"
    assert "target too small" in plan.reason
    ball = box("ball", [0.5, -0.15, 0.03], [0.06, 0.06, 0.06], shape="sphere")
    plan = plan_pick_and_place(robot, scene_of(obj, ball), "obj", "ball")
    assert plan.status == "no_flat_top"


def test_unreachable_target_and_missing_object_are_refused(robot):
    obj = box("obj", [0.5, 0.15, 0.025], [0.04, 0.04, 0.05])
    far = box("far", [1.5, 0.0, 0.03], [0.07, 0.07, 0.06])
    plan = plan_pick_and_place(robot, scene_of(obj, far), "obj", "far")
    assert not plan.success and plan.status == "unreachable" and "unreachable" in plan.reason
    plan = plan_pick_and_place(robot, scene_of(obj, far), "nothing", "far")
    assert plan.status == "missing_object" and "missing object" in plan.reason


def test_place_at_a_pose_on_the_table(robot, planner):
    obj = box("obj", [0.45, 0.15, 0.025], [0.04, 0.05, 0.05], yaw_deg=10)
    goal = Pose.from_yaw([0.55, -0.15, 0.025], math.radians(45))
    plan = plan_pick_and_place(robot, scene_of(obj), "obj", place_pose=goal, planner=planner,
                               return_home=False)
    assert plan.success, plan.reason
    placed = plan.placement.object_pose
    assert np.allclose(placed.position, goal.position + [0, 0, 0.005], atol=1e-6)  # let go 5 mm up
    # The box is put down at the asked heading or half a turn from it (the same box).
    assert abs(math.sin(placed.yaw() - goal.yaw())) < 1e-6
    assert [n for n, _, _ in plan.stages][-1] == "retreat"
    assert {m.name for m in plan.motions} == {"approach", "descend", "lift", "transport",
                                              "lower", "retreat"}
    assert all(t >= 0 for t in plan.motion_times.values())


# -- motion planning --------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["rrtstar", "rrtconnect"])
def test_plan_around_an_obstacle_is_collision_free_and_within_limits(robot, planner,
                                                                     wall_problem, algorithm):
    scene, qa, qb = wall_problem
    ps = PlanningScene(robot, scene)
    assert not ps.motion_valid(qa, qb)  # the wall is in the way
    res = planner.plan(qa, qb, ps, time_limit=2.0, algorithm=algorithm)
    assert res.success, res.reason
    assert res.sampled and res.path.shape[1] == 7
    assert np.allclose(res.path[0], qa) and np.allclose(res.path[-1], qb)
    traj = res.trajectory
    assert np.allclose(traj.positions[0], qa) and np.allclose(traj.positions[-1], qb)
    assert np.all(np.diff(traj.times) > 0) and np.max(np.diff(traj.times)) <= 0.0121
    # Every sample clear of the padded obstacles (up to the 2 mm verification tolerance) ...
    assert all(ps.is_valid(q, 0.002) for q in traj.positions)
    ps.close()
    # ... and of the true (unpadded) shapes, strictly.
    exact = PlanningScene(robot, scene, padding=0.0, table_padding=0.0)
    assert all(exact.is_valid(q) for q in traj.positions)
    exact.close()
    # Position and velocity limits (core validate) and acceleration limits, on the robot's
    # own limits and on the planner's reduced ones.
    traj.validate(limits=robot.nominal_limits)
    traj.validate(limits=robot.limits)
    assert limit_violations(traj, robot.nominal_limits) == {"joint": 0, "velocity": 0,
                                                           "acceleration": 0}
    assert limit_violations(traj, robot.limits) == {"joint": 0, "velocity": 0,
                                                   "acceleration": 0}
    acc = np.abs(np.diff(traj.velocities, axis=0) / np.diff(traj.times)[:, None])
    assert np.all(acc <= robot.amax * (1 + 1e-6))


def test_tiny_time_limit_gives_timeout_not_a_path(robot, planner, wall_problem):
    scene, qa, qb = wall_problem
    ps = PlanningScene(robot, scene)
    res = planner.plan(qa, qb, ps, time_limit=0.002)
    ps.close()
    assert not res.success and res.path is None and res.trajectory is None
    assert res.status is PlanStatus.TIMEOUT and res.reason.startswith("timeout")


def test_should_cancel_stops_planning(robot, planner, wall_problem):
    scene, qa, qb = wall_problem
    ps = PlanningScene(robot, scene)
    assert planner.plan(qa, qb, ps, should_cancel=lambda: True).status is PlanStatus.CANCELLED
    calls = [0]

    def cancel_later():  # lets the checks pass, then cancels inside the search
        calls[0] += 1
        return calls[0] > 3

    t = time.perf_counter()
    res = planner.plan(qa, qb, ps, time_limit=5.0, should_cancel=cancel_later)
    ps.close()
    assert res.status is PlanStatus.CANCELLED and time.perf_counter() - t < 1.0
    obj = box("obj", [0.5, 0.15, 0.025], [0.04, 0.04, 0.05])
    tgt = box("tgt", [0.5, -0.15, 0.025], [0.06, 0.06, 0.05])
    plan = plan_pick_and_place(robot, scene_of(obj, tgt), "obj", "tgt",
                               should_cancel=lambda: True)
    assert not plan.success and plan.status is PlanStatus.CANCELLED and plan.reason == "cancelled"


def test_settings_are_one_config_and_outcomes_one_type(robot):
    obj = box("obj", [0.5, 0.15, 0.025], [0.04, 0.04, 0.05])
    tgt = box("tgt", [0.5, -0.15, 0.025], [0.06, 0.06, 0.05])
    narrow = PickPlaceConfig(max_grasp_width=0.03, compute_ee_path=False)
    plan = plan_pick_and_place(robot, scene_of(obj, tgt), "obj", "tgt", config=narrow)
    assert plan.status is PlanStatus.TOO_WIDE and "too wide" in plan.reason
    # A field given by name replaces the config's; an unknown one is refused.
    plan = plan_pick_and_place(robot, scene_of(obj, tgt), "obj", "tgt", config=narrow,
                               max_grasp_width=0.06)
    assert plan.status is PlanStatus.OK and plan.ee_path is None
    with pytest.raises(TypeError):
        plan_pick_and_place(robot, scene_of(obj, tgt), "obj", "tgt", grasp_deep=0.02)
    with pytest.raises(PlanFailure) as e:
        grasp_candidates(robot.hand, box("w", [0.5, 0, 0.05], [0.2, 0.2, 0.1]))
    assert e.value.status is PlanStatus.TOO_WIDE and isinstance(e.value, Infeasible)


# -- the whole task, executed in the simulator ------------------------------------------------
def two_blocks() -> SceneSpec:
    return SceneSpec(camera=CameraSpec(width=64, height=48), objects=[
        ObjectSpec("red_block", shape="box", size=(0.045, 0.045, 0.045), rgba=(1, 0, 0, 1),
                   position=(0.5, 0.12, 0.0225), yaw_deg=20),
        ObjectSpec("blue_block", shape="box", size=(0.07, 0.07, 0.05), rgba=(0, 0, 1, 1),
                   position=(0.52, -0.08, 0.025), yaw_deg=-10),
    ], name="two_blocks")


def test_pick_and_stack_in_the_simulator(robot, planner):
    with SimWorld(two_blocks()) as world:
        # Ground truth as a stand-in for perception (this unit test only).
        scene = world.ground_truth()
        plan = plan_pick_and_place(robot, scene, "red_block", "blue_block", planner=planner)
        assert plan.success, plan.reason
        traj = plan.trajectory
        names = [n for n, _, _ in plan.stages]
        assert names == ["preshape", "approach", "descend", "close", "lift", "transport",
                         "lower", "release", "retreat", "home"]
        assert plan.ee_path.shape == (len(traj.times), 3)
        assert plan.ee_quat.shape == (len(traj.times), 4)
        world.validate_trajectory(traj)
        assert limit_violations(traj, world.joint_limits) == {"joint": 0, "velocity": 0,
                                                             "acceleration": 0}
        red = next(o for o in world.objects if o.spec.name == "red_block")
        blue = next(o for o in world.objects if o.spec.name == "blue_block")
        z0 = world.object_box(red)[0].position[2]
        # Follow the trajectory; at the end of the lift the block must be up in the fingers
        # (held by friction only: no constraint, no teleporting).
        _, lift_end = plan.stage("lift")
        world.start_trajectory(traj)
        t0 = world.sim_time
        while world.sim_time - t0 < lift_end:
            world.step(4)
        assert world.object_box(red)[0].position[2] - z0 > 0.05
        world.step(int(math.ceil((traj.duration - lift_end + 0.5) / world.time_step)))
        red_pose, red_size = world.object_box(red)
        blue_pose, blue_size = world.object_box(blue)
        blue_top = blue_pose.position + blue_pose.rotation.apply([0, 0, blue_size[2] / 2])
        assert np.linalg.norm(red_pose.position[:2] - blue_top[:2]) < 0.015
        red_bottom = red_pose.position[2] - red_size[2] / 2
        assert abs(red_bottom - blue_top[2]) < 0.01  # resting on the blue block
        assert red_pose.rotation.as_matrix()[:, 2] @ [0, 0, 1] > 0.99  # upright
        # The arm ended at home with the gripper open.
        _, q, _, _ = world.joint_state()
        assert np.allclose(q[:7], PANDA_HOME, atol=0.02)
        assert np.all(q[7:] > plan.grasp.width / 2)


# -- clutter: grasp variants, off-centre placements, clearing the way -------------------------
def test_off_centre_placements_move_away_from_a_crowding_neighbour(robot):
    from spatialpin_ros.core.stacking import stable_at
    from spatialpin_ros.planning.grasps import stack_poses
    obj = box("obj", [0.45, 0.2, 0.025], [0.05, 0.056, 0.05])
    tgt = box("tgt", [0.5, 0.0, 0.02], [0.05, 0.04, 0.04])
    wall = box("wall", [0.5, 0.047, 0.06], [0.05, 0.05, 0.12])   # 2 mm from the target, tall
    tiers = stack_poses(obj, tgt, neighbours=[wall])
    assert len(tiers) >= 2
    centred = tiers[0][0][0].position
    assert np.allclose(centred[:2], [0.5, 0.0])
    for tier in tiers[1:]:
        for pose, ratio in tier:
            shift = pose.position[:2] - centred[:2]
            assert shift[1] < -0.004 and abs(shift[0]) < 1e-9        # away from the wall
            assert stable_at(obj, pose.yaw(), tgt, pose.position[:2]) and ratio >= 0.6
    # Shifts stop where the object would tip: 1 cm off a 4 cm wide top is too far.
    assert max(abs(p.position[1]) for t in tiers for p, _ in t) < 0.0075
    # No neighbour, no off-centre tier; a low neighbour does not count.
    assert len(stack_poses(obj, tgt)) == 1
    low = box("low", [0.5, 0.047, 0.01], [0.05, 0.05, 0.02])
    assert len(stack_poses(obj, tgt, neighbours=[low])) == 1
    # Held at the centre the object would press 6 mm into the wall; 5 mm away it clears.
    ps = PlanningScene(robot, scene_of(obj, tgt, wall))
    try:
        ps.attach("obj", robot.ik(top_down_pose([0.45, 0.2, 0.03], 0.0), PANDA_HOME), 0.03)
        with ps.allow(["tgt"]), ps.fine():
            assert not ps.held_clear_at(tiers[0][0][0])
            assert ps.held_clear_at(tiers[1][0][0])
    finally:
        ps.close()


def clutter() -> SceneSpec:
    """A short block touching a tall one: no top-down grasp fits the short block."""
    return SceneSpec(camera=CameraSpec(width=64, height=48), objects=[
        ObjectSpec("short", shape="box", size=(0.04, 0.04, 0.035), rgba=(1, 0, 0, 1),
                   position=(0.5, 0.1, 0.0175)),
        ObjectSpec("tall", shape="box", size=(0.04, 0.045, 0.13), rgba=(0, 1, 0, 1),
                   position=(0.5, 0.1425, 0.065)),
        ObjectSpec("base", shape="box", size=(0.07, 0.07, 0.04), rgba=(0, 0, 1, 1),
                   position=(0.5, -0.15, 0.02)),
    ], name="clutter")


def test_a_blocked_task_clears_the_way_first_and_stacks_in_the_simulator(robot, planner):
    from spatialpin_ros.planning import blockers, plan_task
    with SimWorld(clutter()) as world:
        scene = world.ground_truth()   # a stand-in for perception (this unit test only)
        direct = plan_pick_and_place(robot, scene, "short", "base", planner=planner)
        assert not direct.success and direct.status == "blocked"
        assert [o.id for o in blockers(scene, "short", "base")] == ["tall"]
        assert plan_task(robot, scene, "short", "base", planner=planner,
                         max_clearing=0).status == "blocked"
        plan = plan_task(robot, scene, "short", "base", planner=planner)
        assert plan.success, plan.reason
        assert [c for c, _ in plan.cleared] == ["tall"]
        spot = plan.cleared[0][1].position
        for keep in ("short", "base"):
            assert np.linalg.norm(spot[:2] - scene.get(keep).center[:2]) > 0.1
        names = [n for n, _, _ in plan.stages]
        assert names[:2] == ["clear_preshape", "clear_approach"] and names[-1] == "home"
        assert "clear_home" not in names and names.count("lift") == 1
        traj = plan.trajectory
        assert np.all(np.diff(traj.times) > 0)
        assert np.max(np.abs(np.diff(traj.positions[:, :7], axis=0))) < 0.05  # continuous
        world.validate_trajectory(traj)
        assert limit_violations(traj, world.joint_limits) == {"joint": 0, "velocity": 0,
                                                             "acceleration": 0}
        world.run_trajectory(traj)
        world.step(int(0.5 / world.time_step))
        short = next(o for o in world.objects if o.spec.name == "short")
        base = next(o for o in world.objects if o.spec.name == "base")
        tall = next(o for o in world.objects if o.spec.name == "tall")
        sp, ss = world.object_box(short)
        bp, bs = world.object_box(base)
        assert np.linalg.norm(sp.position[:2] - bp.position[:2]) < 0.015
        assert abs((sp.position[2] - ss[2] / 2) - (bp.position[2] + bs[2] / 2)) < 0.01
        tp, _ = world.object_box(tall)
        assert np.linalg.norm(tp.position[:2] - spot[:2]) < 0.02   # the tall block went there
        assert tp.rotation.as_matrix()[:, 2] @ [0, 0, 1] > 0.99    # and stands upright


def test_two_moves_clear_a_block_between_two_tall_ones(robot, planner):
    from spatialpin_ros.planning import blockers, plan_task
    short = box("short", [0.5, 0.1, 0.0175], [0.04, 0.04, 0.035])
    left = box("left", [0.5, 0.1425, 0.065], [0.04, 0.045, 0.13])
    right = box("right", [0.5, 0.0575, 0.065], [0.04, 0.045, 0.13])
    base = box("base", [0.5, -0.15, 0.02], [0.07, 0.07, 0.04])
    scene = scene_of(short, left, right, base)
    assert {o.id for o in blockers(scene, "short", "base")} == {"left", "right"}
    one = plan_task(robot, scene, "short", "base", planner=planner, max_moves=1)
    assert not one.success and one.status == "blocked" and "clearing the way" in one.reason
    two = plan_task(robot, scene, "short", "base", planner=planner, max_moves=2)
    assert two.success, two.reason
    assert sorted(c for c, _ in two.cleared) == ["left", "right"]
    names = [n for n, _, _ in two.stages]
    assert names.count("clear_lift") == 2   # one per move
    assert names.count("lift") == 1 and names[-1] == "home"
    spots = [p.position[:2] for _, p in two.cleared]
    assert np.linalg.norm(spots[0] - spots[1]) > 0.05   # not put down on top of each other
    assert limit_violations(two.trajectory, robot.joint_limits(nominal=True)) == {
        "joint": 0, "velocity": 0, "acceleration": 0}


def test_lifting_out_of_a_touching_neighbour(robot, planner):
    """Perceived boxes of touching objects overlap by a few millimetres: the held object may keep
    touching such a neighbour on the way straight up (without that allowance this task is
    blocked at the lift)."""
    tall = box("tall", [0.5, 0.1, 0.045], [0.045, 0.06, 0.09])
    beside = box("beside", [0.5, 0.146, 0.0225], [0.05, 0.04, 0.045])   # 4 mm into "tall"
    base = box("base", [0.5, -0.15, 0.02], [0.07, 0.07, 0.04])
    plan = plan_pick_and_place(robot, scene_of(tall, beside, base), "tall", "base",
                               planner=planner)
    assert plan.success, plan.reason
    assert plan.grasp.object_id == "tall" and not plan.cleared
