"""The demo's report (``ros.demo``): the images, the trajectory plot, the summary (JSON and
Markdown), and the simulator's verdict, which is for the report only (the pipeline never reads
the simulator's truth)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.types import Scene
from spatialpin_ros.perception import metrics
from spatialpin_ros.report import draw_priors, plot_scene_3d, plot_trajectory
from spatialpin_ros.ros import conversions as conv


def write_images(out: Path, seen_before: tuple, seen_after: tuple, depth_msg) -> None:
    """``color.png``, ``priors_before.png``, ``priors_after.png`` (perceived boxes and labels,
    truth in white) and ``depth.png``; ``seen_*``: (rgb, perceived scene, truth scene)."""
    rgb_before, before, truth_before = seen_before
    rgb_after, after, truth_after = seen_after
    cv2.imwrite(str(out / "color.png"), cv2.cvtColor(rgb_before, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "priors_before.png"), cv2.cvtColor(
        draw_priors(rgb_before, before, truth_before), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "priors_after.png"), cv2.cvtColor(
        draw_priors(rgb_after, after, truth_after), cv2.COLOR_RGB2BGR))
    depth_m = conv.depth_from_msg(depth_msg)
    valid = depth_m > 0
    lo, hi = (np.percentile(depth_m[valid], [1, 99]) if valid.any() else (0.0, 1.0))
    vis = cv2.applyColorMap((255 * (1 - np.clip((depth_m - lo) / max(hi - lo, 1e-6), 0, 1))
                             ).astype(np.uint8), cv2.COLORMAP_TURBO)
    vis[~valid] = 0
    cv2.imwrite(str(out / "depth.png"), vis)


def write_motion(out: Path, result, chosen, before: Scene, truth_before: Scene,
                 joint_log: list, t_exec: float, robot: str) -> Optional[dict]:
    """``scene_3d.png`` (perceived boxes, truth dashed, and the planned gripper path when a
    task ran) and ``trajectory.png`` (planned against measured joints); the trajectory's
    figures for the summary, or None when nothing was planned. ``joint_log``: (time, names,
    positions) of the joint states received since the execution began at ``t_exec``."""
    if result is None or not result.joint_trajectory.points:
        plot_scene_3d(str(out / "scene_3d.png"), before, None, truth_before,
                      title="perceived boxes (dashed: truth)")
        return None
    traj = conv.trajectory_from_msg(result.joint_trajectory)
    ee = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                   for p in result.ee_path.poses])
    plot_scene_3d(str(out / "scene_3d.png"), before, ee, truth_before,
                  title=f"{chosen.description}: perceived boxes (dashed: truth) and "
                        "planned gripper path")
    log = [(t - t_exec, n, q) for t, n, q in joint_log if t >= t_exec]
    measured = None
    if log:
        names = log[0][1]
        mt, mq = np.array([x[0] for x in log]), np.array([x[2] for x in log])
        measured = (mt - _onset(mt, mq[:, :7]) + _onset(traj.times, traj.positions[:, :7]),
                    names, mq)
    plot_trajectory(str(out / "trajectory.png"), traj, limits=_nominal_limits(robot),
                    measured=measured)
    return {"points": len(traj.times), "duration_s": round(traj.duration, 2),
            "planning_time_s": round(result.planning_time, 3)}


def perception_fields(before: Scene, truth_before: Scene) -> dict:
    """The summary's ``perceived`` objects and ``perception_vs_truth`` (before the task)."""
    matches = metrics.match(before.objects, truth_before.objects)
    return {
        "perceived": [
            {"id": o.id, "label": o.label, "shape": o.shape, "color": o.color_name,
             "center_m": [round(float(v), 4) for v in o.pose.position],
             "size_m": [round(float(v), 4) for v in o.size],
             "yaw_deg": round(math.degrees(o.pose.yaw()), 1),
             "axes": list(o.axis_names)} for o in before.objects],
        "perception_vs_truth": {
            "true_objects": len(truth_before.objects), "perceived_objects": len(before.objects),
            "matched": len(matches),
            "centroid_error_cm": [round(100 * metrics.centroid_error(
                before.objects[i], truth_before.objects[j]), 2) for i, j, _ in matches]}}


def task_fields(chosen, result, traj_info: Optional[dict], stacked_truth: Optional[dict]
                ) -> Optional[dict]:
    """The summary's ``task``: what ran, the manipulation node's verdict and the simulator's."""
    if chosen is None:
        return None
    return {"description": chosen.description, "object_id": chosen.object_id,
            "target_id": chosen.target_id, "success": bool(result and result.success),
            "kind": (result.kind if result and result.kind else chosen.kind or "stack"),
            "grasp": result.grasp if result else "",
            "check": result.check if result else "",
            "retried_after_slip": bool(result and result.retried),
            "message": result.message if result else "", "trajectory": traj_info,
            "simulator_check": stacked_truth}


