"""Colour splits a geometric piece only into uniform, distinct, contiguous regions
(perception/colour_split)."""

import numpy as np

from spatialpin_ros.perception.colour_split import ColourSplitParams, split_by_colour


def _piece(h=30, w=40):
    lab = np.zeros((h + 4, w + 4), np.int32)
    lab[2:-2, 2:-2] = 1
    rgb = np.full(lab.shape + (3,), 200, np.uint8)
    return lab, rgb


def test_two_flat_colours_pushed_together_split():
    lab, rgb = _piece()
    rgb[:, :24] = (40, 70, 200)         # blue block
    rgb[:, 24:] = (235, 235, 235)       # white block
    out = split_by_colour(lab, rgb, ColourSplitParams())
    assert len(np.unique(out[lab > 0])) == 2


def test_a_thin_line_of_a_third_colour_does_not_prevent_the_split():
    lab, rgb = _piece()
    rgb[:, :24] = (40, 70, 200)
    rgb[:, 24:] = (235, 235, 235)
    rgb[:, 24:26] = (120, 30, 110)      # a shadow or a neighbour's edge: 5 % of the piece
    out = split_by_colour(lab, rgb, ColourSplitParams())
    assert len(np.unique(out[lab > 0])) == 2
    # without the outlier allowance it stays one piece
    out = split_by_colour(lab, rgb, ColourSplitParams(max_outliers=0.0))
    assert len(np.unique(out[lab > 0])) == 1


def test_texture_never_splits():
    lab, rgb = _piece()
    rng = np.random.default_rng(0)
    rgb[:] = rng.integers(0, 255, rgb.shape, dtype=np.uint8)    # a printed label
    out = split_by_colour(lab, rgb, ColourSplitParams())
    assert len(np.unique(out[lab > 0])) == 1


def test_scattered_outliers_over_the_allowance_keep_the_piece_whole():
    lab, rgb = _piece()
    rgb[:, :24] = (40, 70, 200)
    rgb[:, 24:] = (235, 235, 235)
    rng = np.random.default_rng(1)
    spots = rng.random(lab.shape) < 0.3                              # speckled print
    rgb[spots] = (200, 40, 40)
    out = split_by_colour(lab, rgb, ColourSplitParams())
    assert len(np.unique(out[lab > 0])) == 1
