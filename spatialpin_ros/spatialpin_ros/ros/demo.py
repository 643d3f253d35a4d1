"""The headless demo: bring up the graph, watch it over ROS topics, and leave a report.

It starts the pick-and-stack graph (sim, perception, spatial_qa, manipulation), each node in
its own process, and over ROS: measures the camera rate, waits for the perceived scene priors,
asks for task proposals (/spatialpin/propose_tasks), chooses a stack task, plans and executes it
(/spatialpin/execute_task, with progress per stage), checks the result on a fresh perceived
scene, and asks three spatial questions (/spatialpin/ask). It writes a report: the camera image
with the labelled priors before and after, a 3D view with the boxes and the planned gripper
path, joint-trajectory plots, the answers, a summary (Markdown and JSON), and an MCAP recording
of the topics that rviz (rosbag2) or Foxglove replays. The simulator's ground truth appears in
the report for comparison only; the pipeline never reads it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from spatialpin_interfaces.msg import ScenePriors
from spatialpin_interfaces.action import ExecuteTask
from spatialpin_interfaces.srv import AskSpatial, ProposeTasks
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from spatialpin_ros.bringup import Bringup
from spatialpin_ros.perception import metrics
from spatialpin_ros.report import draw_priors, plot_scene_3d, plot_trajectory
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.sim_node import LATCHED, PARAMS as SIM_PARAMS


def _topic(name: str) -> str:
    return SIM_PARAMS[name].default


@dataclass
class Inbox:
    """The latest messages the demo has seen, and when colour frames arrived."""

    color: Optional[Image] = None
    depth: Optional[Image] = None
    info: Optional[CameraInfo] = None
    truth: Optional[ScenePriors] = None
    joints: Optional[JointState] = None
    priors: list = field(default_factory=list)
    color_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DemoClient(Node):
    """Subscribes to what the graph publishes and sends arm commands."""

    def __init__(self) -> None:
        super().__init__("spatialpin_demo")
        self.inbox = Inbox()
        sd = qos_profile_sensor_data
        self.create_subscription(Image, _topic("color_topic"), self._on_color, sd)
        self.create_subscription(Image, _topic("depth_topic"), self._set("depth"), sd)
        self.create_subscription(CameraInfo, _topic("camera_info_topic"), self._set("info"), sd)
        self.create_subscription(ScenePriors, _topic("ground_truth_topic"), self._set("truth"),
                                 LATCHED)
        self.create_subscription(JointState, _topic("joint_states_topic"), self._on_joints, 100)
        self.create_subscription(ScenePriors, "/spatialpin/scene_priors", self._on_priors,
                                 LATCHED)
        self.pub_traj = self.create_publisher(JointTrajectoryMsg,
                                              _topic("joint_trajectory_topic"), 10)
        self.ask_client = self.create_client(AskSpatial, "/spatialpin/ask")
        self.propose_client = self.create_client(ProposeTasks, "/spatialpin/propose_tasks")
        from rclpy.action import ActionClient
        self.execute_client = ActionClient(self, ExecuteTask, "/spatialpin/execute_task")
        self.joint_log: list = []

    def _wait(self, fut, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not fut.done():
            raise TimeoutError(f"{what} did not answer within {timeout:.0f} s")
        return fut.result()

    def propose(self, n: int = 5) -> ProposeTasks.Response:
        return self._wait(self.propose_client.call_async(ProposeTasks.Request(max_tasks=n)), 30,
                          "/spatialpin/propose_tasks")

    def execute(self, task, timeout: float = 120.0, execute: bool = True, quiet: bool = False):
        if not self.execute_client.wait_for_server(timeout_sec=30):
            raise TimeoutError("/spatialpin/execute_task is not available")
        last = [""]

        def on_feedback(fb) -> None:
            f = fb.feedback
            if f.stage != last[0] and not quiet:
                last[0] = f.stage
                print(f"    ... {f.stage} ({100 * f.progress:.0f} %)", flush=True)
        handle = self._wait(self.execute_client.send_goal_async(
            ExecuteTask.Goal(task=task, execute=execute), feedback_callback=on_feedback), 30,
            "/spatialpin/execute_task")
        if not handle.accepted:
            raise RuntimeError("the task was not accepted")
        return self._wait(handle.get_result_async(), timeout, "the task").result

    def _on_joints(self, msg: JointState) -> None:
        with self.inbox.lock:
            self.inbox.joints = msg
            # The time the state stands for (its stamp, on this process's monotonic clock):
            # a simulator catching up after a render sends a few at once.
            t = time.monotonic()
            st = conv.stamp_to_sec(msg.header.stamp)
            if st > 0:
                t -= min(max(time.time() - st, 0.0), 1.0)
            self.joint_log.append((t, list(msg.name), list(msg.position)))

    def _on_priors(self, msg: ScenePriors) -> None:
        with self.inbox.lock:
            self.inbox.priors.append((time.monotonic(), msg))
            del self.inbox.priors[:-5]

    def ask(self, question: str, timeout: float = 20.0) -> AskSpatial.Response:
        return self._wait(self.ask_client.call_async(AskSpatial.Request(question=question)),
                          timeout, "/spatialpin/ask")

    def _set(self, key: str):
        def cb(msg) -> None:
            with self.inbox.lock:
                setattr(self.inbox, key, msg)
        return cb

    def _on_color(self, msg: Image) -> None:
        with self.inbox.lock:
            self.inbox.color = msg
            self.inbox.color_times.append(time.monotonic())

    def wait_for(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.inbox.lock:
                if pred(self.inbox):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"no {what} within {timeout:.0f} s")


def _progress(step: int, total: int, text: str) -> None:
    print(f"[demo {step}/{total}] {text}", flush=True)


def _frame_pair(inbox: Inbox) -> bool:
    return (inbox.color is not None and inbox.depth is not None and inbox.info is not None
            and inbox.color.header.stamp == inbox.depth.header.stamp)


def run_demo(out_dir: str, seed: int = 0, scene_file: str = "", timeout: float = 90.0,
             rate_window: float = 3.0, robot: str = "panda") -> int:
    """Run the demo; returns 0 when an object ends stacked. Writes the report into ``out_dir``
    (summary.md first). ``robot``: the arm's robot description (simulated, filtered out of the
    depth image and planned for)."""
    from spatialpin_ros.ros.recorder import McapRecorder
    out = Path(out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    total = 7
    overrides = [f"scene_file:={scene_file}"] if scene_file else [f"seed:={seed}"]
    overrides.append(f"robot:={robot}")
    _progress(1, total, f"starting sim, perception, spatial_qa and manipulation "
                        f"({scene_file or f'seed {seed}'}); node logs in {out / 'logs'}")
    bringup = Bringup("pick_and_stack", overrides, echo=False,
                      log_dir=str(out / "logs")).start()
    rclpy.init()
    node = DemoClient()
    recorder = McapRecorder(node, str(out / "run.mcap"), _record_topics(),
                            max_rate_hz={_topic("color_topic"): 1.0, "/spatialpin/scene_cloud": 0.5,
                                         _topic("camera_info_topic"): 1.0,
                                         _topic("joint_states_topic"): 20.0})
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    summary: dict = {"seed": None if scene_file else seed, "scene_file": scene_file or None,
                     "robot": robot}
    t_start = time.monotonic()
    try:
        node.wait_for(_frame_pair, timeout, "camera frame (colour + depth + camera_info)")
        node.wait_for(lambda i: i.truth is not None and i.joints is not None and i.priors,
                      timeout, "ground truth, joint states and scene priors")
        with node.inbox.lock:
            info = node.inbox.info
        cam = conv.camera_model_from_msg(info)
        _progress(2, total, f"camera {cam.width}x{cam.height}; measuring its rate for "
                            f"{rate_window:.0f} s")
        t0 = time.monotonic()
        time.sleep(rate_window)
        with node.inbox.lock:
            times = [t for t in node.inbox.color_times if t >= t0]
            before = conv.scene_from_msg(node.inbox.priors[-1][1])
            rgb_before = conv.rgb_from_msg(node.inbox.color)
            truth_before = conv.scene_from_msg(node.inbox.truth)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        print(f"    {rate:.1f} Hz; perceived {len(before.objects)} objects: "
              + ", ".join(f"{o.id} {o.label}" for o in before.objects), flush=True)

        _progress(3, total, "asking for task proposals (/spatialpin/propose_tasks)")
        prop = node.propose(5)
        tasks = list(prop.tasks)
        for t in tasks:
            print(f"    - {t.description} [{t.kind or t.action} {t.object_id} -> "
                  f"{t.target_id or 'table'}]",
                  flush=True)
        summary["proposals"] = [{"description": t.description, "action": t.action,
                                 "kind": t.kind or t.action,
                                 "object_id": t.object_id, "target_id": t.target_id}
                                for t in tasks]
        summary["proposal_message"] = prop.message
        # The first stack task that plans (plan only: nothing moves) is the one executed.
        stack, rejected = None, []
        for t in (t for t in tasks if t.action == "stack"):
            r = node.execute(t, execute=False, quiet=True)
            if r.success:
                stack = t
                break
            rejected.append({"description": t.description, "reason": r.message})
            print(f"    cannot plan '{t.description}': {r.message[:140]}", flush=True)
        summary["rejected_tasks"] = rejected
        result, chosen = None, None
        if stack is None:
            print(f"    no stack task to run ({prop.message or 'none plans'})", flush=True)
        else:
            chosen = stack
            _progress(4, total, f"executing: {stack.description} (/spatialpin/execute_task)")
            t_exec = time.monotonic()
            result = node.execute(stack)
            print(f"    {'OK' if result.success else 'FAILED'}: {result.message} (planned in "
                  f"{result.planning_time:.2f} s)", flush=True)
            print(f"    kind {result.kind}; grasp: {result.grasp or 'none'}; check: "
                  f"{result.check or 'none'}", flush=True)
        _progress(5, total, "waiting for a fresh scene and asking three spatial questions")
        t_ask = time.monotonic()
        node.wait_for(lambda i: any(t > t_ask for t, _ in i.priors), timeout, "scene priors")
        with node.inbox.lock:
            after = conv.scene_from_msg(node.inbox.priors[-1][1])
            rgb_after = conv.rgb_from_msg(node.inbox.color)
            truth_after = conv.scene_from_msg(node.inbox.truth)
        qa = []
        for q in _questions(after, chosen, before):
            r = node.ask(q)
            qa.append({"question": q, "success": r.success, "answer": r.answer,
                       "value": None if math.isnan(r.value) else r.value, "unit": r.unit,
                       "objects": list(r.object_ids), "message": r.message})
            print(f"    Q: {q}\n    A: {r.answer or 'refused: ' + r.message}", flush=True)

        _progress(6, total, "checking the result against the simulator (for the report only)")
        stacked_truth = None
        if chosen is not None:
            stacked_truth = _truth_stacked(truth_after, before, chosen)
            print(f"    simulator: {stacked_truth['verdict']}", flush=True)

        _progress(7, total, f"writing the report to {out}")
        cv2.imwrite(str(out / "color.png"), cv2.cvtColor(rgb_before, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "priors_before.png"), cv2.cvtColor(
            draw_priors(rgb_before, before, truth_before), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "priors_after.png"), cv2.cvtColor(
            draw_priors(rgb_after, after, truth_after), cv2.COLOR_RGB2BGR))
        depth_m = conv.depth_from_msg(node.inbox.depth)
        valid = depth_m > 0
        lo, hi = (np.percentile(depth_m[valid], [1, 99]) if valid.any() else (0.0, 1.0))
        vis = cv2.applyColorMap((255 * (1 - np.clip((depth_m - lo) / max(hi - lo, 1e-6), 0, 1))
                                 ).astype(np.uint8), cv2.COLORMAP_TURBO)
        vis[~valid] = 0
        cv2.imwrite(str(out / "depth.png"), vis)
        traj_info = None
        if result is not None and result.joint_trajectory.points:
            traj = conv.trajectory_from_msg(result.joint_trajectory)
            ee = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                           for p in result.ee_path.poses])
            plot_scene_3d(str(out / "scene_3d.png"), before, ee, truth_before,
                          title=f"{chosen.description}: perceived boxes (dashed: truth) and "
                                "planned gripper path")
            with node.inbox.lock:
                log = [(t - t_exec, n, q) for t, n, q in node.joint_log if t >= t_exec]
            measured = None
            if log:
                names = log[0][1]
                mt, mq = np.array([x[0] for x in log]), np.array([x[2] for x in log])
                measured = (mt - _onset(mt, mq[:, :7]) + _onset(traj.times,
                                                                 traj.positions[:, :7]),
                            names, mq)
            plot_trajectory(str(out / "trajectory.png"), traj, limits=_nominal_limits(robot),
                            measured=measured)
            traj_info = {"points": len(traj.times), "duration_s": round(traj.duration, 2),
                         "planning_time_s": round(result.planning_time, 3)}
        else:
            plot_scene_3d(str(out / "scene_3d.png"), before, None, truth_before,
                          title="perceived boxes (dashed: truth)")
        scene = truth_before
        matches = metrics.match(before.objects, scene.objects)
        summary.update({
            "scene": scene.scene_id,
            "camera": {"width": cam.width, "height": cam.height, "fx": cam.fx, "fy": cam.fy,
                       "cx": cam.cx, "cy": cam.cy, "measured_rate_hz": round(rate, 2)},
            "perceived": [
                {"id": o.id, "label": o.label, "shape": o.shape, "color": o.color_name,
                 "center_m": [round(float(v), 4) for v in o.pose.position],
                 "size_m": [round(float(v), 4) for v in o.size],
                 "yaw_deg": round(math.degrees(o.pose.yaw()), 1),
                 "axes": list(o.axis_names)} for o in before.objects],
            "perception_vs_truth": {
                "true_objects": len(scene.objects), "perceived_objects": len(before.objects),
                "matched": len(matches),
                "centroid_error_cm": [round(100 * metrics.centroid_error(
                    before.objects[i], scene.objects[j]), 2) for i, j, _ in matches]},
            "task": None if chosen is None else {
                "description": chosen.description, "object_id": chosen.object_id,
                "target_id": chosen.target_id, "success": bool(result and result.success),
                "kind": (result.kind if result and result.kind else chosen.kind or "stack"),
                "grasp": result.grasp if result else "",
                "check": result.check if result else "",
                "retried_after_slip": bool(result and result.retried),
                "message": result.message if result else "", "trajectory": traj_info,
                "simulator_check": stacked_truth},
            "questions": qa,
            "recording": {"file": "run.mcap", "messages": dict(recorder.counts)},
            "wall_time_s": round(time.monotonic() - t_start, 1),
        })
        recorder.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "summary.md").write_text(_markdown(summary))
        ok = bool(stacked_truth and stacked_truth["stacked"])
        print(f"demo {'finished: stacked' if ok else 'finished WITHOUT a stacked object'}; "
              f"report: {out / 'summary.md'}", flush=True)
        return 0 if ok else 1
    except (TimeoutError, RuntimeError) as e:
        print(f"demo failed: {e}; node exits: {bringup.failed() or 'none'}; see {out / 'logs'}",
              flush=True)
        return 1
    finally:
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        bringup.stop()


def _onset(t: np.ndarray, q: np.ndarray, tol: float = 0.01) -> float:
    """Time at which the joints first move ``tol`` rad from where they started."""
    moved = np.abs(q - q[0]).max(axis=1) > tol
    return float(t[int(np.argmax(moved))]) if moved.any() else float(t[0])


def _record_topics():
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path as PathMsg
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray
    sd = qos_profile_sensor_data
    return [(_topic("color_topic"), Image, sd), (_topic("camera_info_topic"), CameraInfo, sd),
            (_topic("joint_states_topic"), JointState, 100),
            (_topic("joint_trajectory_topic"), JointTrajectoryMsg, 10),
            (_topic("ground_truth_topic"), ScenePriors, LATCHED),
            (_topic("camera_pose_topic"), PoseStamped, LATCHED),
            ("/spatialpin/scene_priors", ScenePriors, LATCHED),
            ("/spatialpin/markers", MarkerArray, LATCHED),
            ("/spatialpin/scene_cloud", PointCloud2, 2),
            ("/spatialpin/planned_path", PathMsg, LATCHED),
            ("/spatialpin/plan_markers", MarkerArray, LATCHED),
            ("/spatialpin/perception/status", String, 10)]


def _nominal_limits(robot: str):
    from spatialpin_ros.planning import RobotModel
    with RobotModel(robot) as model:
        return model.joint_limits(nominal=True)


def _truth_stacked(truth, before, task) -> dict:
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


def _phrase(o) -> str:
    noun = {"box": "block", "cylinder": "cylinder", "sphere": "ball"}.get(o.shape)
    return f"the {o.color_name} {noun}" if noun and o.color_name else o.id


def _questions(scene, task=None, before=None) -> list[str]:
    """Three questions: about the task's objects (named by colour and shape, which survive a
    new id after the move), else about the first two objects."""
    objs = scene.objects
    if len(objs) < 2:
        return ["How tall is the tallest object?"] if objs else []
    by_id = {o.id: o for o in (before.objects if before is not None else objs)}
    if task is not None and task.object_id in by_id and task.target_id in by_id:
        a, b = by_id[task.object_id], by_id[task.target_id]
        return [f"Is {_phrase(a)} on top of {_phrase(b)}?",
                f"How far is {_phrase(a)} from the camera?",
                "How tall is the tallest object?"]
    a, b = objs[0], objs[1]
    return [f"How far is {_phrase(a)} from {_phrase(b)}?",
            f"Is {_phrase(a)} to the left of {_phrase(b)}?",
            "How tall is the tallest object?"]


def _markdown(s: dict) -> str:
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
