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
sphere ``[d, d, d]``.

Real-looking objects are ``shape: mesh`` with ``mesh:`` one of the procedural kinds of
``sim.meshes`` (``bowl``, ``cup``, ``mug``, ``plate``, ``bottle``, ``can``, ``printed_box``;
textured, generated on demand; ``size`` optional, the kind's default otherwise; ``wall`` the
wall thickness of bowls, cups, mugs and plates; ``text`` the brand printed on a box, bottle or
can) or ``pybullet:<path>`` for a URDF of pybullet_data (with ``scale``; its own textures are
kept unless ``color``/``rgba`` is given), e.g.::

      - {name: bowl, shape: mesh, mesh: bowl, size: [0.15, 0.15, 0.065], color: blue,
         position: [0.5, 0.1, 0]}
      - {name: tray, shape: mesh, mesh: "pybullet:tray/traybox.urdf", scale: 0.35,
         position: [0.55, -0.1, 0]}

A mesh object's ``position`` is the centre of its true box (a z below half its height puts it
on the table); ``mass`` and ``friction`` (lateral) override the kind's defaults. ``position`` is the box centre; with ``on_top_of:`` only x and y count
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
#: Every value of an object's ``shape`` in a scene file (``mesh``: see the module doc).
SPEC_SHAPES = OBJECT_SHAPES + ("mesh",)
#: Procedural mesh kinds (``sim.meshes.MESH_KINDS``).
MESH_KINDS = ("bowl", "cup", "mug", "plate", "bottle", "can", "printed_box")
_ROUND_MESHES = ("bowl", "cup", "mug", "plate", "bottle", "can")
_WALL_MESHES = ("bowl", "cup", "mug", "plate")
_TEXT_MESHES = ("printed_box", "bottle", "can")
#: pybullet_data objects the generator uses, with what the ground truth says of them:
#: extents at scale 1 (x, y, z metres), the noun, whether hollow, the truth shape.
PYBULLET_OBJECTS = {
    "objects/mug.urdf": {"extents": (0.088, 0.128, 0.106), "noun": "mug", "container": True,
                         "shape": "other"},
    "tray/traybox.urdf": {"extents": (0.602, 0.602, 0.139), "noun": "tray", "container": True,
                          "shape": "other"},
    "lego/lego.urdf": {"extents": (0.034, 0.034, 0.025), "noun": "lego brick",
                       "container": False, "shape": "other"},
    "jenga/jenga.urdf": {"extents": (0.15, 0.05, 0.03), "noun": "jenga block",
                         "container": False, "shape": "box"},
    "random_urdfs/000/000.urdf": {"extents": (0.096, 0.126, 0.038), "noun": "toy",
                                  "container": False, "shape": "other"},
    "random_urdfs/008/008.urdf": {"extents": (0.096, 0.098, 0.096), "noun": "toy",
                                  "container": False, "shape": "other"},
    "random_urdfs/016/016.urdf": {"extents": (0.097, 0.096, 0.035), "noun": "toy",
                                  "container": False, "shape": "other"},
}


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
    #: ``shape: mesh`` only: the kind (a MESH_KINDS name or ``pybullet:<path>``), the wall
    #: thickness, the printed text, and a lateral friction override.
    mesh: Optional[str] = None
    wall: Optional[float] = None
    text: str = ""
    friction: Optional[float] = None
    #: Whether ``rgba`` was given (a pybullet_data mesh keeps its own colours otherwise).
    rgba_given: bool = False

    @property
    def mesh_kind(self) -> str:
        """'bowl', ..., or 'pybullet' for a pybullet_data mesh; '' for non-meshes."""
        if self.shape != "mesh" or not self.mesh:
            return ""
        return "pybullet" if self.mesh.startswith("pybullet:") else self.mesh

    @property
    def footprint_shape(self) -> tuple[str, tuple[float, float, float]]:
        """('box' or 'cylinder', size) of a box or cylinder that covers the object's footprint
        (see ``footprint``): the object itself for primitives."""
        return mesh_footprint(self)

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
            elif o.shape == "mesh":
                d.update(shape="mesh", mesh=o.mesh)
                if o.mesh_kind == "pybullet":
                    d["scale"] = o.scale
                else:
                    d["size"] = [round(float(v), 5) for v in o.size]
                if o.wall is not None:
                    d["wall"] = o.wall
                if o.text:
                    d["text"] = o.text
                if o.friction is not None:
                    d["friction"] = o.friction
            else:
                d.update(shape=o.shape, size=[round(float(v), 5) for v in o.size])
            if o.shape != "mesh" or o.rgba_given:
                d["rgba"] = [round(float(v), 4) for v in o.rgba]
            d.update(position=[round(float(v), 5) for v in o.position],
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
               "on_top_of", "mass", "color", "mesh", "wall", "text", "friction"}
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
        if od.get("shape") != "mesh":
            for key in ("mesh", "wall", "text", "friction"):
                if key in od:
                    raise SceneSpecError(f"{where}.{key}: only for 'shape: mesh'")
        if has_shape and od["shape"] == "mesh":
            o.shape = "mesh"
            _parse_mesh(od, o, where)
        elif has_shape:
            if od["shape"] not in OBJECT_SHAPES:
                raise SceneSpecError(
                    f"{where}.shape: expected one of {list(SPEC_SHAPES)}, got {od['shape']!r}")
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
            o.rgba_given = True
        if "rgba" in od:
            o.rgba_given = True
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
    for o in objects:
        if o.on:
            base = next(b for b in objects if b.name == o.on)
            if base.mesh_kind in _WALL_MESHES or (base.mesh_kind == "pybullet" and
                                                  PYBULLET_OBJECTS.get(base.mesh[9:], {}).get("container")):
                raise SceneSpecError(f"object {o.name!r}: on_top_of a container ({base.name!r}) "
                                     "is not supported; place it at the container's x, y with "
                                     "a z above its bottom instead")
    return SceneSpec(camera=cam, objects=objects, name=str(data.get("name", name)),
                     seed=seed if isinstance(seed, int) else None)


