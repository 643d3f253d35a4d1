"""Scene descriptions for the simulator: YAML scene files and random tabletops.

A scene file (all lengths in metres, positions in the world frame: z up, origin at the robot
base on the table top, x pointing away from the robot)::

    camera: {width: 640, height: 480, fov_deg: 58, eye: [1.25, 0.0, 0.65], target: [0.5, 0, 0]}
    objects:
      - {name: red_block, shape: box, size: [0.05, 0.05, 0.05], rgba: [1, 0, 0, 1],
         position: [0.5, 0.1, 0.025], yaw_deg: 30}
      - {name: blue_block, shape: box, size: [0.04, 0.04, 0.04], rgba: [0, 0, 1, 1],
         position: [0.5, 0.1], on_top_of: red_block}  # stacked: z follows from the support
      - {name: duck, urdf: duck_vhacd.urdf, scale: 1.0, position: [0.6, -0.1, 0.0], yaw_deg: 0}

``size`` is the full extent along the object's x, y, z axes: for a cylinder ``[d, d, h]``, for a
sphere ``[d, d, d]``. ``position`` is the box centre; with ``on_top_of:`` only x and y count
(a bare ``on:`` key, which YAML reads as ``true``, is accepted too). A URDF
object's ``position`` is its base origin, and a z of 0 drops it onto the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from spatialpin_ros.core.colors import PALETTE, nearest_color_name
from spatialpin_ros.core.errors import SceneSpecError

OBJECT_SHAPES = ("box", "cylinder", "sphere")


@dataclass
class CameraSpec:
    """A simulated pinhole camera looking from ``eye`` to ``target`` (world frame, metres), with
    vertical field of view ``fov_deg`` and depth range ``near``..``far`` metres."""

    width: int = 640
    height: int = 480
    fov_deg: float = 58.0
    eye: tuple[float, float, float] = (1.25, 0.0, 0.65)
    target: tuple[float, float, float] = (0.5, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    near: float = 0.05
    far: float = 4.0


@dataclass
class ObjectSpec:
    """One object: a primitive (``shape`` + ``size``) or a URDF (``urdf`` + ``scale``)."""

    name: str
    shape: Optional[str] = None
    size: Optional[tuple[float, float, float]] = None
    urdf: Optional[str] = None
    scale: float = 1.0
    rgba: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    position: tuple[float, ...] = (0.5, 0.0, 0.0)
    yaw_deg: float = 0.0
    on: Optional[str] = None
    mass: Optional[float] = None

    @property
    def color_name(self) -> str:
        return nearest_color_name(np.array(self.rgba[:3]), scale=1.0)


@dataclass
class SceneSpec:
    """A whole scene: the camera and the objects; ``name`` for reports, ``seed`` if generated."""

    camera: CameraSpec = field(default_factory=CameraSpec)
    objects: list[ObjectSpec] = field(default_factory=list)
    name: str = "scene"
    seed: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict in the scene-file schema (round-trips through ``parse_scene``)."""
        cam = self.camera
        out: dict[str, Any] = {
            "name": self.name,
            "camera": {"width": cam.width, "height": cam.height, "fov_deg": cam.fov_deg,
                       "eye": [round(float(v), 5) for v in cam.eye],
                       "target": [round(float(v), 5) for v in cam.target]},
            "objects": [],
        }
        if self.seed is not None:
            out["seed"] = self.seed
        for o in self.objects:
            d: dict[str, Any] = {"name": o.name}
            if o.urdf:
                d.update(urdf=o.urdf, scale=o.scale)
            else:
                d.update(shape=o.shape, size=[round(float(v), 5) for v in o.size])
            d.update(rgba=[round(float(v), 4) for v in o.rgba],
                     position=[round(float(v), 5) for v in o.position],
                     yaw_deg=round(float(o.yaw_deg), 3))
            if o.on:
                d["on_top_of"] = o.on
            if o.mass is not None:
                d["mass"] = o.mass
            out["objects"].append(d)
        return out


