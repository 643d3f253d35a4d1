"""The models backend's lifting helpers: a frame's fixed segmentation (computed before the
lifting) and the namer that names each lifted object after the detector mask it came from."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from spatialpin_ros.perception.base import ObjectNamer, Segmentation, Segmenter


class _Fixed(Segmenter):
    """This frame's segmentation, computed before the lifting."""

    def __init__(self, seg: Segmentation):
        self.seg = seg

    def segment(self, rgb, depth, camera) -> Segmentation:
        return self.seg


class _DetectionNamer(ObjectNamer):
    """Names each lifted object after the segmentation mask it came from (the mask holding most
    of its pixels) and remembers the detector score by the object's roi. ``bounds`` (r0, r1, c0,
    c1), when known, encloses every mask: the work stays inside it."""

    def __init__(self, seg: Segmentation, bounds: Optional[tuple] = None):
        self.seg = seg
        self.bounds = bounds
        self._lab: Optional[np.ndarray] = None
        self.by_roi: dict[tuple, tuple[str, float]] = {}

    def _crop(self, shape) -> tuple[slice, slice]:
        if self.bounds is None:
            return slice(0, shape[0]), slice(0, shape[1])
        r0, r1, c0, c1 = self.bounds
        return slice(r0, r1), slice(c0, c1)

    def _labels(self, crop) -> np.ndarray:
        if self._lab is None:
            lab = None
            for i, m in enumerate(self.seg.masks):      # earlier (higher-scoring) masks win,
                mc = np.asarray(m, bool)[crop]          # as in the geometric lifting
                if lab is None:
                    lab = np.full(mc.shape, -1, dtype=np.int16)
                lab[mc & (lab < 0)] = i
            self._lab = lab
        return self._lab

    def name(self, rgb: np.ndarray, masks: Sequence[np.ndarray]) -> list[str]:
        if not self.seg.masks:
            return ["object"] * len(masks)
        crop = self._crop(rgb.shape[:2])
        lab = self._labels(crop)
        out = []
        wc = crop[1].stop - crop[1].start
        for m in masks:                 # flatnonzero: np.nonzero of a 2-D mask is ~15x slower
            ys, xs = np.divmod(np.flatnonzero(np.asarray(m, bool)[crop]), wc)
            out.append(self._name_pixels(lab, ys, xs, crop))
        return out

    def name_priors(self, rgb: np.ndarray, priors: Sequence) -> list[str]:
        """:meth:`name` on each prior's roi crop of its mask (no full-size masks): the same
        names and scores."""
        if not self.seg.masks:
            return ["object"] * len(priors)
        H, W = rgb.shape[:2]
        crop = self._crop((H, W))
        lab = self._labels(crop)
        out = []
        for p in priors:
            x, y, w, h = p.roi
            r0, r1 = max(y, crop[0].start), min(y + h, H, crop[0].stop)
            c0, c1 = max(x, crop[1].start), min(x + w, W, crop[1].stop)
            if p.mask is None or r1 <= r0 or c1 <= c0:
                out.append(self._name_hits(np.zeros(0, dtype=lab.dtype), None, crop))
                continue
            # the mask's pixels in the labels, in _name_pixels' order (a 2-D mask on a 2-D
            # crop: no pixel coordinates needed; the roi from the mask's rows and columns)
            m = p.mask[r0 - y:r1 - y, c0 - x:c1 - x]
            a, b = r0 - crop[0].start, c0 - crop[1].start
            hits = lab[a:a + (r1 - r0), b:b + (c1 - c0)][m]

            def bounds(m=m, a=a, b=b):
                ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
                return ys[0] + a, ys[-1] + a, xs[0] + b, xs[-1] + b
            out.append(self._name_hits(hits, bounds, crop))
        return out

    def _name_pixels(self, lab: np.ndarray, ys: np.ndarray, xs: np.ndarray, crop) -> str:
        """The name of the mask whose pixels (``ys``, ``xs``: in the crop) are most of these,
        remembering its score by their roi."""
        return self._name_hits(lab[ys, xs], lambda: (ys.min(), ys.max(), xs.min(), xs.max()),
                               crop)

    def _name_hits(self, hits: np.ndarray, bounds, crop) -> str:
        """:meth:`_name_pixels` from the labels under the pixels (``hits``) and ``bounds()``:
        the pixels' (first row, last row, first column, last column) in the crop."""
        hits = hits[hits >= 0]
        if len(hits) == 0:
            return "object"
        i = int(np.bincount(hits).argmax())
        name = self.seg.names[i] if self.seg.names else "object"
        score = float(self.seg.scores[i]) if self.seg.scores else 1.0
        y0, y1, x0, x1 = (int(v) for v in bounds())
        roi = (x0 + crop[1].start, y0 + crop[0].start, x1 - x0 + 1, y1 - y0 + 1)
        self.by_roi[roi] = (name, score)
        return name
