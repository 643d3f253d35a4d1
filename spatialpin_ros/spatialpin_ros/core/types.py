"""Core data types: camera model, pose, RGB-D frame, object prior and scene.

Conventions (REP 103):
* SI units: metres, radians (degrees only where a field name says ``_deg``), seconds.
* The world frame is right-handed with z up. In the simulator it sits at the robot base on the
  table surface, x pointing away from the robot.
* Camera optical frames are z forward, x right, y down. Pixel (0, 0) is the centre of the
  top-left pixel (the ROS / OpenCV convention).
* Quaternions are (x, y, z, w), as in geometry_msgs.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.errors import ImageError
from spatialpin_ros.core.top_face import TopFace

SHAPES = ("box", "cylinder", "sphere", "other")


class PerceptionStatus(str, enum.Enum):
    """Outcome of perceiving one frame. Anything but ``OK`` comes with an empty object list and a
    message saying why (the frame is still a valid observation: "no table in view")."""

    OK = "ok"
    NO_VALID_DEPTH = "no_valid_depth"
    NO_SUPPORT_PLANE = "no_support_plane"
    BAD_IMAGE = "bad_image"


@dataclass
class Pose:
    """A rigid transform: ``position`` (metres, shape (3,)) and ``quaternion`` (x, y, z, w).

    A ``Pose`` of frame B in frame A maps points from B to A: ``p_A = R p_B + t``.
    """

    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quaternion: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, dtype=float).reshape(3)
        q = np.asarray(self.quaternion, dtype=float).reshape(4)
        n = np.linalg.norm(q)
        if not np.isfinite(n) or n < 1e-9:
            raise ValueError(f"quaternion must be finite and non-zero, got {q.tolist()}")
        self.quaternion = q / n

    @classmethod
    def from_matrix(cls, T: np.ndarray) -> "Pose":
        """From a 4x4 homogeneous matrix."""
        T = np.asarray(T, dtype=float)
        return cls(T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_quat())

    @classmethod
    def from_xyz_quat(cls, values: Sequence[float]) -> "Pose":
        """From ``[x, y, z, qx, qy, qz, qw]`` (the form of a camera-pose parameter)."""
        v = [float(x) for x in values]
        if len(v) != 7 or not all(math.isfinite(x) for x in v):
            raise ValueError(f"a pose needs 7 finite numbers [x, y, z, qx, qy, qz, qw], got {values}")
        return cls(v[:3], v[3:])

    @classmethod
    def from_yaw(cls, position: Sequence[float], yaw: float) -> "Pose":
        """A gravity-aligned pose: ``position`` and a rotation of ``yaw`` radians about world z."""
        return cls(position, Rotation.from_euler("z", yaw).as_quat())

    def as_xyz_quat(self) -> list[float]:
        return [*map(float, self.position), *map(float, self.quaternion)]

    @property
    def rotation(self) -> Rotation:
        return Rotation.from_quat(self.quaternion)

    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.rotation.as_matrix()
        T[:3, 3] = self.position
        return T

    def inverse(self) -> "Pose":
        return Pose.from_matrix(np.linalg.inv(self.matrix()))

    def __matmul__(self, other: "Pose") -> "Pose":
        return Pose.from_matrix(self.matrix() @ other.matrix())

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map points (..., 3) from this pose's child frame to its parent frame."""
        pts = np.asarray(points, dtype=float)
        R = self.rotation.as_matrix()
        return pts @ R.T + self.position

    def yaw(self) -> float:
        """Heading of the x axis about world z, radians in (-pi, pi]."""
        x = self.rotation.as_matrix()[:, 0]
        return float(math.atan2(x[1], x[0]))


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 0, 1)) -> Pose:
    """Pose of a camera optical frame (z forward, x right, y down) at ``eye`` looking at ``target``.

    Raises ValueError when eye and target coincide or the view direction is parallel to ``up``.
    """
    eye = np.asarray(eye, dtype=float)
    forward = np.asarray(target, dtype=float) - eye
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError("camera eye and target coincide")
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, np.asarray(up, dtype=float))
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("camera looks along its up vector; choose another up or target")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    return Pose(eye, Rotation.from_matrix(R).as_quat())