def _parse_mesh(od: dict, o: ObjectSpec, where: str) -> None:
    """The ``shape: mesh`` fields of object dict ``od`` into ``o`` (SceneSpecError if bad)."""
    mesh = od.get("mesh")
    if not isinstance(mesh, str) or not mesh.strip():
        raise SceneSpecError(f"{where}.mesh: required for 'shape: mesh': one of "
                             f"{list(MESH_KINDS)} or 'pybullet:<path in pybullet_data>'")
    o.mesh = mesh.strip()
    if o.mesh.startswith("pybullet:"):
        rel = o.mesh[len("pybullet:"):]
        import pybullet_data  # a path lookup only
        if not rel or not Path(pybullet_data.getDataPath(), rel).is_file() \
                or not rel.endswith(".urdf"):
            raise SceneSpecError(f"{where}.mesh: {rel!r} is not a URDF file in pybullet_data")
        for key in ("size", "wall", "text"):
            if key in od:
                raise SceneSpecError(f"{where}.{key}: not used with a pybullet_data mesh "
                                     "(use 'scale')")
    else:
        if o.mesh not in MESH_KINDS:
            raise SceneSpecError(f"{where}.mesh: expected one of {list(MESH_KINDS)} or "
                                 f"'pybullet:<path>', got {o.mesh!r}")
        if "scale" in od:
            raise SceneSpecError(f"{where}.scale: not used with a procedural mesh (use 'size')")
        if "size" in od:
            size = od["size"]
            if isinstance(size, (int, float)) and not isinstance(size, bool):
                size = [size] * 3
            o.size = _numbers(size, f"{where}.size", 3, positive=True)
        else:
            from spatialpin_ros.sim.meshes import DEFAULT_SIZE
            o.size = tuple(DEFAULT_SIZE[o.mesh])
        if "wall" in od:
            if o.mesh not in _WALL_MESHES:
                raise SceneSpecError(f"{where}.wall: only for {list(_WALL_MESHES)}")
            o.wall = _number(od["wall"], f"{where}.wall", positive=True)
        if "text" in od:
            if o.mesh not in _TEXT_MESHES or not isinstance(od["text"], str):
                raise SceneSpecError(f"{where}.text: a string, only for {list(_TEXT_MESHES)}")
            o.text = od["text"]
        from spatialpin_ros.sim.meshes import validate_mesh_size
        err = validate_mesh_size(o.mesh, o.size, o.wall)
        if err:
            raise SceneSpecError(f"{where}.size: {err}")
    if "friction" in od:
        o.friction = _number(od["friction"], f"{where}.friction", positive=True)


def mesh_footprint(o: ObjectSpec) -> tuple[str, tuple[float, float, float]]:
    """('box' or 'cylinder', size) whose ``footprint`` covers object ``o``'s."""
    if o.shape != "mesh":
        return o.shape or "cylinder", tuple(o.size) if o.size else (0.1, 0.1, 0.1)
    if o.mesh_kind == "pybullet":
        info = PYBULLET_OBJECTS.get(o.mesh[len("pybullet:"):])
        ext = tuple(v * o.scale for v in info["extents"]) if info else (0.1, 0.1, 0.1)
        return "box", ext
    if o.mesh_kind == "printed_box":
        return "box", tuple(o.size)
    if o.mesh_kind == "mug":  # the handle reaches out on +x
        reach = 2 * (0.32 * o.size[0] / 2 + 0.012)
        return "cylinder", (o.size[0] + reach, o.size[0] + reach, o.size[2])
    return "cylinder", tuple(o.size)


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

