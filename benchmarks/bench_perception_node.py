"""The perception node's own overhead beside the core API's latency.

    scripts/run python benchmarks/bench_perception_node.py [--frames 60]

A publisher sends simulated 640x480 frames (colour rgb8, depth 32FC1, camera_info) to the
perception node; for each frame we record the core call (backend.perceive), the node's whole
processing (message decoding, perception, publishing ScenePriors, markers and cloud), and the
time from publishing the frame to receiving its ScenePriors in another node. Node and publisher
share one process and executor; the frames are pre-rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from spatialpin_interfaces.msg import ScenePriors
from std_msgs.msg import Header

from spatialpin_ros.graph import REALSENSE_TOPICS
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.perception_node import PerceptionNode
from spatialpin_ros.ros.sim_node import LATCHED
from spatialpin_ros.sim.depth_noise import apply_d435_noise
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", default="benchmarks/results/perception_node.json")
    args = ap.parse_args()
    frames = []
    for seed in range(args.frames):
        with SimWorld(random_scene(3000 + seed)) as w:
            f = w.render()
            f.depth = apply_d435_noise(f.depth, f.rgb, np.random.default_rng(seed))
            frames.append(f)
    rclpy.init()
    node = PerceptionNode(parameter_overrides=[Parameter("max_rate_hz", value=100.0),
                                               Parameter("camera_pose_topic", value="")])
    src = Node("bench_camera")
    # The node's default camera topics (realsense-ros 4.x names), as a real camera publishes.
    sd = qos_profile_sensor_data
    pubs = (src.create_publisher(Image, REALSENSE_TOPICS["color"], sd),
            src.create_publisher(Image, REALSENSE_TOPICS["depth"], sd),
            src.create_publisher(CameraInfo, REALSENSE_TOPICS["info"], sd))
    got = {}
    src.create_subscription(ScenePriors, "/spatialpin/scene_priors",
                            lambda m: got.__setitem__(conv.stamp_to_sec(m.header.stamp),
                                                      time.perf_counter()), LATCHED)
    src.create_subscription(PointCloud2, "/spatialpin/scene_cloud", lambda m: None, 2)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(src)
    end_to_end = []
    for i, f in enumerate(frames):
        node.p.camera_pose = f.camera_pose.as_xyz_quat()
        stamp = conv.sec_to_stamp(1000.0 + i)
        h = Header(frame_id="camera_color_optical_frame", stamp=stamp)
        t0 = time.perf_counter()
        pubs[0].publish(conv.image_to_msg(f.rgb, "rgb8", h))
        pubs[1].publish(conv.depth_to_msg(f.depth, "32FC1", h))
        pubs[2].publish(conv.camera_info_to_msg(f.camera, h))
        deadline = time.perf_counter() + 5
        while 1000.0 + i not in got and time.perf_counter() < deadline:
            ex.spin_once(timeout_sec=0.005)
        if 1000.0 + i in got and i >= 3:
            end_to_end.append(1000 * (got[1000.0 + i] - t0))
    core, whole = node.timing["core_ms"][3:], node.timing["node_ms"][3:]
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "frames": len(core),
           "errors": node.errors,
           "core_perceive_ms_median": statistics.median(core),
           "node_processing_ms_median": statistics.median(whole),
           "node_overhead_ms_median": statistics.median(np.subtract(whole, core)),
           "publish_to_scene_priors_ms_median": statistics.median(end_to_end)}
    ex.shutdown()
    node.destroy_node()
    src.destroy_node()
    rclpy.try_shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for k, v in res.items():
        print(f"{k}: {round(v, 2) if isinstance(v, float) else v}")


if __name__ == "__main__":
    main()
