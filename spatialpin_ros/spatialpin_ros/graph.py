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
PERCEPTION = NodeSpec("perception", "perception_node", "spatialpin_ros.ros.perception_node",
                      ("perception.yaml",))
SPATIAL_QA = NodeSpec("spatial_qa", "spatial_qa_node", "spatialpin_ros.ros.spatial_qa_node",
                      ("spatial_qa.yaml",))
MANIPULATION = NodeSpec("manipulation", "manipulation_node",
                        "spatialpin_ros.ros.manipulation_node", ("manipulation.yaml",))

GRAPHS: dict[str, tuple[NodeSpec, ...]] = {
    # The simulated arm, scene and camera alone.
    "sim": (SIM,),
    # Perception and spatial questions on a real camera (RealSense topic names; camera pose
    # from TF or a parameter).
    "perception": (PERCEPTION, SPATIAL_QA),
    # The simulated world, perceived, with spatial questions.
    "sim_perception": (SIM, PERCEPTION, SPATIAL_QA),
    # The spatial question service alone (scene priors come from elsewhere).
    "spatial_qa": (SPATIAL_QA,),
    # The simulated arm perceives, proposes, plans and stacks.
    "pick_and_stack": (SIM, PERCEPTION, SPATIAL_QA, MANIPULATION),
    # Perception, questions, proposals and planning for a real arm under ros2_control.
    "manipulation": (PERCEPTION, SPATIAL_QA, MANIPULATION),
}

#: Launch arguments every graph accepts, as (name, default, description, node, parameter, type).
ARGUMENTS: tuple[tuple[str, str, str, str, str, type], ...] = (
    ("seed", "0", "Seed of the random tabletop", "sim", "seed", int),
    ("scene_file", "", "YAML scene file; empty = random tabletop from seed", "sim", "scene_file",
     str),
    ("perception_backend", "geometric", "Perception backend: geometric or models", "perception",
     "backend", str),
    ("qa_backend", "geometric", "Default spatial QA backend: geometric, openai or transformers",
     "spatial_qa", "default_backend", str),
)


def graph(name: str) -> tuple[NodeSpec, ...]:
    """The nodes of graph ``name``; KeyError naming the known graphs otherwise."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise KeyError(f"unknown graph {name!r}; known: {', '.join(sorted(GRAPHS))}") from None
