"""A stand-in for the perception node in manipulation tests: the red block beside the blue one
(and the red block stacked on it), published as a fresh ScenePriors five times a second."""

import math

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at
from spatialpin_ros.ros import conversions as conv

RED = ObjectPrior("obj_0", "red block", Pose.from_yaw([0.5, 0.12, 0.0225], math.radians(20)),
                  [0.045, 0.045, 0.045], shape="box", color_name="red")
BLUE = ObjectPrior("obj_1", "blue block", Pose.from_yaw([0.52, -0.08, 0.025], math.radians(-10)),
                   [0.07, 0.07, 0.05], shape="box", color_name="blue")
STACKED = ObjectPrior("obj_0", "red block",
                      Pose.from_yaw([0.52, -0.08, 0.05 + 0.0225], math.radians(-10)),
                      [0.045, 0.045, 0.045], shape="box", color_name="red")


class ScenePublisher:
    """Publishes ``objects`` as a fresh scene (ids ``<prefix>_<n>``) five times a second on
    /spatialpin/scene_priors; set ``objects`` to change what the next scenes show."""

    def __init__(self, node, prefix: str):
        from spatialpin_interfaces.msg import ScenePriors
        from spatialpin_ros.ros.sim_node import LATCHED
        self.node, self.prefix, self.objects, self.n = node, prefix, [RED, BLUE], 0
        self.pub = node.create_publisher(ScenePriors, "/spatialpin/scene_priors", LATCHED)
        node.create_timer(0.2, self.publish)

    def publish(self):
        self.n += 1
        stamp = self.node.get_clock().now()
        scene = Scene(f"{self.prefix}_{self.n}", list(self.objects),
                      CameraModel.from_fov(640, 480, 58), look_at([1.15, 0.0, 0.55], [0.5, 0, 0]),
                      [0, 0, 1, 0], stamp=stamp.nanoseconds * 1e-9)
        self.pub.publish(conv.scene_to_msg(scene, stamp.to_msg()))
