"""Kinematics and collision model of any arm with a parallel gripper, from its robot
description (``core.robot_description``: the URDF plus a small YAML), in its own headless
PyBullet client (ROS-free).

The model loads the URDF with its base at the description's ``base_position`` (world frame, z up,
the table top at z = 0), in a PyBullet DIRECT client of its own whose id is held in ``client``
and passed to every call: it never reads or changes a simulator's world.

Tool centre point (TCP): the description's ``tcp.link`` moved by ``tcp.offset``/``tcp.rpy``.
Its z axis points out of the gripper (down in a top-down grasp), its y axis is the fingers'
closing direction and its x axis lies in the fingers' plane.

The gripper is one number for the planner: the opening of one finger ``f`` (metres, half the gap
between the fingers); ``gripper_positions(f)`` and ``finger_from_positions`` convert
(``planning.gripper``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pybullet as pb
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.robot_description import (DEFAULT_ROBOT, RobotDescription,
                                                   RobotDescriptionError, load_robot)
from spatialpin_ros.core.trajectory import JointLimits
from spatialpin_ros.core.types import Pose
from spatialpin_ros.planning.gripper import GripperMap
from spatialpin_ros.sim.pybullet_client import PyBulletClientOwner
from spatialpin_ros.sim.robot_body import disable_touching_pairs, load_robot_body


def top_down_rotation(yaw: float) -> Rotation:
    """TCP orientation of a top-down grasp: z down, x heading ``yaw`` about world z, so the
    fingers close along ``(sin yaw, -cos yaw, 0)``."""
    return Rotation.from_euler("z", yaw) * Rotation.from_euler("x", math.pi)


def top_down_pose(position: Sequence[float], yaw: float) -> Pose:
    return Pose(position, top_down_rotation(yaw).as_quat())


#: ``RobotModel._dls`` gives up when its error (m, plus 0.1 m per rad) fell by less than this
#: share over this many iterations.
STALL_DROP = 0.05
STALL_WINDOW = 10


def _rot_error(R_target: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) that turns ``R`` into ``R_target`` (closed form; scipy's
    conversion, several times slower, only near a half turn, where the closed form is
    ill-conditioned)."""
    D = R_target @ R.T
    c = min(1.0, max(-1.0, 0.5 * (D[0, 0] + D[1, 1] + D[2, 2] - 1.0)))
    w = np.array([D[2, 1] - D[1, 2], D[0, 2] - D[2, 0], D[1, 0] - D[0, 1]])
    if c > 1.0 - 1e-12:
        return 0.5 * w
    th = math.acos(c)
    if th > math.pi - 1e-3:
        return Rotation.from_matrix(D).as_rotvec()
    return (th / (2.0 * math.sin(th))) * w


def _pose_matrix(pos, quat) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
    T[:3, 3] = pos
    return T


