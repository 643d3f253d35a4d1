"""A robot as data: its URDF plus a small YAML file naming what the planner needs (ROS-free).

A robot description names, in the URDF's own terms: the base link; the arm joints (in order,
the planner's configuration vector); the tool centre point (TCP) as a link and an offset in
that link's frame; the gripper joints with their open and closed positions and the gripper's
opening (the gap between the fingers, metres) at those; the finger model (how far the
fingertips reach beyond the TCP, a finger's thickness and width); the home configuration; and
the limits the planner keeps: scales of the URDF's velocities, accelerations and jerks.

The URDF is the ``robot_description`` string (as robot_state_publisher publishes it) or a file:
an absolute path, a path relative to the YAML file, or a path under pybullet_data. Its mesh
URIs (``package://``, ``file://``) are resolved to files (``core.urdf_resources``); the YAML's
optional ``packages`` mapping (package name: folder, relative to the YAML file) names where a
package lives that no ament index or ROS_PACKAGE_PATH knows.

Shipped descriptions live in ``config/robots/NAME.yaml``; ``load_robot("xarm6")`` finds one by
name, ``load_robot("/path/to/arm.yaml")`` reads any. Every inconsistency with the URDF (a joint
it lacks, a TCP link that does not exist, a home outside the limits) raises
``RobotDescriptionError`` naming the field and the bad value.

Frames: the world frame has z up; the robot's base link is placed at ``base_position`` (metres,
default the world origin, which is on the table top) with its axes along the world's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from spatialpin_ros.core.errors import ConfigError
from spatialpin_ros.core.urdf_resources import (UrdfResourceError, loadable_urdf_file,
                                             needs_resolving)

#: The robot used when none is named.
DEFAULT_ROBOT = "panda"


class RobotDescriptionError(ConfigError):
    """A robot description is inconsistent with its URDF or malformed (the message names the
    robot, the field and the bad value)."""


@dataclass(frozen=True)
class UrdfJoint:
    """One URDF joint: ``kind`` (revolute, continuous, prismatic, fixed, ...), its parent and
    child link names, and its position limits (rad or m; +-inf when unlimited) and velocity
    limit (rad/s or m/s; inf when not given)."""

    name: str
    kind: str
    parent: str
    child: str
    lower: float
    upper: float
    velocity: float

    @property
    def movable(self) -> bool:
        return self.kind in ("revolute", "continuous", "prismatic")


@dataclass(frozen=True)
class UrdfInfo:
    """The parts of a URDF a robot description is checked against."""

    name: str
    links: tuple[str, ...]
    joints: dict[str, UrdfJoint]

    @property
    def root(self) -> str:
        children = {j.child for j in self.joints.values()}
        roots = [l for l in self.links if l not in children]
        return roots[0] if roots else (self.links[0] if self.links else "")


def parse_urdf(text: str) -> UrdfInfo:
    """Links and joints of a URDF document (``RobotDescriptionError`` when it is no URDF)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise RobotDescriptionError(f"the URDF is not valid XML: {e}") from None
    if root.tag != "robot":
        raise RobotDescriptionError(f"the URDF's root element is <{root.tag}>, not <robot>")
    links = tuple(l.get("name", "") for l in root.findall("link"))
    joints: dict[str, UrdfJoint] = {}
    for j in root.findall("joint"):
        lim = j.find("limit")
        kind = j.get("type", "")
        lo, hi, vel = float("-inf"), float("inf"), float("inf")
        if lim is not None and kind != "continuous":
            lo = float(lim.get("lower", 0.0))
            hi = float(lim.get("upper", 0.0))
        if lim is not None and lim.get("velocity") is not None:
            vel = float(lim.get("velocity"))
        parent, child = j.find("parent"), j.find("child")
        joints[j.get("name", "")] = UrdfJoint(
            j.get("name", ""), kind, parent.get("link", "") if parent is not None else "",
            child.get("link", "") if child is not None else "", lo, hi, vel)
    return UrdfInfo(root.get("name", ""), links, joints)


