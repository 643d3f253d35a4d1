"""Reliability (issue 15): a crashed node under ``spatialpin bringup`` is respawned and answers the
next question; without respawn, bringup names the node that died and why; the launch files carry
the same respawn setting."""

import os
import signal
import sys
import time
import types

import pytest

from conftest import spin_until

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from spatialpin_interfaces.msg import ScenePriors  # noqa: E402
from spatialpin_interfaces.srv import AskSpatial  # noqa: E402

from spatialpin_ros.core.waiting import wait_until  # noqa: E402
from spatialpin_ros.ros import conversions as conv  # noqa: E402
from spatialpin_ros.ros.sim_node import LATCHED  # noqa: E402
from reliability_qa import ask, make_scene  # noqa: E402


def test_bringup_respawns_a_killed_node(rclpy_context, tmp_path):
    from spatialpin_ros.bringup import Bringup
    b = Bringup("spatial_qa", ["respawn:=true", "respawn_delay:=0.2",
                               "spatial_qa.ask_service:=/reliability/respawn/ask",
                               "spatial_qa.scene_priors_topic:=/reliability/respawn/scene_priors"],
                echo=False, log_dir=str(tmp_path))
    with b:
        first = b.procs["spatial_qa"]
        time.sleep(1.0)
        os.killpg(first.pid, signal.SIGKILL)  # a crash
        assert wait_until(lambda: b.restarts["spatial_qa"] >= 1, 20, step=0.1), \
            b.exit_reason("spatial_qa")
        second = b.procs["spatial_qa"]
        assert second is not first
        assert wait_until(lambda: "answering on" in (tmp_path / "spatial_qa.log").read_text(), 30,
                          step=0.1), \
            (tmp_path / "spatial_qa.log").read_text()[-2000:]
        assert second.poll() is None and b.failed() == {}
        assert b.exits["spatial_qa"][0] == -signal.SIGKILL
        # The respawned node answers a normal question.
        asker = Node("respawn_asker")
        ex = SingleThreadedExecutor()
        ex.add_node(asker)
        try:
            pub = asker.create_publisher(ScenePriors, "/reliability/respawn/scene_priors",
                                         LATCHED)
            pub.publish(conv.scene_to_msg(make_scene("respawned")))
            cli = asker.create_client(AskSpatial, "/reliability/respawn/ask")
            assert cli.wait_for_service(timeout_sec=30)
            for _ in range(30):  # until the latched scene has reached it
                r = ask(cli, ex, "How far is the red box from the blue box?", "respawned")
                if r.success or "unknown scene id" not in r.message:
                    break
                spin_until(ex, lambda: False, timeout=1.0)
            assert r.success and r.value == pytest.approx(0.3, abs=0.01), r.message
        finally:
            ex.shutdown()
            asker.destroy_node()


def test_without_respawn_bringup_says_which_node_died_and_why(tmp_path):
    from spatialpin_ros.bringup import Bringup, respawn_settings
    assert respawn_settings("sim_perception", ["respawn:=true", "sim.respawn:=false"])[0] == {
        "sim": (False, 1.0), "perception": (True, 1.0), "spatial_qa": (True, 1.0)}
    with Bringup("spatial_qa", ["spatial_qa.default_backend:=nope"], echo=False) as b:
        assert wait_until(lambda: b.failed(), 30, step=0.1)
        assert b.failed() == {"spatial_qa": 2} and b.restarts["spatial_qa"] == 0
        why = b.exit_reason("spatial_qa")
    assert "exit code 2" in why and "cannot start" in why and "default_backend" in why, why


def test_launch_files_carry_respawn(monkeypatch):
    """launch_description with stand-ins for launch and launch_ros (not on PyPI)."""
    made = []

    def record(kind):
        class Action:
            def __init__(self, *args, **kwargs):
                self.args, self.kwargs = args, kwargs
                made.append((kind, self))
        return Action
    mods = {"launch": {"LaunchDescription": record("ld")},
            "launch.actions": {"DeclareLaunchArgument": record("arg"),
                               "OpaqueFunction": record("opaque")},
            "launch.substitutions": {"LaunchConfiguration": record("conf")},
            "launch.conditions": {"IfCondition": record("if")},
            "launch_ros": {}, "launch_ros.actions": {"Node": record("node")},
            "launch_ros.parameter_descriptions": {"ParameterValue": record("pv")}}
    for name, attrs in mods.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    monkeypatch.delitem(sys.modules, "spatialpin_ros.ros.launch_description", raising=False)
    from spatialpin_ros.ros import launch_description as ldm
    ld = ldm.generate("sim_perception")
    args = {a.args[0]: a.kwargs["default_value"] for k, a in made if k == "arg"}
    assert args["respawn"] == "false" and float(args["respawn_delay"]) >= 0
    nodes = [a for a in ld.args[0] if (("node", a) in made)]
    if not nodes:  # nodes made at launch time, once the arguments are known
        opaque = [a for k, a in made if k == "opaque"][0]
        ctx = types.SimpleNamespace(launch_configurations={"respawn": "true",
                                                           "respawn_delay": "2.5"})
        nodes = opaque.kwargs["function"](ctx, *opaque.kwargs.get("args", []))
    assert {n.kwargs["name"] for n in nodes} == {"sim", "perception", "spatial_qa"}
    assert all(n.kwargs["respawn"] is True and n.kwargs["respawn_delay"] == 2.5 for n in nodes)
