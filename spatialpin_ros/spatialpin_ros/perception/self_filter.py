"""Robot self-filter: remove the robot's own body from a depth image before segmenting (ROS-free).

The robot model (a URDF) is loaded into a PyBullet DIRECT client of its own, its joints are set
from the latest joint positions, and its links are rendered from the camera's viewpoint with the
frame's intrinsics and camera pose (both in the robot's world frame). The rendered robot mask is
grown by a margin (``margin_m`` metres at the robot's nearest depth in view, plus ``margin_px``
pixels) and the measured depth is set to 0 there, except where something is clearly in front of
the arm (measured depth more than ``margin_m`` nearer than the arm's rendered depth nearby): a
hand-held object or an object between camera and arm stays.

The URDF is a file path, a path under pybullet_data (``franka_panda/panda.urdf``), or the URDF
XML itself (a ``robot_description`` string; its mesh paths must be files PyBullet can open).
``base_pose`` is the robot's base in the world frame (default: the world origin, as in the
simulator and the planner).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Mapping, Optional

import numpy as np
import pybullet as pb
import pybullet_data
from scipy import ndimage

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import CameraModel, Pose, RGBDFrame
from spatialpin_ros.sim.pybullet_client import PyBulletClientOwner
from spatialpin_ros.sim.world import camera_view_matrix

#: Near and far clip planes of the robot render (metres).
NEAR, FAR = 0.01, 10.0
#: Largest margin in pixels, whatever the depth (a link touching the lens).
MAX_MARGIN_PX = 60


def projection_matrix(camera: CameraModel, near: float = NEAR, far: float = FAR) -> list[float]:
    """PyBullet (OpenGL, column-major) projection matrix of pinhole intrinsics, such that
    TinyRenderer draws a point where ``camera`` projects it (the same pixel convention as
    ``SimWorld``'s camera: principal point ((w - 1) / 2, h / 2 - 1) gives no offset)."""
    w, h = camera.width, camera.height
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * camera.fx / w
    P[1, 1] = 2.0 * camera.fy / h
    P[0, 2] = 1.0 - (2.0 * camera.cx + 1.0) / w
    P[1, 2] = 2.0 * (camera.cy + 1.0) / h - 1.0
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2.0 * far * near / (far - near)
    P[3, 2] = -1.0
    return P.T.reshape(-1).tolist()


def _urdf_file(urdf: str) -> tuple[str, Optional[str]]:
    """The file to load for ``urdf`` (a path, a pybullet_data path or URDF XML), and a
    temporary file to delete afterwards (for XML)."""
    text = urdf.strip()
    if text.startswith("<"):
        fd, path = tempfile.mkstemp(suffix=".urdf", prefix="self_filter_")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path, path
    for p in (text, os.path.join(pybullet_data.getDataPath(), text)):
        if os.path.isfile(p):
            return p, None
    raise SpatialPinError(f"robot URDF {urdf!r} is neither a file nor in pybullet_data")


class RobotSelfFilter(PyBulletClientOwner):
    """Masks the robot's own links in depth images.

    ``margin_m``: margin around the links (metres, at the nearest depth of the robot in view) and
    how far in front of the arm something must be to stay. ``margin_px``: pixels added to the
    margin (joint-state latency, edge pixels that mix arm and background).
    """

    def __init__(self, urdf: str, margin_m: float = 0.02, margin_px: int = 4,
                 base_pose: Optional[Pose] = None):
        if margin_m < 0 or margin_px < 0:
            raise ValueError("the self-filter margins must not be negative")
        self.margin_m = float(margin_m)
        self.margin_px = int(margin_px)
        path, tmp = _urdf_file(urdf)
        self.client = pb.connect(pb.DIRECT)
        try:
            pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
            base = base_pose or Pose([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
            self.body = pb.loadURDF(path, base.position.tolist(), base.quaternion.tolist(),
                                    useFixedBase=True, physicsClientId=self.client)
        except pb.error as e:
            self.close()
            raise SpatialPinError(f"cannot load the robot URDF {urdf[:200]!r}: {e}") from None
        finally:
            if tmp is not None:
                os.unlink(tmp)
        self.joint_index: dict[str, int] = {}
        self.num_links = pb.getNumJoints(self.body, physicsClientId=self.client)
        for j in range(self.num_links):
            info = pb.getJointInfo(self.body, j, physicsClientId=self.client)
            if info[2] in (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC):
                self.joint_index[info[1].decode()] = j

    @property
    def joint_names(self) -> list[str]:
        return list(self.joint_index)

    def set_joint_positions(self, positions: Mapping[str, float]) -> int:
        """Set the model's joints from ``{name: position}``; unknown names and non-finite values
        are skipped. Returns how many of the model's joints were set."""
        n = 0
        for name, q in positions.items():
            j = self.joint_index.get(name)
            if j is None or not np.isfinite(q):
                continue
            pb.resetJointState(self.body, j, float(q), 0.0, physicsClientId=self.client)
            n += 1
        return n

    def _in_view(self, camera: CameraModel, camera_pose: Pose) -> bool:
        """Whether the robot's bounding box can reach the image (a cheap test before a render)."""
        c = self.client
        lo, hi = (np.array(v) for v in pb.getAABB(self.body, -1, physicsClientId=c))
        for j in range(self.num_links):
            a, b = pb.getAABB(self.body, j, physicsClientId=c)
            lo, hi = np.minimum(lo, a), np.maximum(hi, b)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])])
        pc = camera_pose.inverse().transform_points(corners)
        if np.all(pc[:, 2] <= NEAR):
            return False
        if np.any(pc[:, 2] <= NEAR):  # the box spans the camera's plane: render to be sure
            return True
        u = camera.fx * pc[:, 0] / pc[:, 2] + camera.cx
        v = camera.fy * pc[:, 1] / pc[:, 2] + camera.cy
        return not (u.max() < 0 or u.min() > camera.width - 1 or v.max() < 0
                    or v.min() > camera.height - 1)

    def render(self, camera: CameraModel, camera_pose: Pose) -> np.ndarray:
        """The robot's depth along the optical axis (H, W) float32 metres, 0 where it is not."""
        if not self._in_view(camera, camera_pose):
            return np.zeros((camera.height, camera.width), np.float32)
        _, _, _, zbuf, seg = pb.getCameraImage(
            camera.width, camera.height, camera_view_matrix(camera_pose),
            projection_matrix(camera), renderer=pb.ER_TINY_RENDERER,
            physicsClientId=self.client)
        zbuf = np.asarray(zbuf, np.float64).reshape(camera.height, camera.width)
        seg = np.asarray(seg).reshape(camera.height, camera.width)
        depth = (FAR * NEAR / (FAR - (FAR - NEAR) * zbuf)).astype(np.float32)
        depth[(seg < 0) | (zbuf >= 1.0)] = 0.0
        return depth

    def mask(self, camera: CameraModel, camera_pose: Pose,
             depth: Optional[np.ndarray] = None) -> np.ndarray:
        """(H, W) bool: the pixels the robot covers, grown by the margin. With the measured
        ``depth``, pixels measured clearly in front of the arm are left out."""
        robot = self.render(camera, camera_pose)
        on = robot > 0
        if not on.any():
            return on
        nearest = float(robot[on].min())
        r = int(np.ceil(max(camera.fx, camera.fy) * self.margin_m / nearest)) + self.margin_px
        r = min(r, MAX_MARGIN_PX)
        near = ndimage.minimum_filter(np.where(on, robot, np.inf), size=2 * r + 1)
        out = np.isfinite(near)
        if depth is not None:
            d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0)
            out &= ~((d > 0) & (d < near - self.margin_m))
        return out

    def apply(self, frame: RGBDFrame) -> tuple[RGBDFrame, int]:
        """``frame`` with depth 0 where the robot is (a new frame; the input is not changed),
        and how many pixels were cleared. Needs the frame's camera pose in the robot's world
        frame (SpatialPinError without one)."""
        if frame.camera_pose is None:
            raise SpatialPinError("the self-filter needs the camera pose in the robot's world "
                                  "frame")
        m = self.mask(frame.camera, frame.camera_pose, frame.depth)
        m &= frame.depth > 0
        n = int(m.sum())
        if n == 0:
            return frame, 0
        depth = frame.depth.copy()
        depth[m] = 0.0
        return dataclasses.replace(frame, depth=depth), n
