"""The third arm and robot descriptions as robot_state_publisher publishes them (ROS-free): the
KUKA iiwa with its WSG-50 gripper loads, reaches the table and plans a stack within its limits;
package:// and file:// mesh URIs resolve to files PyBullet loads (a robot whose meshes are
missing is refused, naming the mesh); the gripper's squeeze comes from the robot YAML."""

import math
import shutil
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data
import pytest
import yaml

from spatialpin_ros.core.robot_description import (RobotDescriptionError, available_robots,
                                                   load_robot, robots_dir)
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene
from spatialpin_ros.core.urdf_resources import (UrdfResourceError, needs_resolving,
                                                resolve_urdf_uris)
from spatialpin_ros.planning import (RobotModel, limit_violations, plan_pick_and_place,
                                     top_down_pose)

DATA = Path(pybullet_data.getDataPath())
CAM = CameraModel.from_fov(64, 48, 58)


def test_the_kuka_iiwa_with_its_wsg50_loads_from_its_description(kuka):
    assert "kuka_iiwa" in available_robots()
    d = kuka.description
    assert kuka.dof == 7 and len(d.gripper.joints) == 2
    assert "package://" in d.urdf_text and not needs_resolving(Path(d.urdf_path).read_text())
    # Home: the TCP in front of the base, pointing down; the gripper opens 9 cm.
    T = kuka.fk(kuka.home).matrix()
    assert T[0, 3] > 0.2 and T[2, 3] > 0.3 and T[2, 2] < -0.99
    assert abs(kuka.finger_open - 0.045) < 1e-9 and kuka.max_grasp_width > 0.07
    # The fingers close along the TCP y axis: at 2 cm per finger their pads are 4 cm apart.
    kuka.set_config(kuka.home, 0.02)
    a, b = kuka.finger_links
    pts = pb.getClosestPoints(kuka.body, kuka.body, 0.5, a, b, physicsClientId=kuka.client)
    assert abs(min(p[8] for p in pts) - 0.04) < 1e-3
    along = np.array(pts[0][5]) - np.array(pts[0][6])
    assert abs(abs(float(along @ T[:3, 1])) - np.linalg.norm(along)) < 1e-3
    # Every link has collision geometry: the meshes were found.
    for link in range(-1, pb.getNumJoints(kuka.body, physicsClientId=kuka.client)):
        name = (pb.getBodyInfo(kuka.body, physicsClientId=kuka.client)[0].decode() if link < 0
                else pb.getJointInfo(kuka.body, link, physicsClientId=kuka.client)[12].decode())
        if name != "wsg50_tcp":
            assert pb.getCollisionShapeData(kuka.body, link, physicsClientId=kuka.client), name
    kuka.set_config(kuka.home, kuka.finger_open)


def test_the_kuka_reaches_top_down_grasps_on_the_table(kuka):
    for x, y, yaw in ((0.45, 0.0, 0.0), (0.55, 0.2, 1.0), (0.4, -0.25, -0.7)):
        target = top_down_pose([x, y, 0.05], yaw)
        q = kuka.ik(target)
        assert q is not None and kuka.within_limits(q)
        p = kuka.fk(q)
        assert np.linalg.norm(p.position - target.position) < 0.005


def test_the_kuka_plans_a_stack_within_its_limits(kuka):
    red = ObjectPrior("red", "red block", Pose.from_yaw([0.5, 0.12, 0.0225], 0.3),
                      [0.045, 0.045, 0.045], shape="box")
    blue = ObjectPrior("blue", "blue block", Pose.from_yaw([0.52, -0.1, 0.025], -0.2),
                       [0.07, 0.07, 0.05], shape="box")
    scene = Scene("s", [red, blue], CAM, Pose(), support_plane=np.array([0, 0, 1.0, 0]))
    plan = plan_pick_and_place(kuka, scene, "red", "blue")
    assert plan.success, plan.reason
    assert list(plan.trajectory.joint_names) == kuka.joint_names
    assert not any(limit_violations(plan.trajectory, kuka.joint_limits(nominal=True)).values())
    assert plan.grasp.finger_target < 0.002   # closed until the block stops the jaws
    # Not closing fully, the fingers close to the block's half-width less the YAML's squeeze.
    plan = plan_pick_and_place(kuka, scene, "red", "blue", close_until_stopped=False)
    assert abs(plan.grasp.finger_target - (0.0225 - kuka.description.gripper.squeeze)) < 1e-6


