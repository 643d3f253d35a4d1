"""Where the package's shared files (config, launch, urdf, rviz, scenes) live.

In a colcon workspace or a ROS 2 distribution: the ament index's share directory. Otherwise (a
plain checkout): the source tree beside this package.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "spatialpin_ros"


def share_dir() -> Path:
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parent.parent


def config_file(name: str) -> Path:
    """A file under config/ (e.g. ``sim.yaml``)."""
    return share_dir() / "config" / name


def resolve_scene_file(path: str) -> Path:
    """A scene file path as given, or, when relative and not found, under config/scenes/
    (with or without the .yaml suffix)."""
    p = Path(path).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    scenes = share_dir() / "config" / "scenes"
    for cand in (scenes / path, scenes / f"{path}.yaml"):
        if cand.is_file():
            return cand
    return p
