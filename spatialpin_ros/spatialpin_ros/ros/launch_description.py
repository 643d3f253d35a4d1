"""Launch descriptions for ROS 2 distributions, built from ``spatialpin_ros.graph``.

Used by ``launch/*.launch.py``; needs ``launch`` and ``launch_ros`` (not on PyPI: without a ROS 2
distribution use ``spatialpin bringup <graph>``, which reads the same graph).

Respawn: each node carries its NodeSpec's ``respawn`` and ``respawn_delay`` into launch's
``Node(respawn=..., respawn_delay=...)``; the ``respawn`` launch argument (``respawn:=true``)
turns it on for every node and ``respawn_delay:=S`` sets the delay, as ``spatialpin bringup``
accepts them.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from spatialpin_ros.graph import ARGUMENTS, RESPAWN_ARGUMENTS, graph
from spatialpin_ros.paths import config_file


def respawn_options(spec, launch_configurations: dict) -> dict:
    """``respawn`` and ``respawn_delay`` of launch's Node for ``spec``: on when the spec says so
    or the ``respawn`` launch argument is true; the delay from the ``respawn_delay`` argument
    when given on the command line, else the spec's. Read at launch time (an OpaqueFunction), as
    plain values, so it works on every distribution's launch (Humble's takes a bool only)."""
    defaults = {name: default for name, default, _ in RESPAWN_ARGUMENTS}
    flag = str(launch_configurations.get("respawn", defaults["respawn"])).strip().lower()
    delay = launch_configurations.get("respawn_delay")
    try:
        delay = max(0.0, float(delay)) if delay not in (None, defaults["respawn_delay"]) \
            else float(spec.respawn_delay)
    except ValueError:
        raise ValueError(f"respawn_delay:={delay}: expected seconds >= 0") from None
    return {"respawn": bool(spec.respawn) or flag in ("true", "1", "yes", "on"),
            "respawn_delay": delay}


def _nodes(context, graph_name: str) -> list:
    """The graph's Node actions, made at launch time (the respawn arguments are then known)."""
    nodes = []
    for spec in graph(graph_name):
        overrides = {param: ParameterValue(LaunchConfiguration(arg), value_type=typ)
                     for arg, _, _, node, param, typ in ARGUMENTS if node == spec.name}
        nodes.append(Node(
            package="spatialpin_ros", executable=spec.executable, name=spec.name,
            parameters=[str(config_file(f)) for f in spec.params] + [overrides],
            remappings=list(spec.remappings), output="screen", emulate_tty=True,
            **respawn_options(spec, context.launch_configurations)))
    return nodes


def generate(graph_name: str, rviz: bool = False) -> LaunchDescription:
    declared = {}  # one declaration per name (an argument may set several nodes' parameters)
    for name, default, desc, *_ in ARGUMENTS:
        declared.setdefault(name, (default, desc))
    for name, default, desc in RESPAWN_ARGUMENTS:
        declared.setdefault(name, (default, desc))
    actions = [DeclareLaunchArgument(name, default_value=default, description=desc)
               for name, (default, desc) in declared.items()]
    actions.append(OpaqueFunction(function=_nodes, args=[graph_name]))
    if rviz:
        actions.append(DeclareLaunchArgument("rviz", default_value="false",
                                             description="Start rviz2 with the shipped view"))
        from launch.conditions import IfCondition
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz",
                            arguments=["-d", str(config_file("../rviz/spatialpin.rviz"))],
                            condition=IfCondition(LaunchConfiguration("rviz"))))
    return LaunchDescription(actions)
