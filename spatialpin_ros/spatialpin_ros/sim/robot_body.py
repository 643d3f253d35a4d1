"""A robot description's URDF as a PyBullet body, shared by the simulator and the planner's
model (ROS-free).

``load_robot_body`` loads the URDF with self-collision at the description's base position and
names its links and joints; ``disable_touching_pairs`` turns off self-collision between link
pairs that touch at home with the gripper open or closed (as MoveIt's setup assistant's
"default" pairs: a gripper's linkage, a hand joined through a link-less flange) and the pairs
the description lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as pb

from spatialpin_ros.core.robot_description import RobotDescription, RobotDescriptionError


@dataclass
class RobotBody:
    """A loaded robot: PyBullet ``body`` in ``client``; link and joint indices by name (the
    URDF's root link is -1); ``movable``: indices of the non-fixed joints."""

    client: int
    body: int
    link_index: dict[str, int]
    joint_index: dict[str, int]
    movable: list[int]


def load_robot_body(client: int, d: RobotDescription, offset=(0.0, 0.0, 0.0)) -> RobotBody:
    """Load ``d``'s URDF (fixed base at its ``base_position`` + ``offset``, metres, world)."""
    base = (np.asarray(d.base_position, dtype=float) + np.asarray(offset, dtype=float)).tolist()
    try:
        body = pb.loadURDF(d.urdf_path, base, useFixedBase=True,
                           flags=pb.URDF_USE_SELF_COLLISION, physicsClientId=client)
    except pb.error as e:
        raise RobotDescriptionError(f"robot {d.name!r}: PyBullet cannot load {d.urdf_path}: "
                                    f"{e}") from None
    root = pb.getBodyInfo(body, physicsClientId=client)[0].decode()
    links, joints, movable = {root: -1}, {}, []
    for j in range(pb.getNumJoints(body, physicsClientId=client)):
        info = pb.getJointInfo(body, j, physicsClientId=client)
        links[info[12].decode()] = j
        joints[info[1].decode()] = j
        if info[2] != pb.JOINT_FIXED:
            movable.append(j)
    return RobotBody(client, body, links, joints, movable)


def disable_touching_pairs(rb: RobotBody, d: RobotDescription) -> list[tuple[int, int]]:
    """Turn off self-collision between the link pairs touching at home (gripper open, then
    closed) and the description's ``disabled_pairs``; returns the pairs (link indices). Leaves
    the arm at home with the gripper open."""
    c, b = rb.client, rb.body
    pairs = {(rb.link_index[x], rb.link_index[y]) for x, y in d.disabled_pairs}
    arm = [rb.joint_index[n] for n in d.arm_joints]
    grip = [rb.joint_index[n] for n in d.gripper.joints]
    for g in (d.gripper.closed, d.gripper.open):
        pb.resetJointStatesMultiDof(b, arm + grip, [[float(v)] for v in (*d.home, *g)],
                                    physicsClientId=c)
        pb.performCollisionDetection(physicsClientId=c)
        pairs |= {(cp[3], cp[4]) for cp in pb.getContactPoints(b, b, physicsClientId=c)
                  if cp[8] < 0.0}
    for x, y in pairs:
        pb.setCollisionFilterPair(b, b, x, y, 0, physicsClientId=c)
    return sorted(pairs)


#: Torque (N m) with which a linkage's follower joints track the driven joint.
LINKAGE_FORCE = 20.0


def couple_gripper(client: int, robot: int, joint_index: dict[str, int],
                   d: RobotDescription) -> list[str]:
    """Make the gripper move as one degree of freedom, with one motor; returns the joints of a
    linkage that ``follow_linkage`` must drive each step (empty otherwise).

    The Franka Hand's two prismatic fingers (a rack) get a gear constraint that holds them
    symmetric, so a finger that touches first does not push the object across the hand while
    the other runs on. A linkage of revolute joints (the xArm gripper, whose URDF's mimic
    joints follow the driven one) is driven by its first joint; the others follow it stiffly:
    left on their own motors, the driven knuckle stopped at 0.45 rad on the object while its
    mimics ran on to 0.72, the linkage bent, and the object was pushed 1 cm toward one finger,
    which still pressed it after the release. Only where the description's open and closed
    values are the same for every joint (they move alike)."""
    g = d.gripper
    joints = [joint_index.get(n) for n in g.joints]
    if len(joints) < 2 or None in joints:
        return []
    types = {pb.getJointInfo(robot, j, physicsClientId=client)[2] for j in joints}
    alike = len(set(np.round(g.open, 9))) == 1 and len(set(np.round(g.closed, 9))) == 1
    if not alike or len(types) != 1:
        return []
    kind = types.pop()
    if kind == pb.JOINT_PRISMATIC and len(joints) == 2:
        gear = pb.createConstraint(robot, joints[0], robot, joints[1], pb.JOINT_GEAR,
                                   [1, 0, 0], [0, 0, 0], [0, 0, 0], physicsClientId=client)
        pb.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=client)
        return []
    return list(g.joints) if kind == pb.JOINT_REVOLUTE else []


def follow_linkage(client: int, robot: int, joint_index: dict[str, int],
                   linkage: list[str]) -> None:
    """Command a linkage's follower joints to its driven (first) joint's position now."""
    if not linkage:
        return
    drive = pb.getJointState(robot, joint_index[linkage[0]], physicsClientId=client)[0]
    idx = [joint_index[n] for n in linkage[1:]]
    pb.setJointMotorControlArray(robot, idx, pb.POSITION_CONTROL,
                                 targetPositions=[drive] * len(idx),
                                 forces=[LINKAGE_FORCE] * len(idx),
                                 positionGains=[0.8] * len(idx), velocityGains=[1.0] * len(idx),
                                 physicsClientId=client)
