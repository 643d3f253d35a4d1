"""Mesh and texture URIs of a URDF turned into file paths that PyBullet can load (ROS-free).

A URDF as robot_state_publisher publishes it (the ``robot_description`` parameter) names its
meshes as ``package://PACKAGE/path`` URIs, sometimes as ``file:///absolute/path``; PyBullet
reads neither and takes a relative path as relative to the URDF file. ``resolve_urdf_uris``
rewrites the ``filename`` of every ``<mesh>`` and ``<texture>`` to an absolute path:

- ``package://PACKAGE/rest``: ``PACKAGE``'s directory from, in order, ``package_dirs`` (a
  mapping given by the caller: the robot YAML's ``packages``), the ament index
  (``ament_index_python``, where a ROS 2 workspace is sourced), ``AMENT_PREFIX_PATH``
  (``PREFIX/share/PACKAGE``), ``ROS_PACKAGE_PATH`` (``DIR/PACKAGE``), and an importable Python
  package of that name (``pybullet_data``);
- ``file://`` URIs: their path;
- a relative path: relative to ``base_dir`` (the URDF file's folder) when given.

As PyBullet does, ``package://rest`` is also looked for as ``rest`` beside the URDF file
(pybullet_data's Panda names its meshes ``package://meshes/...``); a URDF file whose URIs all
load that way is used as it is (``needs_resolving``).

A URI whose package or file cannot be found raises ``UrdfResourceError`` naming the URI and
where it was looked for: a robot whose meshes are missing would otherwise load without
collision shapes and plan through itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import unquote, urlparse

from spatialpin_ros.core.errors import ConfigError

#: The file a <mesh> or <texture> element names (not a Gazebo <plugin>'s library).
_FILENAME = re.compile(r'(<(?:mesh|texture)\b[^>]*?\bfilename\s*=\s*)(["\'])(.*?)\2')


class UrdfResourceError(ConfigError):
    """A URDF names a mesh or texture file that cannot be found (the message names the URI)."""


def package_dir(name: str, package_dirs: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The directory of ROS package (or Python package) ``name``, or None when not found."""
    if package_dirs and name in package_dirs:
        return Path(package_dirs[name]).expanduser()
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
        try:
            return Path(get_package_share_directory(name))
        except (PackageNotFoundError, ValueError, LookupError):
            pass
    except ImportError:
        pass
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        cand = Path(prefix) / "share" / name
        if cand.is_dir():
            return cand
    for root in filter(None, os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep)):
        cand = Path(root) / name
        if cand.is_dir():
            return cand
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    return None


def resolve_uri(uri: str, base_dir: Optional[Path] = None,
                package_dirs: Optional[Mapping[str, str]] = None) -> str:
    """The file path of one ``filename`` value (see the module docstring)."""
    if uri.startswith("package://"):
        rest = uri[len("package://"):]
        pkg, _, sub = rest.partition("/")
        root = package_dir(pkg, package_dirs)
        if root is None and base_dir is not None and (Path(base_dir) / rest).is_file():
            root = Path(base_dir) / pkg   # as PyBullet reads it: beside the URDF file
        if root is None:
            raise UrdfResourceError(
                f"mesh {uri!r}: package {pkg!r} not found (looked in the robot's packages, "
                "the ament index, AMENT_PREFIX_PATH, ROS_PACKAGE_PATH and Python packages); "
                f"give its folder in the robot YAML's packages: {{{pkg}: /path/to/{pkg}}}")
        path = root / sub
    elif uri.startswith("file://"):
        path = Path(unquote(urlparse(uri).path))
    elif "://" in uri:
        raise UrdfResourceError(f"mesh {uri!r}: unsupported URI scheme (package:// and "
                                "file:// are understood)")
    else:
        p = Path(uri).expanduser()
        path = p if p.is_absolute() or base_dir is None else Path(base_dir) / p
    if not path.is_file():
        raise UrdfResourceError(f"mesh {uri!r}: file {path} does not exist")
    return str(path.resolve())


def resolve_urdf_uris(text: str, base_dir: Optional[Path] = None,
                      package_dirs: Optional[Mapping[str, str]] = None) -> str:
    """``text`` with every ``filename`` attribute an absolute path (``UrdfResourceError`` when
    one cannot be found)."""
    def sub(m: re.Match) -> str:
        return m.group(1) + m.group(2) + resolve_uri(m.group(3), base_dir, package_dirs) \
            + m.group(2)
    return _FILENAME.sub(sub, text)


def needs_resolving(text: str, base_dir: Optional[Path] = None) -> bool:
    """True when the URDF names a file:// URI, or a package:// URI that PyBullet would not
    find by itself (it reads ``package://rest`` as ``rest`` beside the URDF file)."""
    for m in _FILENAME.finditer(text):
        uri = m.group(3)
        if uri.startswith("package://"):
            if base_dir is None or not (Path(base_dir) / uri[len("package://"):]).is_file():
                return True
        elif "://" in uri:
            return True
    return False


def loadable_urdf_file(text: str, name: str, base_dir: Optional[Path] = None,
                       package_dirs: Optional[Mapping[str, str]] = None) -> str:
    """A file holding ``text`` with its URIs resolved, for PyBullet to load: one file per
    distinct content under the temporary folder (written once, reused afterwards)."""
    resolved = resolve_urdf_uris(text, base_dir, package_dirs)
    digest = hashlib.sha1(resolved.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "spatialpin_urdf"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "robot"
    path = folder / f"{safe}_{digest}.urdf"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(resolved)
        os.replace(tmp, path)
    return str(path)
