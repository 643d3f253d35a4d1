"""RGB-D frames from an MCAP recording's camera topics (``ros2 bag record -s mcap``), read with
the ``mcap`` / ``mcap_ros2`` packages (no ROS installation needed), for ``spatialpin perceive``.
ROS-free. :func:`mcap_frames` yields :class:`~spatialpin_ros.perception.frame_sources.SourceFrame`
as the other sources of ``perception.frame_sources`` do, in two passes over the file: the first
reads only the stamps (a few bytes of each message) and pairs colour with depth, the second
decodes the chosen messages.

Unusable input (a topic that is not in the recording, no pairs, no camera_info) raises
:class:`FrameSourceError` before any frame is produced; a frame that cannot be read is yielded
with ``frame=None`` and ``error`` set.
"""

from __future__ import annotations

import bisect
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from spatialpin_ros.core.errors import ImageError, SpatialPinError
from spatialpin_ros.core.types import Pose, RGBDFrame
from spatialpin_ros.perception.frame_sources import (DEFAULT_COLOR_TOPIC, DEFAULT_DEPTH_TOPIC,
                                                     DEFAULT_INFO_TOPIC, FrameSourceError,
                                                     Intrinsics, SourceFrame, _safe,
                                                     depth_from_image, rgb_from_compressed,
                                                     rgb_from_image)


def _cdr_stamp(data: bytes) -> Optional[float]:
    """header.stamp (seconds) of a CDR-serialised message that starts with a std_msgs/Header
    (Image, CompressedImage, CameraInfo), without decoding the rest; None if unreadable."""
    if len(data) < 12:
        return None
    endian = "<" if data[1] & 1 else ">"
    sec, nsec = struct.unpack(endian + "iI", data[4:12])
    return sec + nsec * 1e-9


@dataclass
class _Msg:
    stamp: float
    log_time: int


def _find_mcap(path: Path) -> Path:
    if path.is_dir():  # a rosbag2 folder: metadata.yaml + one .mcap
        files = sorted(path.glob("*.mcap"))
        if not files:
            raise FrameSourceError(f"no .mcap file in {path}")
        if len(files) > 1:
            raise FrameSourceError(f"{path} holds {len(files)} .mcap files; pass one of them")
        return files[0]
    if not path.is_file():
        raise FrameSourceError(f"file not found: {path}")
    return path


def mcap_topics(path: str | Path) -> dict[str, str]:
    """Topic -> message type of an MCAP file (from its summary, or by scanning it)."""
    from mcap.reader import make_reader
    p = _find_mcap(Path(path))
    with open(p, "rb") as f:
        try:
            summary = make_reader(f).get_summary()
        except Exception:  # noqa: BLE001 - a truncated file (recording killed) has no summary
            summary = None
        if summary is not None:
            return {c.topic: summary.schemas[c.schema_id].name if c.schema_id in summary.schemas
                    else "" for c in summary.channels.values()}
    out: dict[str, str] = {}
    try:
        with open(p, "rb") as f:
            for schema, channel, _ in make_reader(f).iter_messages():
                out.setdefault(channel.topic, schema.name if schema else "")
    except Exception as e:  # noqa: BLE001 - whatever mcap raises on a broken file
        if not out:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FrameSourceError(f"cannot read MCAP {p}: {why}") from None
    return out


@dataclass
class _Stamps:
    """Pass 1's findings: each colour and depth message's stamp (by topic, in log order) and the
    camera_info intrinsics by stamp."""

    by_topic: dict
    infos: list


class _Decoder:
    """CDR decoding of ROS 2 messages, one decoder per schema."""

    def __init__(self) -> None:
        from mcap_ros2.decoder import DecoderFactory
        self._factory = DecoderFactory()
        self._decoders: dict[int, Any] = {}

    def __call__(self, schema, channel, message):
        dec = self._decoders.get(schema.id)
        if dec is None:
            dec = self._decoders[schema.id] = self._factory.decoder_for(
                channel.message_encoding, schema)
            if dec is None:
                raise FrameSourceError(f"cannot decode {channel.topic}: message encoding "
                                       f"{channel.message_encoding!r} is not cdr")
        return dec(message.data)


