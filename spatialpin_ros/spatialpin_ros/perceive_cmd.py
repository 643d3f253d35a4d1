"""``spatialpin perceive``: run perception on your own frames, write overlays and priors as JSON.

    spatialpin perceive --color c.png --depth d.png --intrinsics fx,fy,cx,cy [--out DIR]
    spatialpin perceive FOLDER [--intrinsics ... | --camera-info FILE]
    spatialpin perceive RECORDING.mcap [--color-topic T --depth-topic T --info-topic T]

Writes ``DIR/<frame>.json`` (schema ``spatialpin.priors/1``, see docs/perceive.md),
``DIR/<frame>.png`` (the overlay) and ``DIR/summary.json``. Exit status: 0 when every frame was
read (also when perception found nothing or failed on a frame: that is reported per frame), 1
when some frames could not be read, 2 for unusable input (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PLANE_FRAME = "support_plane"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", default="",
                   help="a folder of colour/depth pairs, or an MCAP file (or rosbag2 folder)")
    p.add_argument("--color", default="", help="colour image (with --depth)")
    p.add_argument("--depth", default="", help="depth image aligned to colour: 16-bit PNG "
                   "(times --depth-scale) or float32 .npy in metres")
    intr = p.add_mutually_exclusive_group()
    intr.add_argument("--intrinsics", default="", metavar="FX,FY,CX,CY",
                      help="pinhole intrinsics of the colour image, pixels")
    intr.add_argument("--camera-info", default="", metavar="FILE",
                      help="camera_info YAML (camera_calibration's, or a CameraInfo dump) or "
                      "JSON with K (3x3)")
    p.add_argument("--depth-scale", type=float, default=0.001,
                   help="metres per unit of 16-bit depth (default 0.001: millimetres)")
    p.add_argument("--camera-pose", default="", metavar="X,Y,Z,QX,QY,QZ,QW",
                   help="the colour camera's optical frame in the world frame; without it "
                   "perception works in a gravity frame built from the table")
    p.add_argument("--out", default="", help="output folder (default runs/perceive-<input>)")
    p.add_argument("--backend", default="geometric", help="perception backend (default geometric)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="backend parameter (repeatable), value parsed as YAML: "
                   "-p min_height:=0.006 -p workspace_x:=null")
    p.add_argument("--color-topic", default="", help="MCAP colour topic (default "
                   "/camera/camera/color/image_raw)")
    p.add_argument("--depth-topic", default="", help="MCAP depth topic (default "
                   "/camera/camera/aligned_depth_to_color/image_raw)")
    p.add_argument("--info-topic", default="", help="MCAP camera_info topic (default "
                   "/camera/camera/color/camera_info)")
    p.add_argument("--max-dt", type=float, default=0.05,
                   help="MCAP: largest colour-depth stamp difference of a pair, s (default 0.05)")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    p.add_argument("--overlay-width", type=int, default=960,
                   help="overlay PNGs are downsized to at most this width (default 960)")


class UsageError(Exception):
    """Unusable input: one line for stderr, exit status 2."""


def parse_params(items: list[str]) -> dict:
    """``["name:=value", ...]`` -> {name: yaml value}."""
    import yaml
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name.strip():
            raise UsageError(f"-p {item!r}: expected name:=value")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UsageError(f"-p {item!r}: cannot parse the value ({str(e).splitlines()[0]})")
    return out


def _is_mcap(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() == ".mcap") or (
        path.is_dir() and (path / "metadata.yaml").is_file() and any(path.glob("*.mcap")))


def open_source(args, log):
    """(iterator of SourceFrame, description, per-frame tracking wanted)."""
    from spatialpin_ros.perception import frame_sources as fs
    intrinsics = (fs.parse_intrinsics(args.intrinsics) if args.intrinsics else
                  fs.load_camera_info(args.camera_info) if args.camera_info else None)
    pose = fs.parse_pose(args.camera_pose) if args.camera_pose else None
    if args.color or args.depth:
        if args.input:
            raise UsageError("give either INPUT (a folder or an MCAP file) or --color/--depth, "
                             "not both")
        if not (args.color and args.depth):
            raise UsageError("--color and --depth go together")
        return (fs.pair_frames(args.color, args.depth, intrinsics, args.depth_scale, pose),
                f"{args.color} + {args.depth}", False)
    if not args.input:
        raise UsageError("nothing to perceive: give a folder, an MCAP file, or --color and "
                         "--depth")
    path = Path(args.input)
    if not path.exists():
        raise UsageError(f"not found: {path}")
    if _is_mcap(path):
        from spatialpin_ros.perception.mcap_source import mcap_frames
        return (mcap_frames(path, args.color_topic or fs.DEFAULT_COLOR_TOPIC,
                            args.depth_topic or fs.DEFAULT_DEPTH_TOPIC,
                            args.info_topic or fs.DEFAULT_INFO_TOPIC, intrinsics, pose,
                            max_dt=args.max_dt, every=args.every,
                            max_frames=args.max_frames, log=log), str(path), True)
    if path.is_dir():
        return (fs.folder_frames(path, intrinsics, args.depth_scale, pose, every=args.every,
                                 max_frames=args.max_frames), str(path), False)
    raise UsageError(f"{path} is neither a folder nor an .mcap file (for one image pair use "
                     "--color and --depth)")


class Perceiver:
    """The backend for frames with a camera pose, and one without workspace bounds (which are
    given in the robot's world frame) for frames perceived in the support-plane frame."""

    def __init__(self, name: str, params: dict):
        from spatialpin_ros.perception.base import make_backend
        self.name, self.params = name, params
        self.backend = make_backend(name, **params)
        self._plane = None

    def plane_backend(self):
        if self._plane is None:
            from spatialpin_ros.perception.base import make_backend
            free = {k: None for k in ("workspace_x", "workspace_y") if k not in self.params}
            try:
                self._plane = make_backend(self.name, **free, **self.params)
            except (TypeError, ValueError):  # a backend without workspace bounds
                self._plane = self.backend
        return self._plane

    def reset(self) -> None:
        self.backend.reset()
        if self._plane is not None and self._plane is not self.backend:
            self._plane.reset()

    def perceive(self, frame, scene_id: str):
        """(scene, the backend that made it); raises SpatialPinError (PerceptionError,
        ImageError) when perception cannot run on the frame."""
        if frame.camera_pose is not None:
            return self.backend.perceive(frame, scene_id=scene_id), self.backend
        import dataclasses
        from spatialpin_ros.core.errors import PerceptionError
        from spatialpin_ros.reasoning.registration import plane_frame_pose
        backend = self.plane_backend()
        try:  # backends that accept camera_pose=None perceive in their own gravity frame
            return backend.perceive(frame, scene_id=scene_id), backend
        except PerceptionError as e:
            if "pose" not in str(e).lower():  # a real failure, not "needs a camera pose"
                raise
        # a backend that needs a pose: the table's gravity frame (as the perception node does)
        posed = dataclasses.replace(frame, camera_pose=plane_frame_pose(frame.depth, frame.camera),
                                    world_frame=PLANE_FRAME)
        return backend.perceive(posed, scene_id=scene_id), backend


def _stats(values: list[float]) -> dict:
    import numpy as np
    if not values:
        return {}
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 1), "median": round(float(np.median(v)), 1),
            "p90": round(float(np.percentile(v, 90)), 1), "max": round(float(v.max()), 1)}


