"""Pictures for reports (ROS-free): scene priors drawn on the camera image."""

from __future__ import annotations

import cv2
import numpy as np

from spatialpin_ros.core.colors import PALETTE
from spatialpin_ros.core.types import Scene

_EDGES = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6),
          (5, 7), (6, 7)]


def draw_priors(rgb: np.ndarray, scene: Scene, truth: Scene | None = None) -> np.ndarray:
    """The colour image (H, W, 3 uint8 RGB) with each object's 3D box projected and labelled
    with its id and label; true boxes (when given) in thin white."""
    img = rgb.copy()
    cam, inv = scene.camera, scene.camera_pose.inverse()
    if truth is not None:
        inv_t = truth.camera_pose.inverse()
        for o in truth.objects:
            pc = inv_t.transform_points(o.corners())
            if np.all(pc[:, 2] > 0.05):
                uv = np.round(cam.project(pc)).astype(int)
                for i, j in _EDGES:
                    cv2.line(img, tuple(uv[i]), tuple(uv[j]), (255, 255, 255), 1, cv2.LINE_AA)
    for o in scene.objects:
        pc = inv.transform_points(o.corners())
        if np.any(pc[:, 2] <= 0.05):
            continue
        uv = np.round(cam.project(pc)).astype(int)
        rgbf = PALETTE.get(o.color_name, (0.9, 0.9, 0.9))
        color = tuple(int(255 * min(1.0, 0.35 + 0.65 * c)) for c in rgbf)
        for i, j in _EDGES:
            cv2.line(img, tuple(uv[i]), tuple(uv[j]), color, 2, cv2.LINE_AA)
        x, y = int(uv[:, 0].min()), int(uv[:, 1].min()) - 6
        text = f"{o.id}: {o.label}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
        cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + 3), (0, 0, 0), -1)
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return img


def plot_scene_3d(path_png: str, scene: Scene, ee_path: np.ndarray | None = None,
                  truth: Scene | None = None, title: str = "") -> None:
    """A 3D view of the perceived boxes (filled, in their colours), the true boxes (dashed),
    the camera and the planned end-effector path, saved as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    faces = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    fig = plt.figure(figsize=(8, 6.5), dpi=110)
    ax = fig.add_subplot(111, projection="3d")
    for o in scene.objects:
        c = o.corners()
        color = PALETTE.get(o.color_name, (0.7, 0.7, 0.7))
        ax.add_collection3d(Poly3DCollection([[c[i] for i in f] for f in faces], alpha=0.55,
                                             facecolor=color, edgecolor="k", linewidths=0.4))
        ax.text(*(o.center + [0, 0, o.size[2] / 2 + 0.02]), o.id, fontsize=7)
    if truth is not None:
        for o in truth.objects:
            c = o.corners()
            for i, j in _EDGES:
                ax.plot(*zip(c[i], c[j]), color="0.3", lw=0.6, ls="--")
    if ee_path is not None and len(ee_path):
        p = np.asarray(ee_path)[:, :3]
        ax.plot(p[:, 0], p[:, 1], p[:, 2], color="#ff8c00", lw=2, label="planned gripper path")
        ax.scatter(*p[0], color="green", s=20, label="start")
        ax.scatter(*p[-1], color="red", s=20, label="end")
        ax.legend(loc="upper left", fontsize=8)
    pts = np.concatenate([o.corners() for o in scene.objects] +
                         ([np.asarray(ee_path)[:, :3]] if ee_path is not None and len(ee_path)
                          else []) + [np.zeros((1, 3))])
    lo, hi = pts.min(0), pts.max(0)
    mid, r = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.1)
    xx, yy = np.meshgrid([mid[0] - r, mid[0] + r], [mid[1] - r, mid[1] + r])
    ax.plot_surface(xx, yy, np.zeros_like(xx), color=(0.8, 0.68, 0.5), alpha=0.25)
    ax.set_xlim(mid[0] - r, mid[0] + r)
    ax.set_ylim(mid[1] - r, mid[1] + r)
    ax.set_zlim(0, 2 * r)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.view_init(elev=28, azim=200)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path_png)
    plt.close(fig)


def plot_trajectory(path_png: str, traj, stages=(), limits: dict | None = None,
                    measured: tuple | None = None) -> None:
    """Joint positions and velocities against time, with stage boundaries, velocity limits
    (dashed) and, when given, the measured joint positions ``(times, names, positions)``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(traj.times)
    q = np.asarray(traj.positions)
    v = np.asarray(traj.velocities) if traj.velocities is not None else np.gradient(q, t, axis=0)
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), dpi=110, sharex=True)
    arm = [i for i, n in enumerate(traj.joint_names) if "finger" not in n]
    for k, i in enumerate(arm):
        col = plt.cm.tab10(k % 10)
        axes[0].plot(t, q[:, i], color=col, lw=1.2, label=traj.joint_names[i])
        axes[1].plot(t, v[:, i], color=col, lw=1.0)
        if limits and traj.joint_names[i] in limits:
            vl = limits[traj.joint_names[i]].velocity
            axes[1].axhline(vl, color=col, lw=0.5, ls="--")
            axes[1].axhline(-vl, color=col, lw=0.5, ls="--")
    if measured is not None:
        mt, names, mq = measured
        for k, i in enumerate(arm):
            n = traj.joint_names[i]
            if n in names:
                axes[0].plot(mt, np.asarray(mq)[:, names.index(n)], color=plt.cm.tab10(k % 10),
                             lw=0.8, ls=":")
    for name, t0, t1 in stages:
        for ax in axes:
            ax.axvline(t0, color="0.6", lw=0.5)
        axes[0].text(t0, axes[0].get_ylim()[1], f" {name}", fontsize=6, va="top", rotation=90)
    axes[0].set_ylabel("position (rad)")
    axes[1].set_ylabel("velocity (rad/s)")
    axes[1].set_xlabel("time (s)")
    axes[0].legend(fontsize=7, ncol=4, loc="lower left")
    axes[0].set_title("Planned joint trajectory (dotted: measured, aligned at motion onset; "
                      "dashed: velocity limits)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path_png)
    plt.close(fig)
