"""The torch lifting (perception/lift_gpu.py and its kernels) against the numpy lifting, on the
CPU with torch: the same priors from the same depth and masks.

Tolerances: positions and sizes within 1e-6 m, orientations within 1e-9 (|q1 . q2| - 1);
labels, shapes, colours, containers, rois, confidences and full-resolution masks equal. Both
paths compute in float64 from the same float32 points; only summation order differs.
"""

import dataclasses

import numpy as np
import pytest

from conftest import frames_with_true_masks

torch = pytest.importorskip("torch")

from spatialpin_ros.core.geometry import (fit_rectangle_yaw, quantile, robust_circle,  # noqa: E402
                                          sphere_fit)
from spatialpin_ros.perception.base import Segmentation  # noqa: E402
from spatialpin_ros.perception.detection_names import _DetectionNamer, _Fixed  # noqa: E402
from spatialpin_ros.perception.geometric import GeometricBackend  # noqa: E402
from spatialpin_ros.perception import lift_torch as lt  # noqa: E402
from spatialpin_ros.perception.lift_gpu import TorchLifter, host_segmentation  # noqa: E402
from spatialpin_ros.perception.lift_rows_torch import full_labels_t  # noqa: E402
from spatialpin_ros.perception.objects import full_resolution, grown_labels  # noqa: E402

SEEDS = (1, 2, 4, 6, 9, 12)


@pytest.fixture(scope="module")
def scenes():
    """(RGB-D frame, true object masks, names) of several random tabletops."""
    return frames_with_true_masks(SEEDS)


def _padded(arrays):
    n = torch.tensor([len(a) for a in arrays])
    P = torch.zeros((len(arrays), int(n.max()), arrays[0].shape[1]), dtype=torch.float64)
    for k, a in enumerate(arrays):
        P[k, : len(a)] = torch.from_numpy(a)
    return P, n


def _same_scene(sa, sb):
    assert len(sa.objects) == len(sb.objects)
    assert np.allclose(sa.support_plane, sb.support_plane)
    for oa, ob in zip(sa.objects, sb.objects):
        assert (oa.id, oa.label, oa.shape, oa.color_name, oa.container, oa.roi, oa.confidence,
                oa.num_points) == (ob.id, ob.label, ob.shape, ob.color_name, ob.container,
                                   ob.roi, ob.confidence, ob.num_points)
        assert np.abs(oa.pose.position - ob.pose.position).max() < 1e-6
        assert np.abs(oa.size - ob.size).max() < 1e-6
        assert abs(abs(float(oa.pose.quaternion @ ob.pose.quaternion)) - 1) < 1e-9
        assert oa.inner_depth == pytest.approx(ob.inner_depth, abs=1e-6)
        assert np.array_equal(oa.mask, ob.mask)
        ta, tb = oa.top_face, ob.top_face
        assert (ta is None) == (tb is None)
        if ta is not None:
            assert (ta.height, ta.solid, ta.cells, ta.points) == (tb.height, tb.solid, tb.cells,
                                                                  tb.points)
            assert np.allclose(ta.polygon, tb.polygon, atol=1e-9)


def test_the_torch_lifting_gives_the_numpy_priors(scenes):
    lifted = 0
    for i, (frame, masks, names) in enumerate(scenes):
        seg = Segmentation(masks=masks, names=names, scores=[0.5 + 0.05 * i for i in
                                                             range(len(masks))])
        a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
        sa = a.finish(a.prepare(frame), masks=seg.masks)
        b = GeometricBackend()
        b.lifting_threads = 1 + 3 * (i % 2)     # the top faces in line, or on worker threads
        dev = Segmentation(masks=[torch.from_numpy(m) for m in masks], names=names,
                           scores=list(seg.scores))
        # the top faces' array work in the device half (by default on CUDA only), or not
        got = TorchLifter(device_tops=i % 3 != 2).lift(
            b, b.prepare(frame), torch.from_numpy(np.stack(masks)), dev, None)
        if got is None:                         # touching pieces: the numpy path's business
            continue
        lifted += 1
        sb, namer = got
        assert b.last["lifting"] == "torch"
        _same_scene(sa, sb)
        # each object is named after its mask, with that mask's score
        for ob in sb.objects:
            assert namer.by_roi[tuple(ob.roi)][0] == ob.label
    assert lifted >= 2, "the torch path must run on most of these scenes"


