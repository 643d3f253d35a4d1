"""RGB-D frames from files, for trying perception off-line (``spatialpin perceive``). ROS-free.

Three sources, each an iterator of :class:`SourceFrame`:

* :func:`pair_frames` -- one colour image and one depth image;
* :func:`folder_frames` -- a folder of such pairs, in one of three layouts (see
  :func:`find_folder_pairs`);
* :func:`spatialpin_ros.perception.mcap_source.mcap_frames` -- the camera topics of an MCAP
  recording (its own module).

It is also the one home of the pure-numpy decoders of ``sensor_msgs/Image`` data
(:func:`rgb_from_image`, :func:`depth_from_image`): they take any object with the message's
fields (an rclpy message or an ``mcap_ros2`` decoded one); :mod:`spatialpin_ros.ros.conversions`
re-exports them for the nodes.

Unusable input (a missing file, no intrinsics, no pairs, a topic that is not in the recording)
raises :class:`FrameSourceError` before any frame is produced; a single frame that cannot be
read is yielded with ``frame=None`` and ``error`` set, and the iteration goes on.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from spatialpin_ros.core.errors import ImageError, SpatialPinError
from spatialpin_ros.core.types import CameraModel, Pose, RGBDFrame

#: realsense-ros 4.x topics (rs_launch.py with align_depth.enable:=true).
DEFAULT_COLOR_TOPIC = "/camera/camera/color/image_raw"
DEFAULT_INFO_TOPIC = "/camera/camera/color/camera_info"
DEFAULT_DEPTH_TOPIC = "/camera/camera/aligned_depth_to_color/image_raw"

COLOR_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
DEPTH_ENCODINGS = ("32FC1", "16UC1")

COLOR_NAMES = ("color", "rgb", "colour", "image")
DEPTH_NAMES = ("depth",)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEPTH_EXTS = (".png", ".tif", ".tiff", ".npy")
CAMERA_INFO_NAMES = ("camera_info.yaml", "camera_info.yml", "camera_info.json", "intrinsics.json",
                     "intrinsics.yaml")


class FrameSourceError(SpatialPinError, ValueError):
    """The input cannot be used at all (the message says why, in one line)."""


@dataclass
class Intrinsics:
    """Pinhole intrinsics without (or with) an image size: the size comes from the image when
    ``width``/``height`` are 0."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0
    frame_id: str = "camera_color_optical_frame"

    def camera(self, width: int, height: int) -> CameraModel:
        """The camera model of a ``width`` x ``height`` image; FrameSourceError when the
        intrinsics were calibrated for another size."""
        if self.width and self.height and (self.width, self.height) != (width, height):
            raise FrameSourceError(f"the intrinsics are for {self.width}x{self.height} images but "
                                   f"the image is {width}x{height}")
        return CameraModel(width, height, self.fx, self.fy, self.cx, self.cy, self.frame_id)


@dataclass
class SourceFrame:
    """One frame of a source. ``frame`` is None when it could not be read (``error`` says why).
    ``name`` is a file-name-safe stem for the outputs; ``source`` says where it came from."""

    name: str
    source: str
    frame: Optional[RGBDFrame] = None
    error: str = ""
    read_ms: float = 0.0
    extra: dict = field(default_factory=dict)


# -- sensor_msgs/Image data (pure numpy) ----------------------------------------------------------
def _rows(msg: Any, dtype, channels: int) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    row_bytes = msg.width * channels * itemsize
    data = msg.data
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        data = bytes(data)
    if msg.step < row_bytes or len(data) < msg.step * msg.height:
        raise ImageError(f"image data too short for {msg.width}x{msg.height} {msg.encoding} "
                         f"(step {msg.step}, {len(data)} bytes)")
    if len(data) > msg.step * msg.height:  # e.g. a 320x240 header over 640x480 data
        raise ImageError(f"image data longer than its header says: {len(data)} bytes, but "
                         f"{msg.width}x{msg.height} {msg.encoding} with step {msg.step} is "
                         f"{msg.step * msg.height} bytes")
    buf = np.frombuffer(data, dtype=np.uint8)
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row_bytes]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).astype(np.dtype(dtype).newbyteorder("="))
    return arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(
        msg.height, msg.width)