def _numbers(value: Any, where: str, n: Optional[int] = None, lengths: tuple[int, ...] = (),
             positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise SceneSpecError(f"{where}: expected a list of numbers, got {value!r}")
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SceneSpecError(f"{where}: expected numbers, got {value!r}") from None
    ok_len = (len(vals) == n) if n is not None else (len(vals) in lengths)
    if not ok_len:
        want = n if n is not None else " or ".join(map(str, lengths))
        raise SceneSpecError(f"{where}: expected {want} numbers, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise SceneSpecError(f"{where}: values must be finite, got {list(vals)}")
    if positive and any(v <= 0 for v in vals):
        raise SceneSpecError(f"{where}: values must be positive, got {list(vals)}")
    return vals


def _number(value: Any, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SceneSpecError(f"{where}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise SceneSpecError(f"{where}: must be positive, got {value}")
    return float(value)


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SceneSpecError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def parse_scene(data: Any, name: str = "scene") -> SceneSpec:
    """Validate a scene dict (the YAML schema above) and return a SceneSpec.

    Raises SceneSpecError naming the first bad field.
    """
    if not isinstance(data, dict):
        raise SceneSpecError(f"scene: expected a mapping with 'camera' and 'objects', got "
                             f"{type(data).__name__}")
    _check_keys(data, {"camera", "objects", "name", "seed"}, "scene")
    cam_d = data.get("camera", {}) or {}
    if not isinstance(cam_d, dict):
        raise SceneSpecError(f"camera: expected a mapping, got {cam_d!r}")
    _check_keys(cam_d, {"width", "height", "fov_deg", "eye", "target", "up", "near", "far"},
                "camera")
    cam = CameraSpec()
    for key in ("width", "height"):
        if key in cam_d:
            v = cam_d[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 16 <= v <= 4096:
                raise SceneSpecError(f"camera.{key}: expected an integer 16..4096, got {v!r}")
            setattr(cam, key, v)
    if "fov_deg" in cam_d:
        cam.fov_deg = _number(cam_d["fov_deg"], "camera.fov_deg", positive=True)
        if not cam.fov_deg < 170:
            raise SceneSpecError(f"camera.fov_deg: must be below 170, got {cam.fov_deg}")
    for key in ("eye", "target", "up"):
        if key in cam_d:
            setattr(cam, key, _numbers(cam_d[key], f"camera.{key}", 3))
    for key in ("near", "far"):
        if key in cam_d:
            setattr(cam, key, _number(cam_d[key], f"camera.{key}", positive=True))
    if cam.far <= cam.near:
        raise SceneSpecError(f"camera: far ({cam.far}) must exceed near ({cam.near})")
    if np.linalg.norm(np.subtract(cam.target, cam.eye)) < 1e-6:
        raise SceneSpecError("camera: eye and target coincide")

    objs_d = data.get("objects", [])
    if not isinstance(objs_d, list):
        raise SceneSpecError(f"objects: expected a list, got {type(objs_d).__name__}")
    objects: list[ObjectSpec] = []
    names: set[str] = set()
    allowed = {"name", "shape", "size", "urdf", "scale", "rgba", "position", "yaw_deg",
               "on_top_of", "mass", "color"}
    for i, od in enumerate(objs_d):
        where = f"objects[{i}]"
        if not isinstance(od, dict):
            raise SceneSpecError(f"{where}: expected a mapping, got {od!r}")
        if True in od:  # YAML 1.1 reads a bare `on:` key as the boolean true
            od = {("on_top_of" if k is True else k): v for k, v in od.items()}
        _check_keys(od, allowed, where)
        oname = od.get("name")
        if not isinstance(oname, str) or not oname.strip():
            raise SceneSpecError(f"{where}.name: expected a non-empty string, got {oname!r}")
        if oname in names:
            raise SceneSpecError(f"{where}.name: duplicate name {oname!r}")
        names.add(oname)
        where = f"objects[{i}] ({oname})"
        o = ObjectSpec(name=oname)
        has_shape, has_urdf = "shape" in od, "urdf" in od
        if has_shape == has_urdf:
            raise SceneSpecError(f"{where}: give exactly one of 'shape' or 'urdf'")
        if has_shape:
            if od["shape"] not in OBJECT_SHAPES:
                raise SceneSpecError(
                    f"{where}.shape: expected one of {list(OBJECT_SHAPES)}, got {od['shape']!r}")
            o.shape = od["shape"]
            if "size" not in od:
                raise SceneSpecError(f"{where}.size: required for a {o.shape}")
            size = od["size"]
            if isinstance(size, (int, float)) and not isinstance(size, bool):
                size = [size] * 3
            o.size = _numbers(size, f"{where}.size", 3, positive=True)
            if o.shape == "cylinder" and abs(o.size[0] - o.size[1]) > 1e-9:
                raise SceneSpecError(f"{where}.size: a cylinder is [d, d, h], got {list(o.size)}")
            if o.shape == "sphere" and max(o.size) - min(o.size) > 1e-9:
                raise SceneSpecError(f"{where}.size: a sphere is [d, d, d], got {list(o.size)}")
        else:
            if not isinstance(od["urdf"], str) or not od["urdf"].strip():
                raise SceneSpecError(f"{where}.urdf: expected a file name, got {od['urdf']!r}")
            o.urdf = od["urdf"]
            if "size" in od:
                raise SceneSpecError(f"{where}.size: not used with 'urdf' (use 'scale')")
        if "scale" in od:
            o.scale = _number(od["scale"], f"{where}.scale", positive=True)
        if "color" in od:
            if od["color"] not in PALETTE:
                raise SceneSpecError(
                    f"{where}.color: expected one of {sorted(PALETTE)}, got {od['color']!r}")
            o.rgba = (*PALETTE[od["color"]], 1.0)
        if "rgba" in od:
            rgba = _numbers(od["rgba"], f"{where}.rgba", lengths=(3, 4))
            if any(v < 0 or v > 1 for v in rgba):
                raise SceneSpecError(f"{where}.rgba: values must be in 0..1, got {list(rgba)}")
            o.rgba = rgba if len(rgba) == 4 else (*rgba, 1.0)
        if "on_top_of" in od:
            if od["on_top_of"] not in names or od["on_top_of"] == oname:
                raise SceneSpecError(f"{where}.on_top_of: {od['on_top_of']!r} must name an "
                                     "object listed before this one")
            o.on = od["on_top_of"]
        if "position" not in od:
            raise SceneSpecError(f"{where}.position: required")
        o.position = _numbers(od["position"], f"{where}.position",
                              lengths=(2, 3) if o.on else (3,))
        if "yaw_deg" in od:
            o.yaw_deg = _number(od["yaw_deg"], f"{where}.yaw_deg")
        if "mass" in od:
            o.mass = _number(od["mass"], f"{where}.mass", positive=True)
        objects.append(o)
    seed = data.get("seed")
    return SceneSpec(camera=cam, objects=objects, name=str(data.get("name", name)),
                     seed=seed if isinstance(seed, int) else None)


def load_scene_file(path: str | Path) -> SceneSpec:
    """Read and validate a YAML scene file; SceneSpecError on any problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SceneSpecError(f"cannot read scene file {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SceneSpecError(f"scene file {p} is not valid YAML: {e}") from None
    try:
        return parse_scene(data, name=p.stem)
    except SceneSpecError as e:
        raise SceneSpecError(f"{p}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Random tabletops

#: Workspace of the random generator on the table (world frame, metres): reachable by the Panda.
WORKSPACE_X = (0.38, 0.68)
WORKSPACE_Y = (-0.25, 0.25)


def footprint(shape: str, size, x: float, y: float, yaw_deg: float) -> np.ndarray:
    """The object's convex footprint on the table, (K, 2) polygon vertices in the world frame."""
    if shape == "box":
        hx, hy = size[0] / 2, size[1] / 2
        local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    else:
        a = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        local = np.stack([np.cos(a), np.sin(a)], 1) * size[0] / 2 / math.cos(math.pi / 16)
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def polygons_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test of two convex polygons, grown by ``margin`` metres."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            nrm = np.array([ey, -ex]) / math.hypot(ex, ey)
            pa, pb = a @ nrm, b @ nrm
            if pa.max() + margin < pb.min() or pb.max() + margin < pa.min():
                return False
    return True


def _inside_workspace(poly: np.ndarray) -> bool:
    return bool(np.all(poly[:, 0] >= WORKSPACE_X[0] - 0.04) and np.all(poly[:, 0] <= WORKSPACE_X[1] + 0.04)
                and np.all(np.abs(poly[:, 1]) <= WORKSPACE_Y[1] + 0.04))


def _place(rng: np.random.Generator, shape: str, size, yaw_deg: float,
           placed: list[np.ndarray], touching: bool) -> Optional[tuple[float, float]]:
    """A free (x, y) on the table: at random, or (``touching``) slid against an earlier object
    until 1 mm from contact. None when no place is found."""
    for _attempt in range(100):
        if touching:
            nb = placed[int(rng.integers(len(placed)))]
            cx, cy = nb.mean(axis=0)
            ang = rng.uniform(0, 2 * math.pi)
            d = np.array([math.cos(ang), math.sin(ang)])
            lo, hi = 0.0, 0.25
            if polygons_overlap(footprint(shape, size, *(np.array([cx, cy]) + hi * d), yaw_deg), nb):
                continue
            for _ in range(30):  # slide in until just before contact
                mid = (lo + hi) / 2
                poly = footprint(shape, size, *(np.array([cx, cy]) + mid * d), yaw_deg)
                if polygons_overlap(poly, nb, margin=0.001):
                    lo = mid
                else:
                    hi = mid
            x, y = np.array([cx, cy]) + (hi + 0.0005) * d
        else:
            x, y = rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y)
        poly = footprint(shape, size, x, y, yaw_deg)
        if not _inside_workspace(poly):
            continue
        if any(polygons_overlap(poly, q, margin=0.0005 if touching else 0.015) for q in placed):
            continue
        return float(x), float(y)
    return None


def random_scene(seed: int, n_objects: Optional[int] = None, width: int = 640,
                 height: int = 480, vary_camera: bool = True) -> SceneSpec:
    """A random tabletop: 2 to 8 primitives of varied shapes, sizes and colours, some stacked on
    others and some touching, seen by a camera whose pose varies with the seed.

    The same seed always gives the same scene.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9)) if n_objects is None else int(n_objects)
    if not 1 <= n <= len(PALETTE):
        raise SceneSpecError(f"n_objects must be 1..{len(PALETTE)}, got {n}")
    colors = list(rng.permutation(list(PALETTE)))[:n]
    objects: list[ObjectSpec] = []
    placed: list[np.ndarray] = []  # footprints of the objects standing on the table
    counts: dict[str, int] = {}
    for k in range(n):
        shape = str(rng.choice(OBJECT_SHAPES, p=[0.5, 0.32, 0.18]))
        if shape == "box":
            size = (rng.uniform(0.035, 0.07), rng.uniform(0.035, 0.07),
                    rng.uniform(0.03, 0.08) if rng.random() < 0.8 else rng.uniform(0.08, 0.12))
        elif shape == "cylinder":
            d = rng.uniform(0.04, 0.07)
            size = (d, d, rng.uniform(0.04, 0.12))
        else:
            d = rng.uniform(0.04, 0.065)
            size = (d, d, d)
        color = colors[k]
        counts[shape] = counts.get(shape, 0) + 1
        noun = {"box": "block", "cylinder": "cylinder", "sphere": "ball"}[shape]
        o = ObjectSpec(name=f"{color}_{noun}", shape=shape, size=tuple(float(s) for s in size),
                       rgba=(*PALETTE[color], 1.0), yaw_deg=float(rng.uniform(-180, 180)))
        # Stack on an earlier object with a flat top wide enough.
        bases = [b for b in objects if b.shape == "box" and b.on is None
                 and min(b.size[:2]) >= 0.9 * max(size[:2]) and shape != "sphere"]
        mode = rng.random()
        if bases and mode < 0.3:
            base = bases[int(rng.integers(len(bases)))]
            jitter = rng.uniform(-0.25, 0.25, 2) * (np.array(base.size[:2]) - max(size[:2])) / 2
            o.position = (base.position[0] + float(jitter[0]), base.position[1] + float(jitter[1]))
            o.on = base.name
            objects.append(o)
            continue
        touching = bool(placed) and mode < 0.6
        pos = _place(rng, shape, size, o.yaw_deg, placed, touching)
        if pos is None:
            continue
        o.position = (pos[0], pos[1], size[2] / 2)
        placed.append(footprint(shape, size, pos[0], pos[1], o.yaw_deg))
        objects.append(o)
    cam = CameraSpec(width=width, height=height)
    if vary_camera:
        dist = rng.uniform(0.6, 0.85)
        elev = math.radians(rng.uniform(35, 60))
        azim = math.radians(rng.uniform(-35, 35))
        target = np.array([0.53, 0.0, 0.02]) + rng.uniform(-0.03, 0.03, 3) * [1, 1, 0]
        eye = target + dist * np.array([math.cos(elev) * math.cos(azim),
                                        math.cos(elev) * math.sin(azim), math.sin(elev)])
        cam.eye = tuple(float(v) for v in eye)
        cam.target = tuple(float(v) for v in target)
        cam.fov_deg = float(rng.uniform(50, 62))
    return SceneSpec(camera=cam, objects=objects, name=f"random_{seed}", seed=seed)