def test_touching_pieces_go_to_the_numpy_path(scenes):
    frame, masks, names = scenes[0]
    m = masks[1]                      # a box cut into its top and its front: merge_nested joins
    top = m.copy()
    top[int(np.nonzero(m.any(axis=1))[0].mean()):] = False
    pieces = [m & ~top, top, masks[0]] + masks[2:]
    seg = Segmentation(masks=[torch.from_numpy(x) for x in pieces])
    b = GeometricBackend()
    got = TorchLifter().lift(b, b.prepare(frame), torch.from_numpy(np.stack(pieces)), seg,
                             None)
    # where merge_nested joins pieces the frame goes to the numpy path (None); where it joins
    # none, the torch path's objects are the numpy path's
    if got is not None:
        ref = GeometricBackend().finish(b.prepare(frame), masks=pieces)
        assert [np.round(o.size, 6).tolist() for o in got[0].objects] == \
            [np.round(o.size, 6).tolist() for o in ref.objects]
    assert all(isinstance(x, np.ndarray) for x in host_segmentation(seg).masks)


def test_kernels_match_their_numpy_originals():
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=n) for n in (1, 7, 600, 1333)]
    X, n = _padded([r[:, None] for r in rows])
    for q in (0.02, 0.5, 0.9, 0.98):
        got = lt.mquantile(X[..., 0], lt.valid_mask(n, X.shape[1]), q)
        assert got.tolist() == [quantile(r, q) for r in rows]
    # several quantiles of several arrays from one sort: the same numbers, empty rows NaN
    Y, _ = _padded([rng.normal(size=(len(r), 1)) for r in rows])
    v = lt.valid_mask(torch.cat([n[:3], torch.zeros(1, dtype=n.dtype)]), X.shape[1])
    qs = (0.01, 0.03, 0.5, 0.97, 0.99)
    many = lt.mquantiles([X[..., 0], Y[..., 0]], v, qs)
    for i, A in enumerate((X[..., 0], Y[..., 0])):
        for j, q in enumerate(qs):
            one = lt.mquantile(A, v, q)
            assert torch.equal(many[i][j][:3], one[:3]) and torch.isnan(many[i][j][3])
            assert torch.isnan(one[3])
    # box outlines, arcs and blobs
    clouds = []
    for k in range(6):
        t = rng.uniform(0, 2 * np.pi, 200 + 90 * k)
        if k % 2:
            xy = np.stack([0.03 * np.cos(t), 0.03 * np.sin(t)], 1)
        else:
            xy = rng.uniform(-0.04, 0.04, (len(t), 2)) * [1.0, 0.5]
            xy[:, 0] = np.where(rng.random(len(t)) < 0.5, np.sign(xy[:, 0]) * 0.04, xy[:, 0])
        c, s = np.cos(0.3 * k), np.sin(0.3 * k)
        clouds.append(xy @ np.array([[c, s], [-s, c]]) + rng.normal(0, 0.0005, xy.shape) + k)
    XY, n = _padded(clouds)
    d0 = torch.full((len(clouds),), 0.0015, dtype=torch.float64)
    yaw, res = lt.rectangle_yaw(XY, n, d0)
    for k, xy in enumerate(clouds):
        ry, rr = fit_rectangle_yaw(xy, d0=0.0015)
        assert yaw[k].item() == pytest.approx(ry, abs=1e-9)
        assert res[k].item() == pytest.approx(rr, rel=1e-9)
    c, r, e, ok = lt.robust_circle(XY, n, torch.full((len(clouds),), 0.003, dtype=torch.float64))
    for k, xy in enumerate(clouds):
        ref = robust_circle(xy, 0.003)
        assert bool(ok[k]) is (ref is not None)
        if ref is not None:
            assert np.allclose(c[k].numpy(), ref[0], atol=1e-9)
            assert r[k].item() == pytest.approx(ref[1], abs=1e-9)
            assert e[k].item() == pytest.approx(ref[2], abs=1e-9)
    balls = [rng.normal(size=(300 + 50 * k, 3)) for k in range(3)]
    balls = [0.05 * b / np.linalg.norm(b, axis=1, keepdims=True) + k for k, b in enumerate(balls)]
    P, n = _padded(balls)
    cs, rs, es = lt.sphere_fit(P, lt.valid_mask(n, P.shape[1]))
    for k, b in enumerate(balls):
        ref = sphere_fit(b)
        assert np.allclose(cs[k].numpy(), ref[0], atol=1e-9) and rs[k].item() == pytest.approx(
            ref[1], abs=1e-9)


