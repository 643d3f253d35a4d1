"""The core stays ROS-free: only spatialpin_ros/ros/ may import rclpy or message packages."""

import ast
from pathlib import Path

import spatialpin_ros

PKG = Path(spatialpin_ros.__file__).resolve().parent
GLUE = PKG / "ros"
FORBIDDEN_EXACT = {"rclpy", "message_filters", "cv_bridge", "launch", "launch_ros", "tf2_ros",
                   "tf2_py", "rosbag2_py", "spatialpin_interfaces"}
FORBIDDEN_SUFFIXES = ("_msgs", "_srvs", "_interfaces")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):  # every import, also inside functions (lazy imports count)
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def is_ros(name: str) -> bool:
    return name in FORBIDDEN_EXACT or name.endswith(FORBIDDEN_SUFFIXES)


def test_core_modules_import_no_ros():
    core_files = [p for p in PKG.rglob("*.py") if GLUE not in p.parents]
    assert len(core_files) >= 10
    offenders = {str(p.relative_to(PKG)): sorted(n for n in imported_modules(p) if is_ros(n))
                 for p in core_files}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core modules import ROS packages: {offenders}"


def test_the_checker_catches_an_offender(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def f():\n    from sensor_msgs.msg import Image\n    import rclpy\n")
    assert {n for n in imported_modules(f) if is_ros(n)} == {"sensor_msgs", "rclpy"}


def test_glue_exists_and_does_use_ros():
    assert any("rclpy" in imported_modules(p) for p in GLUE.glob("*.py"))
