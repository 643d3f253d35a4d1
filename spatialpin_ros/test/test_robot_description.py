"""A robot is data: robot descriptions (URDF + YAML) for the planner and the simulator, the
shipped arms (Panda, xArm6), clear errors for bad descriptions, and no Panda constant left in
the code outside the Panda's description (ROS-free)."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from spatialpin_ros.core.robot_description import (RobotDescriptionError, available_robots,
                                                   load_robot, robots_dir)
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.planning import RobotModel, limit_violations, plan_pick_and_place, \
    top_down_pose

REPO = Path(__file__).resolve().parents[2]
CAM = CameraModel.from_fov(64, 48, 58)


# -- no Panda constant outside its description ------------------------------------------------
#: What only the Panda's description may say: its joint and link names, its home pose, its
#: TCP offset and finger geometry, its URDF.
PANDA_CONSTANTS = [r"panda_(joint|finger|hand|link|grasptarget|leftfinger|rightfinger)",
                   r"PANDA_HOME", r"-2\.356", r"\b0\.0072\b", r"\b0\.0265\b", r"\b0\.105\b",
                   r"FINGERTIP_BELOW_TCP", r"FINGER_THICKNESS", r"MAX_FLANGE_REACH",
                   r"franka_panda/panda\.urdf", r"PandaModel"]
#: Where the code lives (tests are left out: they check the Panda's model against known Panda
#: values). perception/self_filter.py's docstring names the Panda's URDF as an example path.
SCANNED = ["spatialpin_ros/spatialpin_ros", "spatialpin_ros/launch", "spatialpin_ros/config",
           "benchmarks", "scripts", "Makefile"]
ALLOWED = {"spatialpin_ros/config/robots/panda.yaml"}
DOCSTRING_EXAMPLES = {("spatialpin_ros/spatialpin_ros/perception/self_filter.py",
                       r"franka_panda/panda\.urdf")}


def test_no_panda_constant_outside_its_description():
    offenders = []
    for root in SCANNED:
        base = REPO / root
        files = [base] if base.is_file() else [p for p in base.rglob("*")
                                                 if p.suffix in (".py", ".yaml", ".urdf", "")
                                                 and p.is_file()]
        for f in files:
            rel = str(f.relative_to(REPO))
            if rel in ALLOWED or "__pycache__" in rel:
                continue
            text = f.read_text(errors="replace")
            for pat in PANDA_CONSTANTS:
                if (rel, pat) in DOCSTRING_EXAMPLES:
                    continue
                for m in re.finditer(pat, text):
                    line = text[:m.start()].count("\n") + 1
                    offenders.append(f"{rel}:{line}: {m.group(0)}")
    assert not offenders, "Panda constants outside config/robots/panda.yaml:\n" + \
        "\n".join(offenders[:40])


def test_the_grep_finds_a_planted_constant(tmp_path):
    """The patterns are live: each matches what it stands for."""
    planted = ("ARM = ['panda_joint1']\nHOME = [0, -0.785, 0, -2.356]\nTIP = 0.0072\n"
               "URDF = 'franka_panda/panda.urdf'\n")
    hits = [p for p in PANDA_CONSTANTS if re.search(p, planted)]
    assert len(hits) >= 4


# -- the shipped descriptions -----------------------------------------------------------------
def test_shipped_robots_load_and_name_their_parts():
    assert {"panda", "xarm6"} <= set(available_robots())
    for name in ("panda", "xarm6"):
        d = load_robot(name)
        assert d.name == name and len(d.home) == len(d.arm_joints) >= 6
        assert d.joint_names[:len(d.arm_joints)] == list(d.arm_joints)
        assert set(d.gripper.joints) <= set(d.joint_names)


def test_xarm6_kinematics_gripper_and_limits_come_from_its_description(xarm):
    assert xarm.dof == 6 and len(xarm.joint_names) == 12
    home = xarm.fk(xarm.home)
    assert home.rotation.as_matrix()[:, 2] @ [0, 0, -1] > 0.999  # TCP points down at home
    rng = np.random.default_rng(1)
    for _ in range(10):
        target = top_down_pose([rng.uniform(0.35, 0.55), rng.uniform(-0.2, 0.2),
                                rng.uniform(0.03, 0.2)], rng.uniform(-math.pi, math.pi))
        q = xarm.ik(target)
        assert q is not None and xarm.within_limits(q)
        got = xarm.fk(q)
        assert np.linalg.norm(got.position - target.position) < 0.005
    assert xarm.ik(top_down_pose([1.2, 0.0, 0.1], 0.0)) is None  # out of its reach
    # The linkage gripper: 0 rad open (8.7 cm measured between the finger pads), 0.85 closed.
    assert 0.04 < xarm.finger_open < 0.045
    assert np.allclose(xarm.gripper_positions(xarm.finger_open), 0.0, atol=0.02)
    assert np.allclose(xarm.gripper_positions(0.0), 0.85, atol=0.02)
    for f in (0.005, 0.015, 0.03):
        assert abs(xarm.finger_from_positions(xarm.gripper_positions(f)) - f) < 1e-3
    lim = xarm.joint_limits(nominal=True)
    assert lim["joint1"].velocity == pytest.approx(3.14)
    assert xarm.limits["joint1"].velocity == pytest.approx(3.14 * 0.5)


def box(oid, center, size):
    return ObjectPrior(oid, oid, Pose.from_yaw(center, 0.0), size, shape="box")


def test_xarm6_plans_a_stack_within_its_limits(xarm):
    scene = Scene("t", [box("a", [0.45, 0.12, 0.025], [0.04, 0.04, 0.05]),
                        box("b", [0.45, -0.12, 0.025], [0.05, 0.05, 0.05])], CAM, Pose(),
                  support_plane=np.array([0, 0, 1.0, 0]))
    plan = plan_pick_and_place(xarm, scene, "a", "b")
    assert plan.success, plan.reason
    assert plan.trajectory.joint_names == xarm.joint_names
    assert limit_violations(plan.trajectory, xarm.joint_limits(nominal=True)) == \
        {"joint": 0, "velocity": 0, "acceleration": 0}
    # The gripper closes on the 4 cm block and lets go wider than its preshape (the retreat is
    # clear here: see planning.choice.RELEASE_EXTRA).
    from spatialpin_ros.planning.choice import RELEASE_EXTRA
    g = plan.trajectory.positions[:, xarm.dof:]
    t_close = plan.stage("close")[1]
    i = int(np.searchsorted(plan.trajectory.times, t_close))
    assert abs(xarm.finger_from_positions(g[i]) - plan.grasp.finger_target) < 1e-3
    release = min(xarm.finger_open, plan.grasp.preshape + RELEASE_EXTRA)
    assert release > plan.grasp.preshape
    assert np.allclose(g[-1], xarm.gripper_positions(release), atol=1e-6)


def test_the_simulator_spawns_the_xarm_and_follows_its_trajectory():
    from spatialpin_ros.core.trajectory import JointTrajectory
    from spatialpin_ros.sim.scene_spec import SceneSpec
    from spatialpin_ros.sim.world import SimWorld
    d = load_robot("xarm6")
    with SimWorld(SceneSpec(objects=[]), robot="xarm6", settle_time=0.1) as w:
        names, q, _, _ = w.joint_state()
        assert set(d.joint_names) <= set(names)
        assert np.allclose([q[names.index(n)] for n in d.arm_joints], d.home, atol=0.02)
        q0 = np.array([d.home_positions()[n] for n in d.joint_names])
        q1 = q0.copy()
        q1[0] += 0.3                      # turn the base
        q1[len(d.arm_joints):] = 0.4      # half close the gripper
        w.run_trajectory(JointTrajectory(d.joint_names, [0.0, 2.0], np.stack([q0, q1])))
        names, q, _, _ = w.joint_state()
        got = np.array([q[names.index(n)] for n in d.joint_names])
        assert np.abs(got - q1).max() < 0.02


def test_the_xarm_linkage_closes_as_one_and_does_not_push_the_object_aside(xarm):
    # The gripper's six revolute joints move as one (the URDF's mimic joints): closing on a
    # block, every joint stops where the driven one does, and the block stays between the
    # fingers instead of being pushed toward one of them.
    import pybullet as pb
    from spatialpin_ros.core.trajectory import JointTrajectory
    from spatialpin_ros.sim.scene_spec import parse_scene
    from spatialpin_ros.sim.world import SimWorld
    d = xarm.description
    spec = parse_scene({"objects": [{"name": "block", "shape": "box", "color": "red",
                                     "size": [0.04, 0.04, 0.05], "position": [0.45, 0.0, 0.0]}]})
    with SimWorld(spec, robot="xarm6", settle_time=0.1) as w:
        q = xarm.ik(top_down_pose([0.45, 0.0, 0.03], 0.0))
        assert q is not None
        w.reset_robot(dict(zip(d.arm_joints, q)))
        body = w.objects[0].body
        before = np.array(pb.getBasePositionAndOrientation(body, physicsClientId=w.client)[0])
        names, qs, _, _ = w.joint_state()
        q0 = np.array([qs[names.index(n)] for n in d.joint_names])
        q1 = q0.copy()
        q1[len(d.arm_joints):] = 0.85     # close fully: the block stops the fingers
        w.run_trajectory(JointTrajectory(d.joint_names, [0.0, 1.0], np.stack([q0, q1])))
        names, qs, _, _ = w.joint_state()
        grip = np.array([qs[names.index(n)] for n in d.gripper.joints])
        after = np.array(pb.getBasePositionAndOrientation(body, physicsClientId=w.client)[0])
        assert grip.max() < 0.8, "the fingers did not stop on the block"
        assert np.ptp(grip) < 0.02, f"the linkage bent: {np.round(grip, 3)}"
        assert np.linalg.norm((after - before)[:2]) < 0.003


# -- bad descriptions: clear errors naming what is wrong --------------------------------------
def _write(tmp_path, **changes):
    data = yaml.safe_load((robots_dir() / "xarm6.yaml").read_text())
    for key, value in changes.items():
        cur = data
        *path, last = key.split(".")
        for k in path:
            cur = cur[k]
        cur[last] = value
    data["urdf"] = "xarm/xarm6_with_gripper.urdf"
    f = tmp_path / "arm.yaml"
    f.write_text(yaml.safe_dump(data))
    return str(f)


def test_a_joint_the_urdf_lacks_is_named(tmp_path):
    f = _write(tmp_path, arm_joints=["joint1", "joint2", "joint3", "joint4", "joint5", "elbow9"])
    with pytest.raises(RobotDescriptionError, match=r"arm_joints names joint 'elbow9', which "
                       r"the URDF .* lacks"):
        load_robot(f)
    f = _write(tmp_path, **{"gripper.joints": ["drive_joint", "nope", "a", "b", "c", "d"]})
    with pytest.raises(RobotDescriptionError, match="gripper.joints names joint 'nope'"):
        load_robot(f)


def test_a_tcp_link_that_does_not_exist_is_named(tmp_path):
    f = _write(tmp_path, **{"tcp.link": "tool0"})
    with pytest.raises(RobotDescriptionError, match=r"tcp.link 'tool0' is not a link"):
        load_robot(f)


def test_an_arm_that_cannot_reach_the_table_is_refused(tmp_path):
    f = _write(tmp_path, base_position=[0.0, 0.0, 1.5])   # mounted 1.5 m above the table
    with pytest.raises(RobotDescriptionError, match="cannot reach the table"):
        RobotModel(f)


def test_other_bad_fields_are_named(tmp_path):
    with pytest.raises(RobotDescriptionError, match="unknown robot 'ur5'"):
        load_robot("ur5")
    f = _write(tmp_path, home=[0.0, 0.0, 1.0, 0.0, 0.0, 0.0])   # joint3's upper limit 0.19
    with pytest.raises(RobotDescriptionError, match="home value 1.0 of joint 'joint3'"):
        load_robot(f)
    f = _write(tmp_path, home=[0.0, 0.0])
    with pytest.raises(RobotDescriptionError, match="home needs 6 values"):
        load_robot(f)
    with pytest.raises(RobotDescriptionError, match="not valid XML"):
        load_robot("xarm6", robot_description="<robot name='x'><link")


def test_the_urdf_may_come_as_the_robot_description_string():
    text = load_robot("xarm6").urdf_text
    d = load_robot("xarm6", robot_description=text)
    assert d.urdf_text == text and Path(d.urdf_path).is_file()