def _check_topics(p: Path, color_topic: str, depth_topic: str, info_topic: str,
                  intrinsics: Optional[Intrinsics], log) -> str:
    """The colour topic to read (``<color_topic>/compressed`` when only that is there); raises
    FrameSourceError naming the topics that are missing and listing those there."""
    topics = mcap_topics(p)
    listing = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
    if color_topic not in topics and color_topic + "/compressed" in topics:
        if log:
            log(f"colour topic {color_topic} is not in the recording; using "
                f"{color_topic}/compressed")
        color_topic = color_topic + "/compressed"
    missing = [(what, t) for what, t in (("colour", color_topic), ("depth", depth_topic))
               if t not in topics]
    if intrinsics is None and info_topic not in topics:
        missing.append(("camera_info", info_topic))
    if missing:
        raise FrameSourceError(
            "; ".join(f"{what} topic {t} is not in {p.name}" for what, t in missing)
            + f". Topics there: {listing} (choose with --color-topic / --depth-topic / "
              "--info-topic, or give --intrinsics / --camera-info)")
    return color_topic


def _info_intrinsics(m, log_time: int) -> Optional[tuple[float, Intrinsics]]:
    """(stamp, intrinsics) of a decoded camera_info message, or None when it is unusable."""
    k = list(m.k)
    if not (m.width and m.height and k[0] > 0 and k[4] > 0):
        return None
    s = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
    return s or log_time * 1e-9, Intrinsics(k[0], k[4], k[2], k[5], m.width, m.height,
                                            m.header.frame_id or "camera_color_optical_frame")


