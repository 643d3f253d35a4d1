"""Relative camera motion between two views whose camera poses are unknown (hand-held camera,
no TF): register the two scenes' point clouds.

Each view is first put in a gravity frame from its own support plane (``plane_frame_pose``), so
both frames share "up" and the table height and registration has four degrees of freedom (x, y,
z, yaw). Objects matched across the views by colour and shape give the initial guess (Kabsch on
their centres); open3d's point-to-plane ICP refines it on the clouds.
"""

from __future__ import annotations

import math
import numpy as np
from scipy.spatial.transform import Rotation

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import CameraModel, Pose, Scene
from spatialpin_ros.core.geometry import fit_plane_ransac


class RegistrationError(SpatialPinError, ValueError):
    """Two views could not be registered (the message says why)."""


def plane_frame_pose(depth: np.ndarray, camera: CameraModel) -> Pose:
    """The camera's optical-frame pose in a gravity frame built from the support plane seen in
    ``depth`` (metres): z = the plane's normal pointing toward the camera, the plane is z = 0,
    the origin lies below the camera and x is the camera's viewing direction laid flat."""
    pts = camera.backproject(depth).reshape(-1, 3)[::7]
    pts = pts[np.isfinite(pts).all(1)]
    # The table's normal points roughly toward the image's top (-y) for any camera above it.
    plane, _ = fit_plane_ransac(pts, np.random.default_rng(0), iterations=200, inlier=0.008,
                                up=(0.0, -1.0, 0.0), max_tilt_deg=85.0)
    n, d = plane[:3], plane[3]
    if d < 0:  # make the normal point toward the camera (camera at the origin: n.0 + d > 0)
        n, d = -n, -d
    fwd = np.array([0.0, 0.0, 1.0]) - n[2] * n
    if np.linalg.norm(fwd) < 1e-6:
        fwd = np.array([0.0, -1.0, 0.0]) - n[1] * n
    x = fwd / np.linalg.norm(fwd)
    y = np.cross(n, x)
    R_cw = np.stack([x, y, n], axis=0)  # rows: world axes in camera coordinates
    t_w = np.array([0.0, 0.0, d])  # the camera is d above the plane, straight above the origin
    return Pose(t_w, Rotation.from_matrix(R_cw).as_quat())


def _kabsch_yaw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """4x4 transform (yaw + translation) that best maps points b onto a (both (N, 3))."""
    ca, cb = a.mean(0), b.mean(0)
    H = (b - cb)[:, :2].T @ (a - ca)[:, :2]
    ang = math.atan2(H[0, 1] - H[1, 0], H[0, 0] + H[1, 1])
    R = Rotation.from_euler("z", ang).as_matrix()
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = ca - R @ cb
    return T


def match_objects(s1: Scene, s2: Scene) -> list[tuple[int, int]]:
    """Index pairs of objects that are the same in both scenes: unique by colour and shape."""
    def key(o):
        return (o.color_name, o.shape)
    k1 = [key(o) for o in s1.objects]
    k2 = [key(o) for o in s2.objects]
    return [(i, k2.index(k)) for i, k in enumerate(k1)
            if k1.count(k) == 1 and k2.count(k) == 1]


def register_scenes(s1: Scene, cloud1: np.ndarray, s2: Scene, cloud2: np.ndarray,
                    voxel: float = 0.005) -> Pose:
    """The transform from scene 2's world frame to scene 1's (``p1 = T p2``), from matched
    objects refined by ICP on the clouds ((N, 3) world-frame points of each scene)."""
    import open3d as o3d

    pairs = match_objects(s1, s2)
    if len(pairs) >= 2:
        a = np.array([s1.objects[i].center for i, _ in pairs])
        b = np.array([s2.objects[j].center for _, j in pairs])
        init = _kabsch_yaw(a, b)
    else:
        raise RegistrationError(
            f"only {len(pairs)} object(s) could be matched between the views (need 2 that are "
            "unique by colour and shape)")

    def cloud(p):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
            np.asarray(p, dtype=float)[np.isfinite(p).all(1)]))
        pc = pc.voxel_down_sample(voxel)
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel, max_nn=30))
        return pc

    c1, c2 = cloud(cloud1), cloud(cloud2)
    if len(c1.points) < 50 or len(c2.points) < 50:
        raise RegistrationError("too few points to register the views")
    T = init
    for dist in (0.04, 0.015, 0.006):
        res = o3d.pipelines.registration.registration_icp(
            c2, c1, dist, T, o3d.pipelines.registration.TransformationEstimationPointToPlane(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=30))
        T = res.transformation
    if res.fitness < 0.2:
        raise RegistrationError(f"the views overlap too little to register (fitness "
                                f"{res.fitness:.2f})")
    return Pose.from_matrix(T)


def camera_motion(s1: Scene, s2: Scene, T_w1_w2: Pose) -> Pose:
    """Camera 2 in camera 1's frame, given scene 2's world frame in scene 1's."""
    return s1.camera_pose.inverse() @ T_w1_w2 @ s2.camera_pose