def rgb_from_image(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8 or mono8);
    ImageError naming the encoding otherwise."""
    enc = msg.encoding.lower()
    if enc not in COLOR_ENCODINGS:
        raise ImageError(f"unsupported colour encoding {msg.encoding!r}; expected one of "
                         f"{sorted(COLOR_ENCODINGS)}")
    a = _rows(msg, np.uint8, COLOR_ENCODINGS[enc])
    if enc == "mono8":
        return np.repeat(a[..., None], 3, axis=2)
    if enc.startswith("bgr"):
        a = a[..., [2, 1, 0]]
    return np.ascontiguousarray(a[..., :3])


def depth_from_image(msg: Any) -> np.ndarray:
    """(H, W) float32 metres from a depth ``sensor_msgs/Image`` (32FC1 metres or 16UC1
    millimetres); missing depth (0, NaN or inf) becomes 0."""
    if msg.encoding == "32FC1":
        d = _rows(msg, np.float32, 1)
    elif msg.encoding in ("16UC1", "mono16"):
        d = _rows(msg, np.uint16, 1).astype(np.float32) / 1000.0
    else:
        raise ImageError(f"unsupported depth encoding {msg.encoding!r}; expected 32FC1 (m) or "
                         "16UC1 (mm)")
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def rgb_from_compressed(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a ``sensor_msgs/CompressedImage`` (JPEG or PNG)."""
    import cv2
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r})")
    return np.ascontiguousarray(img[..., ::-1])


# -- intrinsics and poses -------------------------------------------------------------------------
def parse_intrinsics(text: str) -> Intrinsics:
    """``"fx,fy,cx,cy"`` (pixels) -> Intrinsics."""
    try:
        v = [float(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        v = []
    if len(v) != 4 or not all(math.isfinite(x) for x in v) or v[0] <= 0 or v[1] <= 0:
        raise FrameSourceError(f"--intrinsics needs fx,fy,cx,cy (4 numbers, fx and fy > 0), "
                               f"got {text!r}")
    return Intrinsics(*v)


def parse_pose(text: str) -> Pose:
    """``"x,y,z,qx,qy,qz,qw"`` -> Pose (the camera's optical frame in the world frame)."""
    try:
        return Pose.from_xyz_quat(text.replace(" ", "").split(","))
    except ValueError as e:
        raise FrameSourceError(f"--camera-pose: {e}") from None


def _k_matrix(value: Any) -> Optional[list[float]]:
    """The 9 row-major entries of K from a 3x3 list, a flat list of 9 or ``{data: [...]}``."""
    if isinstance(value, dict):
        value = value.get("data")
    if value is None:
        return None
    k = np.asarray(value, dtype=float).ravel()
    return k.tolist() if k.size == 9 else None


def intrinsics_from_dict(d: dict, where: str = "") -> Intrinsics:
    """Intrinsics from a parsed camera-info file: a ROS camera_calibration YAML
    (``camera_matrix: {rows, cols, data}``, ``image_width``, ``image_height``), a CameraInfo
    message dump (``k``, ``width``, ``height``, ``header.frame_id``), a JSON with ``K`` (3x3 or
    9 numbers), or plain ``fx, fy, cx, cy``."""
    if not isinstance(d, dict):
        raise FrameSourceError(f"{where}: expected a mapping with K / camera_matrix, got "
                               f"{type(d).__name__}")
    k = None
    for key in ("K", "k", "camera_matrix", "intrinsic_matrix", "intrinsics"):
        if key in d:
            k = _k_matrix(d[key])
            if k is not None:
                break
    if k is not None:
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    elif all(key in d for key in ("fx", "fy", "cx", "cy")):
        fx, fy, cx, cy = (float(d[key]) for key in ("fx", "fy", "cx", "cy"))
    else:
        raise FrameSourceError(f"{where}: no intrinsics (expected K, k or camera_matrix with 9 "
                               "numbers, or fx, fy, cx, cy)")
    if not (fx > 0 and fy > 0):
        raise FrameSourceError(f"{where}: focal lengths must be positive, got fx={fx}, fy={fy}")
    width = int(d.get("image_width", d.get("width", 0)) or 0)
    height = int(d.get("image_height", d.get("height", 0)) or 0)
    # header.frame_id of a CameraInfo dump; a plain frame_id only beside fx, fy, cx, cy (the
    # "camera" block of a priors JSON): elsewhere (meta.json) it names a dataset frame.
    header = d.get("header") if isinstance(d.get("header"), dict) else {}
    frame_id = header.get("frame_id") or d.get("camera_frame_id") or (
        d.get("frame_id") if k is None else None) or "camera_color_optical_frame"
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height, str(frame_id))


def load_camera_info(path: str | Path) -> Intrinsics:
    """Intrinsics from a camera-info YAML or JSON file (see :func:`intrinsics_from_dict`)."""
    import yaml
    p = Path(path)
    if not p.is_file():
        raise FrameSourceError(f"camera info file not found: {p}")
    try:
        text = p.read_text()
        d = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise FrameSourceError(f"cannot read camera info {p}: {str(e).splitlines()[0]}") from None
    return intrinsics_from_dict(d, str(p))


# -- image files ----------------------------------------------------------------------------------
def read_color(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file (8- or 16-bit, grey, RGB or RGBA)."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"cannot read colour image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ImageError(f"colour image {path} has dtype {img.dtype}; expected 8 or 16 bits")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1])