def test_full_resolution_labels_match(scenes):
    frame, masks, _ = scenes[1]
    b = GeometricBackend()
    prep = b.prepare(frame)
    from spatialpin_ros.perception.segmentation import labels_from_masks
    seg = labels_from_masks(prep.foreground, masks)
    cam = frame.camera
    ref = full_resolution(grown_labels(seg, 3), cam.width, cam.height)
    z = torch.nan_to_num(torch.from_numpy(prep.points[..., 2]), nan=0.0)
    got = full_labels_t(torch.from_numpy(seg.labels), z, seg.stride, cam.width, cam.height, 3)
    assert np.array_equal(got.numpy(), ref)
    assert dataclasses.is_dataclass(prep.foreground)


def _same_prepared(pa, pb):
    for k in ("depth", "points", "extent"):
        assert np.array_equal(getattr(pa, k), getattr(pb, k), equal_nan=True), k
    # heights: both sides compute x * nx + y * ny + z * nz in float32 in this order
    # (segmentation.plane_heights, prepare_torch.grid_masks), not a BLAS product whose
    # summation order differs between builds and CPUs: the same bits
    assert np.array_equal(pa.foreground.height, pb.foreground.height, equal_nan=True), "height"
    assert np.array_equal(pa.foreground.foreground, pb.foreground.foreground), "foreground"
    assert (pa.foreground.stride, pa.foreground.focal) == (pb.foreground.stride,
                                                           pb.foreground.focal)
    for k in ("normal", "R", "origin", "hull"):
        assert np.array_equal(getattr(pa.support, k), getattr(pb.support, k)), k
    assert (pa.support.offset, pa.support.noise_k) == (pb.support.offset, pb.support.noise_k)


def test_the_torch_prepare_gives_the_numpy_prepare_and_priors(scenes):
    """The depth-only half with its grids in torch: the same arrays, plane and extent as
    numpy's ``prepare``, and with the torch ``finish`` the numpy path's priors."""
    from spatialpin_ros.perception.prepare_torch import TorchPreparer, TorchPrepared

    cpu = torch.device("cpu")
    preparer = TorchPreparer()
    lifted = 0
    for frame, masks, names in scenes[:4]:
        seg = Segmentation(masks=masks, names=names, scores=[0.6] * len(masks))
        a, b = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg)), \
            GeometricBackend()
        pa, pb = a.prepare(frame), preparer.prepare(b, frame, cpu)
        assert isinstance(pb, TorchPrepared)
        _same_prepared(pa, pb)
        assert pb.dev["fg"].dtype == torch.bool and pb.dev["points"].shape == pa.points.shape
        ref = a.finish(pa, masks=masks)
        got = TorchLifter().lift(b, pb, torch.from_numpy(np.stack(masks)),
                                 Segmentation(masks=[torch.from_numpy(m) for m in masks],
                                              names=names, scores=list(seg.scores)), None)
        if got is not None:
            lifted += 1
            _same_scene(ref, got[0])
    assert lifted >= 2


