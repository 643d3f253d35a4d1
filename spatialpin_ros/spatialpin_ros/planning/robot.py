"""Franka Panda kinematics and collision model in its own headless PyBullet client (ROS-free).

The model loads ``franka_panda/panda.urdf`` from pybullet_data at the world origin (the robot base
on the table top, z up), in a PyBullet DIRECT client of its own whose id is held in ``client``
and passed to every call: it never reads or changes a simulator's world.

Tool centre point (TCP): the URDF's ``panda_grasptarget`` frame, 0.105 m along the hand's z axis
from the flange (``panda_link8``); the fingertips reach 7 mm beyond it. Its z axis points out of
the gripper (down in a top-down grasp), its y axis is the fingers' closing direction and its x
axis lies in the fingers' plane. At ``PANDA_HOME`` it points straight down with x along world x.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pybullet as pb
import pybullet_data
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.trajectory import JointLimits
from spatialpin_ros.core.types import Pose
from spatialpin_ros.sim.pybullet_client import PyBulletClientOwner

#: The Panda's "ready" configuration (radians), as in the simulator.
PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
#: Opening of one finger when the gripper is open (metres); the gripper opens 2x this.
FINGER_OPEN = 0.04
#: Distance from the TCP to the fingertips along the TCP z axis (metres).
FINGERTIP_BELOW_TCP = 0.0072
#: Outer extent of one finger from its inner (gripping) face, along the closing axis (metres).
FINGER_THICKNESS = 0.0265
#: Width of a finger across the closing axis (metres).
FINGER_WIDTH = 0.021

TCP_LINK = "panda_grasptarget"
#: TCP distance from the flange along the TCP z axis (metres).
TCP_OFFSET = 0.105
SHOULDER = np.array([0.0, 0.0, 0.333])
MAX_FLANGE_REACH = 0.95


def top_down_rotation(yaw: float) -> Rotation:
    """TCP orientation of a top-down grasp: z down, x heading ``yaw`` about world z, so the
    fingers close along ``(sin yaw, -cos yaw, 0)``."""
    return Rotation.from_euler("z", yaw) * Rotation.from_euler("x", math.pi)


def top_down_pose(position: Sequence[float], yaw: float) -> Pose:
    return Pose(position, top_down_rotation(yaw).as_quat())


def _rot_error(R_target: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) that turns ``R`` into ``R_target``."""
    return Rotation.from_matrix(R_target @ R.T).as_rotvec()


