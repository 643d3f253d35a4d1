"""The node graphs, defined once: which nodes, parameter files and remappings.

Both the launch files (``launch/*.launch.py``, for ROS 2 distributions) and the bringup command
(``spatialpin bringup``, which needs no ``ros2 launch``) read this module. ROS-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """One node: its ``name``, console-script ``executable`` (in lib/spatialpin_ros), Python
    ``module`` with a ``main()``, parameter files under config/, and topic ``remappings``."""

    name: str
    executable: str
    module: str
    params: tuple[str, ...] = ()
    remappings: tuple[tuple[str, str], ...] = field(default_factory=tuple)


SIM = NodeSpec("sim", "sim_node", "spatialpin_ros.ros.sim_node", ("sim.yaml",))

GRAPHS: dict[str, tuple[NodeSpec, ...]] = {
    # The simulated arm, scene and camera alone.
    "sim": (SIM,),
}

#: Launch arguments every graph accepts, as (name, default, description, node, parameter, type).
ARGUMENTS: tuple[tuple[str, str, str, str, str, type], ...] = (
    ("seed", "0", "Seed of the random tabletop", "sim", "seed", int),
    ("scene_file", "", "YAML scene file; empty = random tabletop from seed", "sim", "scene_file",
     str),
)


def graph(name: str) -> tuple[NodeSpec, ...]:
    """The nodes of graph ``name``; KeyError naming the known graphs otherwise."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise KeyError(f"unknown graph {name!r}; known: {', '.join(sorted(GRAPHS))}") from None
