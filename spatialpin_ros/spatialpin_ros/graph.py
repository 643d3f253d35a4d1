"""The node graphs, defined once: which nodes, parameter files and remappings.

Both the launch files (``launch/*.launch.py``, for ROS 2 distributions) and the bringup command
(``spatialpin bringup``, which needs no ``ros2 launch``) read this module. ROS-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """One node: its ``name``, console-script ``executable`` (in lib/spatialpin_ros), Python
    ``module`` with a ``main()``, parameter files under config/, and topic ``remappings``.

    ``respawn``: restart the node when it exits, ``respawn_delay`` seconds later (as launch's
    ``Node(respawn=True, respawn_delay=...)``). Off by default, as in launch; the ``respawn`` and
    ``respawn_delay`` launch arguments (``RESPAWN_ARGUMENTS``) turn it on for every node, and
    ``spatialpin bringup`` also takes ``NODE.respawn:=true`` and ``NODE.respawn_delay:=S``."""

    name: str
    executable: str
    module: str
    params: tuple[str, ...] = ()
    remappings: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    respawn: bool = False
    respawn_delay: float = 1.0

    def remap_args(self) -> list[str]:
        """The remappings as ROS command-line arguments (``-r from:=to`` each), e.g. for an
        in-process node: ``Node(cli_args=["--ros-args", *spec.remap_args()])``."""
        return [a for src, dst in self.remappings for a in ("-r", f"{src}:={dst}")]


SIM = NodeSpec("sim", "sim_node", "spatialpin_ros.ros.sim_node", ("sim.yaml",))
PERCEPTION = NodeSpec("perception", "perception_node", "spatialpin_ros.ros.perception_node",
                      ("perception.yaml",))

#: The perception node's default camera topics (realsense-ros 4.x, namespace and name "camera")
#: and the simulator's (config/sim.yaml), which the simulated graphs remap them to.
REALSENSE_TOPICS = {"color": "/camera/camera/color/image_raw",
                    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
                    "info": "/camera/camera/color/camera_info"}
SIM_CAMERA_TOPICS = {"color": "/camera/color/image_raw",
                     "depth": "/camera/aligned_depth_to_color/image_raw",
                     "info": "/camera/color/camera_info"}
#: Perception on the simulator: its RealSense-named inputs remapped to the simulator's camera.
PERCEPTION_ON_SIM = NodeSpec(
    PERCEPTION.name, PERCEPTION.executable, PERCEPTION.module, PERCEPTION.params,
    tuple((REALSENSE_TOPICS[k], SIM_CAMERA_TOPICS[k]) for k in ("color", "depth", "info")))
SPATIAL_QA = NodeSpec("spatial_qa", "spatial_qa_node", "spatialpin_ros.ros.spatial_qa_node",
                      ("spatial_qa.yaml",))
#: Spatial QA on the simulator: its RealSense-named colour input (images for VLM backends)
#: remapped to the simulator's camera, like perception's.
SPATIAL_QA_ON_SIM = NodeSpec(
    SPATIAL_QA.name, SPATIAL_QA.executable, SPATIAL_QA.module, SPATIAL_QA.params,
    ((REALSENSE_TOPICS["color"], SIM_CAMERA_TOPICS["color"]),))
MANIPULATION = NodeSpec("manipulation", "manipulation_node",
                        "spatialpin_ros.ros.manipulation_node", ("manipulation.yaml",))

GRAPHS: dict[str, tuple[NodeSpec, ...]] = {
    # The simulated arm, scene and camera alone.
    "sim": (SIM,),
    # Perception and spatial questions on a real camera (realsense-ros 4.x topic names, or the
    # color_topic, depth_topic and camera_info_topic arguments; camera pose from TF or a
    # parameter, else the table's gravity frame).
    "perception": (PERCEPTION, SPATIAL_QA),
    # The simulated world, perceived, with spatial questions.
    "sim_perception": (SIM, PERCEPTION_ON_SIM, SPATIAL_QA_ON_SIM),
    # The spatial question service alone (scene priors come from elsewhere).
    "spatial_qa": (SPATIAL_QA,),
    # The simulated arm perceives, proposes, plans and stacks.
    "pick_and_stack": (SIM, PERCEPTION_ON_SIM, SPATIAL_QA_ON_SIM, MANIPULATION),
    # Perception, questions, proposals and planning for a real arm under ros2_control.
    "manipulation": (PERCEPTION, SPATIAL_QA, MANIPULATION),
}

#: Launch arguments every graph accepts, as (name, default, description, node, parameter, type).
#: A name may appear more than once: the argument then sets a parameter of each node named
#: (color_topic: perception's and spatial QA's colour input).
ARGUMENTS: tuple[tuple[str, str, str, str, str, type], ...] = (
    ("seed", "0", "Seed of the random tabletop", "sim", "seed", int),
    ("scene_file", "", "YAML scene file; empty = random tabletop from seed", "sim", "scene_file",
     str),
    ("perception_backend", "geometric", "Perception backend: geometric or models", "perception",
     "backend", str),
    ("color_topic", REALSENSE_TOPICS["color"], "Colour image topic of the camera (realsense-ros "
     "3.x: /camera/color/image_raw)", "perception", "color_topic", str),
    ("color_topic", REALSENSE_TOPICS["color"], "Colour image topic of the camera (realsense-ros "
     "3.x: /camera/color/image_raw)", "spatial_qa", "color_topic", str),
    ("depth_topic", REALSENSE_TOPICS["depth"], "Depth aligned to colour (realsense-ros 3.x: "
     "/camera/aligned_depth_to_color/image_raw)", "perception", "depth_topic", str),
    ("camera_info_topic", REALSENSE_TOPICS["info"], "Camera info of the colour image "
     "(realsense-ros 3.x: /camera/color/camera_info)", "perception", "camera_info_topic", str),
    ("robot", "panda", "Robot description of the arm (config/robots/NAME.yaml or a YAML file)",
     "sim", "robot", str),
    ("robot", "panda", "Robot description of the arm (config/robots/NAME.yaml or a YAML file)",
     "perception", "self_filter.robot", str),
    ("robot", "panda", "Robot description of the arm (config/robots/NAME.yaml or a YAML file)",
     "manipulation", "robot", str),
    ("qa_backend", "geometric", "Default spatial QA backend: geometric, openai or transformers",
     "spatial_qa", "default_backend", str),
)


#: Launch arguments of the process supervisor rather than of a node, as (name, default,
#: description): both the launch files and ``spatialpin bringup`` accept them.
RESPAWN_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("respawn", "false", "Restart a node that exits (crash or error), as launch's "
     "Node(respawn=True); with false, under spatialpin bringup one node's exit stops the graph"),
    ("respawn_delay", "1.0", "Seconds to wait before restarting an exited node (respawn)"),
)


def graph(name: str) -> tuple[NodeSpec, ...]:
    """The nodes of graph ``name``; KeyError naming the known graphs otherwise."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise KeyError(f"unknown graph {name!r}; known: {', '.join(sorted(GRAPHS))}") from None