def test_package_and_file_uris_resolve_to_files():
    text = ('<robot name="r"><link name="a"><visual><geometry><mesh filename='
            '"package://pybullet_data/kuka_iiwa/meshes/link_0.stl"/></geometry></visual>'
            f'<collision><geometry><mesh filename="file://{DATA}/kuka_iiwa/meshes/link_1.stl"/>'
            '</geometry></collision></link></robot>')
    assert needs_resolving(text)
    out = resolve_urdf_uris(text)
    assert "://" not in out
    assert f'"{(DATA / "kuka_iiwa/meshes/link_0.stl").resolve()}"' in out
    assert f'"{(DATA / "kuka_iiwa/meshes/link_1.stl").resolve()}"' in out
    # PyBullet's own reading of package:// (beside the URDF file) needs no rewriting.
    panda = (DATA / "franka_panda/panda.urdf").read_text()
    assert "package://" in panda and not needs_resolving(panda, DATA / "franka_panda")


def test_a_missing_package_or_mesh_is_named():
    mesh = '<robot name="r"><link name="a"><visual><geometry><mesh filename="{}"/></geometry>' \
           '</visual></link></robot>'
    with pytest.raises(UrdfResourceError, match="package 'no_such_pkg' not found"):
        resolve_urdf_uris(mesh.format("package://no_such_pkg/meshes/a.stl"))
    with pytest.raises(UrdfResourceError, match="link_99.stl.* does not exist"):
        resolve_urdf_uris(mesh.format("package://pybullet_data/kuka_iiwa/meshes/link_99.stl"))
    with pytest.raises(UrdfResourceError, match="unsupported URI scheme"):
        resolve_urdf_uris(mesh.format("http://example.com/a.stl"))


def test_a_robot_description_string_with_package_uris_loads(kuka):
    """As robot_state_publisher publishes it; a mesh it names that is missing is refused."""
    text = kuka.description.urdf_text
    d = load_robot("kuka_iiwa", robot_description=text)
    assert d.urdf_text == text and not needs_resolving(Path(d.urdf_path).read_text())
    r = RobotModel(d)
    try:
        assert np.allclose(r.fk(r.home).position, kuka.fk(kuka.home).position, atol=1e-6)
    finally:
        r.close()
    bad = text.replace("meshes/link_3.stl", "meshes/link_3_missing.stl")
    with pytest.raises(RobotDescriptionError, match="robot 'kuka_iiwa': mesh .*link_3_missing"):
        load_robot("kuka_iiwa", robot_description=bad)


def test_the_yaml_names_where_a_package_lives(tmp_path):
    """A package no index knows (a vendor's meshes copied anywhere): the YAML's packages."""
    shutil.copytree(DATA / "kuka_iiwa" / "meshes",
                    tmp_path / "vendor" / "my_arm_description" / "meshes")
    urdf = (robots_dir().parent.parent / "urdf" / "kuka_iiwa_wsg50.urdf").read_text()
    urdf = urdf.replace("package://pybullet_data/kuka_iiwa/", "package://my_arm_description/")
    (tmp_path / "arm.urdf").write_text(urdf)
    data = yaml.safe_load((robots_dir() / "kuka_iiwa.yaml").read_text())
    data["urdf"] = str(tmp_path / "arm.urdf")
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RobotDescriptionError, match="package 'my_arm_description' not found"):
        load_robot(str(tmp_path / "arm.yaml"))
    data["packages"] = {"my_arm_description": "vendor/my_arm_description"}   # from the YAML
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(data))
    d = load_robot(str(tmp_path / "arm.yaml"))
    assert str(tmp_path / "vendor" / "my_arm_description" / "meshes" / "link_0.stl") in \
        Path(d.urdf_path).read_text()


def test_the_squeeze_comes_from_the_robot_yaml(tmp_path):
    data = yaml.safe_load((robots_dir() / "kuka_iiwa.yaml").read_text())
    data["urdf"] = str(robots_dir().parent.parent / "urdf" / "kuka_iiwa_wsg50.urdf")
    data["gripper"]["squeeze"] = 0.009
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    assert load_robot(str(tmp_path / "a.yaml")).gripper.squeeze == 0.009
    panda = yaml.safe_load((robots_dir() / "panda.yaml").read_text())
    assert load_robot("panda").gripper.squeeze == panda["gripper"]["squeeze"]
    data["gripper"]["squeeze"] = -0.01
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RobotDescriptionError, match="gripper.squeeze must lie in"):
        load_robot(str(tmp_path / "a.yaml"))
