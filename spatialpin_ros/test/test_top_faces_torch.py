"""The top faces' device half (perception/top_faces_torch.py) against the host's
``describe_tops_each``: the same top faces (heights, shares, cells, points, outlines bit for
bit) from the same labels and depth, on the CPU with torch."""

import copy

import numpy as np
import pytest

from conftest import frames_with_true_masks

torch = pytest.importorskip("torch")

from spatialpin_ros.perception import top_faces as tf  # noqa: E402
from spatialpin_ros.perception import top_faces_torch as tt  # noqa: E402
from spatialpin_ros.perception.base import Segmentation  # noqa: E402
from spatialpin_ros.perception.detection_names import _DetectionNamer, _Fixed  # noqa: E402
from spatialpin_ros.perception.geometric import GeometricBackend  # noqa: E402
from spatialpin_ros.perception.lift_rows_torch import label_boxes_t  # noqa: E402


def _full(objs, shape):
    """Full-resolution labels 1..K from the objects' masks on their rois."""
    full = np.zeros(shape, np.int16)
    for k, o in enumerate(objs, start=1):
        x, y, w, h = o.roi
        full[y:y + h, x:x + w][o.mask] = k
    return full


def _device_tops(objs, depth, camera, T_wc, plane, G, cap):
    full = _full(objs, depth.shape)
    ft = torch.from_numpy(full)
    boxes = label_boxes_t(ft, len(objs))
    c = torch.from_numpy(tt.top_consts(camera, T_wc, plane))
    table, grids = tt.top_table_t(ft, torch.from_numpy(depth), boxes, c, len(objs), G, cap)
    labels = tt.object_labels(objs, boxes.numpy(), full)
    assert labels == list(range(1, len(objs) + 1))
    rest = tt.tops_from_grids(objs, labels, table.numpy(), grids.numpy())
    tf.describe_tops(rest, depth, camera, T_wc, plane)
    return len(rest)


def test_the_device_top_faces_are_the_hosts():
    """On each scene's objects, with the depth as it is and with D435 noise and dropouts; with
    a small grid the larger objects go to the host's ``describe_tops``, with too few sample
    slots every object does."""
    from spatialpin_ros.sim.depth_noise import apply_d435_noise

    rng = np.random.default_rng(7)
    described = host = 0
    for frame, masks, names in frames_with_true_masks((1, 2, 4)):
        seg = Segmentation(masks=masks, names=names, scores=[0.5] * len(masks))
        a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
        prep = a.prepare(frame)
        scene = a.finish(prep, masks=seg.masks)
        plane = a._plane_world(prep.support, scene.camera_pose)
        noisy = apply_d435_noise(frame.depth, frame.rgb, rng).astype(np.float32)
        noisy[rng.random(noisy.shape) < 0.05] = np.nan
        for depth in (prep.depth, noisy):
            for G, cap in ((tt.GRID, tt.SAMPLES), (16, tt.SAMPLES), (tt.GRID, 500)):
                objs = copy.deepcopy(scene.objects)
                ref = copy.deepcopy(objs)
                tf.describe_tops_each(ref, depth, frame.camera, scene.camera_pose, plane)
                host += _device_tops(objs, depth, frame.camera, scene.camera_pose, plane, G,
                                     cap)
                for o, r in zip(objs, ref):
                    a_, b_ = o.top_face, r.top_face
                    assert (a_ is None) == (b_ is None), (o.label, a_, b_)
                    if a_ is not None:
                        assert (a_.height, a_.solid, a_.cells, a_.points) == \
                            (b_.height, b_.solid, b_.cells, b_.points)
                        assert np.array_equal(a_.polygon, b_.polygon)
                        described += 1
    assert described > 20 and host > 0


def test_the_device_strides_are_the_hosts():
    """``_strides``: ``top_faces._stride`` of each label's box (odd and even counts, holes)."""
    from types import SimpleNamespace

    from spatialpin_ros.core.top_face import CELL
    from spatialpin_ros.core.types import CameraModel

    rng = np.random.default_rng(3)
    cam = CameraModel(width=640, height=480, fx=615.0, fy=615.0, cx=320.0, cy=240.0)
    for k in range(6):
        depth = rng.uniform(0.2, 3.0, (480, 640)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.3 * (k % 3)] = np.nan
        full = np.zeros((480, 640), np.int16)
        for lab in range(1, 8):
            x, y = rng.integers(0, 600), rng.integers(0, 440)
            full[y:y + rng.integers(1, 80), x:x + rng.integers(1, 80)] = lab
        boxes = label_boxes_t(torch.from_numpy(full), 7)
        num = torch.tensor(0.5 * CELL * cam.fx, dtype=torch.float64)
        got = tt._strides(torch.from_numpy(full), torch.from_numpy(depth), boxes, num)
        for lab in range(1, 8):
            r0, c0, r1, c1 = boxes[lab].tolist()
            if r1 == 0:
                continue
            o = SimpleNamespace(roi=(c0, r0, c1 - c0, r1 - r0), mask=True)
            assert int(got[lab]) == tf._stride(o, depth, cam)