class RobotModel(PyBulletClientOwner):
    """Kinematics, limits and collision geometry of an arm with its gripper.

    ``description``: a ``RobotDescription`` or the name of a shipped one ("panda", "xarm6") or
    a YAML file. The planning limits: URDF velocities times ``limits.velocity_scale``, the
    description's accelerations times ``limits.acceleration_scale``, its jerks; positions kept
    ``limits.limit_margin`` (rad) inside the URDF's.

    Attributes the planner uses: ``dof``, ``arm_joints``, ``gripper_joints``, ``joint_names``
    (arm then gripper: every trajectory's columns), ``home`` (dof,), ``finger_open`` (m, one
    finger), ``fingertip_below_tcp``, ``finger_thickness``, ``finger_width`` (m), ``lower``,
    ``upper``, ``vmax``, ``amax``, ``jmax`` (dof,), ``finger_vmax``/``finger_amax``/
    ``finger_jmax`` (m/s, m/s^2, m/s^3 of one finger), ``shoulder`` (world, m) and ``reach``
    (m, farthest TCP from the shoulder).
    """

    def __init__(self, description: RobotDescription | str = DEFAULT_ROBOT):
        d = description if isinstance(description, RobotDescription) else load_robot(description)
        self.description = d
        self.name = d.name
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        try:
            self._rb = load_robot_body(c, d)
        except Exception:
            pb.disconnect(physicsClientId=c)
            raise
        self.body = self._rb.body
        self.link_index = self._rb.link_index
        self.joint_index = self._rb.joint_index
        self._movable = self._rb.movable
        #: Links rigidly fixed to the root (the base, on the table): never checked against it.
        self.base_links: list[int] = [-1]
        for j in range(pb.getNumJoints(self.body, physicsClientId=c)):
            info = pb.getJointInfo(self.body, j, physicsClientId=c)
            if info[2] == pb.JOINT_FIXED and info[16] in self.base_links:
                self.base_links.append(j)
        self.arm_joints = tuple(d.arm_joints)
        self.gripper_joints = tuple(d.gripper.joints)
        self.joint_names = d.joint_names
        self.dof = len(self.arm_joints)
        self.arm_idx = [self.joint_index[n] for n in self.arm_joints]
        self.gripper_idx = [self.joint_index[n] for n in self.gripper_joints]
        self.all_idx = self.arm_idx + self.gripper_idx
        self._arm_cols = [self._movable.index(j) for j in self.arm_idx]
        self.home = np.asarray(d.home, dtype=float)
        self._tcp_link = self.link_index[d.tcp_link]
        self._T_link_tcp = np.eye(4)
        self._T_link_tcp[:3, :3] = Rotation.from_euler("xyz", d.tcp_rpy).as_matrix()
        self._T_link_tcp[:3, 3] = d.tcp_offset
        self.finger_links = [self.link_index[l] for l in d.gripper.finger_links]
        #: Links that may touch a grasped object (the hand links and the fingers).
        self.gripper_links = [self.link_index[l] for l in d.gripper.hand_links] + \
            self.finger_links
        g = d.gripper
        self.fingertip_below_tcp = g.fingertip_below_tcp
        self.finger_thickness = g.finger_thickness
        self.finger_width = g.finger_width
        self._q = self.home.copy()
        self._fingers = 0.0
        #: Finger opening <-> gripper joints (``planning.gripper``).
        self.gripper = GripperMap(g, d.name, self._measure_gap)
        self.finger_open = self.gripper.finger_open
        self._fingers = self.finger_open
        self._set_limits()
        #: Link pairs never checked for self-collision (``sim.robot_body``).
        self.disabled_pairs = disable_touching_pairs(self._rb, d)
        self._measure_chain()
        self.set_config(self.home, self.finger_open)
        self._check_reaches_table()

    # -- set-up --------------------------------------------------------------------------------
    def _measure_gap(self, q_gripper: np.ndarray) -> float:
        """Gap (m) between the finger links' collision shapes with the gripper at q."""
        self._reset_gripper(q_gripper)
        a, b = self.finger_links
        pts = pb.getClosestPoints(self.body, self.body, 0.5, a, b, physicsClientId=self.client)
        return min(p[8] for p in pts) if pts else float("nan")

    def _set_limits(self) -> None:
        d, lim = self.description, self.description.limits
        # Gripper joint rate per finger rate: dq/df = (open - closed) * ds/df.
        ds_max, dds_max = self.gripper.max_rates()
        span = np.abs(self.gripper.span)
        #: Nominal limits: URDF positions and velocities, the description's accelerations.
        self.nominal_limits: dict[str, JointLimits] = {}
        finger_v = []
        for n, j in zip(self.joint_names, self.all_idx):
            info = pb.getJointInfo(self.body, j, physicsClientId=self.client)
            lo, hi, vel = float(info[8]), float(info[9]), float(info[11])
            if lo > hi:  # continuous
                lo, hi = -2 * math.pi, 2 * math.pi
            if vel <= 0:
                raise RobotDescriptionError(f"robot {self.name!r}: joint {n!r} has no velocity "
                                            f"limit in the URDF")
            if n in self.arm_joints:
                acc = lim.arm_acceleration
            else:
                k = self.gripper_joints.index(n)
                rate = span[k] * ds_max
                acc = lim.finger_acceleration * rate
                acc += span[k] * dds_max * (vel / max(rate, 1e-9)) ** 2
                if rate > 0:
                    finger_v.append(vel * lim.velocity_scale / rate)
            self.nominal_limits[n] = JointLimits(lo, hi, vel, acc)
        #: Limits used for planning: scaled velocities and accelerations.
        self.limits: dict[str, JointLimits] = {
            n: JointLimits(l.lower, l.upper, l.velocity * lim.velocity_scale,
                           l.acceleration * lim.acceleration_scale)
            for n, l in self.nominal_limits.items()}
        arm = [self.nominal_limits[n] for n in self.arm_joints]
        self.lower = np.array([l.lower for l in arm]) + lim.limit_margin
        self.upper = np.array([l.upper for l in arm]) - lim.limit_margin
        self.vmax = np.array([self.limits[n].velocity for n in self.arm_joints])
        self.amax = np.array([self.limits[n].acceleration for n in self.arm_joints])
        self.jmax = np.full(self.dof, float(lim.arm_jerk))
        self.finger_vmax = float(min(finger_v)) if finger_v else 0.1
        self.finger_amax = lim.finger_acceleration * lim.acceleration_scale
        self.finger_jmax = float(lim.finger_jerk)
        for n, q in zip(self.arm_joints, self.home):
            if not self.lower[self.arm_joints.index(n)] <= q <= self.upper[
                    self.arm_joints.index(n)]:
                raise RobotDescriptionError(
                    f"robot {self.name!r}: home value {q} of joint {n!r} is within "
                    f"limits.limit_margin of its URDF limit")

    def _measure_chain(self) -> None:
        """Shoulder (the second arm joint's frame at home) and reach (the chain's length from
        it to the TCP, unless the description gives ``reach``)."""
        self._reset_arm(self.home)
        frames = []
        for j in self.arm_idx[1:]:
            frames.append(np.array(pb.getLinkState(self.body, j, computeForwardKinematics=1,
                                                   physicsClientId=self.client)[4]))
        self.shoulder = frames[0] if frames else np.array(self.description.base_position)
        frames.append(self.tcp_matrix()[:3, 3])
        chain = float(sum(np.linalg.norm(b - a) for a, b in zip(frames[:-1], frames[1:])))
        self.reach = self.description.reach or chain
        # The wrist: where the last arm joint's parent link frame is, in the TCP frame (the
        # joint turns about an axis along the TCP z axis in the arms shipped, so a TCP pose
        # puts that frame on a circle about it), and how far the chain reaches it from the
        # shoulder.
        self._wrist_in_tcp: Optional[np.ndarray] = None
        if len(frames) >= 4:
            T = self.tcp_matrix()
            ls = pb.getLinkState(self.body, self.arm_idx[-1], computeForwardKinematics=1,
                                 physicsClientId=self.client)
            R_last = np.array(pb.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
            axis = R_last @ np.array(pb.getJointInfo(self.body, self.arm_idx[-1],
                                                     physicsClientId=self.client)[13])
            if abs(float(axis @ T[:3, 2])) > 0.999:
                self._wrist_in_tcp = T[:3, :3].T @ (frames[-3] - T[:3, 3])
                self._wrist_reach = float(sum(np.linalg.norm(b - a) for a, b in
                                              zip(frames[:-3], frames[1:-2])))
        # Wrist: the last arm joint turns the TCP heading about world z; its value at a
        # top-down TCP above (x, y) with heading yaw is about
        # home + sign * (yaw - heading_home - atan2(y, x)).
        T = self.tcp_matrix()
        axis = np.array(pb.getJointInfo(self.body, self.arm_idx[-1],
                                        physicsClientId=self.client)[13])
        R_link = np.array(pb.getMatrixFromQuaternion(pb.getLinkState(
            self.body, self.arm_idx[-1], physicsClientId=self.client)[5])).reshape(3, 3)
        sign = -1.0 if float((R_link @ axis)[2]) < 0 else 1.0
        last = self.nominal_limits[self.arm_joints[-1]]
        heading = math.atan2(T[1, 0], T[0, 0]) - math.atan2(T[1, 3], T[0, 3])
        from spatialpin_ros.planning.grasps import Hand
        #: What grasp geometry needs (``planning.grasps.Hand``).
        self.hand = Hand(self.finger_open, self.fingertip_below_tcp, last.lower, last.upper,
                         float(self.home[-1]), sign, heading, self.finger_thickness,
                         self.finger_width)
        #: Widest object the gripper takes (m): open, less 4 mm on each side.
        self.max_grasp_width = 2 * self.finger_open - 0.008

    def _check_reaches_table(self, height: float = 0.05) -> None:
        """Raise ``RobotDescriptionError`` unless the TCP reaches, pointing down, a point
        ``height`` m above the table top (world z = 0) in front of the base, somewhere between
        15 cm and the arm's reach."""
        base = np.asarray(self.description.base_position, dtype=float)
        far = float(np.sqrt(max(self.reach ** 2 - (self.shoulder[2] - height) ** 2, 0.0)))
        for r in np.linspace(0.15, max(far, 0.15), 8):
            if self.ik(top_down_pose([base[0] + r, base[1], height], 0.0), restarts=1) \
                    is not None:
                return
        raise RobotDescriptionError(
            f"robot {self.name!r} cannot reach the table: no top-down TCP pose {height:.2f} m "
            f"above it (world z = 0) from 0.15 to {max(far, 0.15):.2f} m in front of its base "
            f"at {base.tolist()} (shoulder at z = {self.shoulder[2]:.2f} m, reach "
            f"{self.reach:.2f} m); check base_position and the URDF")

    # -- gripper -------------------------------------------------------------------------------
    def gripper_positions(self, f: float) -> np.ndarray:
        """Gripper joint positions for one finger's opening ``f`` (m, half the gap)."""
        return self.gripper.positions(f)

    def gripper_rates(self, f: float) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivatives of the gripper joints' positions by f."""
        return self.gripper.rates(f)

    def finger_from_positions(self, q_gripper: Sequence[float]) -> float:
        """One finger's opening (m) from the gripper joints' positions."""
        return self.gripper.finger(q_gripper)

    def finger_state(self, q_gripper: Sequence[float],
                     v_gripper: Optional[Sequence[float]] = None) -> tuple[float, float]:
        """One finger's opening (m) and opening speed (m/s; nan without velocities) from the
        gripper joints' positions and velocities."""
        f = self.finger_from_positions(q_gripper)
        if v_gripper is None:
            return f, float("nan")
        d1, _ = self.gripper_rates(f)
        k = int(np.argmax(np.abs(d1)))
        v = np.asarray(v_gripper, dtype=float).reshape(-1)
        return f, float(v[k] / d1[k]) if abs(d1[k]) > 1e-9 else float("nan")

    def split(self, positions: Sequence[float]) -> tuple[np.ndarray, float]:
        """Arm configuration (dof,) and one finger's opening (m) from positions in
        ``joint_names`` order."""
        p = np.asarray(positions, dtype=float).reshape(-1)
        return p[:self.dof], self.finger_from_positions(p[self.dof:])

    # -- state ---------------------------------------------------------------------------------
    def _reset_arm(self, q) -> None:
        pb.resetJointStatesMultiDof(self.body, self.arm_idx, [[float(v)] for v in q],
                                    physicsClientId=self.client)

    def _reset_gripper(self, qg) -> None:
        pb.resetJointStatesMultiDof(self.body, self.gripper_idx, [[float(v)] for v in qg],
                                    physicsClientId=self.client)

    def set_config(self, q: Sequence[float], fingers: Optional[float] = None) -> None:
        """Put the model's arm at ``q`` (dof,) and, if given, each finger at ``fingers`` m."""
        q = np.asarray(q, dtype=float)
        self._reset_arm(q)
        if fingers is not None and fingers != self._fingers:
            self._reset_gripper(self.gripper_positions(fingers))
            self._fingers = float(fingers)
        elif fingers is not None or self._q is None:
            self._reset_gripper(self.gripper_positions(self._fingers))
        self._q = q

    def within_limits(self, q: np.ndarray) -> bool:
        return bool(np.all(q >= self.lower) and np.all(q <= self.upper))

    # -- kinematics ----------------------------------------------------------------------------
    def tcp_matrix(self) -> np.ndarray:
        """4x4 TCP pose at the model's current configuration."""
        ls = pb.getLinkState(self.body, self._tcp_link, computeForwardKinematics=1,
                             physicsClientId=self.client)
        return _pose_matrix(ls[4], ls[5]) @ self._T_link_tcp

    def fk(self, q: Sequence[float]) -> Pose:
        """Pose of the TCP in the world frame at arm configuration q."""
        self.set_config(q)
        return Pose.from_matrix(self.tcp_matrix())

    def fk_path(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP positions (N, 3) and quaternions (N, 4) (x, y, z, w) along configurations
        (N, dof)."""
        P, O = np.zeros((len(Q), 3)), np.zeros((len(Q), 4))
        for i, q in enumerate(Q):
            self.set_config(q)
            T = self.tcp_matrix()
            P[i], O[i] = T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_quat()
        return P, O

    def _jacobian(self, q: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        """6 x dof Jacobian of the TCP point ``tcp`` (world) at the current state q."""
        ls = pb.getLinkState(self.body, self._tcp_link, computeForwardKinematics=1,
                             physicsClientId=self.client)
        R_com = np.array(pb.getMatrixFromQuaternion(ls[1])).reshape(3, 3)
        local = R_com.T @ (tcp - np.asarray(ls[0]))   # in the link's inertial frame
        pos = [s[0] for s in pb.getJointStates(self.body, self._movable,
                                               physicsClientId=self.client)]
        zeros = [0.0] * len(pos)
        jl, ja = pb.calculateJacobian(self.body, self._tcp_link, local.tolist(), pos, zeros,
                                      zeros, physicsClientId=self.client)
        return np.vstack([np.asarray(jl)[:, self._arm_cols], np.asarray(ja)[:, self._arm_cols]])

    def _dls(self, q: np.ndarray, p_t: np.ndarray, R_t: np.ndarray, iters: int = 60,
             tol_p: float = 1e-4, tol_r: float = 1e-3) -> tuple[np.ndarray, float, float]:
        """Damped least squares from q towards the target, clamped to the joint limits. Stops
        early when the error has not fallen by ``STALL_DROP`` over ``STALL_WINDOW`` iterations
        (pinned at a joint limit, or the target out of reach: more iterations would not get
        there)."""
        q = np.clip(q, self.lower, self.upper)
        ep = er = float("inf")
        hist: list[float] = []
        for i in range(iters):
            self.set_config(q)
            T = self.tcp_matrix()
            e = np.concatenate([p_t - T[:3, 3], _rot_error(R_t, T[:3, :3])])
            ep, er = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
            if ep < tol_p and er < tol_r:
                break
            hist.append(ep + 0.1 * er)
            if i >= STALL_WINDOW and hist[-1] > (1.0 - STALL_DROP) * hist[-1 - STALL_WINDOW]:
                break
            J = self._jacobian(q, T[:3, 3])
            lam = 0.05 if ep > 0.05 else 0.01
            dq = J.T @ np.linalg.solve(J @ J.T + lam**2 * np.eye(6), e)
            step = np.max(np.abs(dq))
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return q, ep, er

    def _pybullet_ik(self, seed: np.ndarray, target: Pose) -> np.ndarray:
        """PyBullet's null-space IK for the TCP link's frame (starts from the model's state)."""
        self.set_config(seed)
        T_link = target.matrix() @ np.linalg.inv(self._T_link_tcp)
        quat = Rotation.from_matrix(T_link[:3, :3]).as_quat()
        ll, ul, rest = [], [], []
        state = [s[0] for s in pb.getJointStates(self.body, self._movable,
                                                 physicsClientId=self.client)]
        for j, qj in zip(self._movable, state):
            info = pb.getJointInfo(self.body, j, physicsClientId=self.client)
            lo, hi = (info[8], info[9]) if info[8] <= info[9] else (-2 * math.pi, 2 * math.pi)
            ll.append(lo)
            ul.append(hi)
            rest.append(qj)
        for col, v in zip(self._arm_cols, seed):
            rest[col] = float(v)
        jr = [u - l for l, u in zip(ll, ul)]
        sol = pb.calculateInverseKinematics(
            self.body, self._tcp_link, T_link[:3, 3].tolist(), quat.tolist(), lowerLimits=ll,
            upperLimits=ul, jointRanges=jr, restPoses=rest, maxNumIterations=200,
            residualThreshold=1e-5, physicsClientId=self.client)
        return np.asarray([sol[c] for c in self._arm_cols])

    def _wrist_reaches(self, p_t: np.ndarray, R_t: np.ndarray, slack: float) -> bool:
        """False when the last arm joint's parent frame, on its circle about the target TCP's z
        axis, is farther from the shoulder everywhere than the chain up to it reaches (plus
        ``slack`` m: what the IK tolerances allow)."""
        v = self._wrist_in_tcp
        if v is None:
            return True
        n = R_t[:, 2]
        c = p_t + v[2] * n
        d = self.shoulder - c
        axial = float(d @ n)
        radial = float(np.linalg.norm(d - axial * n))
        rho = float(np.hypot(v[0], v[1]))
        return math.hypot(axial, radial - rho) <= self._wrist_reach + slack

    def ik(self, target: Pose, q_seed: Optional[Sequence[float]] = None, restarts: int = 6,
           pos_tol: float = 0.005, rot_tol_deg: float = 3.0,
           rng: Optional[np.random.Generator] = None) -> Optional[np.ndarray]:
        """Arm configuration (dof,) whose TCP reaches ``target`` within ``pos_tol`` metres and
        ``rot_tol_deg`` degrees, inside the joint limits; None when none is found.

        Seeds, in order: ``q_seed`` (default home) refined by damped least squares; PyBullet's
        null-space IK from the seed; then ``restarts`` random configurations. The first solution
        found from the seed is preferred, so solutions stay close to the seed.
        """
        seed = np.asarray(self.home if q_seed is None else q_seed, dtype=float)
        p_t = target.position
        R_t = target.rotation.as_matrix()
        rot_tol = math.radians(rot_tol_deg)
        # Out of reach for sure: farther from the shoulder than the chain is long.
        slack = pos_tol + rot_tol * float(np.linalg.norm(
            self._wrist_in_tcp if self._wrist_in_tcp is not None else 0.0))
        if np.linalg.norm(p_t - self.shoulder) > self.reach or \
                not self._wrist_reaches(p_t, R_t, slack):
            return None
        rng = rng or np.random.default_rng(0)

        def ok(q, ep, er):
            return ep <= pos_tol and er <= rot_tol and self.within_limits(q)

        q, ep, er = self._dls(seed, p_t, R_t)
        if ok(q, ep, er):
            return q
        q, ep, er = self._dls(self._pybullet_ik(seed, target), p_t, R_t)
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
