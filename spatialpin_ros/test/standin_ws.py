"""Test-only interface packages for machines without a ROS 2 distribution: where ``control_msgs``
or ``vision_msgs`` is not importable, colcon builds the stand-ins of ``test/standins/`` (the
published definitions, see its README) into ``build/test_ws/`` and this process loads them.

One colcon build for both packages (about a minute on two cores), reused while the stand-ins'
sources, the interpreter and the ROS installation are unchanged; a file lock keeps parallel test
processes from building at once. Tests skip, with the reason, only where colcon or CMake is
missing; a failed build is an error with the log's tail.

Loading without a new process: the built libraries carry their search path (RUNPATH), and
the type-support libraries that rosidl loads by name at run time are loaded first, so the
dynamic loader finds them already in the process (LD_LIBRARY_PATH is read only at start)."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "standins"
PACKAGES = ("control_msgs", "vision_msgs")
WS = HERE.parents[1] / "build" / "test_ws"
INSTALL = WS / "install"


def _importable(package: str) -> bool:
    try:
        importlib.import_module(f"{package}.msg")
        return True
    except ImportError:
        return False


def _key(packages) -> str:
    h = hashlib.sha256(" ".join(packages).encode())
    for f in sorted(SOURCES.rglob("*")):
        if f.is_file() and f.name != "README.md" and f.relative_to(SOURCES).parts[0] in packages:
            h.update(str(f.relative_to(SOURCES)).encode() + f.read_bytes())
    # The interpreter and the ROS installation the libraries are built against.
    import rclpy
    h.update(f"{sys.executable}|{os.environ.get('ROS_DISTRO', '')}|"
             f"{Path(rclpy.__file__).resolve()}|{Path(rclpy.__file__).stat().st_mtime}".encode())
    return h.hexdigest()[:16]


def _build(packages) -> None:
    """colcon build of the stand-ins of ``packages`` into ``build/test_ws`` unless an identical
    build is there."""
    if importlib.util.find_spec("colcon_core") is None:
        pytest.skip("colcon is not installed: cannot build the control_msgs/vision_msgs "
                    "stand-ins (scripts/setup.sh installs it)")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: cannot build the control_msgs/vision_msgs stand-ins")
    WS.mkdir(parents=True, exist_ok=True)
    key = _key(packages)
    stamp = WS / ".stamp"
    with open(WS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == key:
            return
        for d in ("src", "build", "install", "log"):
            shutil.rmtree(WS / d, ignore_errors=True)
        for p in packages:
            shutil.copytree(SOURCES / p, WS / "src" / p)
        lib = INSTALL / "lib"
        cmd = [sys.executable, "-m", "colcon", "--log-base", str(WS / "log"), "build",
               "--merge-install", "--base-paths", str(WS / "src"),
               "--build-base", str(WS / "build"), "--install-base", str(INSTALL),
               "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}",
               f"-DCMAKE_INSTALL_RPATH={lib}", "-DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON"]
        run = subprocess.run(cmd, cwd=WS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        (WS / "build.log").write_text(run.stdout)
        if run.returncode != 0:
            raise RuntimeError(f"colcon build of the stand-ins failed ({WS / 'build.log'}):\n"
                               + run.stdout[-3000:])
        stamp.write_text(key)


def _load() -> None:
    """Put the stand-ins' Python packages on sys.path and their C libraries in the process."""
    site = next(INSTALL.glob("lib/python3*/site-packages"))
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    for var in ("AMENT_PREFIX_PATH", "LD_LIBRARY_PATH"):  # for child processes and ament_index
        value = str(INSTALL) if var == "AMENT_PREFIX_PATH" else str(INSTALL / "lib")
        old = os.environ.get(var, "")
        if value not in old.split(os.pathsep):
            os.environ[var] = value + (os.pathsep + old if old else "")
    libs = sorted(p for p in (INSTALL / "lib").glob("lib*__rosidl_*.so")
                  if p.stem.endswith(("_c", "_py")))
    for _ in range(len(libs)):  # dependencies first: retry until all load
        failed = []
        for p in libs:
            try:
                ctypes.CDLL(str(p), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                failed.append(p)
        if not failed or len(failed) == len(libs):
            break
        libs = failed
    importlib.invalidate_caches()


def require(package: str):
    """``package`` (control_msgs or vision_msgs) importable: the installed one, else the
    stand-in, built once (with the other one where that is missing too, so that one build
    serves both; an installed package is never shadowed). Returns its ``msg`` module."""
    assert package in PACKAGES, package
    if not _importable(package):
        missing = [p for p in PACKAGES if p == package or not _importable(p)]
        _build(missing)
        _load()
        for p in missing:  # a failed import may have left a half-imported package
            for name in [m for m in sys.modules if m == p or m.startswith(p + ".")]:
                del sys.modules[name]
    return importlib.import_module(f"{package}.msg")


def is_standin(package: str) -> bool:
    """Whether ``package`` was loaded from the stand-ins."""
    mod = sys.modules.get(package) or importlib.import_module(package)
    return str(INSTALL) in str(getattr(mod, "__file__", ""))
