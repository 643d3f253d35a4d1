"""Procedural everyday objects for the simulator: bowls, cups, mugs, plates, bottles, cans and
printed food boxes, as textured OBJ meshes (trimesh for the geometry, OpenCV for the textures)
with a collision shape made of convex pieces that keeps hollow objects hollow. ROS-free.

Each mesh is generated on demand into a cache folder (``$SPATIALPIN_MESH_CACHE``, default
``~/.cache/spatialpin_ros/meshes``), named by a hash of its parameters, so the same parameters
always give the same files. Mesh frame: z up, the object's bottom at z = 0, its axis (or its
footprint's centre) at x = y = 0.

Kinds and their ``size`` (full extents, metres):

* ``bowl`` [d, d, h]: open top, curved wall ``wall`` thick, flat foot. Container.
* ``cup`` [d, d, h]: slightly tapered hollow cylinder with a bottom. Container.
* ``mug`` [d, d, h]: a straight cup with a handle on +x (the handle adds to the true box).
  Container.
* ``plate`` [d, d, h]: a flat dish with a sloped rim (not counted as a container).
* ``bottle`` [d, d, h]: solid, revolved profile with a shoulder, a neck and a label.
* ``can`` [d, d, h]: solid cylinder with a printed label.
* ``printed_box`` [x, y, z]: a food box printed on every face (text, stripes, a logo).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from spatialpin_ros.sim import textures

MESH_KINDS = ("bowl", "cup", "mug", "plate", "bottle", "can", "printed_box")
#: Kinds that are hollow and open at the top.
CONTAINER_KINDS = ("bowl", "cup", "mug")
#: Default size [x, y, z] (metres) and wall thickness of each kind.
DEFAULT_SIZE = {"bowl": (0.15, 0.15, 0.065), "cup": (0.08, 0.08, 0.095),
                "mug": (0.085, 0.085, 0.095), "plate": (0.22, 0.22, 0.022),
                "bottle": (0.07, 0.07, 0.22), "can": (0.066, 0.066, 0.123),
                "printed_box": (0.16, 0.06, 0.2)}
DEFAULT_WALL = {"bowl": 0.005, "cup": 0.004, "mug": 0.005, "plate": 0.004}
#: (lateral, spinning, rolling) friction by kind: glazed ceramic, plastic, metal, cardboard.
FRICTION = {"bowl": (0.6, 0.002, 0.001), "cup": (0.6, 0.002, 0.001),
            "mug": (0.6, 0.002, 0.001), "plate": (0.55, 0.002, 0.001),
            "bottle": (0.45, 0.002, 0.001), "can": (0.4, 0.002, 0.001),
            "printed_box": (0.55, 0.003, 0.001)}
_VERSION = 1  # bump to regenerate every cached mesh


@dataclass
class CollisionPiece:
    """One convex piece of a compound collision shape, in the mesh frame: ``kind`` 'box'
    (``half_extents``) or 'cylinder' (``radius``, ``height``), at ``position`` with
    ``quaternion`` (x, y, z, w)."""

    kind: str
    position: tuple[float, float, float]
    quaternion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    half_extents: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.0
    height: float = 0.0


@dataclass
class MeshAsset:
    """A generated object: its OBJ (with MTL and PNG texture next to it), its true box in the
    mesh frame (``bbox_center``, ``extents``), collision pieces, centre of mass, and what the
    ground truth says about it."""

    kind: str
    obj_path: str
    texture_path: str
    extents: np.ndarray
    bbox_center: np.ndarray
    collision: list[CollisionPiece]
    com: np.ndarray
    mass: float
    friction: tuple[float, float, float]
    container: bool = False
    inner_depth: float = 0.0
    symmetric: bool = True
    truth_shape: str = "other"
    params: dict = field(default_factory=dict)

    def geometry(self) -> trimesh.Trimesh:
        """The visual surface as one trimesh (vertices merged, no texture)."""
        return load_geometry(self.obj_path)


def cache_dir() -> Path:
    d = os.environ.get("SPATIALPIN_MESH_CACHE")
    return Path(d) if d else Path.home() / ".cache" / "spatialpin_ros" / "meshes"


# -- geometry helpers --------------------------------------------------------------------------

def _revolve(parts: list[np.ndarray], n: int = 48):
    """Surface of revolution of profile ``parts`` (each (P, 2) of (r, z) points); the profile
    runs so that the solid lies to its left (outward normals). Each part gets its own vertex
    rings (sharp creases between parts). Returns vertices, faces, uvs (u round the axis, v the
    arc length along the whole profile, 0..1)."""
    lengths = [np.r_[0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))] for p in parts]
    total = sum(float(l[-1]) for l in lengths) or 1.0
    V, F, UV = [], [], []
    acc = 0.0
    ang = np.linspace(0, 2 * math.pi, n + 1)
    for prof, arc in zip(parts, lengths):
        base = sum(len(v) for v in V)
        P = len(prof)
        r, z = prof[:, 0:1], prof[:, 1:2]
        verts = np.stack([r * np.cos(ang), r * np.sin(ang), np.repeat(z, n + 1, 1)], -1)
        V.append(verts.reshape(-1, 3))
        uu, vv = np.meshgrid(ang / (2 * math.pi), (acc + arc) / total)
        UV.append(np.stack([uu, vv], -1).reshape(-1, 2))
        i, j = np.meshgrid(np.arange(P - 1), np.arange(n), indexing="ij")
        a = base + i * (n + 1) + j
        b, c = a + 1, a + (n + 1)
        d = c + 1
        F.append(np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                                 np.stack([a, d, c], -1).reshape(-1, 3)]))
        acc += float(arc[-1])
    return np.concatenate(V), np.concatenate(F), np.concatenate(UV)


def _box_surface(center, size, uv=(0.5, 0.5)):
    """A box's 24-vertex surface with one constant uv (a plain-coloured part)."""
    m = trimesh.creation.box(extents=size)
    m.apply_translation(center)
    return np.asarray(m.vertices), np.asarray(m.faces), np.tile(uv, (len(m.vertices), 1))


