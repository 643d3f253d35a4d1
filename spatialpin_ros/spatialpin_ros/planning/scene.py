"""The planning scene: collision objects from perceived priors, the table, an optional voxelised
point cloud, and an object held in the gripper (ROS-free).

Collision objects live in the robot model's own PyBullet client (``RobotModel.client``); the
simulator's state is never read. Each prior becomes a static primitive grown by ``padding``
metres on every side: a box (shapes "box" and "other"), a cylinder or a sphere. The table is a
slab whose top is the scene's support plane (z = 0 when unknown), grown by ``table_padding``.

``is_valid(q)`` checks, at arm configuration ``q``: the position limits, every robot link and
the held object against all collision objects, and self-collision of non-adjacent links.
Pairs can be allowed to touch for a while (``allow``), e.g. the fingers and the object being
grasped, or the held object and the surface it is placed on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import pybullet as pb

from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.planning.robot import RobotModel

TABLE = "__table__"
CLOUD = "__cloud__"
_FAR = [0.0, 0.0, -50.0]


@dataclass
class Attached:
    """An object held in the gripper: its prior, the object's pose in the TCP frame, and its
    collision body (a box moving with the TCP)."""

    prior: ObjectPrior
    T_tcp_obj: np.ndarray
    body: int
    finger_width: float


def support_z(scene: Optional[Scene]) -> float:
    """Height (m) of the support plane under the scene (0 when unknown or not level)."""
    if scene is None:
        return 0.0
    a, b, c, d = scene.support_plane
    if c > 0.9:
        return float(-d / c)
    return 0.0


class PlanningScene:
    """Collision world for planning with ``robot`` (a RobotModel).

    ``scene``: perceived priors (None: only the table). ``cloud``: optional (N, 3) world points,
    voxelised at ``voxel_size`` metres; voxels within ``cloud_prior_margin`` of a prior's box, or
    below ``table_z + 0.01``, are dropped (the priors and the table stand for them).
    """

    def __init__(self, robot: RobotModel, scene: Optional[Scene] = None, padding: float = 0.01,
                 table_padding: float = 0.003, cloud: Optional[np.ndarray] = None,
                 voxel_size: float = 0.02, cloud_prior_margin: float = 0.015,
                 self_collision_tolerance: float = 0.001):
        self.robot = robot
        self.client = robot.client
        # One planning scene per robot model at a time: the bodies share its client.
        previous = getattr(robot, "_planning_scene", None)
        if previous is not None and not previous.closed:
            previous.close()
        robot._planning_scene = self
        self.closed = False
        self.padding = float(padding)
        self.table_padding = float(table_padding)
        self.self_tol = float(self_collision_tolerance)
        self.table_z = support_z(scene)
        self.priors: dict[str, ObjectPrior] = {}
        self.bodies: dict[str, int] = {}       # name -> static body id
        self.pad: dict[int, float] = {}        # body id -> padding of its shape (m)
        self._filters: dict[int, list[tuple[int, int]]] = {}
        self.held_padding = min(self.padding, 0.005)
        # Contact distances (to padded shapes) below these count as collisions; ``fine``
        # changes them per body.
        self._thr_robot: dict[int, float] = {}
        self._thr_held: dict[int, float] = {}
        self.names: dict[int, str] = {}        # body id -> name
        self.attached: Optional[Attached] = None
        self._allowed_robot: set[tuple[int, int]] = set()   # (body, robot link)
        self._allowed_attached: set[int] = set()            # bodies the held object may touch
        self._disabled: set[str] = set()
        self.num_checks = 0
        #: Opening of each finger (m) while nothing is held.
        self.finger_width = robot.finger_open
        self._add_table()
        if scene is not None:
            for o in scene.objects:
                self.add_object(o)
        if cloud is not None:
            self.add_cloud(cloud, voxel_size, cloud_prior_margin)

    # -- building ------------------------------------------------------------------------------
    def _filter(self, body: int, body_link: int, robot_link: int) -> None:
        """Never report contacts between ``body`` and a robot link. PyBullet keeps such a
        filter after the body is removed and applies it to a later body with the same id, so
        every filter is undone before its body goes (``_unfilter``)."""
        pb.setCollisionFilterPair(body, self.robot.body, body_link, robot_link, 0,
                                  physicsClientId=self.client)
        self._filters.setdefault(body, []).append((body_link, robot_link))

    def _remove(self, body: int) -> None:
        """Remove a body and its collision filters."""
        self._unfilter(body)
        pb.removeBody(body, physicsClientId=self.client)

    def _unfilter(self, body: int) -> None:
        for body_link, robot_link in self._filters.pop(body, []):
            pb.setCollisionFilterPair(body, self.robot.body, body_link, robot_link, 1,
                                      physicsClientId=self.client)

    def _static_body(self, name: str, col: int, position, quat, pad: float) -> int:
        body = pb.createMultiBody(0, col, -1, list(map(float, position)),
                                  list(map(float, quat)), physicsClientId=self.client)
        self.bodies[name] = body
        self.names[body] = name
        self.pad[body] = pad
        return body

    def _add_table(self) -> None:
        c = self.client
        half = [1.5, 1.5, 0.05]
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
        top = self.table_z + self.table_padding
        body = self._static_body(TABLE, col, [0.5, 0.0, top - half[2]], [0, 0, 0, 1],
                                 self.table_padding)
        # The robot stands on the table.
        for link in self.robot.base_links:
            self._filter(body, -1, link)

    def _shape(self, prior: ObjectPrior, pad: float) -> int:
        c = self.client
        size = np.maximum(np.asarray(prior.size, dtype=float), 1e-3)
        if prior.shape == "cylinder":
            return pb.createCollisionShape(pb.GEOM_CYLINDER, radius=float(max(size[:2]) / 2 + pad),
                                           height=float(size[2] + 2 * pad), physicsClientId=c)
        if prior.shape == "sphere":
            return pb.createCollisionShape(pb.GEOM_SPHERE, radius=float(max(size) / 2 + pad),
                                           physicsClientId=c)
        return pb.createCollisionShape(pb.GEOM_BOX, halfExtents=(size / 2 + pad).tolist(),
                                       physicsClientId=c)

    def add_object(self, prior: ObjectPrior) -> None:
        """Add (or replace) a prior (copied) as a padded collision object."""
        prior = dataclasses.replace(prior, pose=Pose(prior.pose.position, prior.pose.quaternion))
        if prior.id in self.bodies:
            self.remove_object(prior.id)
        col = self._shape(prior, self.padding)
        self._static_body(prior.id, col, prior.pose.position, prior.pose.quaternion,
                          self.padding)
        self.priors[prior.id] = prior

    def remove_object(self, object_id: str) -> None:
        body = self.bodies.pop(object_id, None)
        if body is not None:
            self._remove(body)
            self.names.pop(body, None)
            self.pad.pop(body, None)
            self._allowed_robot = {p for p in self._allowed_robot if p[0] != body}
            self._allowed_attached.discard(body)
        self.priors.pop(object_id, None)
        self._disabled.discard(object_id)

    def move_object(self, object_id: str, pose: Pose) -> None:
        """Move a prior (and its collision object) to ``pose``."""
        prior = self.priors[object_id]
        prior.pose = pose
        if object_id not in self._disabled:
            pb.resetBasePositionAndOrientation(self.bodies[object_id], pose.position.tolist(),
                                               pose.quaternion.tolist(), physicsClientId=self.client)

    def add_cloud(self, points: np.ndarray, voxel_size: float = 0.02,
                  prior_margin: float = 0.015) -> int:
        """Add occupied voxels of a world-frame point cloud as boxes; returns their number."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        pts = pts[pts[:, 2] > self.table_z + 0.01]
        for prior in self.priors.values():
            local = prior.pose.inverse().transform_points(pts)
            inside = np.all(np.abs(local) <= np.asarray(prior.size) / 2 + prior_margin, axis=1)
            pts = pts[~inside]
        if len(pts) == 0:
            return 0
        keys = np.unique(np.floor(pts / voxel_size).astype(np.int64), axis=0)
        centres = (keys + 0.5) * voxel_size
        half = [voxel_size / 2 + self.padding] * 3
        n = 0
        # PyBullet keeps at most 16 shapes of one compound (and drops the rest silently).
        for start in range(0, len(centres), 16):
            chunk = centres[start:start + 16]
            col = pb.createCollisionShapeArray([pb.GEOM_BOX] * len(chunk),
                                               halfExtents=[half] * len(chunk),
                                               collisionFramePositions=chunk.tolist(),
                                               physicsClientId=self.client)
            self._static_body(f"{CLOUD}{start // 16}", col, [0, 0, 0], [0, 0, 0, 1],
                              self.padding)
            n += len(chunk)
        return n

    # -- the held object -----------------------------------------------------------------------
    def attach(self, object_id: str, q_grasp: Sequence[float], finger_width: float,
               prior: Optional[ObjectPrior] = None) -> None:
        """Hold ``object_id`` in the gripper: its pose relative to the TCP at ``q_grasp`` is kept,
        its static collision object is disabled, and fingers are at ``finger_width`` (each)."""
        if self.attached is not None:
            self.detach()
        prior = prior or self.priors[object_id]
        T_tcp = self.robot.fk(q_grasp).matrix()
        T_tcp_obj = np.linalg.inv(T_tcp) @ prior.pose.matrix()
        self.disable(object_id)
        col = self._shape(prior, self.held_padding)
        body = pb.createMultiBody(1.0, col, -1, _FAR, [0, 0, 0, 1], physicsClientId=self.client)
        pb.changeDynamics(body, -1, activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING,
                          physicsClientId=self.client)
        for link in self.robot.gripper_links:
            self._filter(body, -1, link)
        self.attached = Attached(prior, T_tcp_obj, body, float(finger_width))
        self.robot.set_config(q_grasp, finger_width)

    def detach(self, place_pose: Optional[Pose] = None) -> None:
        """Let go of the held object; with ``place_pose`` it becomes a collision object there."""
        if self.attached is None:
            return
        att = self.attached
        self._remove(att.body)
        self.attached = None
        self._allowed_attached.clear()
        oid = att.prior.id
        if place_pose is not None:
            prior = self.priors.get(oid, att.prior)
            prior.pose = place_pose
            self.priors[oid] = prior
            self.enable(oid)
            self.move_object(oid, place_pose)

    def held_pose(self, q: Sequence[float]) -> Optional[Pose]:
        """World pose of the held object at arm configuration q (None when nothing is held)."""
        if self.attached is None:
            return None
        return Pose.from_matrix(self.robot.fk(q).matrix() @ self.attached.T_tcp_obj)

    # -- allowed contacts ----------------------------------------------------------------------
    def disable(self, object_id: str) -> None:
        """Take an object out of collision checking (moved far away) until ``enable``."""
        if object_id in self.bodies and object_id not in self._disabled:
            pb.resetBasePositionAndOrientation(self.bodies[object_id], _FAR, [0, 0, 0, 1],
                                               physicsClientId=self.client)
            self._disabled.add(object_id)

    def enable(self, object_id: str) -> None:
        if object_id in self._disabled:
            self._disabled.discard(object_id)
            self.move_object(object_id, self.priors[object_id].pose)

    @contextlib.contextmanager
    def allow(self, objects: Iterable[str], robot_links: Optional[Sequence[int]] = None,
              attached: bool = True) -> Iterator[None]:
        """Within the block, ``objects`` may touch ``robot_links`` (default: the gripper links)
        and, with ``attached``, the held object."""
        links = list(self.robot.gripper_links if robot_links is None else robot_links)
        bodies = [self.bodies[o] for o in objects if o in self.bodies]
        added_r = {(b, l) for b in bodies for l in links} - self._allowed_robot
        added_a = (set(bodies) - self._allowed_attached) if attached else set()
        self._allowed_robot |= added_r
        self._allowed_attached |= added_a
        try:
            yield
        finally:
            self._allowed_robot -= added_r
            self._allowed_attached -= added_a

    @contextlib.contextmanager
    def fine(self, clearance: float = 0.004, held_overlap: float = 0.003) -> Iterator[None]:
        """Within the block (short moves near contact: approach, lift, place, retreat), check
        against the true shapes rather than the padded ones: robot links must keep
        ``clearance`` metres from every object, and the held object may overlap others by up
        to ``held_overlap`` (it may start or end touching its neighbours)."""
        old = self._thr_robot, self._thr_held
        # (PyBullet reports only contacts closer than about 0: thresholds stay <= 0.)
        self._thr_robot = {b: min(0.0, clearance - p) for b, p in self.pad.items()}
        self._thr_held = {b: min(0.0, -held_overlap - p - self.held_padding)
                          for b, p in self.pad.items()}
        try:
            yield
        finally:
            self._thr_robot, self._thr_held = old

    # -- checking ------------------------------------------------------------------------------
    def _update(self, q: np.ndarray) -> None:
        att = self.attached
        self.robot.set_config(q, att.finger_width if att is not None else self.finger_width)
        if att is not None:
            T = self.robot.tcp_matrix() @ att.T_tcp_obj
            quat = _quat_from_matrix(T[:3, :3])
            pb.resetBasePositionAndOrientation(att.body, T[:3, 3].tolist(), quat,
                                               physicsClientId=self.client)

    def is_valid(self, q: Sequence[float], tolerance: float = 0.0) -> bool:
        """True when configuration q is inside the limits and collision-free. ``tolerance``
        (m) lets the robot and the held object reach that far into the objects' padding (used
        to verify dense trajectory samples between the states the planner checked)."""
        q = np.asarray(q, dtype=float)
        self.num_checks += 1
        if not self.robot.within_limits(q):
            return False
        self._update(q)
        c = self.client
        pb.performCollisionDetection(physicsClientId=c)
        rb = self.robot.body
        for cp in pb.getContactPoints(bodyA=rb, physicsClientId=c):
            d, b, la = cp[8], cp[2], cp[3]
            if b == rb:
                if d < -self.self_tol and self._fresh(rb, la, b, cp[4]) < -self.self_tol:
                    return False
            elif d < self._thr_robot.get(b, 0.0) - tolerance and \
                    (b, la) not in self._allowed_robot and \
                    self._fresh(rb, la, b, cp[4]) < self._thr_robot.get(b, 0.0) - tolerance:
                return False
        return next(self._held_hits(tolerance), None) is None

    def _fresh(self, a: int, la: int, b: int, lb: int) -> float:
        """The least signed distance (m) between link ``la`` of body ``a`` and link ``lb`` of
        body ``b``, measured afresh (0 when they do not touch). ``getContactPoints`` also
        returns points that Bullet's persistent contact manifolds kept from earlier queries:
        after the arm is moved by resetting its joints, a point whose normal is across the
        motion keeps its old depth (a finger lowered beside a box reported 4.2 cm inside it,
        measured 5.7 mm clear of it), so the result depended on the previous query. Each
        contact that would count is confirmed here."""
        pts = pb.getClosestPoints(a, b, 0.0, linkIndexA=la, linkIndexB=lb,
                                  physicsClientId=self.client)
        return min((p[8] for p in pts), default=0.0)

    def is_valid_strict(self, q: Sequence[float]) -> bool:
        """``is_valid`` with no allowed contacts and the padded shapes (whatever ``allow`` or
        ``fine`` block is open): whether a planned motion may start or end at q."""
        saved = (self._allowed_robot, self._allowed_attached, self._thr_robot, self._thr_held)
        self._allowed_robot, self._allowed_attached = set(), set()
        self._thr_robot, self._thr_held = {}, {}
        try:
            return self.is_valid(q)
        finally:
            (self._allowed_robot, self._allowed_attached, self._thr_robot,
             self._thr_held) = saved

    def collisions(self, q: Sequence[float]) -> list[tuple[str, str, float]]:
        """The colliding pairs at q as (robot link or 'held', other, penetration m), for reports."""
        q = np.asarray(q, dtype=float)
        self._update(q)
        c = self.client
        pb.performCollisionDetection(physicsClientId=c)
        links = {v: k for k, v in self.robot.link_index.items()}
        out = []
        rb = self.robot.body
        for cp in pb.getContactPoints(bodyA=rb, physicsClientId=c):
            d, b, la, lb = cp[8], cp[2], cp[3], cp[4]
            if b == rb and d < -self.self_tol:
                d = self._fresh(rb, la, b, lb)
                if d < -self.self_tol:
                    out.append((links.get(la, str(la)), links.get(lb, str(lb)), -d))
            elif b != rb and d < self._thr_robot.get(b, 0.0) and \
                    (b, la) not in self._allowed_robot:
                d = self._fresh(rb, la, b, lb)
                if d < self._thr_robot.get(b, 0.0):
                    out.append((links.get(la, str(la)), self.names.get(b, str(b)), -d))
        out += [("held", self.names.get(b, str(b)), d) for b, d in self._held_hits()]
        return out

    def held_clear_at(self, pose: Pose) -> bool:
        """Whether the held object, put at ``pose`` (world), keeps clear of every other object
        (with the thresholds and allowed contacts in force; the robot is not checked): a cheap
        test before the IK of a placement."""
        att = self.attached
        if att is None:
            return True
        pb.resetBasePositionAndOrientation(att.body, pose.position.tolist(),
                                           pose.quaternion.tolist(), physicsClientId=self.client)
        pb.performCollisionDetection(physicsClientId=self.client)
        return next(self._held_hits(), None) is None

    def _held_hits(self, tolerance: float = 0.0) -> Iterator[tuple[int, float]]:
        """(body, penetration m) of each contact of the held object that counts as a collision
        (after ``performCollisionDetection``), with the thresholds and allowed contacts in force;
        ``tolerance`` as in ``is_valid``."""
        if self.attached is None:
            return
        rb = self.robot.body
        held = self.attached.body
        for cp in pb.getContactPoints(bodyA=held, physicsClientId=self.client):
            b = cp[2]
            thr = self._thr_held.get(b, 0.0) - tolerance
            if cp[8] < thr and b != rb and b not in self._allowed_attached:
                d = self._fresh(held, cp[3], b, cp[4])
                if d < thr:
                    yield b, -d

    def motion_valid(self, q0: Sequence[float], q1: Sequence[float],
                     resolution: float = 0.015) -> bool:
        """The straight joint-space segment q0 -> q1 checked every ``resolution`` rad (Euclidean,
        as OMPL measures it)."""
        q0, q1 = np.asarray(q0, dtype=float), np.asarray(q1, dtype=float)
        n = max(1, int(math.ceil(np.linalg.norm(q1 - q0) / resolution)))
        # Check the end first, then bisection order: collisions are found early.
        order = _bisection_order(n)
        return all(self.is_valid(q0 + (q1 - q0) * (k / n)) for k in order)

    def close(self) -> None:
        """Remove this scene's bodies from the robot model's client."""
        if self.closed:
            return
        self.closed = True
        self.detach()
        for name in list(self.bodies):
            self.remove_object(name) if name in self.priors else self._remove_body(name)

    def _remove_body(self, name: str) -> None:
        body = self.bodies.pop(name)
        self.names.pop(body, None)
        self.pad.pop(body, None)
        self._remove(body)


def _quat_from_matrix(R: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method, no scipy overhead)."""
    m00, m01, m02 = R[0]
    m10, m11, m12 = R[1]
    m20, m21, m22 = R[2]
    tr = m00 + m11 + m22
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        return [(m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s]
    if m00 > m11 and m00 > m22:
        s = math.sqrt(1.0 + m00 - m11 - m22) * 2
        return [0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s]
    if m11 > m22:
        s = math.sqrt(1.0 + m11 - m00 - m22) * 2
        return [(m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s]
    s = math.sqrt(1.0 + m22 - m00 - m11) * 2
    return [(m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s]


def _bisection_order(n: int) -> list[int]:
    """Indices 1..n: n first, then midpoints of ever finer halvings."""
    order, seen = [n], {0, n}
    segs = [(0, n)]
    while segs:
        nxt = []
        for a, b in segs:
            if b - a > 1:
                m = (a + b) // 2
                if m not in seen:
                    order.append(m)
                    seen.add(m)
                nxt += [(a, m), (m, b)]
        segs = nxt
    return order
