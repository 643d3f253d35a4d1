"""COCO run-length encoding (RLE) of binary masks, in pure numpy.

The format is the one of the COCO API (``pycocotools.mask``), so masks written here can be read
there and the other way round:

* a mask (H, W) is flattened in **column-major** (Fortran) order;
* ``counts`` are the lengths of alternating runs, starting with a run of 0s (which may be empty:
  a mask whose first pixel is set starts with count 0);
* an RLE is a dict ``{"size": [H, W], "counts": ...}`` where ``counts`` is either the
  *uncompressed* list of ints or the *compressed* COCO string: each count (from the third on,
  as the difference to the count two before it) in little-endian groups of 5 bits, 6 bits per
  character with a continuation bit 0x20 and a sign bit 0x10 in the last group, plus 48 (the
  ``rleToString`` / ``rleFrString`` codec of the COCO API's ``maskApi.c``).

:func:`encode_rle` always writes the compressed string form; :func:`decode_rle` reads both forms
(and ``bytes`` counts, as pycocotools returns them).
"""

from __future__ import annotations

from typing import Union

import numpy as np

RLE = dict  # {"size": [h, w], "counts": str | bytes | list[int]}
MaskLike = Union[np.ndarray, RLE]


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths (int64, (K,)) of a (H, W) mask flattened column-major, 0-run first."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).astype(np.int64)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts


def counts_to_string(counts) -> str:
    """The compressed COCO string of uncompressed ``counts`` (sequence of non-negative ints)."""
    cnts = [int(c) for c in counts]
    out = []
    for i, x in enumerate(cnts):
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift (Python ints are signed), as in maskApi.c
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(s: Union[str, bytes]) -> list[int]:
    """The uncompressed counts of a compressed COCO string (``str`` or ``bytes``)."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    cnts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated COCO RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def encode_rle(mask: np.ndarray) -> RLE:
    """COCO RLE of a (H, W) mask (any dtype; nonzero = set).

    Returns ``{"size": [H, W], "counts": str}`` with the compressed string counts (JSON-ready;
    pycocotools' ``encode`` gives the same counts as ``bytes``).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(_runs(m != 0))}


def _counts(rle: RLE) -> list[int]:
    c = rle["counts"]
    if isinstance(c, (str, bytes)):
        return string_to_counts(c)
    return [int(x) for x in c]


def decode_rle(rle: RLE) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE (string, bytes or uncompressed list ``counts``).

    Raises ValueError when the counts do not add up to H * W.
    """
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(_counts(rle), dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h}*{w} = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()  # column-major back to (H, W), C-contiguous


def _as_mask(m: MaskLike) -> np.ndarray:
    return decode_rle(m) if isinstance(m, dict) else np.asarray(m) != 0


def mask_area(m: MaskLike) -> int:
    """Number of set pixels of a (H, W) mask or a COCO RLE (counted from the runs, no decode)."""
    if isinstance(m, dict):
        return int(sum(_counts(m)[1::2]))
    return int(np.count_nonzero(m))


def mask_iou(a: MaskLike, b: MaskLike) -> float:
    """Intersection over union of two masks of the same size ((H, W) arrays or RLEs); 0.0 when
    both are empty."""
    ma, mb = _as_mask(a), _as_mask(b)
    if ma.shape != mb.shape:
        raise ValueError(f"mask shapes differ: {ma.shape} vs {mb.shape}")
    union = int(np.count_nonzero(ma | mb))
    return float(np.count_nonzero(ma & mb)) / union if union else 0.0
