"""The priors' host work (objects.lit_colours, _DetectionNamer.name_priors, the torch
lifting's host half) against the straightforward per-object computations it replaces, and the
torch lifting's priors against the numpy backend's, field by field (colour values, axis
names and the namer's scores included), on the CPU with torch."""

import dataclasses

import numpy as np
import pytest

from conftest import frames_with_true_masks

from spatialpin_ros.core.geometry import quantile
from spatialpin_ros.perception.base import Segmentation
from spatialpin_ros.perception.detection_names import _DetectionNamer, _Fixed
from spatialpin_ros.perception.geometric import GeometricBackend
from spatialpin_ros.perception.objects import lit_colour, lit_colours, mask_pixels


def _lit_colour_reference(px, cell=0.04):
    """lit_colour as first written: one sample, on its (N, 3) float32 array."""
    if len(px) == 0:
        return (0, 0, 0)
    px = px.reshape(-1, 3)[:: max(1, len(px) // 2000)].astype(np.float32)
    lum = px.sum(axis=1)
    lit = px[lum >= min(60.0, quantile(lum, 0.5))]
    rg = lit[:, :2] / np.maximum(lit.sum(axis=1, keepdims=True), 1.0)
    side = int(1.0 / cell) + 1
    cells = np.minimum((rg / cell).astype(np.int64), side - 1)
    idx = cells[:, 0] * side + cells[:, 1]
    mode = rg[idx == int(np.argmax(np.bincount(idx)))].mean(axis=0)
    hue = lit[np.hypot(*(rg - mode).T) <= cell]
    ls = hue.sum(axis=1)
    bright = hue[ls >= quantile(ls, 0.5)]
    return tuple(int(round(float(v))) for v in bright.mean(axis=0))


def _samples(rng, k):
    out = []
    for j in range(k):
        n = 0 if j == 1 else int(rng.integers(1, 5000))
        base = rng.integers(0, 256, 3)
        px = np.clip(base + rng.normal(0, rng.uniform(1, 80), (n, 3)), 0, 255).astype(np.uint8)
        if j % 3 == 0 and n:                                   # a second colour
            px[rng.random(n) < 0.3] = rng.integers(0, 256, 3)
        if j % 4 == 0:                                         # noise
            px[: n // 2] = rng.integers(0, 256, (n // 2, 3))
        if j % 5 == 2:                                         # dark, hardly any hue
            px[:] = rng.integers(0, 40, 3)
        out.append(px)
    return out


def test_batched_colours_equal_one_sample_at_a_time():
    rng = np.random.default_rng(11)
    for _ in range(60):
        batch = _samples(rng, int(rng.integers(1, 13)))
        want = [_lit_colour_reference(px) for px in batch]
        assert lit_colours(batch) == want
        assert [lit_colour(px) for px in batch] == want
    assert lit_colours([]) == [] and lit_colours([np.zeros((0, 3), np.uint8)]) == [(0, 0, 0)]


@pytest.fixture(scope="module")
def frames():
    return frames_with_true_masks((2, 6))


def _fields(o):
    return (o.id, o.label, o.shape, o.color_name, o.rgb, o.roi, o.confidence, o.num_points,
            o.container, o.axis_names, o.yaw_symmetric)


def test_mask_pixels_equal_the_masked_crop():
    """mask_pixels (flat indices and one take) gives the pixels of the masked crop, in order,
    for small and large boxes (strided), boxes past the image's edge and a non-contiguous
    image."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    full = rng.integers(0, 4, (480, 640)).astype(np.int32)
    boxes = [(0, 0, 480, 640), (100, 200, 170, 262), (400, 600, 500, 700), (3, 5, 4, 6),
             (10, 10, 10, 30)]
    for _ in range(30):
        r0, c0 = int(rng.integers(0, 470)), int(rng.integers(0, 630))
        boxes.append((r0, c0, r0 + int(rng.integers(1, 300)), c0 + int(rng.integers(1, 400))))
    for img in (rgb, np.asfortranarray(rgb)):
        for box in boxes:
            r0, c0, r1, c1 = box
            st = max(1, int(np.sqrt((r1 - r0) * (c1 - c0) / 4000)))
            for label in (0, 3):
                want = img[r0:r1:st, c0:c1:st][full[r0:r1:st, c0:c1:st] == label]
                got = mask_pixels(img, full, box, label)
                assert got.dtype == want.dtype and np.array_equal(got, want), box


def test_namer_on_roi_crops_equals_full_masks(frames):
    frame, masks, names = frames[0]
    seg = Segmentation(masks=masks, names=names, scores=[0.9 - 0.1 * i for i in
                                                         range(len(masks))])
    a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
    objects = a.finish(a.prepare(frame), masks=seg.masks).objects
    assert len(objects) >= 3
    h, w = frame.rgb.shape[:2]
    rows, cols = np.nonzero(np.any(masks, axis=0))
    for bounds in (None, (0, h, 0, w), (int(rows.min()), int(rows.max()) + 1,
                                        int(cols.min()), int(cols.max()) + 1),
                   (int(rows.min()) + 5, int(rows.max()) - 5, int(cols.min()) + 5,
                    int(cols.max()) - 5)):        # a crop that cuts the masks
        full, crop = _DetectionNamer(seg, bounds), _DetectionNamer(seg, bounds)
        want = full.name(frame.rgb, [o.full_mask(h, w) for o in objects])
        assert crop.name_priors(frame.rgb, objects) == want
        assert crop.by_roi == full.by_roi and len(full.by_roi) == len(objects)


def test_the_torch_host_half_gives_the_numpy_priors(frames):
    torch = pytest.importorskip("torch")
    from spatialpin_ros.perception.lift_gpu import TorchLifter, host_half

    compared = 0
    for frame, masks, names in frames:
        seg = Segmentation(masks=masks, names=names, scores=[0.5 + 0.05 * i for i in
                                                             range(len(masks))])
        a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
        ref = a.finish(a.prepare(frame), masks=seg.masks)
        b = GeometricBackend()
        prep = b.prepare(frame)
        got = TorchLifter().device_half(b, prep, torch.from_numpy(np.stack(masks)))
        out = host_half(b, prep, got, seg, None)
        if out is None:                            # touching pieces: the numpy path's
            continue
        scene, namer = out
        assert len(scene.objects) == len(ref.objects) >= 3
        for oa, ob in zip(ref.objects, scene.objects):
            assert _fields(oa) == _fields(ob)
            assert np.abs(oa.pose.position - ob.pose.position).max() < 1e-6
            assert np.abs(oa.size - ob.size).max() < 1e-6
            assert np.array_equal(oa.mask, ob.mask)
            assert namer.by_roi[tuple(ob.roi)] == a.namer.by_roi[tuple(oa.roi)]
        assert [_fields(o) for o in ref.flat_items] == [_fields(o) for o in scene.flat_items]
        # the host half again on the same device results: the same priors (ids aside)
        again, _ = host_half(b, dataclasses.replace(prep), got, seg, None)
        assert [_fields(o)[1:] for o in again.objects] == [_fields(o)[1:]
                                                             for o in scene.objects]
        compared += 1
    assert compared >= 1
