"""The headless demo: bring up the graph, watch it over ROS topics, and leave a report.

It starts the simulated world with perception and spatial question answering (graph
``sim_perception``), receives the camera's colour, depth and camera_info, measures the camera
rate, moves the arm with a JointTrajectory and checks that it arrives, waits for the perceived
scene priors, scores them against the simulator's truth (for the report only), asks three
spatial questions on /spatialpin/ask, and writes images (PNG) and a summary (Markdown and JSON)
to the output folder.
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
from spatialpin_interfaces.srv import AskSpatial
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from spatialpin_ros.bringup import Bringup
from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.perception import metrics
from spatialpin_ros.report import draw_priors
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
        self.create_subscription(JointState, _topic("joint_states_topic"), self._set("joints"), 10)
        self.create_subscription(ScenePriors, "/spatialpin/scene_priors", self._on_priors,
                                 LATCHED)
        self.pub_traj = self.create_publisher(JointTrajectoryMsg,
                                              _topic("joint_trajectory_topic"), 10)
        self.ask_client = self.create_client(AskSpatial, "/spatialpin/ask")

    def _on_priors(self, msg: ScenePriors) -> None:
        with self.inbox.lock:
            self.inbox.priors.append((time.monotonic(), msg))
            del self.inbox.priors[:-5]

    def ask(self, question: str, timeout: float = 20.0) -> AskSpatial.Response:
        fut = self.ask_client.call_async(AskSpatial.Request(question=question))
        deadline = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not fut.done():
            raise TimeoutError(f"/spatialpin/ask did not answer within {timeout:.0f} s")
        return fut.result()

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


def run_demo(out_dir: str, seed: int = 0, scene_file: str = "", timeout: float = 60.0,
             rate_window: float = 3.0) -> int:
    """Run the demo; returns 0 on success. Writes color.png, depth.png, depth_mm.png,
    summary.md and summary.json into ``out_dir``."""
    out = Path(out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    total = 5
    overrides = [f"scene_file:={scene_file}"] if scene_file else [f"seed:={seed}"]
    _progress(1, total, f"starting sim, perception and spatial QA "
                        f"({scene_file or f'seed {seed}'}), node logs in {out / 'logs'}")
    bringup = Bringup("sim_perception", overrides, echo=False,
                      log_dir=str(out / "logs")).start()
    rclpy.init()
    node = DemoClient()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    summary: dict = {"seed": None if scene_file else seed, "scene_file": scene_file or None}
    try:
        node.wait_for(_frame_pair, timeout, "camera frame (colour + depth + camera_info)")
        node.wait_for(lambda i: i.truth is not None and i.joints is not None, timeout,
                      "ground truth and joint states")
        with node.inbox.lock:
            color, depth, info = node.inbox.color, node.inbox.depth, node.inbox.info
            truth = node.inbox.truth
        rgb = conv.rgb_from_msg(color)
        depth_m = conv.depth_from_msg(depth)
        cam = conv.camera_model_from_msg(info)
        _progress(2, total, f"camera {cam.width}x{cam.height} ({color.encoding}, "
                            f"{depth.encoding}); measuring its rate for {rate_window:.0f} s")
        t0 = time.monotonic()
        time.sleep(rate_window)
        with node.inbox.lock:
            times = [t for t in node.inbox.color_times if t >= t0]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

        _progress(3, total, "moving the arm (joint 1 out by 0.4 rad and back) and checking it "
                            "arrives")
        with node.inbox.lock:
            js = node.inbox.joints
        names = [n for n in js.name if n.startswith("panda_joint")]
        q0 = np.array([js.position[js.name.index(n)] for n in names])
        q1 = q0.copy()
        q1[0] += 0.4
        traj = JointTrajectory(names, [0.0, 1.5, 3.0], np.stack([q0, q1, q0]),
                               np.zeros((3, len(names))))
        node.pub_traj.publish(conv.trajectory_to_msg(traj))
        time.sleep(traj.times[1] + 0.1)  # halfway: the arm should be out at q1
        with node.inbox.lock:
            js = node.inbox.joints
        q_mid = np.array([js.position[js.name.index(n)] for n in names])
        moved = float(q_mid[0] - q0[0])
        time.sleep(traj.duration - traj.times[1] + 1.4)
        with node.inbox.lock:
            js = node.inbox.joints
        q_end = np.array([js.position[js.name.index(n)] for n in names])
        arm_error = float(np.max(np.abs(q_end - q0)))

        _progress(4, total, "waiting for fresh scene priors and asking three spatial questions")
        t_ask = time.monotonic()
        node.wait_for(lambda i: any(t > t_ask for t, _ in i.priors), timeout, "scene priors")
        with node.inbox.lock:
            priors_msg = node.inbox.priors[-1][1]
            color = node.inbox.color
        rgb = conv.rgb_from_msg(color)
        perceived = conv.scene_from_msg(priors_msg)
        qa = []
        for q in _questions(perceived):
            r = node.ask(q)
            qa.append({"question": q, "success": r.success, "answer": r.answer,
                       "value": None if math.isnan(r.value) else r.value, "unit": r.unit,
                       "objects": list(r.object_ids), "message": r.message})
            print(f"    Q: {q}\n    A: {r.answer or r.message}", flush=True)

        _progress(5, total, f"writing the report to {out}")
        cv2.imwrite(str(out / "color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "priors.png"),
                    cv2.cvtColor(draw_priors(rgb, perceived, conv.scene_from_msg(truth)),
                                 cv2.COLOR_RGB2BGR))
        valid = depth_m > 0
        lo, hi = (np.percentile(depth_m[valid], [1, 99]) if valid.any() else (0.0, 1.0))
        norm = np.clip((depth_m - lo) / max(hi - lo, 1e-6), 0, 1)
        vis = cv2.applyColorMap((255 * (1 - norm)).astype(np.uint8), cv2.COLORMAP_TURBO)
        vis[~valid] = 0
        cv2.imwrite(str(out / "depth.png"), vis)
        cv2.imwrite(str(out / "depth_mm.png"), np.clip(depth_m * 1000, 0, 65535).astype(np.uint16))
        scene = conv.scene_from_msg(truth)
        matches = metrics.match(perceived.objects, scene.objects)
        summary.update({
            "perceived": [
                {"id": o.id, "label": o.label, "shape": o.shape, "color": o.color_name,
                 "center_m": [round(float(v), 4) for v in o.pose.position],
                 "size_m": [round(float(v), 4) for v in o.size],
                 "yaw_deg": round(math.degrees(o.pose.yaw()), 1),
                 "axes": list(o.axis_names)} for o in perceived.objects],
            "perception_vs_truth": {
                "true_objects": len(scene.objects), "perceived_objects": len(perceived.objects),
                "matched": len(matches),
                "centroid_error_cm": [round(100 * metrics.centroid_error(
                    perceived.objects[i], scene.objects[j]), 2) for i, j, _ in matches]},
            "questions": qa,
            "scene": scene.scene_id,
            "camera": {"width": cam.width, "height": cam.height, "fx": cam.fx, "fy": cam.fy,
                       "cx": cam.cx, "cy": cam.cy, "pose_xyz_quat": scene.camera_pose.as_xyz_quat(),
                       "measured_rate_hz": round(rate, 2)},
            "depth_range_m": [round(float(lo), 3), round(float(hi), 3)],
            "objects_ground_truth": [
                {"id": o.id, "shape": o.shape, "color": o.color_name,
                 "center_m": [round(float(v), 4) for v in o.pose.position],
                 "size_m": [round(float(v), 4) for v in o.size],
                 "yaw_deg": round(math.degrees(o.pose.yaw()), 1), "visible_pixels": o.num_points}
                for o in scene.objects],
            "arm_check": {"joints": names, "joint1_out_rad": round(moved, 4),
                          "final_error_rad": arm_error,
                          "ok": arm_error < 0.01 and moved > 0.3},
        })
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "summary.md").write_text(_markdown(summary))
        print((out / "summary.md").read_text(), flush=True)
        ok = summary["arm_check"]["ok"]
        print(f"demo {'finished' if ok else 'FAILED (arm check)'}: report in {out}", flush=True)
        return 0 if ok else 1
    except TimeoutError as e:
        print(f"demo failed: {e}; node exits: {bringup.failed() or 'none'}; see {out / 'logs'}",
              flush=True)
        return 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        bringup.stop()


def _phrase(o) -> str:
    noun = {"box": "block", "cylinder": "cylinder", "sphere": "ball"}.get(o.shape)
    return f"the {o.color_name} {noun}" if noun and o.color_name else o.id


def _questions(scene) -> list[str]:
    objs = scene.objects
    if len(objs) < 2:
        return ["How tall is the tallest object?"] if objs else []
    a, b = objs[0], objs[1]
    return [f"How far is {_phrase(a)} from {_phrase(b)}?",
            f"Is {_phrase(a)} to the left of {_phrase(b)}?",
            "How tall is the tallest object?"]


def _markdown(s: dict) -> str:
    cam = s["camera"]
    pv = s["perception_vs_truth"]
    lines = [
        f"# spatialpin_ros demo: {s['scene']}", "",
        "![perceived scene priors (white: true boxes)](priors.png)", "",
        "![colour](color.png) ![depth](depth.png)", "",
        "## Spatial questions (/spatialpin/ask, geometric backend)", "",
        *[f"- **{q['question']}** {q['answer'] or 'refused: ' + q['message']}"
          for q in s["questions"]], "",
        "## Perceived objects (/spatialpin/scene_priors)", "",
        f"{pv['perceived_objects']} perceived, {pv['true_objects']} in the scene, "
        f"{pv['matched']} matched (3D IoU >= 0.25); centroid errors (cm): "
        f"{pv['centroid_error_cm']}", "",
        "| id | label | centre (m) | size (m) | yaw (deg) | axes x, y, z |",
        "| --- | --- | --- | --- | --- | --- |",
        *[f"| {o['id']} | {o['label']} | {o['center_m']} | {o['size_m']} | {o['yaw_deg']} | "
          f"{', '.join(o['axes'])} |" for o in s["perceived"]], "",
        "## Robot and camera", "",
        f"- Camera: {cam['width']}x{cam['height']}, fx {cam['fx']:.1f}, fy {cam['fy']:.1f}, "
        f"cx {cam['cx']:.1f}, cy {cam['cy']:.1f}; measured rate {cam['measured_rate_hz']} Hz",
        f"- Depth range (1st-99th percentile): {s['depth_range_m'][0]}-{s['depth_range_m'][1]} m",
        f"- Arm check: joint 1 went out {s['arm_check']['joint1_out_rad']:.3f} rad (0.4 asked) "
        f"and came back; final error "
        f"{s['arm_check']['final_error_rad']:.4f} rad ({'ok' if s['arm_check']['ok'] else 'FAILED'})",
        "", "## Objects (simulator ground truth, for reference)", "",
        "| id | shape | colour | centre (m) | size (m) | yaw (deg) | visible px |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in s["objects_ground_truth"]:
        lines.append(f"| {o['id']} | {o['shape']} | {o['color']} | {o['center_m']} | "
                     f"{o['size_m']} | {o['yaw_deg']} | {o['visible_pixels']} |")
    return "\n".join(lines) + "\n"