def _box_with_atlas(size):
    """A box (bottom at z = 0) whose six faces map to the cells of a 3x2 texture atlas:
    row 0 (top of the image) front (-y), back (+y), side (+x); row 1 side (-x), top, bottom."""
    sx, sy, sz = (float(v) / 2 for v in size)
    # Each face: 4 corners (counter-clockwise seen from outside) = (bottom-left, bottom-right,
    # top-right, top-left) of its image cell.
    faces = [
        [(-sx, -sy, -sz), (sx, -sy, -sz), (sx, -sy, sz), (-sx, -sy, sz)],      # front, -y
        [(sx, sy, -sz), (-sx, sy, -sz), (-sx, sy, sz), (sx, sy, sz)],          # back, +y
        [(sx, -sy, -sz), (sx, sy, -sz), (sx, sy, sz), (sx, -sy, sz)],          # side, +x
        [(-sx, sy, -sz), (-sx, -sy, -sz), (-sx, -sy, sz), (-sx, sy, sz)],      # side, -x
        [(-sx, -sy, sz), (sx, -sy, sz), (sx, sy, sz), (-sx, sy, sz)],          # top
        [(-sx, sy, -sz), (sx, sy, -sz), (sx, -sy, -sz), (-sx, -sy, -sz)],      # bottom
    ]
    V, F, UV = [], [], []
    e = 0.004  # keep samples inside the cell
    for k, quad in enumerate(faces):
        r, c = divmod(k, 3)
        u0, u1 = c / 3 + e, (c + 1) / 3 - e
        v1, v0 = 1 - r / 2 - e, 1 - (r + 1) / 2 + e  # OBJ v runs up the image
        base = len(V)
        V += quad
        UV += [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]
        F += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    V = np.array(V) + [0, 0, sz]
    return V, np.array(F), np.array(UV)


def _ring_of_boxes(p0, p1, thickness: float, n: int = 16, overlap: float = 1.06):
    """Collision boxes approximating the wall swept by the outer profile segment p0 -> p1
    ((r, z), the solid to its left): ``n`` boxes round the axis, ``thickness`` inward."""
    (r0, z0), (r1, z1) = p0, p1
    dr, dz = r1 - r0, z1 - z0
    L = math.hypot(dr, dz)
    nr, nz = dz / L, -dr / L  # outward normal in the (r, z) plane
    rc, zc = (r0 + r1) / 2 - nr * thickness / 2, (z0 + z1) / 2 - nz * thickness / 2
    width = 2 * max(rc, 1e-3) * math.tan(math.pi / n) * overlap
    local = np.array([[nr, 0, dr / L], [0, 1, 0], [nz, 0, dz / L]])  # columns n, t, d
    pieces = []
    for k in range(n):
        th = 2 * math.pi * k / n
        rz = Rotation.from_euler("z", th).as_matrix()
        pos = rz @ [rc, 0, zc]
        q = Rotation.from_matrix(rz @ local).as_quat()
        pieces.append(CollisionPiece("box", tuple(float(v) for v in pos),
                                     tuple(float(v) for v in q),
                                     half_extents=(thickness / 2, width / 2, L / 2 * overlap)))
    return pieces