def _read_stamps(p: Path, color_topic: str, depth_topic: str, info_topic: str,
                 intrinsics: Optional[Intrinsics], decode: _Decoder) -> _Stamps:
    """Pass 1: the stamps of the colour and depth messages, and the camera_info intrinsics
    (skipped when ``intrinsics`` is given); raises FrameSourceError when a stream is empty."""
    from mcap.reader import make_reader
    st = _Stamps({color_topic: [], depth_topic: []}, [])
    want = [color_topic, depth_topic] + ([info_topic] if intrinsics is None else [])
    with open(p, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(topics=want,
                                                                     log_time_order=True):
            if channel.topic == info_topic and intrinsics is None:
                try:
                    got = _info_intrinsics(decode(schema, channel, message), message.log_time)
                except Exception:  # noqa: BLE001 - a bad camera_info is skipped
                    got = None
                if got is not None:
                    st.infos.append(got)
                continue
            s = _cdr_stamp(message.data) if channel.message_encoding == "cdr" else None
            st.by_topic[channel.topic].append(_Msg(s or message.log_time * 1e-9,
                                                   message.log_time))
    for t in (color_topic, depth_topic):
        if not st.by_topic[t]:
            raise FrameSourceError(f"no messages on {t} in {p.name}")
    if intrinsics is None and not st.infos:
        raise FrameSourceError(f"no valid camera_info on {info_topic} in {p.name}: give "
                               "--intrinsics or --camera-info")
    return st


def _pair(colour: list, depth: list, max_dt: float, color_topic: str, depth_topic: str, log
          ) -> list[tuple[int, int, float]]:
    """(colour index, depth index, stamp difference) for each colour message with a depth
    message within ``max_dt`` s (the nearest in stamp); raises FrameSourceError when none."""
    dst = sorted((m.stamp, i) for i, m in enumerate(depth))
    dkeys = [s for s, _ in dst]
    pairs: list[tuple[int, int, float]] = []
    for ci, cm in enumerate(colour):
        j = bisect.bisect_left(dkeys, cm.stamp)
        best = min((k for k in (j - 1, j) if 0 <= k < len(dkeys)),
                   key=lambda k: abs(dkeys[k] - cm.stamp))
        dt = abs(dkeys[best] - cm.stamp)
        if dt <= max_dt:
            pairs.append((ci, dst[best][1], dt))
    if not pairs:
        raise FrameSourceError(f"no colour message of {color_topic} has a depth message of "
                               f"{depth_topic} within --max-dt {max_dt} s")
    if len(pairs) < len(colour) and log:
        log(f"{len(colour) - len(pairs)} of {len(colour)} colour messages have no depth within "
            f"{max_dt} s and are skipped")
    return pairs


def _intrinsics_at(infos: list, stamp: float) -> Intrinsics:
    """The camera_info intrinsics nearest ``stamp``."""
    keys = [s for s, _ in infos]
    k = min(max(bisect.bisect_left(keys, stamp), 0), len(infos) - 1)
    cands = [i for i in (k - 1, k) if 0 <= i < len(infos)]
    return infos[min(cands, key=lambda i: abs(keys[i] - stamp))][1]


def _frame(name: str, source: str, cmsg, dmsg, stamp: float, dt: float,
           intrinsics: Intrinsics, camera_pose: Optional[Pose]) -> SourceFrame:
    """One SourceFrame from a decoded colour and depth message (``frame=None`` and the reason
    when they cannot be read)."""
    t0 = time.perf_counter()
    try:
        rgb = (rgb_from_compressed(cmsg) if hasattr(cmsg, "format") and not hasattr(
            cmsg, "encoding") else rgb_from_image(cmsg))
        d = depth_from_image(dmsg)
        if d.shape != rgb.shape[:2]:
            raise ImageError(f"depth {d.shape[1]}x{d.shape[0]} and colour {rgb.shape[1]}x"
                             f"{rgb.shape[0]} differ: is the depth topic aligned to colour?")
        cam = intrinsics.camera(rgb.shape[1], rgb.shape[0])
        if getattr(cmsg, "header", None) is not None and cmsg.header.frame_id:
            cam.frame_id = cmsg.header.frame_id
        frame = RGBDFrame(rgb=rgb, depth=d, camera=cam, camera_pose=camera_pose, stamp=stamp)
        return SourceFrame(name, source, frame, read_ms=1e3 * (time.perf_counter() - t0),
                           extra={"depth_dt_s": round(dt, 6)})
    except SpatialPinError as e:
        return SourceFrame(name, source, None, error=str(e).splitlines()[0],
                           read_ms=1e3 * (time.perf_counter() - t0))


def mcap_frames(path: str | Path, color_topic: str = DEFAULT_COLOR_TOPIC,
                depth_topic: str = DEFAULT_DEPTH_TOPIC, info_topic: str = DEFAULT_INFO_TOPIC,
                intrinsics: Optional[Intrinsics] = None, camera_pose: Optional[Pose] = None,
                max_dt: float = 0.05, every: int = 1, max_frames: int = 0,
                log=None) -> Iterator[SourceFrame]:
    """Frames of an MCAP recording: each colour message (``sensor_msgs/Image``, or
    ``CompressedImage``; when ``color_topic`` is absent but ``<color_topic>/compressed`` is
    there, that) paired with the depth message of the nearest header stamp within ``max_dt``
    seconds, intrinsics from the camera_info message nearest in time (or ``intrinsics``, which
    wins). ``every`` keeps every N-th pair, ``max_frames`` stops after N (0: all).

    Two passes: the first reads only the stamps (a few bytes of each message), the second
    decodes the chosen messages.
    """
    from mcap.reader import make_reader

    p = _find_mcap(Path(path))
    color_topic = _check_topics(p, color_topic, depth_topic, info_topic, intrinsics, log)
    decode = _Decoder()
    st = _read_stamps(p, color_topic, depth_topic, info_topic, intrinsics, decode)
    colour = st.by_topic[color_topic]
    pairs = _pair(colour, st.by_topic[depth_topic], max_dt, color_topic, depth_topic, log)
    pairs = pairs[::max(1, int(every))]
    if max_frames and max_frames > 0:
        pairs = pairs[:max_frames]

    # pass 2: decode the chosen messages (kept until their partner arrives)
    need_c = {ci: n for n, (ci, _, _) in enumerate(pairs)}
    need_d: dict[int, list[int]] = {}
    for n, (_, di, _) in enumerate(pairs):
        need_d.setdefault(di, []).append(n)
    got_c: dict[int, Any] = {}
    got_d: dict[int, Any] = {}
    emitted = 0
    counters = {color_topic: -1, depth_topic: -1}
    stem = _safe(p.stem)

    def build(n: int) -> SourceFrame:
        ci, _, dt = pairs[n]
        stamp = colour[ci].stamp
        return _frame(f"{stem}_{n:05d}", f"{p.name}:{color_topic}@{stamp:.6f}", got_c.pop(n),
                      got_d[n], stamp, dt,
                      intrinsics if intrinsics is not None else _intrinsics_at(st.infos, stamp),
                      camera_pose)

    with open(p, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(
                topics=[color_topic, depth_topic], log_time_order=True):
            counters[channel.topic] += 1
            i = counters[channel.topic]
            ready = []
            if channel.topic == color_topic and i in need_c:
                n = need_c[i]
                got_c[n] = decode(schema, channel, message)
                if n in got_d:
                    ready.append(n)
            if channel.topic == depth_topic and i in need_d:
                m = decode(schema, channel, message)
                for n in need_d[i]:
                    got_d[n] = m
                    if n in got_c:
                        ready.append(n)
            for n in sorted(ready):
                yield build(n)
                got_d.pop(n, None)
                emitted += 1
            if emitted == len(pairs):
                break