def run(args) -> int:
    def log(msg: str) -> None:
        print(f"spatialpin perceive: {msg}", file=sys.stderr)

    from spatialpin_ros.core.errors import SpatialPinError
    try:
        params = parse_params(args.param)
        frames, description, track = open_source(args, log)
    except (UsageError, SpatialPinError) as e:
        log(str(e))
        return 2
    try:
        perceiver = Perceiver(args.backend, params)
    except (TypeError, ValueError, SpatialPinError) as e:
        log(f"backend {args.backend!r}: {str(e).splitlines()[0]}")
        return 2
    out = Path(args.out or f"runs/perceive-{Path(args.input or args.color).stem or 'frames'}")
    try:
        results = _perceive_all(frames, perceiver, out, description, track, args)
    except (UsageError, SpatialPinError) as e:
        log(str(e))
        return 2
    n_unread = sum(1 for r in results if r["status"] == "unreadable")
    n_err = sum(1 for r in results if r["status"] == "error")
    n_obj = sum(r["objects"] for r in results)
    lat = _stats([r["perceive_ms"] for r in results if r.get("perceive_ms") is not None])
    summary = {
        "schema": "spatialpin.perceive_summary/1", "source": description,
        "backend": args.backend, "params": params, "num_frames": len(results),
        "num_unreadable": n_unread, "num_perception_errors": n_err, "num_objects": n_obj,
        "latency_ms": {"perceive": lat,
                       "read": _stats([r["read_ms"] for r in results])},
        "frames": results,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{len(results)} frames, {n_obj} objects, {n_err} perception errors, {n_unread} "
          f"unreadable; perceive {lat.get('median', float('nan')):.0f} ms median; "
          f"wrote {out}/ (summary.json, <frame>.json, <frame>.png)")
    return 1 if n_unread else 0


