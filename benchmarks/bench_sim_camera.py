"""Simulator camera rate at 640x480: through the core API, and as published over ROS.

    scripts/run python benchmarks/bench_sim_camera.py [--frames 30] [--out FILE]

Core: frames/s of SimWorld.render() (with and without shadows, with the segmentation used for
ground truth). ROS: frames/s of /camera/color/image_raw received by another process from the
sim node started by `spatialpin bringup sim` with camera_rate_hz set above what it can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def core_rates(frames: int) -> dict:
    out = {}
    for shadows in (False, True):
        for seg in (False, True):
            times = []
            for seed in range(3):
                with SimWorld(random_scene(seed), render_shadows=shadows) as w:
                    w.render()
                    for _ in range(frames // 3):
                        t = time.perf_counter()
                        w.render(with_segmentation=seg)
                        times.append(time.perf_counter() - t)
            med = statistics.median(times)
            out[f"shadows={shadows},segmentation={seg}"] = {
                "median_ms": round(1000 * med, 1), "fps": round(1 / med, 2)}
    return out


def ros_rate(seconds: float) -> dict:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from spatialpin_ros.bringup import Bringup

    stamps: list[float] = []
    rclpy.init()
    node = Node("bench_camera")
    node.create_subscription(Image, "/camera/color/image_raw",
                             lambda m: stamps.append(time.monotonic()), qos_profile_sensor_data)
    result = {}
    with tempfile.TemporaryDirectory() as logs:
        for target in (3.0, 30.0):
            stamps.clear()
            with Bringup("sim", ["seed:=0", f"sim.camera_rate_hz:={target}",
                                 "sim.publish_ground_truth:=true"], echo=False, log_dir=logs):
                t_end = time.monotonic() + 30
                while len(stamps) < 2 and time.monotonic() < t_end:
                    rclpy.spin_once(node, timeout_sec=0.1)
                t0, n0 = time.monotonic(), len(stamps)
                while time.monotonic() - t0 < seconds:
                    rclpy.spin_once(node, timeout_sec=0.05)
                result[f"camera_rate_hz={target:g}"] = round(
                    (len(stamps) - n0) / (time.monotonic() - t0), 2)
    node.destroy_node()
    rclpy.try_shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="benchmarks/results/sim_camera.json")
    args = ap.parse_args()
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "core_render_640x480": core_rates(args.frames),
           "ros_published_fps": ros_rate(args.seconds)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("| render (core API, 640x480) | median ms | frames/s |\n| --- | --- | --- |")
    for k, v in res["core_render_640x480"].items():
        print(f"| {k} | {v['median_ms']} | {v['fps']} |")
    print("\n| sim node over ROS (another process receives) | frames/s |\n| --- | --- |")
    for k, v in res["ros_published_fps"].items():
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
