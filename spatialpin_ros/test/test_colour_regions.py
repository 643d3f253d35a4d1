"""Colour edges cut a geometric piece into its flat-coloured objects, and never a textured or
labelled one (perception/colour_regions)."""

import numpy as np

from spatialpin_ros.perception.colour_regions import split_at_colour_edges
from spatialpin_ros.perception.colour_split import ColourSplitParams, split_by_colour

GREEN, BLUE, CYAN, WHITE, RED = (40, 170, 50), (40, 70, 200), (40, 200, 210), (235, 235, 235), \
    (200, 30, 30)


def _piece(h=30, w=40):
    lab = np.zeros((h + 4, w + 4), np.int32)
    lab[2:-2, 2:-2] = 1
    rgb = np.full(lab.shape + (3,), 200, np.uint8)
    return lab, rgb


def _pieces(out, lab):
    return len(np.unique(out[lab > 0]))


def test_three_objects_with_a_small_one_at_the_outline_split_in_three():
    """Two blocks and a ball taking 5 % of the piece at its edge: clustering the whole piece
    cuts the blocks apart and takes the ball for outliers; the colour edges cut all three
    apart, alone or after the clustering."""
    lab, rgb = _piece()
    rgb[:, :22] = GREEN
    rgb[:, 22:] = BLUE
    rgb[2:12, 36:42] = CYAN                       # the ball, on the piece's right edge
    p = ColourSplitParams()
    clustered = split_by_colour(lab, rgb, p)
    assert _pieces(clustered, lab) == 2
    assert _pieces(split_at_colour_edges(clustered, rgb, p), lab) == 3
    out = split_at_colour_edges(lab, rgb, p)
    assert _pieces(out, lab) == 3
    assert len(np.unique(out[2:12, 37:41])) == 1 and out[5, 38] != out[20, 30]


def test_an_enclosed_label_does_not_split_the_piece():
    lab, rgb = _piece()
    rgb[2:-2, 2:-2] = WHITE
    rgb[12:20, 14:26] = RED                       # a printed logo in the middle of a box
    assert _pieces(split_at_colour_edges(lab, rgb, ColourSplitParams()), lab) == 1


def test_texture_never_splits():
    lab, rgb = _piece()
    rng = np.random.default_rng(0)
    rgb[:] = rng.integers(0, 255, rgb.shape, dtype=np.uint8)
    assert _pieces(split_at_colour_edges(lab, rgb, ColourSplitParams()), lab) == 1


def test_shading_across_a_crease_does_not_cut():
    """A white box's lit top and its shaded side differ in lightness only."""
    lab, rgb = _piece()
    rgb[:, :20] = (235, 235, 235)
    rgb[:, 20:] = (170, 170, 170)
    assert _pieces(split_at_colour_edges(lab, rgb, ColourSplitParams()), lab) == 1


def test_a_strip_of_a_neighbours_colour_joins_the_neighbour():
    """The geometry gave a 4-pixel strip of the red block to the blue piece: it goes to the
    red piece, and the blue piece keeps the rest."""
    lab = np.zeros((34, 60), np.int32)
    lab[2:-2, 2:30] = 1                           # the blue piece
    lab[2:-2, 32:58] = 2                          # the red piece, across a 2-pixel cut band
    rgb = np.full(lab.shape + (3,), 200, np.uint8)
    rgb[:, :26] = BLUE
    rgb[:, 26:] = RED
    out = split_at_colour_edges(lab, rgb, ColourSplitParams())
    assert len(np.unique(out[2:-2, 27:30])) == 1 and out[10, 28] == out[10, 40]
    assert out[10, 10] != out[10, 40]


def test_a_neighbours_strip_that_its_colour_joined_stays_apart_from_its_piece():
    """The geometry gave a 2-pixel strip of a blue block to the purple piece, and the rest of
    the blue block to the green piece. The blue group of the green piece joins the strip;
    the strip, now the whole blue block, is no sliver any more and stays apart from the
    purple block (it was folded into the purple block's group, blue and purple one object)."""
    lab = np.zeros((34, 72), np.int32)
    lab[2:-2, 2:40] = 1                           # the green piece: green block, most of blue
    lab[2:-2, 42:70] = 2                          # the purple piece, across a 2-pixel cut band
    rgb = np.full(lab.shape + (3,), 200, np.uint8)
    rgb[:, :22] = GREEN
    rgb[:, 22:44] = BLUE                          # 2 blue columns in the purple piece
    rgb[:, 44:] = (140, 40, 200)                  # purple
    out = split_at_colour_edges(lab, rgb, ColourSplitParams())
    assert out[10, 30] == out[10, 42]             # the blue block is one piece
    assert len({out[10, 10], out[10, 30], out[10, 60]}) == 3


def test_disabled():
    lab, rgb = _piece()
    rgb[:, :22] = GREEN
    rgb[:, 22:] = BLUE
    out = split_at_colour_edges(lab, rgb, ColourSplitParams(edge_cuts=False))
    assert _pieces(out, lab) == 1
