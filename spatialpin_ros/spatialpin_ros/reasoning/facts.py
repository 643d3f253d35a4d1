"""SpatialPIN's 3D information block: per object its centre, named local axes, size, and the
nearest other object in each named direction with its distance."""

from __future__ import annotations

import numpy as np

from spatialpin_ros.core.types import Scene
from spatialpin_ros.reasoning.viewer import ViewerFrame, axis_names


def scene_facts(scene: Scene, viewer: ViewerFrame | None = None) -> str:
    """The 3D block of a scene as text, one paragraph per object."""
    viewer = viewer or ViewerFrame.from_camera(scene.camera_pose)
    lines = [
        "3D information (metres, world frame: z up; directions as the camera sees them: "
        "left/right, front = toward the camera, back = away from it, up/down):"]
    for o in scene.objects:
        axes = o.axis_names or axis_names(o.pose, viewer)
        near: dict[str, tuple[float, str]] = {}
        for other in scene.objects:
            if other.id == o.id:
                continue
            d = other.center - o.center
            name = viewer.name(d)
            dist = float(np.linalg.norm(d))
            if name not in near or dist < near[name][0]:
                near[name] = (dist, other.id)
        neigh = "; ".join(f"{k}: {v[1]} at {v[0]:.3f} m" for k, v in sorted(near.items()))
        c = o.center
        lines.append(
            f"- {o.id} ({o.label}, {o.shape}): center ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}); "
            f"local axes x={axes[0]}, y={axes[1]}, z={axes[2]}; size along x, y, z "
            f"{o.size[0]:.3f} x {o.size[1]:.3f} x {o.size[2]:.3f}; nearest objects by direction: "
            f"{neigh or 'none'}")
    cam = viewer.eye
    lines.append(f"Camera at ({cam[0]:.3f}, {cam[1]:.3f}, {cam[2]:.3f}).")
    return "\n".join(lines)
