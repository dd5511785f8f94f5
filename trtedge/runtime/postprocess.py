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


def fit_into(frame: np.ndarray, out: np.ndarray, mode: str = "letterbox", pad_value: int = 114) -> Fit:
    """Resize ``frame`` (H, W, 3 uint8) into ``out`` (h, w, 3 uint8) in place.

    ``letterbox`` keeps the aspect ratio and centres the image on
    ``pad_value``; ``stretch`` fills the input. Returns the mapping back.
    """
    fh, fw = frame.shape[:2]
    h, w = out.shape[:2]
    if mode == "stretch":
        _resize(frame, w, h, out)
        return Fit(w / fw, h / fh, 0.0, 0.0, fw, fh)
    r = min(w / fw, h / fh)
    nw, nh = max(1, int(round(fw * r))), max(1, int(round(fh * r)))
    x0, y0 = (w - nw) // 2, (h - nh) // 2
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
    """Input-pixel boxes [n, 4] -> frame pixels, clipped to the frame."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0::2] = (boxes[:, 0::2] - fit.pad_x) / fit.scale_x
    out[:, 1::2] = (boxes[:, 1::2] - fit.pad_y) / fit.scale_y
    np.clip(out[:, 0::2], 0, fit.frame_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, fit.frame_h, out=out[:, 1::2])
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_threshold: float,
        iou_threshold: float, max_per_class: int, max_total: int,
        class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS per class on candidates; returns kept indices by descending score.

    Classes are separated by shifting each class's boxes far apart (so one
    IoU matrix serves every class); the greedy loop runs once per kept box.
    """
    idx = np.flatnonzero(scores >= score_threshold)
    if idx.size == 0:
        return idx
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    b = boxes[idx].astype(np.float32)
    if not class_agnostic:
        span = float(max(b[:, 2:].max(), 1.0)) + 1.0
        b = b + (classes[idx].astype(np.float32) * span)[:, None]
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    order = np.arange(idx.size)
    keep = []
    per_class = {}  # type: dict
    while order.size and len(keep) < max_total:
        i = order[0]
        c = int(classes[idx[i]])
        if per_class.get(c, 0) < max_per_class:
            keep.append(i)
            per_class[c] = per_class.get(c, 0) + 1
        rest = order[1:]
        xx1 = np.maximum(b[i, 0], b[rest, 0])
        yy1 = np.maximum(b[i, 1], b[rest, 1])
        xx2 = np.minimum(b[i, 2], b[rest, 2])
        yy2 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return idx[np.array(keep, dtype=np.intp)]


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