def test_torch_depth_sampling_and_bad_depth_match_numpy(scenes):
    from spatialpin_ros.core.errors import ImageError
    from spatialpin_ros.perception.depth_grid import sample_depth
    from spatialpin_ros.perception.prepare_torch import TorchPreparer, sample_depth_t

    frame = scenes[0][0]
    rng = np.random.default_rng(3)
    d = frame.depth.copy()
    d[rng.random(d.shape) < 0.4] = 0.0                  # salt-and-pepper holes, NaNs
    d[rng.random(d.shape) < 0.05] = np.nan
    for s in (1, 2, 3, 4, 5):
        assert np.array_equal(sample_depth_t(torch.from_numpy(d), s).numpy(),
                              sample_depth(d, s)), s
    holed = dataclasses.replace(frame, depth=d)
    _same_prepared(GeometricBackend().prepare(holed),
                   TorchPreparer().prepare(GeometricBackend(), holed, torch.device("cpu")))
    empty = dataclasses.replace(frame, depth=np.zeros_like(frame.depth))
    sa = GeometricBackend().prepare(empty)
    sb = TorchPreparer().prepare(GeometricBackend(), empty, torch.device("cpu"))
    assert sa.status == sb.status and sa.status_message == sb.status_message
    mm = dataclasses.replace(frame, depth=frame.depth * 1000)
    with pytest.raises(ImageError, match="millimetres"):
        TorchPreparer().prepare(GeometricBackend(), mm, torch.device("cpu"))


def test_device_label_boxes_equal_scipys():
    from spatialpin_ros.perception.lift_rows_torch import label_boxes_t
    from spatialpin_ros.perception.objects import label_boxes

    rng = np.random.default_rng(5)
    full = np.zeros((48, 64), dtype=np.int16)
    for k in (1, 2, 4, 6):                               # labels 3 and 5 absent
        r, c = rng.integers(0, 40), rng.integers(0, 56)
        full[r:r + rng.integers(1, 9), c:c + rng.integers(1, 9)] = k
    full[47, 63] = 2                                     # a stray pixel stretches a box
    rows = label_boxes_t(torch.from_numpy(full), 6).numpy()
    got = {k: tuple(int(v) for v in b) for k, b in enumerate(rows) if k > 0 and b[2] > 0}
    assert got == label_boxes(full) and set(got) == {1, 2, 4, 6}


def test_a_remembered_stride_that_is_wrong_changes_nothing(scenes):
    """The preparer enqueues the working grid's points at the last frame's stride before the
    plane is known; a wrong guess is recomputed at the right stride."""
    from spatialpin_ros.perception.prepare_torch import TorchPreparer

    frame = scenes[0][0]
    ref = GeometricBackend().prepare(frame)
    cam = frame.camera
    for guess in (1, ref.foreground.stride, ref.foreground.stride + 1):
        preparer = TorchPreparer()
        preparer._strides[(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy)] = guess
        _same_prepared(ref, preparer.prepare(GeometricBackend(), frame, torch.device("cpu")))


def _same_tops(objs, ref):
    for o, r in zip(objs, ref):
        a, b = o.top_face, r.top_face
        assert (a is None) == (b is None), (o.label, a, b)
        if a is not None:
            assert (a.height, a.solid, a.cells, a.points) == (b.height, b.solid, b.cells,
                                                              b.points)
            assert np.array_equal(a.polygon, b.polygon)


