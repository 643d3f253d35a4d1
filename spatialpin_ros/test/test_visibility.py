"""How much of an object is out of sight (``perception.visibility``): the share of its outline
bordering something in front of it or the image's edge."""

import numpy as np
import pytest

from spatialpin_ros.core.types import ObjectPrior, Pose
from spatialpin_ros.perception.geometric import GeometricBackend
from spatialpin_ros.perception.visibility import hidden_share, set_hidden
from spatialpin_ros.sim.scene_spec import CameraSpec, ObjectSpec, SceneSpec
from spatialpin_ros.sim.world import SimWorld


def _prior(full: np.ndarray) -> ObjectPrior:
    rows, cols = np.nonzero(full)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return ObjectPrior("o", "thing", Pose(), [0.05] * 3, roi=(c0, r0, c1 - c0, r1 - r0),
                       mask=full[r0:r1, c0:c1])


def test_the_outline_beside_something_nearer_or_at_the_image_edge_is_hidden():
    depth = np.full((60, 80), 1.0, np.float32)      # a table 1 m away
    back = np.zeros((60, 80), bool)
    back[20:40, 20:40] = True                       # an object at 0.8 m...
    depth[back] = 0.8
    front = np.zeros((60, 80), bool)
    front[20:40, 40:50] = True                      # ...with another at 0.6 m on its right
    depth[front] = 0.6
    edge = np.zeros((60, 80), bool)
    edge[30:50, 0:10] = True                        # one cut by the image's left edge
    depth[edge] = 0.8
    objs = [_prior(back), _prior(front), _prior(edge)]
    set_hidden(objs, depth)
    b, f, e = (o.hidden for o in objs)
    assert b == pytest.approx(20 / 80, abs=0.05)    # its right side of four
    assert f == 0.0                                 # nothing in front of it
    assert e == pytest.approx(20 / 60, abs=0.06)    # its left side, on the edge
    holes = depth.copy()
    holes[20:40, 40:50] = 0.0                       # no depth beside it: not judged
    objs = [_prior(back)]
    set_hidden(objs, holes)
    assert objs[0].hidden == 0.0
    none = ObjectPrior("n", "thing", Pose(), [0.05] * 3)
    set_hidden([none], depth)
    assert none.hidden == -1.0                      # no mask: unknown


def test_hidden_share_of_an_empty_outline_is_zero():
    assert hidden_share(np.zeros((5, 5), bool), np.ones((5, 5), np.float32),
                        np.zeros((5, 5), bool)) == 0.0


def test_a_block_behind_another_is_partly_hidden_and_the_one_in_front_is_not():
    spec = SceneSpec(camera=CameraSpec(), objects=[
        ObjectSpec("front", shape="box", size=(0.05, 0.06, 0.10), rgba=(0.9, 0.1, 0.1, 1),
                   position=(0.62, 0.0, 0.05)),
        ObjectSpec("behind", shape="box", size=(0.05, 0.09, 0.05), rgba=(0.1, 0.2, 0.9, 1),
                   position=(0.50, 0.045, 0.025)),
        ObjectSpec("alone", shape="box", size=(0.05, 0.05, 0.05), rgba=(0.1, 0.8, 0.2, 1),
                   position=(0.55, -0.2, 0.025))])
    with SimWorld(spec) as w:
        frame = w.render()
    scene = GeometricBackend().perceive(frame)
    by_colour = {o.color_name: o for o in scene.objects}
    assert {"red", "blue", "green"} <= set(by_colour), [o.label for o in scene.objects]
    assert by_colour["blue"].hidden > 0.15
    assert by_colour["red"].hidden < 0.05 and by_colour["green"].hidden < 0.05
