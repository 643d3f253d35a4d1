"""Sampling depth onto the working grid keeps sparse depth and keeps edges (perception/depth_grid)."""

import numpy as np

from spatialpin_ros.perception.depth_grid import sample_depth


def test_sparse_dropouts_are_filled_from_the_block():
    rng = np.random.default_rng(0)
    d = np.full((60, 80), 0.7, np.float32)
    d[rng.random(d.shape) < 0.5] = 0.0          # a black surface: half the pixels lost
    out = sample_depth(d, 3)
    assert out.shape == (20, 27)
    assert (out > 0).mean() > 0.95
    assert np.allclose(out[out > 0], 0.7)
    plain = d[::3, ::3]
    assert (plain > 0).mean() < 0.6             # what plain striding would have kept


def test_a_block_spanning_a_depth_edge_is_not_filled():
    d = np.full((12, 12), 0.9, np.float32)      # far surface
    d[:, :4] = 0.6                              # near surface, image columns 0-3
    d[:, 3] = 0.0                               # working column 1 samples image column 3: lost
    out = sample_depth(d, 3)
    # its block (columns 3-5) holds the far surface only (4, 5), but the filled sample would
    # sit beside the near surface's samples (column 0): it stays missing
    assert np.all(out[:, 1] == 0.0)
    assert np.allclose(out[:, 0], 0.6) and np.allclose(out[:, 2], 0.9)
    d[:, 4] = 0.6                               # now the block holds both surfaces
    d[:, 0] = 0.6
    out = sample_depth(d, 3)
    assert np.all(out[:, 1] == 0.0)


def test_stride_one_is_the_image_with_missing_as_zero():
    d = np.array([[0.5, 0.0], [np.nan, 0.7]], np.float32)
    assert np.allclose(sample_depth(d, 1), [[0.5, 0.0], [0.0, 0.7]])
