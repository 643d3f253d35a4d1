"""A piece is one surface: pixels that border it across a depth jump are not its own
(perception.jump_clean)."""

import numpy as np
import pytest

from spatialpin_ros.perception.jump_clean import JumpCleanParams, drop_across_jumps


def _piece_with_strip(strip_z, gap=0, strip_cols=4):
    """Piece 1: a 30 x 20 surface at 0.60 m, with a strip of ``strip_cols`` columns at
    ``strip_z`` on its right, ``gap`` unlabelled columns away."""
    h, w = 40, 60
    labels = np.zeros((h, w), np.int32)
    z = np.zeros((h, w), np.float32)
    labels[5:35, 5:25] = 1
    z[5:35, 5:25] = 0.60
    c0 = 25 + gap
    labels[5:35, c0:c0 + strip_cols] = 1
    z[5:35, c0:c0 + strip_cols] = strip_z
    return labels, z, (slice(5, 35), slice(c0, c0 + strip_cols))


JUMP = (0.012, 0.015)                         # the working grid's jump (stride 2)


@pytest.mark.parametrize("strip_z,kept", [
    (0.56, False),     # the far edge of a block 4 cm in front of it: another surface
    (0.66, False),     # a strip of the object 6 cm behind it
    (0.605, True),     # its own surface, continuing smoothly
])
def test_a_strip_across_a_depth_jump_is_not_the_piece(strip_z, kept):
    labels, z, strip = _piece_with_strip(strip_z)
    out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams())
    assert bool((out[strip] == 1).all()) is kept
    assert (out[5:35, 5:25] == 1).all()                   # the piece itself stays


def test_a_part_seen_apart_from_the_piece_stays():
    """The same object on both sides of a thing in front of it (joined by colour): its two
    parts do not touch in the image, and both stay."""
    labels, z, strip = _piece_with_strip(0.62, gap=3)
    out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams())
    assert (out[strip] == 1).all()


def test_a_large_part_is_not_a_stray_and_depthless_pixels_are_not_judged():
    labels, z, strip = _piece_with_strip(0.66, strip_cols=12)     # 12 of 32 columns
    out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams())
    assert (out[strip] == 1).all()
    labels, z, strip = _piece_with_strip(0.66)
    z[strip] = 0.0                                                 # no depth: stays
    out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams())
    assert (out[strip] == 1).all()
    out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams(enabled=False))
    assert out is labels


def test_with_colours_a_part_of_the_pieces_own_colour_stays():
    """A bowl's near rim in front of its own inside is the bowl's colour: with the colours
    given, only a part of another colour (the block in front) is given back."""
    labels, z, strip = _piece_with_strip(0.56)
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[5:35, 5:25] = (40, 60, 200)                       # a blue piece
    for colour, kept in (((40, 60, 200), True), ((230, 150, 170), False)):
        rgb[strip] = colour
        out = drop_across_jumps(labels, z, *JUMP, JumpCleanParams(), rgb)
        assert bool((out[strip] == 1).all()) is kept
