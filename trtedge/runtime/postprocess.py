"""Host-side work around the engine: fitting a frame into the input buffer,
class-aware NMS for the ``host`` form, and mapping boxes back to the frame.

Everything is NumPy (plus OpenCV's resize when present) and reuses buffers:
the runtime must add almost nothing around the engine.
"""

from typing import Any, NamedTuple, Optional, Tuple

import numpy as np


class Fit(NamedTuple):
    """How a frame was placed in the input: input = frame * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    frame_w: int
    frame_h: int


def _resize(src: np.ndarray, w: int, h: int, dst: Optional[np.ndarray]) -> np.ndarray:
    try:
        import cv2
    except ImportError:  # nearest neighbour without OpenCV
        ys = (np.arange(h) * (src.shape[0] / h)).astype(np.intp)
        xs = (np.arange(w) * (src.shape[1] / w)).astype(np.intp)
        out = src[ys[:, None], xs[None, :]]
        if dst is not None:
            dst[...] = out
            return dst
        return out
    if dst is not None and dst.flags["C_CONTIGUOUS"]:
        return cv2.resize(src, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)
    out = cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)
    if dst is not None:
        dst[...] = out
        return dst
    return out


ALIGNS = ("center", "top_left")


def fit_into(frame: np.ndarray, out: np.ndarray, mode: str = "letterbox", pad_value: int = 114,
             align: str = "center") -> Fit:
    """Resize ``frame`` (H, W, 3 uint8) into ``out`` (h, w, 3 uint8) in place.

    ``letterbox`` keeps the aspect ratio and fills the rest with
    ``pad_value``; ``align`` says where the image sits: ``center`` (padding
    split evenly, the left/top half rounded down) or ``top_left`` (padding at
    the right and bottom only, as YOLOX trains). ``stretch`` fills the input.
    Returns the mapping back (the padding is in it, so :func:`to_frame`
    needs no ``align``).
    """
    if align not in ALIGNS:
        raise ValueError("align must be one of {}, not {!r}".format(", ".join(ALIGNS), align))
    fh, fw = frame.shape[:2]
    h, w = out.shape[:2]
    if mode == "stretch":
        _resize(frame, w, h, out)
        return Fit(w / fw, h / fh, 0.0, 0.0, fw, fh)
    r = min(w / fw, h / fh)
    nw, nh = max(1, int(round(fw * r))), max(1, int(round(fh * r)))
    x0, y0 = ((w - nw) // 2, (h - nh) // 2) if align == "center" else (0, 0)
    if nw == w and nh == h:
        _resize(frame, w, h, out)
    else:
        out[:y0] = pad_value
        out[y0 + nh:] = pad_value
        out[y0:y0 + nh, :x0] = pad_value
        out[y0:y0 + nh, x0 + nw:] = pad_value
        _resize(frame, nw, nh, out[y0:y0 + nh, x0:x0 + nw])
    return Fit(nw / fw, nh / fh, float(x0), float(y0), fw, fh)


def to_frame(boxes: np.ndarray, fit: Fit) -> np.ndarray:
    """Input-pixel boxes [n, 4] -> frame pixels, clipped to the frame.

    Exact inverse of the placement :func:`fit_into` made, whatever its
    ``align``: ``frame = (input - pad) / scale``."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0::2] = (boxes[:, 0::2] - fit.pad_x) / fit.scale_x
    out[:, 1::2] = (boxes[:, 1::2] - fit.pad_y) / fit.scale_y
    np.clip(out[:, 0::2], 0, fit.frame_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, fit.frame_h, out=out[:, 1::2])
    return out


def _same_class_pairs(cls: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For rows sorted by class (then score), every pair (j, i), j < i, of one class."""
    n = cls.size
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(cls[1:], cls[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    group_end = np.repeat(ends, ends - starts)
    after = group_end - np.arange(n) - 1
    total = int(after.sum())
    j = np.repeat(np.arange(n), after)
    first = np.repeat(np.cumsum(after) - after, after)
    i = j + 1 + (np.arange(total) - first)
    return j, i


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_threshold: float,
        iou_threshold: float, max_per_class: int, max_total: int,
        class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS per class on candidates; returns kept indices by descending score.

    Exact greedy NMS without a Python loop per box. Rows are grouped by class
    (one group when ``class_agnostic``) and sorted by score inside a group;
    the IoU is computed only for pairs inside a group; then "kept unless a
    kept, higher-scoring box of its class overlaps it" is iterated to its
    fixed point from "all kept". Each round settles at least one more link
    of every overlap chain, so it ends after (longest chain) rounds, usually
    two or three. Then the per-class and total caps apply.
    """
    idx = np.flatnonzero(scores >= score_threshold)
    if idx.size == 0:
        return idx
    cls_all = np.zeros(idx.size, np.int64) if class_agnostic else classes[idx].astype(np.int64)
    # by class, then by descending score inside a class (scores are at most 1)
    order = np.argsort(cls_all * 4.0 - np.minimum(scores[idx], 1.0), kind="stable")
    idx, cls = idx[order], cls_all[order]
    b = boxes[idx].astype(np.float32)
    j, i = _same_class_pairs(cls)
    keep = np.ones(idx.size, bool)
    if j.size:
        area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        iw = np.minimum(b[j, 2], b[i, 2]) - np.maximum(b[j, 0], b[i, 0])
        ih = np.minimum(b[j, 3], b[i, 3]) - np.maximum(b[j, 1], b[i, 1])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        over = inter > iou_threshold * np.maximum(area[j] + area[i] - inter, 1e-9)
        j, i = j[over], i[over]
        for _ in range(idx.size):
            nxt = np.ones(idx.size, bool)
            nxt[i[keep[j]]] = False
            if np.array_equal(nxt, keep):
                break
            keep = nxt
    kept = np.flatnonzero(keep)
    if kept.size > max_per_class:  # rank inside the class (rows are grouped by class, by score)
        kc = cls[kept]
        first = np.searchsorted(kc, kc, side="left")
        kept = kept[np.arange(kept.size) - first < max_per_class]
    kept = kept[np.argsort(-scores[idx[kept]], kind="stable")]
    return idx[kept[:max_total]]


def detections_from_outputs(outputs: Any, form: str, i: int, nms_cfg: Any,
                            conf: Optional[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``i`` of a batch -> (boxes [n, 4] input pixels, scores, class ids).

    ``conf`` overrides the built score threshold. For the ``plugin`` and
    ``onnx`` forms the engine already dropped what scored below the built
    threshold, so only a higher ``conf`` changes anything there.
    """
    threshold = nms_cfg["score_threshold"] if conf is None else conf
    if form == "host":
        boxes = outputs["candidate_boxes"][i]
        scores = outputs["candidate_scores"][i]
        classes = outputs["candidate_classes"][i]
        keep = nms(boxes, scores, classes, threshold, nms_cfg["iou_threshold"], nms_cfg["max_per_class"],
                   nms_cfg["max_detections"], nms_cfg.get("class_agnostic", False))
        return boxes[keep], scores[keep], classes[keep].astype(np.int32)
    n = int(outputs["num_detections"][i].reshape(-1)[0])
    boxes = outputs["detection_boxes"][i, :n]
    scores = outputs["detection_scores"][i, :n]
    classes = outputs["detection_classes"][i, :n].astype(np.int32)
    if threshold > nms_cfg["score_threshold"]:
        keep = scores >= threshold
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    return boxes, scores, classes
