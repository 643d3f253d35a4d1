"""Scene files and random tabletops (no ROS, no physics)."""

import numpy as np
import pytest
import yaml

from spatialpin_ros.core.errors import SceneSpecError
from spatialpin_ros.paths import resolve_scene_file
from spatialpin_ros.sim.scene_spec import (footprint, load_scene_file, parse_scene,
                                           polygons_overlap, random_scene)

GOOD = {
    "camera": {"width": 640, "height": 480, "fov_deg": 58, "eye": [1.2, 0, 0.6],
               "target": [0.5, 0, 0]},
    "objects": [
        {"name": "red_block", "shape": "box", "size": [0.05, 0.05, 0.05], "rgba": [1, 0, 0, 1],
         "position": [0.5, 0.1, 0.025], "yaw_deg": 30},
        {"name": "blue_block", "shape": "box", "size": [0.04, 0.04, 0.04], "color": "blue",
         "position": [0.5, 0.1], "on_top_of": "red_block"},
        {"name": "duck", "urdf": "duck_vhacd.urdf", "scale": 1.0, "position": [0.6, -0.1, 0.0]},
    ],
}


def test_parse_good_scene():
    s = parse_scene(GOOD)
    assert [o.name for o in s.objects] == ["red_block", "blue_block", "duck"]
    assert s.objects[0].color_name == "red" and s.objects[1].color_name == "blue"
    assert s.objects[1].on == "red_block"
    assert parse_scene(s.to_dict()).to_dict() == s.to_dict()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["objects"][0].update(shape="cube"), "objects\\[0\\].*shape"),
    (lambda d: d["objects"][0].update(size=[0.1, -1, 0.1]), "positive"),
    (lambda d: d["objects"][0].update(size=[0.1, 0.1]), "expected 3 numbers"),
    (lambda d: d["objects"][0].pop("position"), "position: required"),
    (lambda d: d["objects"][0].update(rgba=[2, 0, 0]), "0..1"),
    (lambda d: d["objects"][1].update(on_top_of="nobody"), "must name an object listed before"),
    (lambda d: d["objects"][2].update(name="red_block"), "duplicate name"),
    (lambda d: d["objects"][0].update(urdf="x.urdf"), "exactly one of"),
    (lambda d: d["objects"][0].update(colour="red"), "unknown keys"),
    (lambda d: d["camera"].update(eye=[0.5, 0, 0]), "coincide"),
    (lambda d: d["camera"].update(width="wide"), "camera.width"),
    (lambda d: d.update(objects={"a": 1}), "objects: expected a list"),
])
def test_malformed_scenes_name_the_field(mutate, message):
    import copy
    d = copy.deepcopy(GOOD)
    mutate(d)
    with pytest.raises(SceneSpecError, match=message):
        parse_scene(d)


def test_bare_on_key_is_read_as_on_top_of(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("objects:\n  - {name: a, shape: box, size: 0.05, position: [0.5, 0, 0.025]}\n"
                 "  - {name: b, shape: box, size: 0.04, position: [0.5, 0], on: a}\n")
    assert load_scene_file(f).objects[1].on == "a"


def test_scene_file_errors(tmp_path):
    with pytest.raises(SceneSpecError, match="cannot read"):
        load_scene_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera: [unclosed\n")
    with pytest.raises(SceneSpecError, match="not valid YAML"):
        load_scene_file(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(SceneSpecError, match="expected a mapping"):
        load_scene_file(notmap)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert load_scene_file(good).name == "good"


def test_shipped_scenes_parse():
    for name in ("two_blocks", "three_blocks", "tabletop"):
        spec = load_scene_file(resolve_scene_file(name))
        assert len(spec.objects) >= 2


def test_random_scenes_are_deterministic_and_varied():
    a, b = random_scene(7), random_scene(7)
    assert a.to_dict() == b.to_dict()
    counts, stacked, touching, cameras = [], 0, 0, set()
    for seed in range(60):
        s = random_scene(seed)
        counts.append(len(s.objects))
        stacked += sum(o.on is not None for o in s.objects)
        cameras.add(tuple(np.round(s.camera.eye, 3)))
        table = [o for o in s.objects if o.on is None]
        polys = [footprint(o.shape, o.size, o.position[0], o.position[1], o.yaw_deg)
                 for o in table]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert not polygons_overlap(polys[i], polys[j]), f"seed {seed}: overlap"
                if polygons_overlap(polys[i], polys[j], margin=0.003):
                    touching += 1
        assert {o.shape for o in s.objects} <= {"box", "cylinder", "sphere"}
        assert len({o.name for o in s.objects}) == len(s.objects)
    assert min(counts) >= 2 and max(counts) <= 8 and len(set(counts)) >= 5
    assert stacked >= 10 and touching >= 10
    assert len(cameras) == 60