#: Workspace of the random generator on the table (world frame, metres), in the shipped arms' reach.
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


MIXES = ("primitives", "meshes", "mixed")


def _put_on_table(rng: np.random.Generator, o, shape: str, size, placed: list,
                  touching: bool) -> bool:
    """Place ``o`` (footprint ``shape``/``size``) on the table clear of the ``placed``
    footprints (or touching one); records its footprint. False when no spot was found."""
    pos = _place(rng, shape, size, o.yaw_deg, placed, touching)
    if pos is None:
        return False
    o.position = (pos[0], pos[1], size[2] / 2)
    placed.append(footprint(shape, size, pos[0], pos[1], o.yaw_deg))
    return True


def _random_camera(rng: np.random.Generator, width: int, height: int,
                   dist: tuple[float, float], target_z: float) -> CameraSpec:
    """A camera 0.6-0.95 m from a point over the table (``dist`` range), 35-60 degrees above
    it, +-35 degrees around it, with a 50-62 degree field of view."""
    cam = CameraSpec(width=width, height=height)
    d = rng.uniform(*dist)
    elev = math.radians(rng.uniform(35, 60))
    azim = math.radians(rng.uniform(-35, 35))
    target = np.array([0.53, 0.0, target_z]) + rng.uniform(-0.03, 0.03, 3) * [1, 1, 0]
    eye = target + d * np.array([math.cos(elev) * math.cos(azim),
                                 math.cos(elev) * math.sin(azim), math.sin(elev)])
    cam.eye = tuple(float(v) for v in eye)
    cam.target = tuple(float(v) for v in target)
    cam.fov_deg = float(rng.uniform(50, 62))
    return cam


def random_scene(seed: int, n_objects: Optional[int] = None, width: int = 640,
                 height: int = 480, vary_camera: bool = True,
                 mix: str = "primitives") -> SceneSpec:
    """A random tabletop: 2 to 8 primitives of varied shapes, sizes and colours, some stacked on
    others and some touching, seen by a camera whose pose varies with the seed.

    ``mix``: ``"primitives"`` (the default: exactly the scenes this function always gave),
    ``"meshes"`` (2 to 6 real-looking objects: bowls, cups, mugs, plates, bottles, cans,
    printed food boxes and pybullet_data objects; see ``random_mesh_scene``) or ``"mixed"``
    (each object a primitive or a mesh, even odds).

    The same seed (and mix) always gives the same scene.
    """
    if mix not in MIXES:
        raise SceneSpecError(f"mix must be one of {list(MIXES)}, got {mix!r}")
    if mix != "primitives":
        return random_mesh_scene(seed, n_objects, width, height, vary_camera,
                                 mixed=mix == "mixed")
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
        if _put_on_table(rng, o, shape, size, placed, touching=bool(placed) and mode < 0.6):
            objects.append(o)
    cam = _random_camera(rng, width, height, (0.6, 0.85), 0.02) if vary_camera else \
        CameraSpec(width=width, height=height)
    return SceneSpec(camera=cam, objects=objects, name=f"random_{seed}", seed=seed)


# Weights of the kinds in mesh scenes: procedural kinds and pybullet_data objects.
_MESH_WEIGHTS = {"bowl": 0.13, "cup": 0.11, "mug": 0.09, "plate": 0.07, "bottle": 0.08,
                 "can": 0.12, "printed_box": 0.22, "pybullet": 0.18}
_PYBULLET_CHOICES = (("objects/mug.urdf", 1.0), ("lego/lego.urdf", 1.5), ("jenga/jenga.urdf", 0.7),
                     ("random_urdfs/000/000.urdf", 0.6), ("random_urdfs/008/008.urdf", 0.6),
                     ("random_urdfs/016/016.urdf", 0.7), ("tray/traybox.urdf", 0.32))
_BRANDS = ("CRUNCHOS", "OATY", "BISKO", "TEA TIME", "PASTA", "RICE", "CHOCO", "SOUP")