def _cyl(radius: float, z0: float, z1: float) -> CollisionPiece:
    return CollisionPiece("cylinder", (0.0, 0.0, (z0 + z1) / 2), radius=radius, height=z1 - z0)


# -- the kinds --------------------------------------------------------------------------------

def _bowl(size, wall):
    R, H = size[0] / 2, size[2]
    rb, tb = 0.45 * R, max(wall, 0.006)
    s = np.linspace(0, 1, 7)
    outer = np.stack([rb + (R - rb) * np.sin(s * math.pi / 2),
                      H * (1 - np.cos(s * math.pi / 2))], 1)
    inner = np.stack([rb + (R - wall - rb) * np.sin(s * math.pi / 2),
                      tb + (H - tb) * (1 - np.cos(s * math.pi / 2))], 1)[::-1]
    parts = [np.array([[0, 0], [rb, 0]]), outer, np.array([[R, H], [R - wall, H]]), inner,
             np.array([[rb, tb], [0, tb]])]
    coll = [_cyl(rb + wall, 0, tb)]
    for a, b in zip(outer[:-1], outer[1:]):
        coll += _ring_of_boxes(a, b, wall)
    return parts, coll, H - tb


def _cup(size, wall, taper: float = 0.88):
    R, H = size[0] / 2, size[2]
    R0, tb = taper * R, max(wall * 2, 0.007)
    parts = [np.array([[0, 0], [R0, 0]]), np.array([[R0, 0], [R, H]]),
             np.array([[R, H], [R - wall, H]]),
             np.array([[R - wall, H], [R0 - wall * R0 / R, tb]]),
             np.array([[R0 - wall * R0 / R, tb], [0, tb]])]
    mid = np.array([[R0, 0], [(R0 + R) / 2, H / 2], [R, H]])
    coll = [_cyl(R0, 0, tb)]
    for a, b in zip(mid[:-1], mid[1:]):
        coll += _ring_of_boxes(a, b, wall)
    return parts, coll, H - tb


def _handle(R, H, wall):
    """A squared mug handle on +x: three bars (visual surfaces and collision boxes)."""
    reach, w, t = 0.32 * R + 0.012, 0.012, 0.008
    z0, z1 = 0.22 * H, 0.82 * H
    bars = [((R + reach / 2 - wall / 2, 0, z1 - t / 2), (reach + wall, w, t)),
            ((R + reach / 2 - wall / 2, 0, z0 + t / 2), (reach + wall, w, t)),
            ((R + reach - t / 2, 0, (z0 + z1) / 2), (t, w, z1 - z0))]
    surf = [_box_surface(c, s, uv=(0.5, 0.02)) for c, s in bars]
    coll = [CollisionPiece("box", c, half_extents=tuple(v / 2 for v in s)) for c, s in bars]
    return surf, coll


def _plate(size, wall):
    R, H = size[0] / 2, size[2]
    rb, tb = 0.62 * R, min(0.006, 0.4 * H)
    parts = [np.array([[0, 0], [rb, 0]]), np.array([[rb, 0], [R, H]]),
             np.array([[R, H], [R - 1.5 * wall, H]]),
             np.array([[R - 1.5 * wall, H], [rb - wall, tb]]), np.array([[rb - wall, tb], [0, tb]])]
    coll = [_cyl(rb, 0, tb)] + _ring_of_boxes((rb, 0), (R, H), max(wall, tb))
    return parts, coll, H - tb


def _bottle(size):
    R, H = size[0] / 2, size[2]
    rn = max(0.3 * R, 0.011)
    zb, zs = 0.6 * H, 0.82 * H
    s = np.linspace(0, 1, 6)
    shoulder = np.stack([rn + (R - rn) * np.cos(s * math.pi / 2),
                         zb + (zs - zb) * np.sin(s * math.pi / 2)], 1)
    parts = [np.array([[0, 0], [R, 0]]), np.array([[R, 0], [R, zb]]), shoulder,
             np.array([[rn, zs], [rn, H]]), np.array([[rn, H], [0, H]])]
    coll = [_cyl(R, 0, zb), _cyl((R + rn) / 2 + 0.15 * (R - rn), zb, zs), _cyl(rn, zs, H)]
    return parts, coll


def _can(size):
    R, H = size[0] / 2, size[2]
    e = min(0.004, 0.1 * R)
    parts = [np.array([[0, 0], [R - e, 0]]), np.array([[R - e, 0], [R, e], [R, H - e], [R - e, H]]),
             np.array([[R - e, H], [0, H]])]
    return parts, [_cyl(R, 0, H)]