def read_depth(path: str | Path, depth_scale: float = 0.001) -> np.ndarray:
    """(H, W) float32 metres from a depth file: a 16-bit PNG/TIFF or a uint16 .npy (units times
    ``depth_scale`` metres), or a float .npy/TIFF already in metres. 0 where missing."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        try:
            d = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ImageError(f"cannot read depth {p}: {e}") from None
    else:
        import cv2
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if d is None:
            raise ImageError(f"cannot read depth image {p}")
    d = np.squeeze(d)
    if d.ndim != 2:
        raise ImageError(f"depth {p} must be one channel, got shape {d.shape}")
    if d.dtype in (np.uint16, np.int32, np.uint32, np.int16):
        d = d.astype(np.float32) * float(depth_scale)
    elif d.dtype in (np.float32, np.float64):
        d = d.astype(np.float32)
    else:
        raise ImageError(f"depth {p} has dtype {d.dtype}: expected 16-bit integers (use "
                         "--depth-scale) or float metres (an 8-bit image is not depth)")
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def load_frame(color: str | Path, depth: str | Path, intrinsics: Intrinsics,
               depth_scale: float = 0.001, camera_pose: Optional[Pose] = None,
               stamp: float = 0.0) -> RGBDFrame:
    """An RGBDFrame from a colour file and an aligned depth file."""
    rgb = read_color(color)
    d = read_depth(depth, depth_scale)
    if d.shape != rgb.shape[:2]:
        raise ImageError(f"depth {d.shape[1]}x{d.shape[0]} and colour {rgb.shape[1]}x"
                         f"{rgb.shape[0]} differ: is depth aligned to colour?")
    cam = intrinsics.camera(rgb.shape[1], rgb.shape[0])
    return RGBDFrame(rgb=rgb, depth=d, camera=cam, camera_pose=camera_pose, stamp=stamp)


def _read(name: str, source: str, fn) -> SourceFrame:
    t0 = time.perf_counter()
    try:
        frame = fn()
        return SourceFrame(name, source, frame, read_ms=1e3 * (time.perf_counter() - t0))
    except (SpatialPinError, OSError, ValueError) as e:  # FrameSourceError is a SpatialPinError
        return SourceFrame(name, source, None, error=str(e).splitlines()[0],
                           read_ms=1e3 * (time.perf_counter() - t0))


def pair_frames(color: str | Path, depth: str | Path, intrinsics: Optional[Intrinsics],
                depth_scale: float = 0.001,
                camera_pose: Optional[Pose] = None) -> Iterator[SourceFrame]:
    """The one frame of a colour file and a depth file."""
    for p in (color, depth):
        if not Path(p).is_file():
            raise FrameSourceError(f"file not found: {p}")
    if intrinsics is None:
        raise FrameSourceError("no intrinsics: pass --intrinsics fx,fy,cx,cy or --camera-info FILE")
    c = Path(color)  # shot_color.png -> shot; color.png -> its folder's name
    name = re.sub(r"[_\-. ]*(color|colour|rgb)[_\-. ]*", "", c.stem, flags=re.I) or \
        c.resolve().parent.name or c.stem
    yield _read(_safe(name), f"{color} + {depth}",
                lambda: load_frame(color, depth, intrinsics, depth_scale, camera_pose))


# -- folders --------------------------------------------------------------------------------------
@dataclass
class FolderPair:
    name: str
    color: Path
    depth: Path
    meta: Optional[Path] = None
    source: str = ""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "frame"


def _first(folder: Path, stems: Sequence[str], exts: Sequence[str]) -> Optional[Path]:
    for s in stems:
        for e in exts:
            p = folder / f"{s}{e}"
            if p.is_file():
                return p
    return None


def _token_key(stem: str, tokens: Sequence[str]) -> Optional[str]:
    """``stem`` with its (last) colour/depth token replaced by a marker, None if it has none:
    ``000001-color`` -> ``000001-*``."""
    m = None
    for m in re.finditer("|".join(tokens), stem, flags=re.I):
        pass
    if m is None:
        return None
    return stem[:m.start()] + "*" + stem[m.end():]


def find_folder_pairs(folder: str | Path) -> list[FolderPair]:
    """The colour/depth pairs of a folder, in one of three layouts (tried in this order):

    1. sub-folders (at any depth, or the folder itself) each holding ``color.png`` (or rgb.png,
       .jpg) and ``depth.png`` (or depth.npy), optionally ``meta.json`` with ``K``,
       ``depth_unit`` and ``camera_pose`` -- the layout of ``shared/real_rgbd``;
    2. ``rgb/`` (or ``color/``) and ``depth/`` sub-folders with files of equal stems;
    3. flat files paired by name: ``<x>color<y>.png`` with ``<x>depth<y>.png`` (also ``rgb``).
    """
    root = Path(folder)
    pairs: list[FolderPair] = []
    dirs = sorted({p.parent for name in ("color", "rgb") for ext in (".png", ".jpg")
                   for p in root.rglob(f"{name}{ext}")})
    for d in dirs:
        c = _first(d, ("color", "rgb"), (".png", ".jpg", ".jpeg"))
        dp = _first(d, ("depth",), DEPTH_EXTS)
        if c is not None and dp is not None:
            rel = d.relative_to(root).as_posix()
            name = root.resolve().name if rel == "." else rel
            meta = d / "meta.json"
            pairs.append(FolderPair(_safe(name.replace("/", "-")), c, dp,
                                    meta if meta.is_file() else None, str(d)))
    if pairs:
        return pairs
    for cname in ("rgb", "color", "colour", "image", "images"):
        cdir, ddir = root / cname, root / "depth"
        if cdir.is_dir() and ddir.is_dir():
            depths = {p.stem: p for p in sorted(ddir.iterdir()) if p.suffix.lower() in DEPTH_EXTS}
            for p in sorted(cdir.iterdir()):
                if p.suffix.lower() in IMAGE_EXTS and p.stem in depths:
                    pairs.append(FolderPair(_safe(p.stem), p, depths[p.stem]))
            if pairs:
                return pairs
    files = sorted(p for p in root.iterdir() if p.is_file())
    depths = {}
    for p in files:
        k = _token_key(p.stem, DEPTH_NAMES)
        if k is not None and p.suffix.lower() in DEPTH_EXTS:
            depths.setdefault(k.lower(), p)
    for p in files:
        k = _token_key(p.stem, COLOR_NAMES)
        if k is not None and p.suffix.lower() in IMAGE_EXTS and k.lower() in depths:
            name = k.replace("*", "").strip("-_. ") or p.stem
            meta = root / f"{k.replace('*', 'meta')}.json"
            pairs.append(FolderPair(_safe(name), p, depths[k.lower()],
                                    meta if meta.is_file() else None))
    return pairs


def _meta_depth_scale(meta: dict, default: float) -> float:
    unit = str(meta.get("depth_unit", "")).strip().lower()
    return {"mm": 0.001, "m": 1.0, "0.1mm": 1e-4, "100um": 1e-4, "cm": 0.01}.get(
        unit, float(meta.get("depth_scale", default)))


def folder_frames(folder: str | Path, intrinsics: Optional[Intrinsics] = None,
                  depth_scale: float = 0.001, camera_pose: Optional[Pose] = None,
                  every: int = 1, max_frames: int = 0) -> Iterator[SourceFrame]:
    """The frames of a folder (layouts: :func:`find_folder_pairs`). Per frame, ``meta.json``'s
    ``K`` and ``depth_unit`` win over ``intrinsics`` and ``depth_scale``; ``camera_pose``
    (given) wins over ``meta.json``'s ``camera_pose`` ([x, y, z, qx, qy, qz, qw]). Without a
    ``meta.json`` the folder's ``camera_info.yaml``/``.json`` or ``intrinsics.json`` is used."""
    root = Path(folder)
    if not root.is_dir():
        raise FrameSourceError(f"folder not found: {root}")
    pairs = find_folder_pairs(root)
    if not pairs:
        raise FrameSourceError(
            f"no colour/depth pairs found in {root}: expected sub-folders with color.png + "
            "depth.png (+ meta.json), rgb/ + depth/ sub-folders with equal file names, or files "
            "named *color*.png / *depth*.png")
    if intrinsics is None:
        for n in CAMERA_INFO_NAMES:
            if (root / n).is_file():
                intrinsics = load_camera_info(root / n)
                break
    if intrinsics is None and any(p.meta is None for p in pairs):
        raise FrameSourceError(f"no intrinsics for the frames in {root}: pass --intrinsics "
                               "fx,fy,cx,cy or --camera-info FILE (or put K in each meta.json)")
    pairs = pairs[::max(1, int(every))]
    if max_frames and max_frames > 0:
        pairs = pairs[:max_frames]

    def load(pair: FolderPair) -> RGBDFrame:
        intr, scale, pose = intrinsics, depth_scale, camera_pose
        if pair.meta is not None:
            try:
                meta = json.loads(pair.meta.read_text())
            except ValueError as e:
                raise FrameSourceError(f"{pair.meta}: not JSON ({e})") from None
            try:
                intr = intrinsics_from_dict(meta, str(pair.meta))
            except FrameSourceError:
                if intr is None:
                    raise
            scale = _meta_depth_scale(meta, scale)
            if pose is None and meta.get("camera_pose") is not None:
                try:
                    pose = Pose.from_xyz_quat(meta["camera_pose"])
                except (TypeError, ValueError) as e:
                    raise FrameSourceError(f"{pair.meta}: camera_pose: {e}") from None
        return load_frame(pair.color, pair.depth, intr, scale, pose)

    for pair in pairs:
        yield _read(pair.name, pair.source or f"{pair.color} + {pair.depth.name}",
                    lambda: load(pair))
