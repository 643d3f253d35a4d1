"""Sampling a depth image onto a coarser working grid without losing sparse depth. ROS-free.

Depth cameras lose pixels in salt-and-pepper patterns on dark, shiny or distant surfaces (a
RealSense on black plastic keeps about half of them). Taking every ``s``-th pixel then leaves a
grid with holes everywhere on such a surface, and the object vanishes. Here each working pixel
takes the depth of its own image pixel when valid, else the first valid pixel of its ``s x s``
block, nearest first: a measured depth, never an average across an edge (the hole filling of
a camera driver, restricted to one working pixel).
"""

from __future__ import annotations

import numpy as np


def _offsets(s: int) -> list[tuple[int, int]]:
    """The ``s x s`` block's offsets, nearest to (0, 0) first."""
    offs = [(dr, dc) for dr in range(s) for dc in range(s)]
    return sorted(offs, key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def _block_spread(d: np.ndarray, s: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest valid depth of each ``s x s`` block ((h, w) each; inf / 0 where the
    block has no valid pixel)."""
    pad = np.zeros((h * s, w * s), dtype=np.float32)
    pad[: d.shape[0], : d.shape[1]] = np.where(np.isfinite(d) & (d > 0), d, 0)
    blocks = pad.reshape(h, s, w, s)
    hi = blocks.max(axis=(1, 3))
    lo = np.where(blocks > 0, blocks, np.inf).min(axis=(1, 3))
    return lo, hi


def sample_depth(depth: np.ndarray, s: int, jump_abs: float = 0.006,
                 jump_rel: float = 0.015) -> np.ndarray:
    """``depth`` (H, W) metres (0 or non-finite = missing) sampled every ``s``-th pixel, each
    missing sample filled from its ``s x s`` block (nearest valid pixel first) when the block's
    valid depths agree (spread under ``jump_abs + jump_rel * z``, metres). A block that spans a
    depth edge stays missing: the band a camera loses beside an occluding edge keeps separating
    the two sides, and so does a filled sample beside a depth jump on the working grid. Returns (ceil(H/s), ceil(W/s)) float32, 0 where missing."""
    d = np.asarray(depth, dtype=np.float32)
    out = np.where(np.isfinite(d[::s, ::s]), d[::s, ::s], 0).astype(np.float32)
    if s <= 1 or out.all():
        return out
    h, w = out.shape
    lo, hi = _block_spread(d, s, h, w)
    fillable = (out <= 0) & (hi > 0) & (hi - lo <= jump_abs + jump_rel * hi)
    for dr, dc in _offsets(s)[1:]:
        miss = fillable & (out <= 0)
        if not miss.any():
            break
        blk = d[dr::s, dc::s]
        cand = np.zeros((h, w), dtype=np.float32)
        cand[: blk.shape[0], : blk.shape[1]] = np.where(np.isfinite(blk), blk, 0)
        out[miss] = cand[miss]
    filled = fillable & (out > 0)
    out[filled & _beside_jump(out, jump_abs * s, jump_rel)] = 0.0
    return out


def _beside_jump(z: np.ndarray, jump_abs: float, jump_rel: float) -> np.ndarray:
    """(h, w) bool: valid pixels with a valid 4-neighbour farther or nearer than the jump."""
    thr = jump_abs + jump_rel * z
    out = np.zeros(z.shape, dtype=bool)
    for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                 ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        j = (z[a] > 0) & (z[b] > 0) & (np.abs(z[a] - z[b]) > np.maximum(thr[a], thr[b]))
        out[a] |= j
        out[b] |= j
    return out
