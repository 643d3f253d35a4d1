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
