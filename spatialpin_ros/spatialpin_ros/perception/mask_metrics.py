"""Scoring predicted instance masks against labelled ones (benchmarks and tests only).

The measures follow unseen-object instance segmentation work (Xie et al., "Unseen Object
Instance Segmentation for Robotic Environments" (UOIS), and Xiang et al., "Learning RGB-D
Feature Embeddings for Unseen Object Instance Segmentation" (UCN)):

* **Overlap precision / recall / F-measure.** For every pair (prediction i, true object j):
  ``P_ij = |M_i & G_j| / |M_i|``, ``R_ij = |M_i & G_j| / |G_j|``, ``F_ij = 2 P R / (P + R)``.
  A one-to-one Hungarian matching maximises the sum of ``F_ij``; then
  ``precision = sum over matched pairs |M_i & G_j| / sum_i |M_i|`` and
  ``recall = sum over matched pairs |M_i & G_j| / sum_j |G_j|``, ``F = 2 P R / (P + R)``.
  (UOIS divides by the foreground pixel counts of label images; with possibly overlapping
  predicted masks we divide by the sum of the mask areas, which is the same for disjoint masks.)
* **Found as one piece.** A one-to-one Hungarian matching on IoU; a true object whose matched
  prediction has IoU >= 0.5 is found as one piece (:attr:`MaskScores.iou_matches`, with the
  indices for per-object errors such as centroid errors).
* **Split.** A true object is split when at least two predictions each have at least 50 % of
  their own pixels on it *and* each cover at least 5 % of its pixels.
* **Merged.** A prediction is a merge when at least two true objects each have at least 50 %
  of their pixels inside it.
* **False objects.** Predictions with fewer than 50 % of their pixels on the labelled objects
  (the union of all true masks). A prediction on a real but unlabelled object counts as false:
  the labels are the only truth we have. An empty predicted mask counts as false.

All masks are (H, W) bool arrays of one image size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

#: IoU at or above which a matched prediction finds its object as one piece.
ONE_PIECE_IOU = 0.5
#: A piece belongs to an object when at least this fraction of its own pixels lies on it ...
PIECE_ON_OBJECT = 0.5
#: ... and it covers at least this fraction of the object.
PIECE_MIN_COVER = 0.05
#: A prediction is false when less than this fraction of its pixels is on labelled objects.
FALSE_ON_OBJECTS = 0.5
#: A true object counts toward a merge when at least this fraction of it is inside one prediction.
MERGE_COVER = 0.5


@dataclass
class MaskMatch:
    """One matched (prediction, true object) pair: indices into the input lists and overlaps."""

    pred_index: int
    truth_index: int
    iou: float
    precision: float   # |M & G| / |M|
    recall: float      # |M & G| / |G|
    f_measure: float


@dataclass
class MaskScores:
    """Scores of one image's predicted masks against its true masks.

    Overlap ``precision`` / ``recall`` / ``f_measure`` (pixel-weighted, Hungarian on F; see the
    module docstring). ``num_one_piece``: true objects matched (Hungarian on IoU) with IoU >= 0.5.
    ``split_truths``: indices of split true objects. ``merged_preds``: indices of predictions
    covering >= 50 % of two or more true objects. ``false_preds``: indices of predictions with
    < 50 % of their pixels on labelled objects. ``f_matches``: the Hungarian-on-F pairs with a
    non-empty intersection. ``iou_matches``: the Hungarian-on-IoU pairs with IoU >= 0.5.
    """

    num_pred: int
    num_truth: int
    precision: float
    recall: float
    f_measure: float
    num_one_piece: int
    split_truths: list[int] = field(default_factory=list)
    merged_preds: list[int] = field(default_factory=list)
    false_preds: list[int] = field(default_factory=list)
    f_matches: list[MaskMatch] = field(default_factory=list)
    iou_matches: list[MaskMatch] = field(default_factory=list)

    @property
    def num_split(self) -> int:
        return len(self.split_truths)

    @property
    def num_merged(self) -> int:
        return len(self.merged_preds)

    @property
    def num_false(self) -> int:
        return len(self.false_preds)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(num_split=self.num_split, num_merged=self.num_merged, num_false=self.num_false)
        return d


@dataclass
class ForegroundScores:
    """Pixel precision / recall / F of a predicted foreground (the union of the predicted masks)
    against a true foreground mask; ``pred_pixels`` / ``true_pixels`` are the two areas."""

    precision: float
    recall: float
    f_measure: float
    pred_pixels: int
    true_pixels: int


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _stack(masks: Sequence[np.ndarray], shape) -> np.ndarray:
    if len(masks) == 0:
        return np.zeros((0, int(np.prod(shape))), dtype=bool)
    return np.stack([np.asarray(m, dtype=bool).reshape(-1) for m in masks])


def _pair(i: int, j: int, inter, area_p, area_t) -> MaskMatch:
    n, ap, at = float(inter[i, j]), float(area_p[i]), float(area_t[j])
    union = ap + at - n
    p = n / ap if ap else 0.0
    r = n / at if at else 0.0
    return MaskMatch(i, j, n / union if union else 0.0, p, r, _f(p, r))


def score_masks(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> MaskScores:
    """Score predicted masks ``pred`` against true masks ``truth`` (all (H, W) bool, one size).

    With no predictions precision is 0 (1 if there is no truth either); with no truth recall is
    0 (1 if there are no predictions either).
    """
    shapes = {np.shape(m) for m in list(pred) + list(truth)}
    if len(shapes) > 1:
        raise ValueError(f"masks differ in size: {sorted(shapes)}")
    shape = shapes.pop() if shapes else (0, 0)
    P, T = _stack(pred, shape), _stack(truth, shape)
    npred, ntruth = len(P), len(T)
    inter = np.zeros((npred, ntruth), dtype=np.int64)
    if ntruth:
        for i in range(npred):  # |M_i & G_j| for all j, touching only M_i's pixels
            inter[i] = T[:, P[i]].sum(1)
    area_p = P.sum(1).astype(np.int64)
    area_t = T.sum(1).astype(np.int64)

    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(area_p[:, None] > 0, inter / np.maximum(area_p[:, None], 1), 0.0)
        rec = np.where(area_t[None, :] > 0, inter / np.maximum(area_t[None, :], 1), 0.0)
        fm = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1), 0.0)
        union = area_p[:, None] + area_t[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    # overlap P/R/F (Hungarian on F)
    f_matches: list[MaskMatch] = []
    tp = 0
    if npred and ntruth:
        rows, cols = linear_sum_assignment(-fm)
        for i, j in zip(rows, cols):
            if inter[i, j] > 0:
                f_matches.append(_pair(int(i), int(j), inter, area_p, area_t))
                tp += int(inter[i, j])
    sum_p, sum_t = int(area_p.sum()), int(area_t.sum())
    precision = tp / sum_p if sum_p else (1.0 if ntruth == 0 and npred == 0 else 0.0)
    recall = tp / sum_t if sum_t else (1.0 if npred == 0 else 0.0)

    # found as one piece (Hungarian on IoU, IoU >= 0.5)
    iou_matches: list[MaskMatch] = []
    if npred and ntruth:
        rows, cols = linear_sum_assignment(-iou)
        iou_matches = [_pair(int(i), int(j), inter, area_p, area_t)
                       for i, j in zip(rows, cols) if iou[i, j] >= ONE_PIECE_IOU]

    # split: >= 2 pieces each mostly on the object and covering >= 5 % of it
    piece = (prec >= PIECE_ON_OBJECT) & (rec >= PIECE_MIN_COVER) & (inter > 0)
    split = [int(j) for j in range(ntruth) if int(piece[:, j].sum()) >= 2]
    # merged: a prediction holding >= 50 % of two or more objects
    holds = (rec >= MERGE_COVER) & (inter > 0)
    merged = [int(i) for i in range(npred) if int(holds[i].sum()) >= 2]
    # false: < 50 % of the prediction's pixels on any labelled object
    if npred:
        fg = T.any(0) if ntruth else np.zeros(P.shape[1], dtype=bool)
        on_fg = (P & fg).sum(1)
        false = [int(i) for i in range(npred)
                 if area_p[i] == 0 or on_fg[i] < FALSE_ON_OBJECTS * area_p[i]]
    else:
        false = []

    return MaskScores(num_pred=npred, num_truth=ntruth, precision=float(precision),
                      recall=float(recall), f_measure=_f(precision, recall),
                      num_one_piece=len(iou_matches), split_truths=split, merged_preds=merged,
                      false_preds=false, f_matches=f_matches, iou_matches=iou_matches)


def truth_masks_from_labels(labels: np.ndarray, ids: Sequence[int]) -> list[np.ndarray]:
    """One (H, W) bool mask per id of an instance label image (H, W) (0 = background)."""
    lab = np.asarray(labels)
    return [lab == int(i) for i in ids]


def score_foreground(pred: Sequence[np.ndarray], foreground: np.ndarray) -> ForegroundScores:
    """Pixel precision / recall / F of the union of ``pred`` masks against ``foreground``
    ((H, W), nonzero = object). Precision is 0 with no predicted pixels (recall 0 likewise)."""
    fg = np.asarray(foreground) != 0
    union = np.zeros(fg.shape, dtype=bool)
    for m in pred:
        union |= np.asarray(m, dtype=bool)
    npred, ntrue = int(union.sum()), int(fg.sum())
    tp = int((union & fg).sum())
    p = tp / npred if npred else 0.0
    r = tp / ntrue if ntrue else 0.0
    return ForegroundScores(float(p), float(r), _f(p, r), npred, ntrue)
