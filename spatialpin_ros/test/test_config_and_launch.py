"""Parameter files, declared parameters, launch files and the graph agree with each other."""

import ast
from pathlib import Path

import pytest
import yaml

from spatialpin_ros.bringup import node_command, split_overrides
from spatialpin_ros.graph import ARGUMENTS, GRAPHS, graph
from spatialpin_ros.paths import config_file, share_dir

ROOT = Path(__file__).resolve().parent.parent


def node_params(module: str) -> dict:
    import importlib
    return importlib.import_module(module).PARAMS


def test_every_node_parameter_is_in_its_config_file_and_described():
    for nodes in GRAPHS.values():
        for spec in nodes:
            declared = node_params(spec.module)
            in_files = {}
            for f in spec.params:
                data = yaml.safe_load(config_file(f).read_text())
                in_files.update(data[spec.name]["ros__parameters"])
            assert set(in_files) == set(declared), (
                f"{spec.name}: only in yaml {set(in_files) - set(declared)}, "
                f"only declared {set(declared) - set(in_files)}")
            for name, p in declared.items():
                assert len(p.description) > 10, f"{spec.name}.{name} needs a description"
                default = list(p.default) if isinstance(p.default, tuple) else p.default
                assert in_files[name] == default, f"{spec.name}.{name}: yaml and default differ"


def test_launch_files_use_the_shared_graph():
    launch_dir = ROOT / "launch"
    files = sorted(launch_dir.glob("*.launch.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") == "generate"]
        assert calls, f"{f.name} does not build its description from the shared graph"
        graph(calls[0].args[0].value)  # the graph it names exists


def test_bringup_command_lines():
    cmd = node_command(graph("sim")[0], ["seed:=3"])
    assert "--ros-args" in cmd and "__node:=sim" in cmd
    assert str(config_file("sim.yaml")) in cmd and cmd[-2:] == ["-p", "seed:=3"]
    assert split_overrides("sim", ["seed:=4", "sim.camera_rate_hz:=1.0"]) == {
        "sim": ["seed:=4", "camera_rate_hz:=1.0"]}
    with pytest.raises(ValueError, match="no node or launch argument"):
        split_overrides("sim", ["planner.x:=1"])
    with pytest.raises(ValueError, match="must look like"):
        split_overrides("sim", ["seed=3"])
    with pytest.raises(KeyError, match="known: "):
        graph("nope")
    assert {a[0] for a in ARGUMENTS} >= {"seed", "scene_file"}


def test_share_dir_has_the_installed_files():
    share = share_dir()
    for rel in ("package.xml", "config/sim.yaml", "config/fastdds.xml", "launch/sim.launch.py"):
        assert (share / rel).exists(), rel


def test_a_node_with_a_bad_parameter_exits_with_the_reason():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "spatialpin_ros.ros.sim_node", "--ros-args",
                        "-p", "depth_encoding:=8UC1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "depth_encoding" in r.stderr and "cannot start" in r.stderr


def test_spatial_qa_colour_input_follows_the_camera_like_perception():
    from spatialpin_ros.graph import REALSENSE_TOPICS, SIM_CAMERA_TOPICS, SPATIAL_QA, \
        SPATIAL_QA_ON_SIM
    from spatialpin_ros.ros.spatial_qa_node import PARAMS
    assert PARAMS["color_topic"].default == REALSENSE_TOPICS["color"]
    assert dict(SPATIAL_QA_ON_SIM.remappings) == {REALSENSE_TOPICS["color"]:
                                                  SIM_CAMERA_TOPICS["color"]}
    for name, nodes in GRAPHS.items():
        has_sim = any(s.name == "sim" for s in nodes)
        for s in nodes:
            if s.name == "spatial_qa":
                assert s is (SPATIAL_QA_ON_SIM if has_sim else SPATIAL_QA), name
    # The color_topic launch argument sets both nodes' colour input.
    out = split_overrides("perception", ["color_topic:=/camera/color/image_raw"])
    assert out == {"perception": ["color_topic:=/camera/color/image_raw"],
                   "spatial_qa": ["color_topic:=/camera/color/image_raw"]}
    assert split_overrides("sim", ["color_topic:=/x"]) == {"sim": []}
