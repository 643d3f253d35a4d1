"""Reliability under load: simultaneous questions, and a flood of camera frames.

    scripts/run python benchmarks/bench_reliability.py [--asks 100] [--frames 200 --seconds 2]

1. ``--asks`` simultaneous AskSpatial calls to the spatial QA node, each from its own client, all
   sent at once: how many are answered within 30 s, and the latency from sending to the answer
   (p50, p99, max). Clients keep 256 responses (SERVICE_QOS); a second row uses the ROS default
   client depth of 10, where clients in one process lose each other's responses (Fast DDS reads
   every response of a service in every client before filtering by caller).
2. ``--frames`` frames (640x480 colour, 32FC1 depth, camera_info, and a joint state so the robot
   self-filter runs) published in ``--seconds`` s to the perception node (geometric backend,
   default max_rate_hz 5): how many are processed, the latency from a frame's stamp to its
   ScenePriors, and the process's resident memory before and after.

The nodes run in this process, spun as their main() spins them (the QA node on ASK_THREADS
threads) in background threads; callers and the frame publisher spin in the main thread.
Prints markdown tables and writes benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from spatialpin_interfaces.msg import ScenePriors
from spatialpin_interfaces.srv import AskSpatial
from std_msgs.msg import Header

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at
from spatialpin_ros.graph import REALSENSE_TOPICS
from spatialpin_ros.paths import resolve_scene_file
from spatialpin_ros.ros.executors import MultiThreadedExecutor
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.perception_node import PerceptionNode
from spatialpin_ros.ros.sim_node import LATCHED, SERVICE_QOS
from spatialpin_ros.ros.spatial_qa_node import ASK_THREADS, SpatialQANode
from spatialpin_ros.sim.scene_spec import load_scene_file
from spatialpin_ros.sim.world import SimWorld


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def spin_background(node, threads=1):
    ex = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    return ex


def bench_asks(n: int, client_qos, label: str) -> dict:
    qa = SpatialQANode(parameter_overrides=[
        Parameter("scene_priors_topic", value="/bench_reliability/scene_priors")])
    ex_qa = spin_background(qa, ASK_THREADS)
    caller = Node("bench_askers")
    pub = caller.create_publisher(ScenePriors, "/bench_reliability/scene_priors", LATCHED)
    objs = [ObjectPrior("obj_0", "red box", Pose.from_yaw([0.5, -0.2, 0.025], 0.3),
                        [0.05, 0.04, 0.05], shape="box", color_name="red"),
            ObjectPrior("obj_1", "blue box", Pose.from_yaw([0.5, 0.1, 0.03], 0.0),
                        [0.08, 0.06, 0.06], shape="box", color_name="blue")]
    pub.publish(conv.scene_to_msg(Scene("scene_bench_1", objs, CameraModel.from_fov(640, 480, 58),
                                        look_at([1.2, 0.0, 0.5], [0.5, 0, 0]), [0, 0, 1, 0])))
    deadline = time.monotonic() + 10
    while "scene_bench_1" not in qa.records and time.monotonic() < deadline:
        time.sleep(0.05)
    kw = {"qos_profile": client_qos} if client_qos is not None else {}
    clients = [caller.create_client(AskSpatial, "/spatialpin/ask", **kw) for _ in range(n)]
    for c in clients:
        c.wait_for_service(timeout_sec=10)
    ex = SingleThreadedExecutor()
    ex.add_node(caller)
    req = AskSpatial.Request(question="How far is the red box from the blue box?",
                             scene_id="scene_bench_1")
    t0 = time.monotonic()
    futs = [c.call_async(req) for c in clients]
    done = [None] * n
    while time.monotonic() - t0 < 30 and any(d is None for d in done):
        ex.spin_once(timeout_sec=0.005)
        now = time.monotonic()
        for i, f in enumerate(futs):
            if done[i] is None and f.done():
                done[i] = now - t0
    lat = [1000 * d for d in done if d is not None]
    ok = sum(1 for f in futs if f.done() and f.result().success)
    ex.shutdown()
    ex_qa.shutdown()
    caller.destroy_node()
    qa.destroy_node()
    return {"clients": label, "asks": n, "answered": len(lat), "success": ok,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=0.0)}


def bench_flood(n_frames: int, seconds: float) -> dict:
    with SimWorld(load_scene_file(resolve_scene_file("tabletop"))) as w:
        frame = w.render()
        names, q, _, _ = w.joint_state()
    node = PerceptionNode(parameter_overrides=[
        Parameter("camera_pose", value=frame.camera_pose.as_xyz_quat()),
        Parameter("camera_pose_topic", value=""), Parameter("use_tf", value=False),
        Parameter("scene_priors_topic", value="/bench_reliability/priors")])
    ex_node = spin_background(node)
    src = Node("bench_flood")
    sd = qos_profile_sensor_data
    pub_c = src.create_publisher(Image, REALSENSE_TOPICS["color"], sd)
    pub_d = src.create_publisher(Image, REALSENSE_TOPICS["depth"], sd)
    pub_i = src.create_publisher(CameraInfo, REALSENSE_TOPICS["info"], sd)
    pub_j = src.create_publisher(JointState, "/joint_states", QoSProfile(depth=10))
    got = []
    src.create_subscription(ScenePriors, "/bench_reliability/priors",
                            lambda m: got.append((time.time(), m)), LATCHED)
    ex = SingleThreadedExecutor()
    ex.add_node(src)
    rgb = conv.image_to_msg(frame.rgb, "rgb8", Header())
    depth = conv.depth_to_msg(frame.depth, "32FC1", Header())
    info = conv.camera_info_to_msg(frame.camera, Header())

    def send():
        header = Header(frame_id="camera_color_optical_frame",
                        stamp=src.get_clock().now().to_msg())
        for msg, pub in ((rgb, pub_c), (depth, pub_d), (info, pub_i)):
            msg.header = header
            pub.publish(msg)
        pub_j.publish(JointState(header=header, name=names, position=q.tolist()))

    for _ in range(10):  # warm up: the first frames, then measure from a steady state
        send()
        t = time.monotonic()
        while time.monotonic() - t < 0.25:
            ex.spin_once(timeout_sec=0.01)
    while time.monotonic() - t < 1.0:
        ex.spin_once(timeout_sec=0.01)
    got.clear()
    rss0, in0, done0 = rss_mb(), node.frames_in, node.frames_done
    t0 = time.monotonic()
    for k in range(n_frames):
        send()
        while time.monotonic() < t0 + (k + 1) * seconds / n_frames:
            ex.spin_once(timeout_sec=0.002)
    t_end = time.monotonic()
    while time.monotonic() - t_end < 2.0:  # let the last processed frame come out
        ex.spin_once(timeout_sec=0.01)
    rss1 = rss_mb()
    lat = [1000 * (t - conv.stamp_to_sec(m.header.stamp)) for t, m in got]
    objects = sorted({len(m.objects) for _, m in got})
    ex.shutdown()
    ex_node.shutdown()
    src.destroy_node()
    node.destroy_node()
    return {"frames_sent": n_frames, "seconds": seconds, "paired_by_node": node.frames_in - in0,
            "processed": len(got), "dropped": n_frames - len(got),
            "latency_p50_ms": pct(lat, 50), "latency_p99_ms": pct(lat, 99),
            "latency_max_ms": max(lat, default=0.0), "objects_per_scene": objects,
            "self_filtered_frames": node.self_filtered, "rss_before_mb": rss0,
            "rss_after_mb": rss1, "max_rate_hz": node.p.max_rate_hz,
            "done_ok": node.frames_done - done0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--asks", type=int, default=100)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", default="benchmarks/results/reliability.json")
    args = ap.parse_args()
    rclpy.init()
    try:
        asks = [bench_asks(args.asks, SERVICE_QOS, "depth 256 (SERVICE_QOS)"),
                bench_asks(args.asks, None, "ROS default (depth 10)")]
        flood = bench_flood(args.frames, args.seconds)
    finally:
        rclpy.try_shutdown()
    print(f"\n### {args.asks} simultaneous asks (spatial QA node, {ASK_THREADS} threads, "
          "geometric backend)\n")
    print("| client QoS | answered within 30 s | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    for r in asks:
        print(f"| {r['clients']} | {r['answered']}/{r['asks']} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} |")
    f = flood
    print(f"\n### Flood: {f['frames_sent']} frames in {f['seconds']:g} s into the perception node "
          f"(geometric, max_rate_hz {f['max_rate_hz']:g}, self-filter on)\n")
    print("| frames sent | paired | processed | dropped (stale) | latency p50 (ms) | "
          "p99 (ms) | max (ms) | RSS before (MB) | RSS after (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {f['frames_sent']} | {f['paired_by_node']} | {f['processed']} | {f['dropped']} | "
          f"{f['latency_p50_ms']:.0f} | {f['latency_p99_ms']:.0f} | {f['latency_max_ms']:.0f} | "
          f"{f['rss_before_mb']:.0f} | {f['rss_after_mb']:.0f} |")
    out = {"asks": asks, "flood": flood, "machine": platform.processor() or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
