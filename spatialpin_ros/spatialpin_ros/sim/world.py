"""The simulated world: an arm (any robot description, ``core.robot_description``) on a table, tabletop objects and an RGB-D camera (PyBullet,
headless). ROS-free.

World frame: origin at the robot base on the table top, z up, x away from the robot. The table
top is the plane z = 0.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pybullet as pb
import pybullet_data
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.errors import SceneSpecError
from spatialpin_ros.core.robot_description import DEFAULT_ROBOT, RobotDescription, load_robot
from spatialpin_ros.core.trajectory import JointLimits, JointTrajectory
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, RGBDFrame, Scene, look_at
from spatialpin_ros.sim.pybullet_client import PyBulletClientOwner
from spatialpin_ros.sim.robot_body import (couple_gripper, disable_touching_pairs,
                                           follow_linkage, load_robot_body)
from spatialpin_ros.sim.truth_boxes import collision_hull_points, gravity_aligned_box
from spatialpin_ros.sim.scene_spec import PYBULLET_OBJECTS, CameraSpec, ObjectSpec, SceneSpec

log = logging.getLogger(__name__)

TABLE_TOP_Z = 0.0
_TABLE_URDF_TOP = 0.625  # height of table/table.urdf's top in its own frame
DENSITY = 400.0  # kg/m^3 of primitive objects (light wood / plastic)


@dataclass
class SimObject:
    """A loaded object: its spec, body id, and its box in the body frame (offset, extents)."""

    spec: ObjectSpec
    body: int
    local_center: np.ndarray
    extents: np.ndarray
    #: What the truth says beyond the box: the kind ('box', 'cylinder', 'sphere', 'urdf', or a
    #: mesh kind: 'bowl', ..., 'pybullet'), the noun of its label, whether it is a hollow
    #: container and its depth (rim to inner bottom, metres), the ObjectPrior shape, and
    #: whether its yaw is meaningless.
    kind: str = ""
    noun: str = ""
    container: bool = False
    inner_depth: float = 0.0
    truth_shape: str = "other"
    yaw_symmetric: bool = False
    #: Collision-mesh vertices in the base frame (irregular mesh bodies only), for a tight true
    #: box once the body tilts (``truth_boxes``).
    hull: Optional[np.ndarray] = None


@dataclass
class TruthObject:
    """One object's ground truth (for scoring only): name, kind, the true box (centre pose in
    the world frame, full extents along the object's own axes), and container facts."""

    name: str
    kind: str
    body: int
    pose: Pose
    size: np.ndarray
    container: bool
    inner_depth: float
    shape: str
    on: Optional[str] = None


def camera_view_matrix(pose: Pose) -> list[float]:
    """PyBullet (OpenGL, column-major) view matrix of an optical-frame ``pose`` in the world."""
    T_world_gl = pose.matrix() @ np.diag([1.0, -1.0, -1.0, 1.0])  # GL camera: y up, z back
    return np.linalg.inv(T_world_gl).T.reshape(-1).tolist()