def _overlay_status(error: BaseException):
    """The nearest PerceptionStatus of a perception error (for the overlay's caption only)."""
    from spatialpin_ros.core.errors import ImageError
    from spatialpin_ros.core.types import PerceptionStatus
    text = str(error).lower()
    if isinstance(error, ImageError):
        return PerceptionStatus.BAD_IMAGE
    if "plane" in text:
        return PerceptionStatus.NO_SUPPORT_PLANE
    if "depth" in text:
        return PerceptionStatus.NO_VALID_DEPTH
    return PerceptionStatus.BAD_IMAGE


def _perceive_all(frames, perceiver: Perceiver, out: Path, description: str, track: bool,
                  args) -> list[dict]:
    from spatialpin_ros.core.errors import SpatialPinError
    from spatialpin_ros.core.types import Pose, Scene
    from spatialpin_ros.perception.overlay import draw_overlay, save_png
    from spatialpin_ros.perception.priors_json import error_to_json, scene_to_json

    results: list[dict] = []
    seen: dict[str, int] = {}
    for sf in frames:
        if not results:
            out.mkdir(parents=True, exist_ok=True)
        name = sf.name
        if name in seen:  # two frames of one name (flat files in different layouts)
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 0)
        row = {"frame": name, "source": sf.source, "read_ms": round(sf.read_ms, 1), **sf.extra}
        if sf.frame is None:
            row.update(status="unreadable", objects=0, flat_items=0, error=sf.error)
            results.append(row)
            print(f"[{len(results)}] {name}: cannot read: {sf.error}")
            continue
        frame = sf.frame
        if not track:
            perceiver.reset()
        t0 = time.perf_counter()
        scene = backend = error = None
        try:
            scene, backend = perceiver.perceive(frame, name)
        except SpatialPinError as e:
            error = e
        ms = 1e3 * (time.perf_counter() - t0)
        timing = {"read": sf.read_ms, "perceive": ms}
        stages = (getattr(backend, "last", None) or {}).get("timing_ms") if backend else None
        if isinstance(stages, dict):
            timing.update({f"stage_{k}": v for k, v in stages.items()})
        if scene is not None:
            doc = scene_to_json(scene, source=sf.source, frame=name, timing_ms=timing,
                                extra=sf.extra or None)
            shown = scene
        else:
            doc = error_to_json(error, frame.camera, source=sf.source, frame=name,
                                stamp=frame.stamp, camera_pose=frame.camera_pose,
                                timing_ms=timing)
            shown = Scene(name, [], frame.camera, frame.camera_pose or Pose(),
                          status=_overlay_status(error), status_message=str(error))
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1))
        save_png(out / f"{name}.png", draw_overlay(frame.rgb, shown),
                 max_width=max(64, int(args.overlay_width)))
        row.update(status=doc["status"], objects=len(doc["objects"]),
                   flat_items=len(doc["flat_items"]), perceive_ms=round(ms, 1),
                   world_frame=doc["world_frame"], json=f"{name}.json", overlay=f"{name}.png")
        if error is not None:
            row["error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
        results.append(row)
        if scene is None:
            what = f"perception failed: {row['error']}"
        else:
            labels = ", ".join(o["label"] or o["id"] for o in doc["objects"][:6])
            more = "..." if len(doc["objects"]) > 6 else ""
            what = (f"{doc['status']}, {len(doc['objects'])} objects"
                    + (f", {len(doc['flat_items'])} flat item"
                       + ("s" if len(doc["flat_items"]) > 1 else "") if doc["flat_items"] else "")
                    + (f" [{labels}{more}]" if labels else "")
                    + (f" ({doc['status_message']})" if doc["status_message"] else ""))
        print(f"[{len(results)}] {name}: {what}, {ms:.0f} ms")
    if not results:
        raise UsageError(f"no frames in {description}")
    return results
