"""Mean average precision for box detections, in plain NumPy.

Formats
-------
``detections``
    One entry per image: ``(boxes, scores, classes)`` with ``boxes`` float
    ``[n, 4]`` as ``x1, y1, x2, y2`` (pixels, any consistent unit), ``scores``
    float ``[n]`` and ``classes`` int ``[n]`` in ``0 .. num_classes - 1``.
``ground_truth``
    One entry per image, in the same order: ``(boxes, classes)`` with
    ``boxes`` ``[m, 4]`` ``x1, y1, x2, y2`` and ``classes`` int ``[m]``.

Per class, detections of all images are ranked by descending score (ties keep
input order) and matched greedily: each one takes the still unmatched ground
truth of the same image and class with the highest IoU, if that IoU is at
least the threshold; otherwise it is a false positive. AP is the COCO-style
101-point interpolated area under the precision/recall curve (precision made
monotone, sampled at recall 0, 0.01, ..., 1). Classes without any ground truth
get AP ``nan`` and are left out of the mean.
"""

from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["box_iou", "average_precision"]

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]
GroundTruth = Tuple[np.ndarray, np.ndarray]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of two sets of ``x1, y1, x2, y2`` boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _interpolated_ap(tp: np.ndarray, num_gt: int) -> float:
    """101-point interpolated AP of a ranked list of true/false positives."""
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / float(num_gt)
    precision = ctp / np.arange(1, len(tp) + 1, dtype=np.float64)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    points = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def average_precision(
    detections: Sequence[Detections],
    ground_truth: Sequence[GroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> Tuple[float, List[float]]:
    """Mean AP over classes at one IoU threshold (see the module docstring).

    Returns:
        ``(map, per_class_ap)``: the mean over classes that have ground truth
        (``nan`` if none has), and a list of ``num_classes`` APs (``nan`` for a
        class without ground truth).
    """
    if len(detections) != len(ground_truth):
        raise ValueError(
            "detections and ground_truth must list the same images ({} vs {})".format(
                len(detections), len(ground_truth)
            )
        )
    # Gather per class: (image, score, order, box) of detections and GT per image.
    det_img = []  # type: List[np.ndarray]
    det_score = []  # type: List[np.ndarray]
    det_cls = []  # type: List[np.ndarray]
    det_box = []  # type: List[np.ndarray]
    gts = []  # type: List[Tuple[np.ndarray, np.ndarray]]
    for i, (det, gt) in enumerate(zip(detections, ground_truth)):
        boxes, scores, classes = det
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        if not (len(boxes) == len(scores) == len(classes)):
            raise ValueError("image {}: detections boxes/scores/classes lengths differ".format(i))
        det_img.append(np.full(len(boxes), i, dtype=np.int64))
        det_score.append(scores)
        det_cls.append(classes)
        det_box.append(boxes)
        gt_boxes = np.asarray(gt[0], dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt[1]).reshape(-1).astype(np.int64)
        if len(gt_boxes) != len(gt_classes):
            raise ValueError("image {}: ground truth boxes/classes lengths differ".format(i))
        gts.append((gt_boxes, gt_classes))

    all_img = np.concatenate(det_img) if det_img else np.zeros(0, np.int64)
    all_score = np.concatenate(det_score) if det_score else np.zeros(0)
    all_cls = np.concatenate(det_cls) if det_cls else np.zeros(0, np.int64)
    all_box = np.concatenate(det_box) if det_box else np.zeros((0, 4))

    per_class = []  # type: List[float]
    for c in range(num_classes):
        gt_c = [boxes[classes == c] for boxes, classes in gts]
        num_gt = sum(len(g) for g in gt_c)
        if num_gt == 0:
            per_class.append(float("nan"))
            continue
        sel = np.flatnonzero(all_cls == c)
        order = sel[np.argsort(-all_score[sel], kind="stable")]
        ious = {}  # image -> IoU matrix [detections of that image in rank order, gt]
        rank_in_image = {}
        for image in np.unique(all_img[order]).tolist():
            rows = order[all_img[order] == image]
            ious[image] = box_iou(all_box[rows], gt_c[image])
            rank_in_image[image] = 0
        matched = [np.zeros(len(g), dtype=bool) for g in gt_c]
        tp = np.zeros(len(order), dtype=np.float64)
        for k, det in enumerate(order.tolist()):
            image = int(all_img[det])
            row = rank_in_image[image]
            rank_in_image[image] = row + 1
            if ious[image].shape[1] == 0:
                continue
            iou = np.where(matched[image], -1.0, ious[image][row])
            best = int(np.argmax(iou))
            if iou[best] >= iou_threshold:
                matched[image][best] = True
                tp[k] = 1.0
        per_class.append(_interpolated_ap(tp, num_gt))

    valid = [ap for ap in per_class if not np.isnan(ap)]
    mean = float(np.mean(valid)) if valid else float("nan")
    return mean, per_class