def _profile_v(parts, z_lo: float, z_hi: float, outer_only_r: float) -> tuple[float, float]:
    """The v range (see ``_revolve``) of the outer profile points with z in [z_lo, z_hi]."""
    pts = np.concatenate(parts)
    lengths = [np.r_[0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))] for p in parts]
    total = sum(float(l[-1]) for l in lengths)
    acc, vs = 0.0, []
    for p, l in zip(parts, lengths):
        for (r, z), a in zip(p, l):
            if z_lo - 1e-9 <= z <= z_hi + 1e-9 and r >= outer_only_r - 1e-9:
                vs.append((acc + a) / total)
        acc += float(l[-1])
    del pts
    return (min(vs), max(vs)) if vs else (0.4, 0.6)


def _params_key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def mesh_params(kind: str, size=None, wall: Optional[float] = None, rgba=(0.8, 0.8, 0.8, 1.0),
                text: str = "") -> dict:
    """The canonical (rounded) parameters of a mesh: they name its cache files."""
    if kind not in MESH_KINDS:
        raise ValueError(f"unknown mesh kind {kind!r}; expected one of {list(MESH_KINDS)}")
    size = DEFAULT_SIZE[kind] if size is None else size
    wall = DEFAULT_WALL.get(kind, 0.0) if wall is None else wall
    return {"kind": kind, "size": [round(float(v), 5) for v in size],
            "wall": round(float(wall), 5), "rgb": [round(float(v), 4) for v in rgba[:3]],
            "text": str(text or ""), "version": _VERSION}


def validate_mesh_size(kind: str, size, wall: Optional[float] = None) -> Optional[str]:
    """Why ``size``/``wall`` cannot make a ``kind``, or None when they can."""
    sx, sy, sz = (float(v) for v in size)
    if kind != "printed_box" and abs(sx - sy) > 1e-9:
        return f"a {kind} is round: size is [d, d, h], got {[sx, sy, sz]}"
    if kind == "plate" and sz > 0.5 * sx:
        return f"a plate is flat: height must be at most half its diameter, got {[sx, sy, sz]}"
    if kind in DEFAULT_WALL:
        w = DEFAULT_WALL[kind] if wall is None else float(wall)
        if not 0.001 <= w <= 0.2 * sx:
            return f"wall must be 0.001 m .. a fifth of the diameter, got {w}"
        if kind in CONTAINER_KINDS and sz <= 2.5 * w:
            return f"a {kind} needs a height above 2.5 wall thicknesses, got {sz}"
    elif wall is not None:
        return f"'wall' is not used by a {kind}"
    return None