def _random_mesh_object(rng: np.random.Generator, color: str) -> ObjectSpec:
    kinds = list(_MESH_WEIGHTS)
    kind = str(rng.choice(kinds, p=np.array(list(_MESH_WEIGHTS.values())) /
                          sum(_MESH_WEIGHTS.values())))
    yaw = float(rng.uniform(-180, 180))
    rgba = (*PALETTE[color], 1.0)
    if kind == "pybullet":
        path, scale = _PYBULLET_CHOICES[int(rng.integers(len(_PYBULLET_CHOICES)))]
        noun = PYBULLET_OBJECTS[path]["noun"].replace(" ", "_")
        return ObjectSpec(name=noun, shape="mesh", mesh=f"pybullet:{path}", scale=scale,
                          yaw_deg=yaw)
    u = rng.uniform
    if kind == "bowl":
        d = u(0.12, 0.17)
        size = (d, d, d * u(0.38, 0.5))
    elif kind in ("cup", "mug"):
        d = u(0.065, 0.085)
        size = (d, d, u(0.08, 0.11))
    elif kind == "plate":
        d = u(0.16, 0.23)
        size = (d, d, u(0.018, 0.026))
    elif kind == "bottle":
        d = u(0.055, 0.075)
        size = (d, d, u(0.16, 0.23))
    elif kind == "can":
        d = u(0.053, 0.07)
        size = (d, d, u(0.09, 0.125))
    else:  # printed food box: a tea box to a cracker box, lying or standing
        a, b, c = u(0.1, 0.18), u(0.04, 0.08), u(0.06, 0.2)
        size = (a, b, c) if rng.random() < 0.5 else (a, c if c < 0.12 else b, b if c < 0.12 else c)
    o = ObjectSpec(name=kind, shape="mesh", mesh=kind, size=tuple(float(v) for v in size),
                   rgba=rgba, rgba_given=True, yaw_deg=yaw)
    if kind in ("printed_box", "bottle", "can"):
        o.text = str(rng.choice(_BRANDS))
    return o


def random_mesh_scene(seed: int, n_objects: Optional[int] = None, width: int = 640,
                      height: int = 480, vary_camera: bool = True,
                      mixed: bool = False) -> SceneSpec:
    """A random tabletop of real-looking objects (``random_scene(seed, mix="meshes")``): 2 to 6
    meshes (with ``mixed``, 2 to 8 objects, each a primitive or a mesh at even odds), some
    touching, small solid ones sometimes standing on a printed box, and the camera of
    ``random_scene``. Its own random stream: the primitive scenes are unaffected."""
    rng = np.random.default_rng([seed, 7 if mixed else 5])
    n = int(rng.integers(2, 9 if mixed else 7)) if n_objects is None else int(n_objects)
    if not 1 <= n <= len(PALETTE):
        raise SceneSpecError(f"n_objects must be 1..{len(PALETTE)}, got {n}")
    colors = list(rng.permutation(list(PALETTE)))[:n]
    objects: list[ObjectSpec] = []
    placed: list[np.ndarray] = []
    used: dict[str, int] = {}
    for k in range(n):
        if mixed and rng.random() < 0.5:
            shape = str(rng.choice(OBJECT_SHAPES, p=[0.5, 0.32, 0.18]))
            if shape == "box":
                size = (rng.uniform(0.035, 0.07), rng.uniform(0.035, 0.07), rng.uniform(0.03, 0.08))
            elif shape == "cylinder":
                d = rng.uniform(0.04, 0.07)
                size = (d, d, rng.uniform(0.04, 0.12))
            else:
                d = rng.uniform(0.04, 0.065)
                size = (d, d, d)
            noun = {"box": "block", "cylinder": "cylinder", "sphere": "ball"}[shape]
            o = ObjectSpec(name=noun, shape=shape, size=tuple(float(s) for s in size),
                           rgba=(*PALETTE[colors[k]], 1.0), rgba_given=True,
                           yaw_deg=float(rng.uniform(-180, 180)))
        else:
            o = _random_mesh_object(rng, colors[k])
        base_name = f"{colors[k]}_{o.name}" if o.rgba_given else o.name
        used[base_name] = used.get(base_name, 0) + 1
        o.name = base_name if used[base_name] == 1 else f"{base_name}_{used[base_name]}"
        fshape, fsize = mesh_footprint(o)
        # Small solid things sometimes stand on a printed box (or a primitive box).
        small = o.mesh_kind in ("can", "printed_box") or o.shape in ("box", "cylinder")
        bases = [b for b in objects if (b.mesh_kind == "printed_box" or b.shape == "box")
                 and b.on is None and min(b.size[:2]) >= 0.9 * max(fsize[:2])]
        mode = rng.random()
        if small and bases and mode < 0.2:
            base = bases[int(rng.integers(len(bases)))]
            o.position = (base.position[0], base.position[1])
            o.on = base.name
            objects.append(o)
            continue
        if _put_on_table(rng, o, fshape, fsize, placed, touching=bool(placed) and mode < 0.45):
            objects.append(o)
    cam = _random_camera(rng, width, height, (0.7, 0.95), 0.04) if vary_camera else \
        CameraSpec(width=width, height=height)
    tag = "mixed" if mixed else "meshes"
    return SceneSpec(camera=cam, objects=objects, name=f"random_{tag}_{seed}", seed=seed)
