"""Record topics to an MCAP file that rviz (rosbag2 with the mcap plugin) and Foxglove replay.

Messages are stored as the CDR bytes rclpy serialises, with the full ROS 2 message definitions
(read from the installed .msg files) as schemas. Colour images are stored as JPEG
``sensor_msgs/CompressedImage`` on ``<topic>/compressed`` to keep the file small; other topics can
be thinned to a maximum rate.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
from mcap.writer import Writer
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from spatialpin_ros.ros import conversions as conv

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
              "int32", "uint32", "int64", "uint64", "string", "wstring"}


def _msg_file(pkg: str, name: str) -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(pkg)) / "msg" / f"{name}.msg"


def message_definition(type_name: str) -> str:
    """The ROS 2 message definition of ``pkg/msg/Type`` with all its dependencies, in the
    format rosbag2 writes into MCAP schemas."""
    pkg, _, name = type_name.split("/")
    seen: list[str] = []
    texts: dict[str, str] = {}

    def visit(p: str, n: str) -> None:
        key = f"{p}/msg/{n}"
        if key in texts:
            return
        text = _msg_file(p, n).read_text()
        texts[key] = text
        seen.append(key)
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or "=" in line.split()[0]:
                continue
            ftype = re.sub(r"\[.*\]|<=\d+", "", line.split()[0])
            if ftype in PRIMITIVES:
                continue
            if ftype == "Header":
                visit("std_msgs", "Header")
            elif "/" in ftype:
                parts = ftype.split("/")
                visit(parts[0], parts[-1])
            else:
                visit(p, ftype)

    visit(pkg, name)
    main = seen[0]
    out = texts[main]
    for key in seen[1:]:
        out += "\n" + "=" * 80 + f"\nMSG: {key}\n" + texts[key]
    return out


def type_name(msg_type) -> str:
    mod = msg_type.__module__.split(".")
    return f"{mod[0]}/{mod[1]}/{msg_type.__name__}"


class McapRecorder:
    """Subscribes ``node`` to topics and writes what arrives to ``path``."""

    def __init__(self, node: Node, path: str, topics: list[tuple[str, type, QoSProfile]],
                 max_rate_hz: Optional[dict[str, float]] = None, jpeg_quality: int = 85):
        self.path = Path(path)
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="spatialpin_ros")
        self._lock = threading.Lock()
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._max_rate = dict(max_rate_hz or {})
        self._jpeg_quality = jpeg_quality
        self.counts: dict[str, int] = {}
        self._closed = False
        for topic, typ, qos in topics:
            node.create_subscription(typ, topic, lambda m, t=topic: self._on(t, m), qos)

    def _channel(self, topic: str, msg_type) -> int:
        if topic not in self._channels:
            tname = type_name(msg_type)
            if tname not in self._schemas:
                self._schemas[tname] = self._writer.register_schema(
                    name=tname, encoding="ros2msg", data=message_definition(tname).encode())
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[tname])
        return self._channels[topic]

    def _on(self, topic: str, msg) -> None:
        now = time.time()
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        rate = self._max_rate.get(topic)
        if rate:
            # Thin by the message's own time where it has one (bursts of late messages keep
            # their spacing), else by arrival.
            t = conv.stamp_to_sec(stamp) if stamp is not None and (
                stamp.sec or stamp.nanosec) else now
            if abs(t - self._last.get(topic, -1e18)) < 1.0 / rate:
                return
            self._last[topic] = t
        if isinstance(msg, Image) and msg.encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
            rgb = conv.rgb_from_msg(msg)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            msg = CompressedImage(header=msg.header, format="jpeg", data=buf.tobytes())
            topic = topic + "/compressed"
        log_ns = int(now * 1e9)
        pub_ns = stamp.sec * 1_000_000_000 + stamp.nanosec if stamp is not None and (
            stamp.sec or stamp.nanosec) else log_ns
        data = serialize_message(msg)
        with self._lock:
            if self._closed:
                return
            ch = self._channel(topic, type(msg))
            self._writer.add_message(channel_id=ch, log_time=log_ns, publish_time=pub_ns,
                                     data=data)
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.finish()
                self._file.close()