class PandaModel(PyBulletClientOwner):
    """Kinematics, limits and collision geometry of a Panda with its gripper.

    ``velocity_scale`` scales the URDF velocity limits (a safety margin for tracking accuracy);
    ``arm_acceleration`` (rad/s^2) and ``finger_acceleration`` (m/s^2) are the acceleration
    limits, ``arm_jerk``/``finger_jerk`` the jerk limits used by the time parameterisation.
    ``limit_margin`` (rad) keeps planned configurations this far inside the position limits.
    """

    def __init__(self, velocity_scale: float = 0.5, arm_acceleration: float = 15.0,
                 finger_acceleration: float = 2.0, acceleration_scale: float = 0.5,
                 arm_jerk: float = 150.0, finger_jerk: float = 20.0, limit_margin: float = 0.02):
        if not 0 < velocity_scale <= 1 or not 0 < acceleration_scale <= 1:
            raise ValueError("velocity_scale and acceleration_scale must lie in (0, 1]")
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        try:
            pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
            self.body = pb.loadURDF("franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True,
                                    flags=pb.URDF_USE_SELF_COLLISION, physicsClientId=c)
        except Exception:
            pb.disconnect(physicsClientId=c)
            raise
        self.link_index: dict[str, int] = {"panda_link0": -1}
        joint_index: dict[str, int] = {}
        #: Nominal limits: URDF positions and velocities, the given accelerations.
        self.nominal_limits: dict[str, JointLimits] = {}
        for j in range(pb.getNumJoints(self.body, physicsClientId=c)):
            info = pb.getJointInfo(self.body, j, physicsClientId=c)
            name = info[1].decode()
            self.link_index[info[12].decode()] = j
            joint_index[name] = j
            if info[2] in (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC):
                acc = finger_acceleration if "finger" in name else arm_acceleration
                self.nominal_limits[name] = JointLimits(info[8], info[9], info[11], acc)
        self.arm_idx = [joint_index[n] for n in ARM_JOINTS]
        self.finger_idx = [joint_index[n] for n in FINGER_JOINTS]
        self.all_idx = self.arm_idx + self.finger_idx
        self.joint_names = list(ARM_JOINTS + FINGER_JOINTS)
        self.tcp_link = self.link_index[TCP_LINK]
        self.hand_link = self.link_index["panda_hand"]
        self.finger_links = [self.link_index["panda_leftfinger"],
                             self.link_index["panda_rightfinger"]]
        #: Links that may touch a grasped object (hand, fingers, and the wrist link 7).
        self.gripper_links = [self.link_index["panda_link7"], self.hand_link, *self.finger_links]
        #: Limits used for planning: velocities scaled by ``velocity_scale``, accelerations by
        #: ``acceleration_scale``.
        self.limits: dict[str, JointLimits] = {
            n: JointLimits(l.lower, l.upper, l.velocity * velocity_scale,
                           l.acceleration * acceleration_scale)
            for n, l in self.nominal_limits.items()}
        arm = [self.nominal_limits[n] for n in ARM_JOINTS]
        self.lower = np.array([l.lower for l in arm]) + limit_margin
        self.upper = np.array([l.upper for l in arm]) - limit_margin
        self.vmax = np.array([self.limits[n].velocity for n in ARM_JOINTS])
        self.amax = np.array([self.limits[n].acceleration for n in ARM_JOINTS])
        self.jmax = np.full(7, float(arm_jerk))
        self.finger_vmax = self.limits[FINGER_JOINTS[0]].velocity
        self.finger_amax = self.limits[FINGER_JOINTS[0]].acceleration
        self.finger_jmax = float(finger_jerk)
        # The hand always overlaps link 7 (they are joined through the link-less flange).
        pb.setCollisionFilterPair(self.body, self.body, self.link_index["panda_link7"],
                                  self.hand_link, 0, physicsClientId=c)
        self._q = None
        self._fingers = None
        self.set_config(PANDA_HOME, FINGER_OPEN)

    # -- state ---------------------------------------------------------------------------------
    def set_config(self, q: Sequence[float], fingers: Optional[float] = None) -> None:
        """Put the model's arm at ``q`` (7,) and, if given, each finger at ``fingers`` metres."""
        q = np.asarray(q, dtype=float)
        if fingers is None:
            fingers = self._fingers if self._fingers is not None else FINGER_OPEN
        pb.resetJointStatesMultiDof(self.body, self.all_idx,
                                    [[float(v)] for v in q] + [[float(fingers)]] * 2,
                                    physicsClientId=self.client)
        self._q = q
        self._fingers = float(fingers)

    def within_limits(self, q: np.ndarray) -> bool:
        return bool(np.all(q >= self.lower) and np.all(q <= self.upper))

    # -- kinematics ----------------------------------------------------------------------------
    def tcp_matrix(self) -> np.ndarray:
        """4x4 TCP pose at the model's current configuration."""
        ls = pb.getLinkState(self.body, self.tcp_link, computeForwardKinematics=1,
                             physicsClientId=self.client)
        T = np.eye(4)
        T[:3, :3] = np.array(pb.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
        T[:3, 3] = ls[4]
        return T

    def fk(self, q: Sequence[float]) -> Pose:
        """Pose of the TCP (``panda_grasptarget``) in the world frame at arm configuration q."""
        self.set_config(q)
        return Pose.from_matrix(self.tcp_matrix())

    def fk_path(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP positions (N, 3) and quaternions (N, 4) (x, y, z, w) along configurations (N, 7)."""
        P, O = np.zeros((len(Q), 3)), np.zeros((len(Q), 4))
        for i, q in enumerate(Q):
            self.set_config(q)
            ls = pb.getLinkState(self.body, self.tcp_link, computeForwardKinematics=1,
                                 physicsClientId=self.client)
            P[i], O[i] = ls[4], ls[5]
        return P, O

    def _jacobian(self, q: np.ndarray) -> np.ndarray:
        pos = [float(v) for v in q] + [self._fingers] * 2
        zeros = [0.0] * len(pos)
        jl, ja = pb.calculateJacobian(self.body, self.tcp_link, [0.0, 0.0, 0.0], pos, zeros, zeros,
                                      physicsClientId=self.client)
        return np.vstack([np.asarray(jl)[:, :7], np.asarray(ja)[:, :7]])

    def _dls(self, q: np.ndarray, p_t: np.ndarray, R_t: np.ndarray, iters: int = 60,
             tol_p: float = 1e-4, tol_r: float = 1e-3) -> tuple[np.ndarray, float, float]:
        """Damped least squares from q towards the target, clamped to the joint limits."""
        q = np.clip(q, self.lower, self.upper)
        ep = er = float("inf")
        for _ in range(iters):
            self.set_config(q)
            T = self.tcp_matrix()
            e = np.concatenate([p_t - T[:3, 3], _rot_error(R_t, T[:3, :3])])
            ep, er = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
            if ep < tol_p and er < tol_r:
                break
            J = self._jacobian(q)
            lam = 0.05 if ep > 0.05 else 0.01
            dq = J.T @ np.linalg.solve(J @ J.T + lam**2 * np.eye(6), e)
            step = np.max(np.abs(dq))
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return q, ep, er

    def ik(self, target: Pose, q_seed: Optional[Sequence[float]] = None, restarts: int = 6,
           pos_tol: float = 0.005, rot_tol_deg: float = 3.0,
           rng: Optional[np.random.Generator] = None) -> Optional[np.ndarray]:
        """Arm configuration (7,) whose TCP reaches ``target`` within ``pos_tol`` metres and
        ``rot_tol_deg`` degrees, inside the joint limits; None when none is found.

        Seeds, in order: ``q_seed`` (default home) refined by damped least squares; PyBullet's
        null-space IK from the seed; then ``restarts`` random configurations. The first solution
        found from the seed is preferred, so solutions stay close to the seed.
        """
        seed = np.asarray(PANDA_HOME if q_seed is None else q_seed, dtype=float)
        p_t = target.position
        R_t = target.rotation.as_matrix()
        # Out of reach for sure: the flange farther from the shoulder than the arm is long
        # (0.316 + 0.393 + 0.083 + 0.139 m, links 3 to 8 stretched; with a small margin).
        flange = p_t - TCP_OFFSET * R_t[:, 2]
        if np.linalg.norm(flange - SHOULDER) > MAX_FLANGE_REACH:
            return None
        rng = rng or np.random.default_rng(0)
        rot_tol = math.radians(rot_tol_deg)

        def ok(q, ep, er):
            return ep <= pos_tol and er <= rot_tol and self.within_limits(q)

        q, ep, er = self._dls(seed, p_t, R_t)
        if ok(q, ep, er):
            return q
        # PyBullet's null-space IK (starts from the model's state), then refine.
        self.set_config(seed)
        ll = [self.nominal_limits[n].lower for n in self.joint_names]
        ul = [self.nominal_limits[n].upper for n in self.joint_names]
        jr = [u - l for l, u in zip(ll, ul)]
        rest = list(seed) + [self._fingers] * 2
        sol = pb.calculateInverseKinematics(
            self.body, self.tcp_link, p_t.tolist(), target.quaternion.tolist(), lowerLimits=ll,
            upperLimits=ul, jointRanges=jr, restPoses=rest, maxNumIterations=200,
            residualThreshold=1e-5, physicsClientId=self.client)
        q, ep, er = self._dls(np.asarray(sol[:7]), p_t, R_t)
        if ok(q, ep, er):
            return q
        for _ in range(restarts):
            q0 = rng.uniform(self.lower, self.upper)
            q0 = 0.5 * (q0 + seed)  # random, but biased towards the seed's posture
            q, ep, er = self._dls(q0, p_t, R_t, iters=100)
            if ok(q, ep, er):
                return q
        return None

    # -- limits --------------------------------------------------------------------------------
    def joint_limits(self, nominal: bool = False) -> dict[str, JointLimits]:
        """Limits per joint name: the planning limits, or with ``nominal`` the robot's own."""
        return dict(self.nominal_limits if nominal else self.limits)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
