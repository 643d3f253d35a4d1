"""Helpers of the reliability tests that talk to the spatial QA node: a two-box scene and one
question over ROS."""

from conftest import spin_until
from spatialpin_interfaces.srv import AskSpatial

from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, Scene, look_at


def make_scene(scene_id, stamp=0.0):
    objs = [ObjectPrior("obj_0", "red box", Pose.from_yaw([0.5, -0.2, 0.025], 0.3),
                        [0.05, 0.04, 0.05], shape="box", color_name="red"),
            ObjectPrior("obj_1", "blue box", Pose.from_yaw([0.5, 0.1, 0.03], 0.0),
                        [0.08, 0.06, 0.06], shape="box", color_name="blue")]
    return Scene(scene_id, objs, CameraModel.from_fov(640, 480, 58),
                 look_at([1.2, 0.0, 0.5], [0.5, 0, 0]), [0, 0, 1, 0], stamp=stamp)


def ask(cli, ex, question, scene_id="", backend=""):
    fut = cli.call_async(AskSpatial.Request(question=question, scene_id=scene_id,
                                            backend=backend))
    assert spin_until(ex, fut.done, timeout=15), "no answer: is the node alive?"
    return fut.result()