def test_the_shared_top_faces_are_the_per_object_ones(scenes):
    """``top_faces.describe_tops`` (one back-projection, one binned grid and one closing for all
    objects; the lifting's top faces, numpy and torch alike) gives exactly the top faces of
    ``describe_top`` object by object (``describe_tops_each``): on each scene's numpy and torch
    lifting, with D435 depth noise and dropouts, with a fixed stride, and with objects that get
    none (no mask, too few points)."""
    import copy

    from spatialpin_ros.perception import top_faces as tf
    from spatialpin_ros.sim.depth_noise import apply_d435_noise

    rng = np.random.default_rng(5)
    described = 0
    for i, (frame, masks, names) in enumerate(scenes[:4]):
        seg = Segmentation(masks=masks, names=names, scores=[0.5] * len(masks))
        a = GeometricBackend(segmenter=_Fixed(seg), namer=_DetectionNamer(seg))
        prep = a.prepare(frame)
        sa = a.finish(prep, masks=seg.masks)
        b = GeometricBackend()
        got = TorchLifter().lift(b, b.prepare(frame), torch.from_numpy(np.stack(masks)),
                                 Segmentation(masks=[torch.from_numpy(m) for m in masks],
                                              names=names, scores=list(seg.scores)), None)
        lifted = [sa] + ([got[0]] if got is not None else [])
        noisy = apply_d435_noise(frame.depth, frame.rgb, rng)
        noisy[rng.random(noisy.shape) < 0.05] = np.nan             # dropouts
        plane = a._plane_world(prep.support, sa.camera_pose)
        for scene in lifted:
            objs = copy.deepcopy(scene.objects)
            if i == 1 and len(objs) > 2:
                objs[0].mask = None                                # no mask: no top face
                objs[1].mask = objs[1].mask & False                # no points: none
            for depth, stride in ((prep.depth, 0), (noisy, 0), (noisy.astype(np.float64), 3)):
                ref = copy.deepcopy(objs)
                tf.describe_tops_each(ref, depth, frame.camera, scene.camera_pose, plane, stride)
                tf.describe_tops(objs, depth, frame.camera, scene.camera_pose, plane, stride)
                _same_tops(objs, ref)
                described += sum(o.top_face is not None for o in objs)
    assert described > 50


def test_top_face_helpers_match_numpy():
    """The partial-sort quantile and median of ``top_faces`` give numpy's numbers."""
    from types import SimpleNamespace

    from spatialpin_ros.core.types import CameraModel
    from spatialpin_ros.perception import top_faces as tf

    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 30, 51, 99, 100, 1000, 2783):
        a = rng.normal(0.05, 0.03, n)
        for q in (0.0, 0.02, 0.5, 0.9, 0.98, 1.0):
            assert tf._quantile(a.copy(), q) == float(np.quantile(a, q))
    cam = CameraModel(width=640, height=480, fx=615.0, fy=615.0, cx=320.0, cy=240.0)
    for dtype in (np.float32, np.float64):
        for k in range(40):
            depth = rng.uniform(0.2, 3.0, (480, 640)).astype(dtype)
            depth[rng.random(depth.shape) < 0.2 * (k % 3)] = 0.0
            x, y = rng.integers(0, 600), rng.integers(0, 440)
            o = SimpleNamespace(roi=(int(x), int(y), int(rng.integers(1, 80)),
                                     int(rng.integers(1, 80))), mask=True)
            assert tf._stride(o, depth, cam) == tf.sampling_stride(o, depth, cam)


def test_the_compiled_lifting_compiles_from_a_first_frame():
    """A node whose first frame goes straight to the compiled lifting (models.lifting_compile)
    must get it compiled: the lifting's constants are uploaded from numpy globals, which Dynamo
    fails to guard when traced under inference mode; the first call runs eagerly, so they
    exist before the trace. Compiled on the CPU here (the node compiles on CUDA only); a fresh
    constant name, so no earlier test has uploaded it."""
    from spatialpin_ros.perception.lift_gpu import _Compiled

    name = f"test_yaw_{id(object())}"
    yaw = np.radians(np.arange(0.0, 90.0, 1.5))

    def fn(x):
        g = lt._const(name, yaw, x.device)
        return (x[:, None] * torch.cos(g)[None]).sum(dim=1)

    x = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    c = _Compiled(fn, devices=("cpu",))
    with torch.inference_mode():
        got = [c(x), c(2 * x), c(3 * x)]
    assert c.failed is None and c._compiled is not None
    for k, y in enumerate(got, start=1):
        assert torch.allclose(y, fn(k * x))