def build_mesh(kind: str, size=None, wall: Optional[float] = None, rgba=(0.8, 0.8, 0.8, 1.0),
               text: str = "", mass: Optional[float] = None,
               directory: Optional[Path] = None) -> MeshAsset:
    """Generate (or find in the cache) the mesh of ``kind`` and describe it."""
    params = mesh_params(kind, size, wall, rgba, text)
    size, wall, rgb = params["size"], params["wall"], params["rgb"]
    err = validate_mesh_size(kind, size, wall if kind in DEFAULT_WALL else None)
    if err:
        raise ValueError(err)
    key = f"{kind}_{_params_key(params)}"
    rng = np.random.default_rng(int(_params_key(params), 16) % (2 ** 32))
    R, H = size[0] / 2, size[2]
    extra_surf: list = []
    container, inner_depth, symmetric, truth_shape = False, 0.0, True, "other"
    if kind == "printed_box":
        V, F, UV = _box_with_atlas(size)
        tex = textures.box_atlas(size, rgb, rng, text=text)
        coll = [CollisionPiece("box", (0.0, 0.0, size[2] / 2),
                               half_extents=tuple(v / 2 for v in size))]
        density = 180.0
        volume = float(np.prod(size))
        symmetric, truth_shape = False, "box"
        com = np.array([0, 0, size[2] / 2])
    else:
        if kind == "bowl":
            parts, coll, inner_depth = _bowl(size, wall)
            tex = textures.revolved_texture(rgb, rng, bands=[_profile_v(parts, H - 0.006, H, R - 1e-6)])
            container, mass_default = True, 0.28 * (size[0] / 0.15) ** 2
        elif kind in ("cup", "mug"):
            parts, coll, inner_depth = _cup(size, wall, taper=0.88 if kind == "cup" else 1.0)
            v0, v1 = _profile_v(parts, 0.7 * H, 0.8 * H, 0.0)
            tex = textures.revolved_texture(rgb, rng, bands=[(v0, v1)])
            container, mass_default = True, (0.18 if kind == "cup" else 0.3) * (H / 0.095)
            if kind == "mug":
                extra_surf, hcoll = _handle(R, H, wall)
                coll += hcoll
                symmetric = False
        elif kind == "plate":
            parts, coll, _ = _plate(size, wall)
            tex = textures.revolved_texture(rgb, rng, bands=[_profile_v(parts, H - 0.003, H, R - 1e-6)])
            mass_default = 0.35 * (size[0] / 0.22) ** 2
        elif kind == "bottle":
            parts, coll = _bottle(size)
            rn = max(0.3 * R, 0.011)
            lab = _profile_v(parts, 0.15 * H, 0.5 * H, R - 1e-6)
            cap = _profile_v(parts, 0.93 * H, H, rn - 1e-6)
            tex = textures.revolved_texture(rgb, rng, bands=[cap], label_band=lab, label_text=text)
            mass_default = 0.9 * math.pi * R ** 2 * H * 1000 * 0.6
            truth_shape = "other"
        else:  # can
            parts, coll = _can(size)
            lab = _profile_v(parts, 0.08 * H, 0.92 * H, R - 1e-6)
            tex = textures.revolved_texture((0.78, 0.78, 0.8), rng, label_band=lab,
                                            label_text=text, label_rgb=rgb)
            mass_default = 0.9 * math.pi * R ** 2 * H * 1000
            truth_shape = "cylinder"
        V, F, UV = _revolve(parts)
        for v, f, uv in extra_surf:
            F = np.concatenate([F, f + len(V)])
            V, UV = np.concatenate([V, v]), np.concatenate([UV, uv])
        density = None
        volume = 0.0
        com = np.array([0, 0, (0.3 if container else 0.42) * H])
    lo, hi = V.min(0), V.max(0)
    if mass is None:
        mass = mass_default if density is None else max(0.05, density * volume)
    asset = MeshAsset(kind=kind, obj_path="", texture_path="", extents=hi - lo,
                      bbox_center=(lo + hi) / 2, collision=coll, com=com, mass=float(mass),
                      friction=FRICTION[kind], container=container,
                      inner_depth=float(inner_depth) if container else 0.0,
                      symmetric=symmetric, truth_shape=truth_shape, params=params)
    d = Path(directory) if directory is not None else cache_dir()
    obj = d / f"{key}.obj"
    png = d / f"{key}.png"
    if not (obj.is_file() and png.is_file()):
        _write_obj(d, key, V, F, UV, tex)
    asset.obj_path, asset.texture_path = str(obj), str(png)
    return asset


def _write_obj(d: Path, key: str, V, F, UV, tex_bgr: np.ndarray) -> None:
    """Write ``key``.obj/.mtl/.png into ``d`` atomically (several processes may race)."""
    d.mkdir(parents=True, exist_ok=True)
    m = trimesh.Trimesh(V, F, process=False)
    N = np.asarray(m.vertex_normals)
    lines = [f"# spatialpin_ros procedural mesh {key}", f"mtllib {key}.mtl", f"o {key}",
             f"usemtl {key}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in V]
    lines += [f"vt {u:.5f} {v:.5f}" for u, v in UV]
    lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in N]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}/{i + 1}" for i in tri) for tri in F]
    mtl = f"newmtl {key}\nKa 0.2 0.2 0.2\nKd 1 1 1\nKs 0.1 0.1 0.1\nmap_Kd {key}.png\n"
    for name, write in ((f"{key}.png", lambda p: cv2.imwrite(p, tex_bgr)),
                        (f"{key}.mtl", lambda p: Path(p).write_text(mtl)),
                        (f"{key}.obj", lambda p: Path(p).write_text("\n".join(lines) + "\n"))):
        fd, tmp = tempfile.mkstemp(dir=d, suffix=Path(name).suffix)
        os.close(fd)
        write(tmp)
        os.replace(tmp, d / name)


def load_geometry(obj_path: str) -> trimesh.Trimesh:
    """An OBJ's surface as one trimesh, coincident vertices merged and degenerate faces
    dropped (for checks such as watertightness and ray casts)."""
    V, F = [], []
    for line in Path(obj_path).read_text().splitlines():
        if line.startswith("v "):
            V.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            F.append([int(t.split("/")[0]) - 1 for t in line.split()[1:4]])
    m = trimesh.Trimesh(np.array(V), np.array(F), process=False)
    m.merge_vertices(merge_tex=True, merge_norm=True, digits_vertex=7)
    m.update_faces(m.nondegenerate_faces())
    m.remove_unreferenced_vertices()
    return m