@dataclass
class CameraModel:
    """Pinhole intrinsics of an undistorted image.

    ``width``/``height`` in pixels; ``fx``, ``fy``, ``cx``, ``cy`` in pixels with pixel (0, 0) at the
    centre of the top-left pixel. ``frame_id`` names the optical frame (z forward, x right, y down).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_v_deg: float, **kw) -> "CameraModel":
        """Square pixels with vertical field of view ``fov_v_deg``, principal point at the centre:
        ``f = H / (2 tan(fov_v / 2))`` (SpatialPIN's intrinsics estimate)."""
        f = height / (2.0 * math.tan(math.radians(fov_v_deg) / 2.0))
        kw.setdefault("cx", (width - 1) / 2.0)
        kw.setdefault("cy", (height - 1) / 2.0)
        return cls(width, height, f, f, **kw)

    def subsampled(self, stride: int) -> "CameraModel":
        """The model of the image ``img[::stride, ::stride]``: pixel (u, v) there is pixel
        (stride u, stride v) here."""
        s = int(stride)
        return CameraModel(-(-self.width // s), -(-self.height // s), self.fx / s, self.fy / s,
                           self.cx / s, self.cy / s, self.frame_id)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel ray slopes ``((u - cx) / fx, (v - cy) / fy)``, each (H, W) float32."""
        u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
        return np.broadcast_to(u, (self.height, self.width)), np.broadcast_to(
            v[:, None], (self.height, self.width)
        )

    def backproject(self, depth: np.ndarray) -> np.ndarray:
        """Back-project an (H, W) depth image (metres along the optical axis) to (H, W, 3) points
        in the optical frame. Missing depth (0 or NaN) gives NaN points."""
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != (self.height, self.width):
            raise ImageError(
                f"depth shape {depth.shape} does not match the camera's {self.height}x{self.width}"
            )
        z = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
        ru, rv = self.pixel_rays()
        out = np.empty(z.shape + (3,), dtype=np.float32)     # np.stack([ru z, rv z, z], -1)
        np.multiply(ru, z, out=out[..., 0])
        np.multiply(rv, z, out=out[..., 1])
        out[..., 2] = z
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project (N, 3) optical-frame points to (N, 2) pixel coordinates (u, v)."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([self.fx * p[:, 0] / p[:, 2] + self.cx,
                             self.fy * p[:, 1] / p[:, 2] + self.cy], axis=1)


@dataclass
class RGBDFrame:
    """A colour image with an aligned depth image.

    ``rgb``: (H, W, 3) uint8, RGB order. ``depth``: (H, W) float32 metres along the optical axis;
    0 or NaN where missing. ``camera``: intrinsics of both. ``camera_pose``: the optical frame in
    the world frame ``world_frame`` (None when unknown). ``stamp``: seconds.
    """

    rgb: np.ndarray
    depth: np.ndarray
    camera: CameraModel
    camera_pose: Optional[Pose] = None
    stamp: float = 0.0
    world_frame: str = "world"

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ImageError(f"rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        hw = (self.camera.height, self.camera.width)
        if self.rgb.shape[:2] != hw or self.depth.shape != hw:
            raise ImageError(
                f"rgb {self.rgb.shape[:2]} and depth {self.depth.shape} must both be {hw} "
                "(depth aligned to colour)"
            )

    def points_world(self) -> np.ndarray:
        """(H, W, 3) points in the world frame (NaN where depth is missing)."""
        if self.camera_pose is None:
            raise ValueError("the frame has no camera pose")
        return self.camera_pose.transform_points(self.camera.backproject(self.depth))


@dataclass
class ObjectPrior:
    """One object's 3D prior.

    ``pose``: box centre and orientation in the world frame (gravity-aligned boxes carry a yaw
    only). ``size``: full extents (metres) along the box's own x, y, z axes. ``roi``: (x, y, w, h)
    pixels in the source image. ``axis_names``: SpatialPIN's names of the box's x, y and z axes
    as the viewer sees them. ``rgb``: mean colour, 0..255. ``container``: a hollow object open at
    the top (bowl, cup, mug, tray, dish); ``inner_depth``: for a container, metres from its rim
    down to its inner bottom (0 otherwise). ``mask``: optional (h, w) bool pixel mask of the
    object inside ``roi`` (h, w = roi's height and width); :meth:`full_mask` places it in the
    image. ``top_face``: the top face its own points show (``core.top_face``; flat and solid?
    where?), None when not perceived. ``hidden``: the share (0..1) of the object's outline in the
    image that borders something in front of it or the image's edge (its box may go on there),
    -1 when not measured (the torch lifting leaves it so: its GPU timings were measured
    without it).
    """

    id: str
    label: str
    pose: Pose
    size: np.ndarray
    shape: str = "other"
    color_name: str = ""
    confidence: float = 1.0
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    num_points: int = 0
    axis_names: list[str] = field(default_factory=list)
    yaw_symmetric: bool = False
    rgb: Optional[tuple[int, int, int]] = None
    container: bool = False
    inner_depth: float = 0.0
    mask: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    top_face: Optional[TopFace] = field(default=None, repr=False, compare=False)
    hidden: float = -1.0

    def __post_init__(self) -> None:
        self.size = np.asarray(self.size, dtype=float).reshape(3)
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.shape != (self.roi[3], self.roi[2]):
                raise ValueError(f"mask {self.mask.shape} must match the roi's height and width "
                                 f"{(self.roi[3], self.roi[2])}")

    def full_mask(self, height: int, width: int) -> Optional[np.ndarray]:
        """The object's mask as an (height, width) bool image, None when it has none."""
        if self.mask is None:
            return None
        out = np.zeros((height, width), dtype=bool)
        x, y, w, h = self.roi
        x1, y1 = min(x + w, width), min(y + h, height)
        out[y:y1, x:x1] = self.mask[: y1 - y, : x1 - x]
        return out

    @property
    def center(self) -> np.ndarray:
        return self.pose.position

    def corners(self) -> np.ndarray:
        """The 8 box corners (8, 3) in the world frame."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return self.pose.transform_points(signs * self.size / 2.0)


@dataclass
class Scene:
    """3D priors of one scene, in the world frame ``frame_id``.

    ``support_plane``: (a, b, c, d) with ax + by + cz + d = 0 and (a, b, c) a unit normal pointing
    up, zeros when unknown. ``camera_pose``: optical frame in the world frame. ``stamp``: seconds.
    ``flat_items``: thin things lying on the support (paper, boards, a phone), kept apart from
    ``objects`` (they are not objects to stack or ask about). ``status`` / ``status_message``:
    how perception went (an empty scene with the reason when it could not find a table).
    """

    scene_id: str
    objects: list[ObjectPrior]
    camera: CameraModel
    camera_pose: Pose
    support_plane: np.ndarray = field(default_factory=lambda: np.zeros(4))
    stamp: float = 0.0
    frame_id: str = "world"
    flat_items: list[ObjectPrior] = field(default_factory=list)
    status: PerceptionStatus = PerceptionStatus.OK
    status_message: str = ""

    def __post_init__(self) -> None:
        self.status = PerceptionStatus(self.status)
        self.support_plane = np.asarray(self.support_plane, dtype=float).reshape(4)

    def get(self, object_id: str) -> ObjectPrior:
        """The object with this id; KeyError naming the known ids otherwise."""
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(f"no object {object_id!r} in scene {self.scene_id!r}; "
                       f"known: {', '.join(o.id for o in self.objects) or 'none'}")

    def replace(self, **changes) -> "Scene":
        return dataclasses.replace(self, **changes)
