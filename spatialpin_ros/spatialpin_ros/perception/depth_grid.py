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

from spatialpin_ros.perception.surface_ops import depth_jumps, pool_any


def _offsets(s: int) -> list[tuple[int, int]]:
    """The ``s x s`` block's offsets, nearest to (0, 0) first."""
    offs = [(dr, dc) for dr in range(s) for dc in range(s)]
    return sorted(offs, key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def _blocks(d: np.ndarray, s: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The ``s x s`` blocks of ``d`` at working pixels (``rows``, ``cols``) but their own pixel,
    (s*s - 1, N) float32, offsets in :func:`_offsets`' order (a block per column: the
    reductions over a block run across the blocks, not along a short row each), 0 where
    missing or beyond the image."""
    H, W = d.shape
    h, w = -(-H // s), -(-W // s)
    if (h * s, w * s) != (H, W):
        d = np.pad(d, ((0, h * s - H), (0, w * s - W)))
    Wp = w * s
    step = np.array([dr * Wp + dc for dr, dc in _offsets(s)[1:]], dtype=np.intp)
    blk = d.ravel().take(step[:, None] + (rows * (s * Wp) + cols * s))
    return np.where(np.isfinite(blk) & (blk > 0), blk, np.float32(0))


def sample_depth(depth: np.ndarray, s: int, jump_abs: float = 0.006,
                 jump_rel: float = 0.015) -> np.ndarray:
    """``depth`` (H, W) metres (0 or non-finite = missing) sampled every ``s``-th pixel, each
    missing sample filled from its ``s x s`` block (nearest valid pixel first) when the block's
    valid depths agree (spread under ``jump_abs + jump_rel * z``, metres). A block that spans a
    depth edge stays missing: the band a camera loses beside an occluding edge keeps separating
    the two sides, and so does a filled sample beside a depth jump on the working grid. Returns
    (ceil(H/s), ceil(W/s)) float32, 0 where missing. Only the missing samples' blocks are read."""
    d = np.asarray(depth, dtype=np.float32)
    out = np.where(np.isfinite(d[::s, ::s]), d[::s, ::s], 0).astype(np.float32)
    if s <= 1:
        return out
    rows, cols = np.nonzero(out <= 0)
    if len(rows) * (s * s - 1) > d.size // 8:     # many holes: not the blocks without depth
        has = pool_any((d > 0) & (d < np.inf), s, out.shape)[rows, cols]
        rows, cols = rows[has], cols[has]
    if len(rows) == 0:
        return out
    blk = _blocks(d, s, rows, cols)                                # nearest first
    valid = blk > 0
    hi = blk.max(axis=0)
    lo = np.where(valid, blk, np.inf).min(axis=0)
    fill = (hi > 0) & (hi - lo <= jump_abs + jump_rel * hi)
    first = np.argmax(valid, axis=0)
    val = blk[first, np.arange(len(rows))]
    out[rows[fill], cols[fill]] = val[fill]
    filled = np.zeros(out.shape, dtype=bool)
    filled[rows[fill], cols[fill]] = True
    out[filled & depth_jumps(out, jump_abs * s, jump_rel)] = 0.0
    return out