@dataclass(frozen=True)
class GripperSpec:
    """A parallel gripper: its ``joints`` at ``open`` and ``closed`` positions (rad or m, one
    per joint), the ``opening`` (gap between the fingers, m) at closed and open, or None to
    measure the gap between ``finger_links``' collision shapes along the way (for linkages whose
    gap is not linear in the joints). ``finger_links`` touch the object; ``hand_links`` (the
    palm, the wrist) may touch it too. Finger model (m): ``fingertip_below_tcp`` along the TCP
    z axis, ``finger_thickness`` outward from the gripping face, ``finger_width`` across the
    closing axis. ``squeeze`` (m per finger): how far inside the object's half-width the fingers
    are commanded to close, so that they press on it (a compliant or slow-closing gripper wants
    more; a stiff one less)."""

    joints: tuple[str, ...]
    open: tuple[float, ...]
    closed: tuple[float, ...]
    opening: Optional[tuple[float, float]]
    finger_links: tuple[str, str]
    hand_links: tuple[str, ...]
    fingertip_below_tcp: float
    finger_thickness: float
    finger_width: float
    squeeze: float = 0.005


@dataclass(frozen=True)
class LimitSpec:
    """Planning limits: ``velocity_scale`` and ``acceleration_scale`` (0, 1] of the URDF
    velocities and of the given accelerations; ``arm_acceleration`` (rad/s^2) and ``arm_jerk``
    (rad/s^3) per arm joint; ``finger_acceleration`` (m/s^2) and ``finger_jerk`` (m/s^3) of one
    finger's opening; ``limit_margin`` (rad) kept inside the position limits."""

    velocity_scale: float = 0.5
    acceleration_scale: float = 0.5
    arm_acceleration: float = 15.0
    arm_jerk: float = 150.0
    finger_acceleration: float = 2.0
    finger_jerk: float = 20.0
    limit_margin: float = 0.02


@dataclass(frozen=True)
class RobotDescription:
    """A robot: ``urdf_text`` and the YAML's fields (see the module docstring).

    ``urdf_path``: a file PyBullet can load (the given file, or the string written to a
    temporary file). ``tcp_offset`` (m) and ``tcp_rpy`` (rad): the TCP in ``tcp_link``'s
    frame. ``home`` (rad or m): one value per arm joint. ``max_force`` (N m or N): the
    simulator's motor force per joint name (others: ``default_force``). ``disabled_pairs``:
    link pairs never checked for self-collision, beyond those touching at home.
    ``reach`` (m): how far the TCP reaches from the shoulder at most, or None to take the
    chain's length."""

    name: str
    urdf_text: str
    urdf_path: str
    base_link: str
    arm_joints: tuple[str, ...]
    tcp_link: str
    tcp_offset: tuple[float, float, float]
    tcp_rpy: tuple[float, float, float]
    gripper: GripperSpec
    home: tuple[float, ...]
    limits: LimitSpec = LimitSpec()
    base_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    disabled_pairs: tuple[tuple[str, str], ...] = ()
    max_force: dict[str, float] = field(default_factory=dict)
    default_force: float = 50.0
    finger_friction: float = 1.5
    reach: Optional[float] = None
    source: str = ""

    @property
    def joint_names(self) -> list[str]:
        """Arm joints then gripper joints: the columns of every planned trajectory."""
        return list(self.arm_joints + self.gripper.joints)

    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    def home_positions(self) -> dict[str, float]:
        """Home configuration with the gripper open, per joint name."""
        pos = dict(zip(self.arm_joints, self.home))
        pos.update(zip(self.gripper.joints, self.gripper.open))
        return pos


def robots_dir() -> Path:
    from spatialpin_ros.paths import config_file
    return config_file("robots")


def available_robots() -> list[str]:
    """Names of the shipped robot descriptions (config/robots/*.yaml)."""
    d = robots_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _resolve_file(name: str) -> Path:
    p = Path(name).expanduser()
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    cand = robots_dir() / f"{name}.yaml"
    if cand.is_file():
        return cand
    raise RobotDescriptionError(
        f"unknown robot {name!r}: neither a YAML file nor one of {available_robots()}")


