"""COCO RLE masks, instance-mask metrics (UOIS / UCN measures), overlays, and the YCB-Video
test frame's files."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialpin_ros.core.masks import (
    counts_to_string, decode_rle, encode_rle, mask_area, mask_iou, string_to_counts)
from spatialpin_ros.core.types import CameraModel, ObjectPrior, PerceptionStatus, Pose, Scene
from spatialpin_ros.perception.mask_metrics import (
    score_foreground, score_masks, truth_masks_from_labels)
from spatialpin_ros.perception.overlay import draw_overlay, save_png

YCB_FRAME = Path(__file__).parent / "data" / "ycb_0002_000001"


def _rect(shape, r0, r1, c0, c1):
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


# -- RLE ---------------------------------------------------------------------------------------

def _random_masks(n=150, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if k % 3 == 0:
            yield rng.random((h, w)) < rng.random()
        else:  # blobs: long runs, large counts (multi-character codes, negative differences)
            m = np.zeros((h, w), dtype=bool)
            for _ in range(int(rng.integers(0, 4))):
                r, c = (int(v) for v in rng.integers(0, [h, w]))
                m[r: r + int(rng.integers(1, h + 1)), c: c + int(rng.integers(1, w + 1))] = True
            yield m


def test_rle_round_trip():
    for m in _random_masks():
        rle = encode_rle(m)
        assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
        back = decode_rle(rle)
        assert back.dtype == bool and back.shape == m.shape and np.array_equal(back, m)
        assert mask_area(rle) == int(m.sum())
        # uncompressed list counts and bytes counts decode to the same mask
        counts = string_to_counts(rle["counts"])
        assert np.array_equal(decode_rle({"size": rle["size"], "counts": counts}), m)
        assert np.array_equal(decode_rle({"size": rle["size"],
                                          "counts": rle["counts"].encode()}), m)
        assert counts_to_string(counts) == rle["counts"]


def test_rle_known_coco_strings():
    """Strings as pycocotools 2.0 writes them (column-major runs, first run of zeros)."""
    m = _rect((4, 5), 1, 3, 1, 4)
    assert encode_rle(m)["counts"] == "5220003"
    assert string_to_counts("5220003") == [5, 2, 2, 2, 2, 2, 5]
    m2 = np.zeros((3, 3), dtype=bool)
    m2[0, 0] = m2[2, 2] = True
    assert encode_rle(m2)["counts"] == "0170"  # starts with an empty run of zeros
    m3 = _rect((100, 80), 10, 90, 5, 70)
    m3[40:60, 20:30] = False
    want = ("n?`2d00000000000000000000000000000^N000000000000000000000000000000000000000b1"
            + "0" * 78 + "nn0")
    assert encode_rle(m3)["counts"] == want
    assert np.array_equal(decode_rle({"size": [100, 80], "counts": want}), m3)
    assert encode_rle(np.ones((2, 3)))["counts"] == "06"
    assert encode_rle(np.zeros((2, 3)))["counts"] == "6"
    # column-major: a single set pixel at (row 0, col 1) of a 2x2 is the 3rd flat element
    assert decode_rle({"size": [2, 2], "counts": [2, 1, 1]}).tolist() == [[False, True],
                                                                        [False, False]]


def test_rle_rejects_bad_counts():
    with pytest.raises(ValueError):
        decode_rle({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError):
        encode_rle(np.zeros(5, dtype=bool))


def test_rle_matches_pycocotools_when_available():
    cm = pytest.importorskip("pycocotools.mask")
    for m in _random_masks(60, seed=1):
        theirs = cm.encode(np.asfortranarray(m.astype(np.uint8)))
        assert encode_rle(m)["counts"] == theirs["counts"].decode()
        assert np.array_equal(decode_rle(theirs), m)
        assert mask_area(encode_rle(m)) == int(cm.area(theirs))


def test_mask_area_and_iou():
    a, b = _rect((10, 10), 0, 4, 0, 5), _rect((10, 10), 2, 6, 0, 5)
    assert mask_area(a) == 20 and mask_area(encode_rle(a)) == 20
    assert mask_iou(a, b) == pytest.approx(10 / 30)
    assert mask_iou(encode_rle(a), b) == pytest.approx(10 / 30)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((3, 3)))


# -- instance-mask metrics ---------------------------------------------------------------------

SHAPE = (60, 80)
A = _rect(SHAPE, 5, 25, 5, 25)      # 400 px
B = _rect(SHAPE, 30, 50, 40, 70)    # 600 px


def test_perfect_prediction():
    s = score_masks([B, A], [A, B])
    assert (s.precision, s.recall, s.f_measure) == (1.0, 1.0, 1.0)
    assert s.num_one_piece == 2 and s.num_split == 0 and s.num_merged == 0 and s.num_false == 0
    pairs = sorted((m.pred_index, m.truth_index) for m in s.iou_matches)
    assert pairs == [(0, 1), (1, 0)]
    assert all(m.iou == 1.0 for m in s.iou_matches)


def test_split_object():
    left, right = _rect(SHAPE, 5, 25, 5, 14), _rect(SHAPE, 5, 25, 16, 25)  # 180 px each
    s = score_masks([left, right, B], [A, B])
    assert s.split_truths == [0] and s.num_merged == 0 and s.num_false == 0
    assert s.num_one_piece == 1  # B; each half of A has IoU 0.45 < 0.5
    assert [m.truth_index for m in s.iou_matches] == [1]
    # overlap measures count one matched piece of A
    assert s.precision == pytest.approx((180 + 600) / (180 + 180 + 600))
    assert s.recall == pytest.approx((180 + 600) / 1000)
    # a sliver (< 5 % of the object) does not make a split
    sliver = _rect(SHAPE, 5, 6, 5, 20)  # 15 px = 3.75 %
    s2 = score_masks([A & ~sliver, sliver], [A])
    assert s2.num_split == 0


def test_split_into_three_pieces_loses_the_one_piece_match():
    pieces = [_rect(SHAPE, 5, 25, c, c + 7) for c in (5, 12, 19)]
    s = score_masks(pieces, [A])
    assert s.split_truths == [0] and s.num_one_piece == 0
    # only one piece is matched: the other two count as wrong pixels (the UOIS definition)
    assert s.precision == pytest.approx(140 / 420) and s.recall == pytest.approx(140 / 400)


def test_merged_objects():
    C = _rect(SHAPE, 5, 25, 30, 50)
    s = score_masks([A | C], [A, C])
    assert s.merged_preds == [0] and s.num_false == 0 and s.num_split == 0
    assert s.num_one_piece == 1  # IoU 0.5 with either
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)


def test_false_object_and_missed_object():
    off = _rect(SHAPE, 40, 58, 0, 20)   # on no labelled object
    half_on = _rect(SHAPE, 20, 30, 5, 25)  # 100 of 200 px on A: not false (>= 50 %)
    s = score_masks([A, off, half_on], [A, B])
    assert s.false_preds == [1]
    assert s.num_one_piece == 1 and s.recall == pytest.approx(400 / 1000)
    assert s.precision == pytest.approx(400 / (400 + 360 + 200))
    assert score_masks([np.zeros(SHAPE, dtype=bool)], [A]).false_preds == [0]


def test_empty_cases():
    s = score_masks([], [A])
    assert (s.precision, s.recall, s.num_one_piece, s.num_false) == (0.0, 0.0, 0, 0)
    s = score_masks([A], [])
    assert s.false_preds == [0] and s.precision == 0.0
    s = score_masks([], [])
    assert s.f_measure == 1.0
    with pytest.raises(ValueError):
        score_masks([A], [np.zeros((3, 3), dtype=bool)])


def test_metric_matches_random_permutations():
    """Scores do not depend on the order of the predictions."""
    rng = np.random.default_rng(3)
    truths = [_rect(SHAPE, r, r + 12, c, c + 15) for r, c in ((2, 2), (2, 30), (30, 10), (35, 50))]
    preds = [t ^ (rng.random(SHAPE) < 0.02) & t for t in truths] + [_rect(SHAPE, 45, 58, 0, 8)]
    base = score_masks(preds, truths)
    for _ in range(3):
        perm = rng.permutation(len(preds))
        s = score_masks([preds[i] for i in perm], truths)
        assert s.precision == pytest.approx(base.precision)
        assert s.recall == pytest.approx(base.recall)
        assert s.num_one_piece == base.num_one_piece == 4 and s.num_false == 1
        assert {(perm[m.pred_index], m.truth_index) for m in s.iou_matches} == \
            {(m.pred_index, m.truth_index) for m in base.iou_matches}


def test_truth_masks_from_labels_and_foreground():
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[A], lab[B] = 3, 7
    ts = truth_masks_from_labels(lab, [7, 3])
    assert np.array_equal(ts[0], B) and np.array_equal(ts[1], A)
    f = score_foreground([A], A | B)
    assert f.precision == 1.0 and f.recall == pytest.approx(0.4)
    assert f.pred_pixels == 400 and f.true_pixels == 1000
    f0 = score_foreground([], A)
    assert (f0.precision, f0.recall, f0.f_measure) == (0.0, 0.0, 0.0)


# -- overlay -------------------------------------------------------------------------------------

def _scene(objects, flat=(), status=PerceptionStatus.OK, message=""):
    cam = CameraModel(80, 60, 70.0, 70.0, 39.5, 29.5)
    return Scene("t", list(objects), cam, Pose(), flat_items=list(flat), status=status,
                 status_message=message)


def test_overlay_draws_masks_boxes_and_status(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((*SHAPE, 3)) * 80).astype(np.uint8)
    with_mask = ObjectPrior("obj_0", "red box", Pose(), [0.1] * 3, roi=(5, 5, 20, 20),
                            mask=A[5:25, 5:25])
    no_mask = ObjectPrior("obj_1", "cup", Pose(), [0.1] * 3, roi=(40, 30, 30, 20))
    flat = ObjectPrior("flat_0", "paper", Pose(), [0.2, 0.3, 0.002], roi=(0, 40, 30, 18),
                       mask=np.ones((18, 30), dtype=bool))
    img = draw_overlay(rgb, _scene([with_mask, no_mask], [flat]), truth_masks=[B])
    assert img.shape == rgb.shape and img.dtype == np.uint8
    assert not np.array_equal(img[10:20, 10:20], rgb[10:20, 10:20])  # tinted mask
    assert rgb.max() < 255 and (img == 255).all(-1).any()  # white truth outline
    empty = draw_overlay(rgb, _scene([], status=PerceptionStatus.NO_SUPPORT_PLANE,
                                     message="no table in view"))
    assert not np.array_equal(empty, rgb)  # the status message is written
    big = (rng.random((480, 640, 3)) * 255).astype(np.uint8)  # noise: the worst case for PNG
    p = save_png(tmp_path / "o.png", big)
    out = np.asarray(Image.open(p))
    assert out.shape[1] == 480 and out.shape[0] == 360 and p.stat().st_size < 150_000


# -- the YCB-Video test frame ----------------------------------------------------------------------

def test_ycb_test_frame_parses():
    meta = json.loads((YCB_FRAME / "meta.json").read_text())
    assert meta["dataset"] == "YCB-Video" and meta["licence"].startswith("MIT")
    assert (YCB_FRAME / "README.txt").exists()
    color = np.asarray(Image.open(YCB_FRAME / "color.png").convert("RGB"))
    depth = np.asarray(Image.open(YCB_FRAME / "depth.png"))
    labels = np.asarray(Image.open(YCB_FRAME / "labels.png"))
    H, W = meta["height"], meta["width"]
    assert color.shape == (H, W, 3) and depth.shape == (H, W) and labels.shape == (H, W)
    assert depth.dtype == np.uint16 and labels.dtype == np.uint8
    z = depth[depth > 0] / 1000.0
    assert 0.5 < np.median(z) < 2.0
    K = np.asarray(meta["K"])
    assert K.shape == (3, 3) and K[0, 0] > 0 and 0 < K[0, 2] < W and 0 < K[1, 2] < H
    cam = CameraModel(W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    objs = meta["objects"]
    assert len(objs) == 6
    assert set(np.unique(labels)) - {0} == {o["id"] for o in objs}
    for o in objs:
        m = labels == o["id"]
        assert int(m.sum()) == o["visible_pixels"] > 0
        Rt = np.asarray(o["pose_cam"])
        assert Rt.shape == (3, 4)
        assert np.allclose(Rt[:, :3] @ Rt[:, :3].T, np.eye(3), atol=1e-4)
        u, v = cam.project(Rt[:, 3][None])[0]  # the pose centre lies on or near its own label
        vs, us = np.nonzero(m)
        assert np.min(np.hypot(us - u, vs - v)) < 15
