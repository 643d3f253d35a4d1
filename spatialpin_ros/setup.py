"""ament_python package spatialpin_ros (the version is read from package.xml)."""

import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "spatialpin_ros"
HERE = Path(__file__).resolve().parent
VERSION = re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1)


def data_dir(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", sorted(glob(f"{folder}/{pattern}")))


setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        data_dir("launch", "*.launch.py"),
        data_dir("config", "*.yaml"),
        data_dir("config", "*.xml"),
        data_dir("config/scenes", "*.yaml"),
        data_dir("config/robots", "*.yaml"),
        data_dir("urdf"),
        data_dir("rviz", "*.rviz"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="spatialpin_ros maintainers",
    maintainer_email="maintainers@spatialpin-ros.dev",
    description="3D scene priors, spatial questions and acting on them, for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "spatialpin = spatialpin_ros.cli:main",
            "sim_node = spatialpin_ros.ros.sim_node:main",
            "perception_node = spatialpin_ros.ros.perception_node:main",
            "spatial_qa_node = spatialpin_ros.ros.spatial_qa_node:main",
            "manipulation_node = spatialpin_ros.ros.manipulation_node:main",
        ],
    },
)
