"""Launch descriptions for ROS 2 distributions, built from ``spatialpin_ros.graph``.

Used by ``launch/*.launch.py``; needs ``launch`` and ``launch_ros`` (not on PyPI: without a ROS 2
distribution use ``spatialpin bringup <graph>``, which reads the same graph).
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from spatialpin_ros.graph import ARGUMENTS, graph
from spatialpin_ros.paths import config_file


def generate(graph_name: str, rviz: bool = False) -> LaunchDescription:
    declared = {}  # one declaration per name (an argument may set several nodes' parameters)
    for name, default, desc, *_ in ARGUMENTS:
        declared.setdefault(name, (default, desc))
    actions = [DeclareLaunchArgument(name, default_value=default, description=desc)
               for name, (default, desc) in declared.items()]
    for spec in graph(graph_name):
        overrides = {param: ParameterValue(LaunchConfiguration(arg), value_type=typ)
                     for arg, _, _, node, param, typ in ARGUMENTS if node == spec.name}
        actions.append(Node(
            package="spatialpin_ros", executable=spec.executable, name=spec.name,
            parameters=[str(config_file(f)) for f in spec.params] + [overrides],
            remappings=list(spec.remappings), output="screen", emulate_tty=True))
    if rviz:
        actions.append(DeclareLaunchArgument("rviz", default_value="false",
                                             description="Start rviz2 with the shipped view"))
        from launch.conditions import IfCondition
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz",
                            arguments=["-d", str(config_file("../rviz/spatialpin.rviz"))],
                            condition=IfCondition(LaunchConfiguration("rviz"))))
    return LaunchDescription(actions)