class SimWorld(PyBulletClientOwner):
    """A headless PyBullet world built from a SceneSpec.

    The PyBullet client id is held in ``self.client`` and passed to every call, so several worlds
    can live in one process. ``time_step`` is the physics step in seconds.
    """

    def __init__(self, spec: SceneSpec, time_step: float = 1.0 / 240.0,
                 camera_pose: Optional[Pose] = None, settle_time: float = 1.0,
                 render_shadows: bool = False, robot: RobotDescription | str = DEFAULT_ROBOT):
        #: The arm's description (a shipped name such as "xarm6", a YAML file, or loaded).
        self.robot_description = (robot if isinstance(robot, RobotDescription)
                                  else load_robot(robot))
        self.time_step = float(time_step)
        self.render_shadows = render_shadows
        self.client = pb.connect(pb.DIRECT)
        self.sim_time = 0.0
        self._traj: Optional[JointTrajectory] = None
        self._traj_idx: list[int] = []
        self._traj_start = 0.0
        self._hold = np.zeros(0)
        self._textures: dict[str, int] = {}  # texture file -> PyBullet texture id
        try:
            self._load_static()
            self.load_scene(spec, camera_pose=camera_pose, settle_time=settle_time)
        except Exception:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------
    def _load_static(self) -> None:
        c = self.client
        pb.resetSimulation(physicsClientId=c)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.setTimeStep(self.time_step, physicsClientId=c)
        pb.setPhysicsEngineParameter(numSolverIterations=100, physicsClientId=c)
        self.plane = pb.loadURDF("plane.urdf", [0, 0, -_TABLE_URDF_TOP], physicsClientId=c)
        # The floor stays in the physics but not in the image: its large textured area doubles
        # TinyRenderer's time per frame. Beyond the table the camera sees nothing (depth 0).
        pb.changeVisualShape(self.plane, -1, rgbaColor=[1, 1, 1, 0], physicsClientId=c)
        self.table = pb.loadURDF("table/table.urdf", [0.5, 0, -_TABLE_URDF_TOP],
                                 useFixedBase=True, physicsClientId=c)
        d = self.robot_description
        rb = load_robot_body(c, d, offset=(0.0, 0.0, TABLE_TOP_Z))
        self.robot = rb.body
        # A gripper's linkage touches itself: those pairs never collide.
        disable_touching_pairs(rb, d)
        self.joint_index: dict[str, int] = {}
        self.joint_limits: dict[str, JointLimits] = {}
        self.link_index: dict[str, int] = {}
        gripper = set(d.gripper.joints)
        for j in range(pb.getNumJoints(self.robot, physicsClientId=c)):
            info = pb.getJointInfo(self.robot, j, physicsClientId=c)
            name, jtype = info[1].decode(), info[2]
            self.link_index[info[12].decode()] = j
            if jtype in (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC):
                self.joint_index[name] = j
                lo, hi = (info[8], info[9]) if info[8] <= info[9] else (-math.inf, math.inf)
                acc = (d.limits.arm_acceleration if name not in gripper
                       else math.inf)
                self.joint_limits[name] = JointLimits(lower=lo, upper=hi, velocity=info[11],
                                                      acceleration=acc)
                # Fingers grip with friction.
                pb.changeDynamics(self.robot, j, lateralFriction=d.finger_friction,
                                  physicsClientId=c)
        self._couple_fingers()
        # Joints the description does not drive (none for the shipped arms) hold still.
        self.joint_names = list(self.joint_index)
        self.max_force = {n: d.max_force.get(n, d.default_force) for n in self.joint_names}
        self.reset_robot()

    def _couple_fingers(self) -> None:
        """The gripper moves as one degree of freedom (``robot_body.couple_gripper``)."""
        self._linkage = couple_gripper(self.client, self.robot, self.joint_index,
                                       self.robot_description)

    def _follow_linkage(self) -> None:
        follow_linkage(self.client, self.robot, self.joint_index, self._linkage)

    def reset_robot(self, positions: Optional[dict[str, float]] = None) -> None:
        """Teleport the arm to ``positions`` (default: home, gripper open) and hold it there."""
        pos = {n: 0.0 for n in self.joint_index}
        pos.update(self.robot_description.home_positions())
        pos.update(positions or {})
        for name, q in pos.items():
            pb.resetJointState(self.robot, self.joint_index[name], q, 0.0,
                               physicsClientId=self.client)
        self._traj = None
        self._hold = np.array([pos[n] for n in self.joint_names])
        self._command(self._hold)

    def load_scene(self, spec: SceneSpec, camera_pose: Optional[Pose] = None,
                   settle_time: float = 1.0) -> None:
        """Replace the objects and camera with those of ``spec``; objects settle for
        ``settle_time`` s. Raises SceneSpecError for an unknown URDF (the world keeps its old
        scene's objects removed)."""
        for o in getattr(self, "objects", []):
            pb.removeBody(o.body, physicsClientId=self.client)
        self.objects: list[SimObject] = []
        self.spec = spec
        self.reset_robot()
        for o in spec.objects:
            self.objects.append(self._add_object(o))
        self.set_camera(spec.camera, camera_pose)
        self.step(int(round(settle_time / self.time_step)))

    def _add_object(self, o: ObjectSpec) -> SimObject:
        c = self.client
        yaw = math.radians(o.yaw_deg)
        quat = Rotation.from_euler("z", yaw).as_quat().tolist()
        if o.shape == "mesh":
            return self._add_mesh(o, quat)
        if o.urdf:
            path = o.urdf
            candidates = [path, os.path.join(pybullet_data.getDataPath(), path)]
            if not any(os.path.isfile(p) for p in candidates):
                raise SceneSpecError(
                    f"object {o.name!r}: unknown URDF {o.urdf!r} (not a file, nor in pybullet_data)")
            try:
                body = pb.loadURDF(path, [0, 0, 5], [0, 0, 0, 1], globalScaling=o.scale,
                                   physicsClientId=c)
            except pb.error as e:
                raise SceneSpecError(f"object {o.name!r}: cannot load URDF {o.urdf!r}: {e}") from None
            lo, hi = pb.getAABB(body, physicsClientId=c)
            for j in range(pb.getNumJoints(body, physicsClientId=c)):
                a, b = pb.getAABB(body, j, physicsClientId=c)
                lo, hi = np.minimum(lo, a), np.maximum(hi, b)
            lo, hi = np.array(lo), np.array(hi)
            local_center = (lo + hi) / 2 - np.array([0, 0, 5.0])
            extents = hi - lo
            z = o.position[2] if len(o.position) > 2 else 0.0
            if z <= extents[2] / 2 - local_center[2] + 1e-3:  # drop onto the table
                z = TABLE_TOP_Z + extents[2] / 2 - local_center[2] + 1e-3
            pb.resetBasePositionAndOrientation(body, [o.position[0], o.position[1], z], quat,
                                               physicsClientId=c)
            pb.changeVisualShape(body, -1, rgbaColor=list(o.rgba), physicsClientId=c)
        else:
            size = np.array(o.size)
            if o.shape == "box":
                col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=(size / 2).tolist(),
                                              physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=(size / 2).tolist(),
                                           rgbaColor=list(o.rgba), physicsClientId=c)
                volume = float(np.prod(size))
            elif o.shape == "cylinder":
                col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=size[0] / 2,
                                              height=size[2], physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=size[0] / 2, length=size[2],
                                           rgbaColor=list(o.rgba), physicsClientId=c)
                volume = math.pi * (size[0] / 2) ** 2 * size[2]
            else:
                col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=size[0] / 2,
                                              physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=size[0] / 2,
                                           rgbaColor=list(o.rgba), physicsClientId=c)
                volume = math.pi / 6 * size[0] ** 3
            if o.on:
                base = next(s for s in self.objects if s.spec.name == o.on)
                top = self._top_z(base)
                pos = [o.position[0], o.position[1], top + size[2] / 2 + 1e-3]
            else:
                pos = list(o.position)
                pos[2] = max(pos[2], TABLE_TOP_Z + size[2] / 2)
            mass = o.mass if o.mass is not None else max(0.02, DENSITY * volume)
            body = pb.createMultiBody(mass, col, vis, pos, quat, physicsClientId=c)
            local_center, extents = np.zeros(3), size
        pb.changeDynamics(body, -1, lateralFriction=1.0, rollingFriction=0.002,
                          spinningFriction=0.002, restitution=0.0, physicsClientId=c)
        shape = o.shape or "other"
        return SimObject(o, body, local_center, np.asarray(extents, dtype=float),
                         kind=o.shape or "urdf",
                         noun={"box": "block", "cylinder": "cylinder", "sphere": "ball"}.get(
                             shape, "object"),
                         truth_shape=shape, yaw_symmetric=shape in ("cylinder", "sphere"))

    def _mesh_z(self, o: ObjectSpec, half_height: float) -> float:
        """World z of a mesh object's box centre: on its support, or at the given z but not
        below the table."""
        if o.on:
            base = next(s for s in self.objects if s.spec.name == o.on)
            return self._top_z(base) + half_height + 1e-3
        z = o.position[2] if len(o.position) > 2 else 0.0
        return max(z, TABLE_TOP_Z + half_height + 5e-4)

    def _add_mesh(self, o: ObjectSpec, quat: list[float]) -> SimObject:
        """A ``shape: mesh`` object: a procedural mesh (textured OBJ, compound collision of
        convex pieces) or a pybullet_data URDF. Its ``position`` is its true box centre."""
        c = self.client
        rot = Rotation.from_quat(quat)
        if o.mesh_kind == "pybullet":
            rel = o.mesh[len("pybullet:"):]
            try:
                body = pb.loadURDF(rel, [0, 0, 5], [0, 0, 0, 1], globalScaling=o.scale,
                                   physicsClientId=c)
            except pb.error as e:
                raise SceneSpecError(f"object {o.name!r}: cannot load {rel!r}: {e}") from None
            lo, hi = pb.getAABB(body, physicsClientId=c)
            for j in range(pb.getNumJoints(body, physicsClientId=c)):
                a, b = pb.getAABB(body, j, physicsClientId=c)
                lo, hi = np.minimum(lo, a), np.maximum(hi, b)
            lo, hi = np.array(lo), np.array(hi)
            info = PYBULLET_OBJECTS.get(rel, {})
            container = bool(info.get("container", False))
            inner = self._measure_inner_depth(body, lo, hi) if container else 0.0
            local_center = (lo + hi) / 2 - np.array([0, 0, 5.0])
            extents = hi - lo
            hull = collision_hull_points(c, body, lo, hi)
            if pb.getDynamicsInfo(body, -1, physicsClientId=c)[0] == 0 or o.mass is not None:
                # A static URDF (the tray) becomes a light dynamic object.
                mass = o.mass if o.mass is not None else 0.4 * o.scale ** 2
                pb.changeDynamics(body, -1, mass=mass, physicsClientId=c)
            if o.rgba_given:
                pb.changeVisualShape(body, -1, rgbaColor=list(o.rgba), physicsClientId=c)
            friction = (o.friction or 0.6, 0.002, 0.001)
            kind, noun = "pybullet", info.get("noun", "object")
            truth_shape, symmetric = info.get("shape", "other"), False
        else:
            from spatialpin_ros.sim.meshes import build_mesh
            asset = build_mesh(o.mesh, o.size, o.wall, o.rgba, o.text, o.mass)
            com = asset.com
            vis = pb.createVisualShape(pb.GEOM_MESH, fileName=asset.obj_path,
                                       visualFramePosition=(-com).tolist(),
                                       rgbaColor=[1, 1, 1, 1], physicsClientId=c)
            body = _compound_body(c, asset.collision, com, asset.mass, vis)
            tex = self._textures.get(asset.texture_path)
            if tex is None:
                tex = pb.loadTexture(asset.texture_path, physicsClientId=c)
                self._textures[asset.texture_path] = tex
            pb.changeVisualShape(body, -1, textureUniqueId=tex, rgbaColor=[1, 1, 1, 1],
                                 physicsClientId=c)
            local_center, extents = asset.bbox_center - com, asset.extents
            friction = (o.friction or asset.friction[0], *asset.friction[1:])
            container, inner = asset.container, asset.inner_depth
            kind, noun = o.mesh, {"printed_box": "box"}.get(o.mesh, o.mesh)
            truth_shape, symmetric = asset.truth_shape, asset.symmetric
            hull = None
        center = [o.position[0], o.position[1], self._mesh_z(o, extents[2] / 2)]
        pos = np.asarray(center) - rot.apply(local_center)
        pb.resetBasePositionAndOrientation(body, pos.tolist(), quat, physicsClientId=c)
        for link in range(-1, pb.getNumJoints(body, physicsClientId=c)):
            pb.changeDynamics(body, link, lateralFriction=friction[0],
                              spinningFriction=friction[1], rollingFriction=friction[2],
                              restitution=0.0, physicsClientId=c)
        return SimObject(o, body, np.asarray(local_center, float), np.asarray(extents, float),
                         kind=kind, noun=noun, container=container, inner_depth=float(inner),
                         truth_shape=truth_shape, yaw_symmetric=symmetric, hull=hull)

    def _measure_inner_depth(self, body: int, lo, hi) -> float:
        """Depth of a hollow body from its top down to the deepest point rays straight down
        hit on it (a grid over the middle of its footprint); the body must be alone in the air
        (it is, at load time, 5 m up)."""
        xs = np.linspace(lo[0], hi[0], 9)[2:-2]
        ys = np.linspace(lo[1], hi[1], 9)[2:-2]
        starts = [[x, y, hi[2] + 0.01] for x in xs for y in ys]
        ends = [[x, y, lo[2] - 0.01] for x in xs for y in ys]
        hits = [h[3][2] for h in pb.rayTestBatch(starts, ends, physicsClientId=self.client)
                if h[0] == body]
        return float(hi[2] - min(hits)) if hits else 0.0

    def _top_z(self, obj: SimObject) -> float:
        return float(self.object_box(obj)[0].position[2] + obj.extents[2] / 2)

    def set_camera(self, cam: CameraSpec, pose: Optional[Pose] = None) -> None:
        """Set the camera's intrinsics from ``cam`` and its optical-frame pose (``pose``, or
        ``cam.eye`` looking at ``cam.target``)."""
        self.camera_spec = cam
        # PyBullet's TinyRenderer samples rows half a pixel lower than columns: measured by
        # back-projecting the table plane (residual 1e-7 m with this principal point).
        self.camera = CameraModel.from_fov(cam.width, cam.height, cam.fov_deg,
                                           cx=(cam.width - 1) / 2.0, cy=cam.height / 2.0 - 1.0)
        self.camera_pose = pose if pose is not None else look_at(cam.eye, cam.target, cam.up)
        self._view = camera_view_matrix(self.camera_pose)
        self._proj = pb.computeProjectionMatrixFOV(cam.fov_deg, cam.width / cam.height, cam.near,
                                                   cam.far, physicsClientId=self.client)

    # -- sensing -------------------------------------------------------------------------------
    def render(self, with_segmentation: bool = False):
        """Render the camera: an RGBDFrame (depth in metres along the optical axis), and with
        ``with_segmentation`` also the (H, W) int32 body-id image (-1 = background)."""
        cam = self.camera_spec
        flags = 0 if with_segmentation else pb.ER_NO_SEGMENTATION_MASK
        _, _, rgba, zbuf, seg = pb.getCameraImage(
            cam.width, cam.height, self._view, self._proj, shadow=int(self.render_shadows),
            lightDirection=[0.6, 0.4, 2.0], renderer=pb.ER_TINY_RENDERER, flags=flags,
            physicsClientId=self.client)
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(cam.height, cam.width, 4)
        zbuf = np.asarray(zbuf, dtype=np.float64).reshape(cam.height, cam.width)
        n, f = cam.near, cam.far
        depth = (f * n / (f - (f - n) * zbuf)).astype(np.float32)
        depth[zbuf >= 1.0] = 0.0  # nothing there
        frame = RGBDFrame(rgb=np.ascontiguousarray(rgba[..., :3]), depth=depth,
                          camera=self.camera, camera_pose=self.camera_pose, stamp=self.sim_time)
        if not with_segmentation:
            return frame
        seg = np.asarray(seg, dtype=np.int64).reshape(cam.height, cam.width)
        seg = np.where(seg >= 0, seg & ((1 << 24) - 1), -1).astype(np.int32)
        return frame, seg

    def object_box(self, obj: SimObject) -> tuple[Pose, np.ndarray]:
        """True box of an object: centre pose in the world frame and full extents (metres)."""
        pos, quat = pb.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)
        base = Pose(pos, quat)
        center = base.transform_points(obj.local_center)
        return Pose(center, base.quaternion), obj.extents.copy()

    def true_box(self, obj: SimObject) -> tuple[Pose, np.ndarray]:
        """The box the truth reports: ``object_box``, except for an irregular mesh body, whose
        box is the tight gravity-aligned box of its collision hull where it now rests."""
        if obj.hull is None:
            return self.object_box(obj)
        pos, quat = pb.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)
        return gravity_aligned_box(Pose(pos, quat), obj.hull)

    def ground_truth(self, segmentation: Optional[np.ndarray] = None,
                     scene_id: str = "") -> Scene:
        """The true scene as a Scene (for scoring only: the pipeline never reads it). With a
        segmentation image, each object's roi and visible pixel count are filled in."""
        priors = []
        for o in self.objects:
            pose, ext = self.true_box(o)
            roi, npx = (0, 0, 0, 0), 0
            if segmentation is not None:
                mask = segmentation == o.body
                npx = int(mask.sum())
                if npx:
                    ys, xs = np.nonzero(mask)
                    roi = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                           int(ys.max() - ys.min() + 1))
            # Meshes of pybullet_data keep their own colours: no colour name to score.
            colored = o.spec.shape != "mesh" or o.spec.rgba_given
            cname = o.spec.color_name if colored else ""
            priors.append(ObjectPrior(
                id=o.spec.name, label=f"{cname} {o.noun}".strip(), pose=pose, size=ext,
                shape=o.truth_shape, color_name=cname, confidence=1.0, roi=roi,
                num_points=npx, yaw_symmetric=o.yaw_symmetric,
                rgb=tuple(int(round(255 * v)) for v in o.spec.rgba[:3]) if colored else None,
                container=o.container, inner_depth=o.inner_depth if o.container else 0.0))
        return Scene(scene_id=scene_id or self.spec.name, objects=priors, camera=self.camera,
                     camera_pose=self.camera_pose, support_plane=np.array([0, 0, 1.0, -TABLE_TOP_Z]),
                     stamp=self.sim_time)

    def truth(self) -> list[TruthObject]:
        """Every object's ground truth, with its kind and container facts (scoring only)."""
        out = []
        for o in self.objects:
            pose, ext = self.object_box(o)
            out.append(TruthObject(name=o.spec.name, kind=o.kind, body=o.body, pose=pose,
                                   size=ext, container=o.container,
                                   inner_depth=o.inner_depth if o.container else 0.0,
                                   shape=o.truth_shape, on=o.spec.on))
        return out

    # -- the arm -------------------------------------------------------------------------------
    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(names, positions, velocities, efforts) of the arm and finger joints."""
        states = pb.getJointStates(self.robot, [self.joint_index[n] for n in self.joint_names],
                                   physicsClientId=self.client)
        return (list(self.joint_names), np.array([s[0] for s in states]),
                np.array([s[1] for s in states]), np.array([s[3] for s in states]))

    def validate_trajectory(self, traj: JointTrajectory) -> None:
        """Raise TrajectoryError unless ``traj`` names known joints, has strictly increasing
        times and stays inside position and velocity limits."""
        traj.validate(known_joints=self.joint_names, limits=self.joint_limits)

    def start_trajectory(self, traj: JointTrajectory) -> None:
        """Validate ``traj`` and follow it from now, in simulated time. Joints it does not name
        hold their positions. Raises TrajectoryError (and changes nothing) when invalid."""
        self.validate_trajectory(traj)
        names, q, _, _ = self.joint_state()
        self._hold = q if self._traj is None else self._hold
        self._traj = traj
        self._traj_idx = [self.joint_names.index(n) for n in traj.joint_names]
        self._traj_start = self.sim_time

    @property
    def trajectory_active(self) -> bool:
        return self._traj is not None and self.sim_time - self._traj_start <= self._traj.duration

    def cancel_trajectory(self) -> None:
        """Stop following the trajectory and hold the current positions."""
        self._hold = self.joint_state()[1]
        self._traj = None
        self._command(self._hold)

    def _command(self, target: np.ndarray) -> None:
        idx = [self.joint_index[n] for n in self.joint_names]
        pb.setJointMotorControlArray(
            self.robot, idx, pb.POSITION_CONTROL, targetPositions=target.tolist(),
            forces=[self.max_force[n] for n in self.joint_names],
            positionGains=[0.3] * len(idx), velocityGains=[1.0] * len(idx),
            physicsClientId=self.client)

    def step(self, n: int = 1) -> None:
        """Advance the physics ``n`` steps, tracking the active trajectory."""
        for _ in range(int(n)):
            if self._traj is not None:
                target = self._hold.copy()
                target[self._traj_idx] = self._traj.sample(self.sim_time - self._traj_start)
                if self.sim_time - self._traj_start > self._traj.duration:
                    self._hold = target
                    self._traj = None
                self._command(target)
            self._follow_linkage()
            pb.stepSimulation(physicsClientId=self.client)
            self.sim_time += self.time_step

    def run_trajectory(self, traj: JointTrajectory, settle_time: float = 0.5) -> None:
        """Follow ``traj`` to its end, then ``settle_time`` s more (blocking, simulated time)."""
        self.start_trajectory(traj)
        self.step(int(math.ceil((traj.duration + settle_time) / self.time_step)))



#: PyBullet keeps only the first 16 shapes of one ``createCollisionShapeArray`` call (and says
#: nothing): a compound of more pieces is split over fixed links.
MAX_SHAPES_PER_COMPOUND = 16


def _compound_body(client: int, pieces, com, mass: float, visual: int) -> int:
    """A rigid body of convex ``pieces`` (``sim.meshes.CollisionPiece``, mesh frame; the body's
    frame at ``com``): the first 16 on the base, each further 16 on a link fixed to it, the
    mass shared by the number of pieces."""
    shapes = []
    for start in range(0, len(pieces), MAX_SHAPES_PER_COMPOUND):
        chunk = pieces[start:start + MAX_SHAPES_PER_COMPOUND]
        types, half, radii, lengths, poss, quats = [], [], [], [], [], []
        for piece in chunk:
            box = piece.kind == "box"
            types.append(pb.GEOM_BOX if box else pb.GEOM_CYLINDER)
            half.append(list(piece.half_extents) if box else [0.0, 0.0, 0.0])
            radii.append(0.0 if box else piece.radius)
            lengths.append(0.0 if box else piece.height)
            poss.append((np.asarray(piece.position) - com).tolist())
            quats.append(list(piece.quaternion))
        shapes.append((len(chunk), pb.createCollisionShapeArray(
            types, radii=radii, halfExtents=half, lengths=lengths,
            collisionFramePositions=poss, collisionFrameOrientations=quats,
            physicsClientId=client)))
    n = len(pieces)
    links = shapes[1:]
    return pb.createMultiBody(
        mass * shapes[0][0] / n, shapes[0][1], visual, [0, 0, 5], [0, 0, 0, 1],
        linkMasses=[mass * k / n for k, _ in links],
        linkCollisionShapeIndices=[col for _, col in links],
        linkVisualShapeIndices=[-1] * len(links),
        linkPositions=[[0, 0, 0]] * len(links),
        linkOrientations=[[0, 0, 0, 1]] * len(links),
        linkInertialFramePositions=[[0, 0, 0]] * len(links),
        linkInertialFrameOrientations=[[0, 0, 0, 1]] * len(links),
        linkParentIndices=[0] * len(links),
        linkJointTypes=[pb.JOINT_FIXED] * len(links),
        linkJointAxis=[[0, 0, 1]] * len(links),
        physicsClientId=client)