def _urdf_file(ref: str, base_dir: Path) -> Path:
    p = Path(ref).expanduser()
    cands = [p] if p.is_absolute() else [base_dir / p]
    if not p.is_absolute():
        try:
            import pybullet_data
            cands.append(Path(pybullet_data.getDataPath()) / p)
        except ImportError:
            pass
    for c in cands:
        if c.is_file():
            return c
    raise RobotDescriptionError(f"URDF file {ref!r} not found (looked in "
                                f"{', '.join(str(c.parent) for c in cands)})")


def load_robot(name_or_path: str = DEFAULT_ROBOT, robot_description: str = "",
               overrides: Optional[dict[str, Any]] = None) -> RobotDescription:
    """The robot description ``name_or_path`` (a shipped name such as "panda" or "xarm6", or a
    YAML file). ``robot_description``: URDF text that replaces the YAML's ``urdf`` file (as a
    robot_state_publisher's parameter). ``overrides``: top-level YAML keys replaced (tests)."""
    path = _resolve_file(name_or_path or DEFAULT_ROBOT)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RobotDescriptionError(f"robot file {path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RobotDescriptionError(f"robot file {path}: expected a mapping at the top level")
    data.update(overrides or {})
    return description_from_dict(data, base_dir=path.parent, robot_description=robot_description,
                                 source=str(path))


def _floats(v: Any, n: Optional[int], what: str, robot: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise RobotDescriptionError(f"robot {robot!r}: {what} must be a list of numbers, "
                                    f"got {v!r}") from None
    if n is not None and len(out) != n:
        raise RobotDescriptionError(f"robot {robot!r}: {what} needs {n} values, got {len(out)}")
    return out


def description_from_dict(d: dict[str, Any], base_dir: Path = Path("."),
                          robot_description: str = "", source: str = "") -> RobotDescription:
    """A checked ``RobotDescription`` from the YAML's mapping (see ``load_robot``)."""
    name = str(d.get("name", "robot"))

    def need(key: str, where: dict = d, prefix: str = "") -> Any:
        if key not in where:
            raise RobotDescriptionError(f"robot {name!r}: missing field {prefix}{key!r}")
        return where[key]

    packages = {str(k): str(v if Path(str(v)).expanduser().is_absolute()
                            else Path(base_dir) / str(v))
                for k, v in (d.get("packages") or {}).items()}
    try:
        if robot_description.strip():
            # As robot_state_publisher publishes it: package:// URIs. Relative paths (and
            # package:// ones no index knows, as PyBullet reads them) are taken beside the
            # YAML's urdf file where it names one, else beside the YAML file.
            text = robot_description
            folder = Path(base_dir)
            if d.get("urdf"):
                try:
                    folder = _urdf_file(str(d["urdf"]), base_dir).parent
                except RobotDescriptionError:
                    pass
            urdf_path = loadable_urdf_file(text, name, folder, packages)
        else:
            p = _urdf_file(str(need("urdf")), base_dir)
            text = p.read_text()
            urdf_path = (loadable_urdf_file(text, name, p.parent, packages)
                         if needs_resolving(text, p.parent) else str(p))
    except UrdfResourceError as e:
        raise RobotDescriptionError(f"robot {name!r}: {e}") from None
    info = parse_urdf(text)
    tcp = need("tcp")
    g = need("gripper")
    lim = d.get("limits", {}) or {}
    arm = tuple(str(j) for j in need("arm_joints"))
    gripper_joints = tuple(str(j) for j in need("joints", g, "gripper."))
    opening = g.get("opening")
    desc = RobotDescription(
        name=name, urdf_text=text, urdf_path=urdf_path,
        base_link=str(d.get("base_link", info.root)), arm_joints=arm,
        tcp_link=str(need("link", tcp, "tcp.")),
        tcp_offset=_floats(tcp.get("offset", (0, 0, 0)), 3, "tcp.offset", name),
        tcp_rpy=_floats(tcp.get("rpy", (0, 0, 0)), 3, "tcp.rpy", name),
        gripper=GripperSpec(
            joints=gripper_joints,
            open=_floats(need("open", g, "gripper."), len(gripper_joints), "gripper.open", name),
            closed=_floats(need("closed", g, "gripper."), len(gripper_joints),
                           "gripper.closed", name),
            opening=(None if opening in (None, "measured")
                     else _floats(opening, 2, "gripper.opening", name)),
            finger_links=tuple(str(l) for l in need("finger_links", g, "gripper.")),
            hand_links=tuple(str(l) for l in g.get("hand_links", ())),
            fingertip_below_tcp=float(need("fingertip_below_tcp", g, "gripper.")),
            finger_thickness=float(need("finger_thickness", g, "gripper.")),
            finger_width=float(need("finger_width", g, "gripper.")),
            squeeze=float(g.get("squeeze", 0.005))),
        home=_floats(need("home"), len(arm), "home", name),
        limits=LimitSpec(**{k: float(v) for k, v in lim.items()}) if lim else LimitSpec(),
        base_position=_floats(d.get("base_position", (0, 0, 0)), 3, "base_position", name),
        disabled_pairs=tuple(tuple(str(x) for x in p) for p in d.get("disabled_pairs", ())),
        max_force={str(k): float(v) for k, v in (d.get("max_force") or {}).items()},
        default_force=float(d.get("default_force", 50.0)),
        finger_friction=float(d.get("finger_friction", 1.5)),
        reach=None if d.get("reach") is None else float(d["reach"]),
        source=source)
    check_against_urdf(desc, info)
    return desc


def check_against_urdf(desc: RobotDescription, info: UrdfInfo) -> None:
    """Raise ``RobotDescriptionError`` naming the first field that the URDF contradicts."""
    n = desc.name
    links = set(info.links)

    def joint(j: str, what: str) -> UrdfJoint:
        if j not in info.joints:
            raise RobotDescriptionError(
                f"robot {n!r}: {what} names joint {j!r}, which the URDF "
                f"({info.name or desc.urdf_path}) lacks; its movable joints are "
                f"{[k for k, v in info.joints.items() if v.movable]}")
        if not info.joints[j].movable:
            raise RobotDescriptionError(f"robot {n!r}: {what} names joint {j!r}, which is "
                                        f"{info.joints[j].kind}, not movable")
        return info.joints[j]

    def link(l: str, what: str) -> None:
        if l not in links:
            raise RobotDescriptionError(f"robot {n!r}: {what} {l!r} is not a link of the URDF "
                                        f"({info.name or desc.urdf_path})")

    if not desc.arm_joints:
        raise RobotDescriptionError(f"robot {n!r}: arm_joints is empty")
    if len(set(desc.joint_names)) != len(desc.joint_names):
        raise RobotDescriptionError(f"robot {n!r}: a joint is named twice in arm_joints and "
                                    f"gripper.joints")
    link(desc.base_link, "base_link")
    link(desc.tcp_link, "tcp.link")
    for l in desc.gripper.finger_links + desc.gripper.hand_links:
        link(l, "gripper link")
    for a, b in desc.disabled_pairs:
        link(a, "disabled_pairs link")
        link(b, "disabled_pairs link")
    for j, q in zip(desc.arm_joints, desc.home):
        uj = joint(j, "arm_joints")
        if not uj.lower - 1e-9 <= q <= uj.upper + 1e-9:
            raise RobotDescriptionError(f"robot {n!r}: home value {q} of joint {j!r} is outside "
                                        f"its URDF limits [{uj.lower}, {uj.upper}]")
    for j, a, b in zip(desc.gripper.joints, desc.gripper.open, desc.gripper.closed):
        uj = joint(j, "gripper.joints")
        for q, what in ((a, "open"), (b, "closed")):
            if not uj.lower - 1e-9 <= q <= uj.upper + 1e-9:
                raise RobotDescriptionError(
                    f"robot {n!r}: gripper.{what} value {q} of joint {j!r} is outside its "
                    f"URDF limits [{uj.lower}, {uj.upper}]")
    if not 0.0 <= desc.gripper.squeeze < 0.05:
        raise RobotDescriptionError(f"robot {n!r}: gripper.squeeze must lie in [0, 0.05) m, "
                                    f"got {desc.gripper.squeeze}")
    if len(desc.gripper.finger_links) != 2:
        raise RobotDescriptionError(f"robot {n!r}: gripper.finger_links needs two links")
    for k in ("velocity_scale", "acceleration_scale"):
        v = getattr(desc.limits, k)
        if not 0 < v <= 1:
            raise RobotDescriptionError(f"robot {n!r}: limits.{k} must lie in (0, 1], got {v}")