def _onset(t: np.ndarray, q: np.ndarray, tol: float = 0.01) -> float:
    """Time at which the joints first move ``tol`` rad from where they started."""
    moved = np.abs(q - q[0]).max(axis=1) > tol
    return float(t[int(np.argmax(moved))]) if moved.any() else float(t[0])


def _nominal_limits(robot: str):
    from spatialpin_ros.planning import RobotModel
    with RobotModel(robot) as model:
        return model.joint_limits(nominal=True)


def truth_stacked(truth, before, task) -> dict:
    """Whether the chosen object ends on the target in the simulator (scoring only): objects
    are matched to the truth by colour and shape."""
    def match(oid):
        o = before.get(oid)
        c = [t for t in truth.objects if t.color_name == o.color_name]
        return min(c, key=lambda t: np.linalg.norm(t.center - o.center)) if c else None
    a, b = match(task.object_id), match(task.target_id)
    if a is None or b is None:
        return {"stacked": False, "verdict": "could not match the objects to the simulator's"}
    dxy = float(np.linalg.norm(a.center[:2] - b.center[:2]))
    dz = float((a.center[2] - a.size[2] / 2) - (b.center[2] + b.size[2] / 2))
    ok = dxy < 0.02 and abs(dz) < 0.01
    return {"stacked": ok, "horizontal_offset_cm": round(100 * dxy, 2),
            "vertical_gap_cm": round(100 * dz, 2),
            "verdict": (f"{a.id} {'IS' if ok else 'is NOT'} on {b.id} (offset "
                        f"{100 * dxy:.1f} cm, gap {100 * dz:+.1f} cm)")}


def markdown(s: dict) -> str:
    pv = s["perception_vs_truth"]
    task = s.get("task")
    lines = [f"# spatialpin_ros pick-and-stack demo: {s['scene']}", ""]
    if task:
        sc = task.get("simulator_check") or {}
        lines += [f"**Task:** {task['description']} -> **{'stacked' if sc.get('stacked') else 'not stacked'}** "
                  f"(manipulation node: {task['message']}; simulator: {sc.get('verdict', '?')})", "",
                  f"- **Kind:** `{task.get('kind', '')}`",
                  f"- **Grasp chosen:** {task.get('grasp') or 'none'}",
                  f"- **Check that decided success** (the kind's own rule on a fresh perceived "
                  f"scene): {task.get('check') or 'none'}"
                  + (" (the hand was found empty once; re-perceived and tried again)"
                     if task.get("retried_after_slip") else ""), ""]
    else:
        lines += ["**No stack task was proposed for this scene.**", ""]
    lines += [
        "| before (perceived boxes and labels; white: truth) | after |", "| --- | --- |",
        "| ![before](priors_before.png) | ![after](priors_after.png) |", "",
        "![3D view: perceived boxes, truth dashed, planned gripper path](scene_3d.png)", "",
        "## Spatial questions (/spatialpin/ask, geometric backend)", "",
        *[f"- **{q['question']}** {q['answer'] or 'refused: ' + q['message']}"
          for q in s["questions"]], "",
        "## Task proposals (/spatialpin/propose_tasks)", "",
        *[f"- {p['description']} (`{p.get('kind', p['action'])}` {p['object_id']} -> "
          f"{p['target_id'] or 'table'})" for p in s.get("proposals", [])], "",
        *(["Proposals that did not plan: " + "; ".join(
            f"*{r['description']}*: {r['reason'][:160]}" for r in s["rejected_tasks"]), ""]
          if s.get("rejected_tasks") else [])]
    if task and task.get("trajectory"):
        t = task["trajectory"]
        lines += ["## Planned joint trajectory", "",
                  f"{t['points']} points over {t['duration_s']} s, planned in "
                  f"{t['planning_time_s']} s (OMPL, smoothed, Ruckig-timed within velocity and "
                  "acceleration limits).", "", "![joint trajectory](trajectory.png)", ""]
    lines += [
        "## Perceived objects (/spatialpin/scene_priors), before the task", "",
        f"{pv['perceived_objects']} perceived, {pv['true_objects']} in the scene, "
        f"{pv['matched']} matched (3D IoU >= 0.25); centroid errors (cm): "
        f"{pv['centroid_error_cm']}", "",
        "| id | label | centre (m) | size (m) | yaw (deg) | axes x, y, z |",
        "| --- | --- | --- | --- | --- | --- |",
        *[f"| {o['id']} | {o['label']} | {o['center_m']} | {o['size_m']} | {o['yaw_deg']} | "
          f"{', '.join(o['axes'])} |" for o in s["perceived"]], "",
        "## Run", "",
        f"- Camera {s['camera']['width']}x{s['camera']['height']}, measured "
        f"{s['camera']['measured_rate_hz']} Hz; depth: ![depth](depth.png)",
        f"- Recording: `run.mcap` ({sum(s['recording']['messages'].values())} messages on "
        f"{len(s['recording']['messages'])} topics), replay with Foxglove or "
        "`ros2 bag play run.mcap`",
        f"- Wall time {s['wall_time_s']} s; node logs in `logs/`",
    ]
    return "\n".join(lines) + "\n"
