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
from spatialpin_ros.core.types import Scene
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.demo_report import (markdown, perception_fields, task_fields,
                                            truth_stacked, write_images, write_motion)
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


#: The demo's steps, for its progress lines.
STEPS = 7


def _progress(step: int, text: str) -> None:
    print(f"[demo {step}/{STEPS}] {text}", flush=True)


def _frame_pair(inbox: Inbox) -> bool:
    return (inbox.color is not None and inbox.depth is not None and inbox.info is not None
            and inbox.color.header.stamp == inbox.depth.header.stamp)


@dataclass
class _Seen:
    """What the demo saw before the task: the camera, its measured rate (Hz), and the perceived
    scene, the image and the simulator's truth (the truth for the report only)."""

    camera: object
    rate_hz: float
    before: Scene
    rgb: np.ndarray
    truth: Scene


@dataclass
class _Run:
    """The task the demo ran (None when no stack task planned) and its result."""

    chosen: object = None
    result: object = None
    t_exec: float = 0.0


def run_demo(out_dir: str, seed: int = 0, scene_file: str = "", timeout: float = 90.0,
             rate_window: float = 3.0, robot: str = "panda") -> int:
    """Run the demo; returns 0 when an object ends stacked. Writes the report into ``out_dir``
    (summary.md first). ``robot``: the arm's robot description (simulated, filtered out of the
    depth image and planned for)."""
    from spatialpin_ros.ros.recorder import McapRecorder
    out = Path(out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    overrides = [f"scene_file:={scene_file}"] if scene_file else [f"seed:={seed}"]
    overrides.append(f"robot:={robot}")
    _progress(1, f"starting sim, perception, spatial_qa and manipulation "
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
        seen = _observe(node, timeout, rate_window)
        run = _choose_and_run(node, summary)
        after, rgb_after, truth_after, qa = _ask_after(node, timeout, run.chosen, seen.before)
        _progress(6, "checking the result against the simulator (for the report only)")
        stacked_truth = None
        if run.chosen is not None:
            stacked_truth = truth_stacked(truth_after, seen.before, run.chosen)
            print(f"    simulator: {stacked_truth['verdict']}", flush=True)
        _progress(7, f"writing the report to {out}")
        write_images(out, (seen.rgb, seen.before, seen.truth), (rgb_after, after, truth_after),
                     node.inbox.depth)
        with node.inbox.lock:
            joint_log = list(node.joint_log)
        traj_info = write_motion(out, run.result, run.chosen, seen.before, seen.truth,
                                 joint_log, run.t_exec, robot)
        cam = seen.camera
        summary.update({
            "scene": seen.truth.scene_id,
            "camera": {"width": cam.width, "height": cam.height, "fx": cam.fx, "fy": cam.fy,
                       "cx": cam.cx, "cy": cam.cy, "measured_rate_hz": round(seen.rate_hz, 2)},
            **perception_fields(seen.before, seen.truth),
            "task": task_fields(run.chosen, run.result, traj_info, stacked_truth),
            "questions": qa,
            "recording": {"file": "run.mcap", "messages": dict(recorder.counts)},
            "wall_time_s": round(time.monotonic() - t_start, 1),
        })
        recorder.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "summary.md").write_text(markdown(summary))
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


def _observe(node: DemoClient, timeout: float, rate_window: float) -> _Seen:
    """Steps 1-2: wait for a frame pair, the truth, joint states and scene priors; measure the
    camera rate over ``rate_window`` s; what was perceived then."""
    node.wait_for(_frame_pair, timeout, "camera frame (colour + depth + camera_info)")
    node.wait_for(lambda i: i.truth is not None and i.joints is not None and i.priors,
                  timeout, "ground truth, joint states and scene priors")
    with node.inbox.lock:
        info = node.inbox.info
    cam = conv.camera_model_from_msg(info)
    _progress(2, f"camera {cam.width}x{cam.height}; measuring its rate for {rate_window:.0f} s")
    t0 = time.monotonic()
    time.sleep(rate_window)
    with node.inbox.lock:
        times = [t for t in node.inbox.color_times if t >= t0]
        seen = _Seen(cam, 0.0, conv.scene_from_msg(node.inbox.priors[-1][1]),
                     conv.rgb_from_msg(node.inbox.color), conv.scene_from_msg(node.inbox.truth))
    seen.rate_hz = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    print(f"    {seen.rate_hz:.1f} Hz; perceived {len(seen.before.objects)} objects: "
          + ", ".join(f"{o.id} {o.label}" for o in seen.before.objects), flush=True)
    return seen


def _choose_and_run(node: DemoClient, summary: dict) -> _Run:
    """Steps 3-4: ask for proposals, plan-check the stack tasks in order (nothing moves), and
    execute the first that plans. Adds the proposals and the rejected tasks to ``summary``."""
    _progress(3, "asking for task proposals (/spatialpin/propose_tasks)")
    prop = node.propose(5)
    tasks = list(prop.tasks)
    for t in tasks:
        print(f"    - {t.description} [{t.kind or t.action} {t.object_id} -> "
              f"{t.target_id or 'table'}]", flush=True)
    summary["proposals"] = [{"description": t.description, "action": t.action,
                             "kind": t.kind or t.action,
                             "object_id": t.object_id, "target_id": t.target_id}
                            for t in tasks]
    summary["proposal_message"] = prop.message
    stack, rejected = None, []
    for t in (t for t in tasks if t.action == "stack"):
        r = node.execute(t, execute=False, quiet=True)
        if r.success:
            stack = t
            break
        rejected.append({"description": t.description, "reason": r.message})
        print(f"    cannot plan '{t.description}': {r.message[:140]}", flush=True)
    summary["rejected_tasks"] = rejected
    if stack is None:
        print(f"    no stack task to run ({prop.message or 'none plans'})", flush=True)
        return _Run()
    _progress(4, f"executing: {stack.description} (/spatialpin/execute_task)")
    run = _Run(stack, None, time.monotonic())
    run.result = result = node.execute(stack)
    print(f"    {'OK' if result.success else 'FAILED'}: {result.message} (planned in "
          f"{result.planning_time:.2f} s)", flush=True)
    print(f"    kind {result.kind}; grasp: {result.grasp or 'none'}; check: "
          f"{result.check or 'none'}", flush=True)
    return run


def _ask_after(node: DemoClient, timeout: float, chosen, before: Scene):
    """Step 5: a scene perceived after the task, and three questions about it: (scene, image,
    truth, the answers)."""
    _progress(5, "waiting for a fresh scene and asking three spatial questions")
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
    return after, rgb_after, truth_after, qa


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
