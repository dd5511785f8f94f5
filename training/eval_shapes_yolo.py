#!/usr/bin/env python3
"""Evaluate a shapes detector (ONNX, Ultralytics-v8 style output) on the synthetic shapes set.

The validation set is ``count`` images of :mod:`trtedge.datasets.shapes` with
seed ``--seed`` (default 7000, never used for training): 3 of every 5 are
256x256, the others 480x640 and 360x640 frames letterboxed to 256 (bilinear
resize keeping the aspect ratio, centred, padded with 114) as a runtime would
feed them. Predictions are decoded from the ``[batch, 7, N]`` output
(``cx, cy, w, h`` in input pixels, then per-class probabilities), kept above
score 0.25, reduced with per-class NMS at IoU 0.5, mapped back to the original
frame and scored with :func:`trtedge.evaluation.average_precision` (mAP@0.5).

Usage::

    python training/eval_shapes_yolo.py --onnx trtedge/models/shapes_yolo.onnx

The helpers here (letterbox, NMS, validation set) are also used by
``train_shapes_yolo.py``. NumPy only, apart from ONNX Runtime in :func:`main`.
"""

import argparse
import os
import sys
import time
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from trtedge.datasets import shapes  # noqa: E402
from trtedge.evaluation import average_precision  # noqa: E402

VAL_SEED = 7000
VAL_COUNT = 300
VAL_SIZES = ((256, 256), (256, 256), (256, 256), (480, 640), (360, 640))
PAD_VALUE = 114
SCORE_THRESHOLD = 0.25
NMS_IOU = 0.5


def resize(image: np.ndarray, height: int, width: int, mode: str = "bilinear") -> np.ndarray:
    """Resize an ``[h, w, c]`` uint8 image (half-pixel centres, like OpenCV, no antialiasing)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image.copy()
    sy = (np.arange(height, dtype=np.float64) + 0.5) * (h / float(height)) - 0.5
    sx = (np.arange(width, dtype=np.float64) + 0.5) * (w / float(width)) - 0.5
    if mode == "nearest":
        iy = np.clip(np.floor(sy + 0.5), 0, h - 1).astype(np.int64)
        ix = np.clip(np.floor(sx + 0.5), 0, w - 1).astype(np.int64)
        return image[iy][:, ix]
    if mode != "bilinear":
        raise ValueError("mode must be 'bilinear' or 'nearest'")
    sy = np.clip(sy, 0, h - 1)
    sx = np.clip(sx, 0, w - 1)
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (sy - y0).astype(np.float32)[:, None, None]
    fx = (sx - x0).astype(np.float32)[None, :, None]
    img = image.astype(np.float32)
    rows = img[y0] * (1.0 - fy) + img[y1] * fy
    out = rows[:, x0] * (1.0 - fx) + rows[:, x1] * fx
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Letterbox(NamedTuple):
    image: np.ndarray  # uint8 [size, size, 3]
    scale: float
    left: int
    top: int


def letterbox(
    image: np.ndarray,
    size: int = 256,
    mode: str = "bilinear",
    offset: Optional[Tuple[int, int]] = None,
) -> Letterbox:
    """Fit ``image`` into ``size x size`` keeping its aspect ratio; pad with 114.

    ``offset`` = (left, top) places the resized image; default: centred.
    Original coordinates map to letterbox ones as ``x * scale + left``.
    """
    h, w = image.shape[:2]
    scale = min(size / float(h), size / float(w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if offset is None:
        left, top = (size - nw) // 2, (size - nh) // 2
    else:
        left, top = offset
    out = np.full((size, size, image.shape[2]), PAD_VALUE, dtype=np.uint8)
    out[top : top + nh, left : left + nw] = resize(image, nh, nw, mode)
    return Letterbox(out, scale, left, top)


def to_input(image_bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR ``[h, w, 3]`` -> float32 RGB ``[3, h, w]`` in 0..1 (the model's input)."""
    return np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


class ValItem(NamedTuple):
    tensor: np.ndarray  # float32 [3, size, size]
    boxes: np.ndarray  # ground truth in the original frame, xyxy
    classes: np.ndarray
    scale: float
    left: int
    top: int


def validation_set(seed: int = VAL_SEED, count: int = VAL_COUNT, size: int = 256) -> List[ValItem]:
    """The validation images (see the module docstring), ready to feed."""
    items = []  # type: List[ValItem]
    for index in range(count):
        sample = shapes.generate(seed, index, VAL_SIZES[index % len(VAL_SIZES)])
        box = letterbox(sample.image, size)
        items.append(ValItem(to_input(box.image), sample.boxes, sample.classes, box.scale, box.left, box.top))
    return items


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS on xyxy boxes; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []  # type: List[int]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    output: np.ndarray,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = NMS_IOU,
    max_det: int = 300,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one ``[4 + C, N]`` output into (xyxy boxes, scores, classes) after per-class NMS."""
    probs = output[4:].T
    classes = probs.argmax(1)
    scores = probs[np.arange(len(probs)), classes]
    sel = scores > score_threshold
    cx, cy, w, h = output[:4, sel]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores, classes = scores[sel], classes[sel]
    keep = []  # type: List[np.ndarray]
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        keep.append(idx[nms(boxes[idx], scores[idx], iou_threshold)])
    if keep:
        k = np.concatenate(keep)
        k = k[np.argsort(-scores[k], kind="stable")][:max_det]
    else:
        k = np.zeros(0, dtype=np.int64)
    return boxes[k], scores[k], classes[k]


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    items: Sequence[ValItem],
    batch: int = 32,
    score_threshold: float = SCORE_THRESHOLD,
) -> Tuple[float, List[float]]:
    """mAP@0.5 of ``predict`` (float32 [B, 3, S, S] -> [B, 4 + C, N]) on ``items``."""
    detections = []
    truths = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        outputs = predict(np.stack([item.tensor for item in chunk]))
        for item, out in zip(chunk, outputs):
            boxes, scores, classes = postprocess(out, score_threshold)
            boxes = (boxes - np.array([item.left, item.top] * 2, dtype=np.float32)) / item.scale
            detections.append((boxes, scores, classes))
            truths.append((item.boxes, item.classes))
    return average_precision(detections, truths, len(shapes.CLASSES), 0.5)


def onnx_predictor(path: str) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run(["output0"], {"images": batch.astype(np.float32)})[0]

    return predict


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", default=os.path.join(ROOT, "trtedge", "models", "shapes_yolo.onnx"))
    parser.add_argument("--seed", type=int, default=VAL_SEED)
    parser.add_argument("--count", type=int, default=VAL_COUNT)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--score", type=float, default=SCORE_THRESHOLD)
    args = parser.parse_args(argv)
    items = validation_set(args.seed, args.count, args.size)
    start = time.time()
    mean, per_class = evaluate(onnx_predictor(args.onnx), items, score_threshold=args.score)
    print(
        "ONNX Runtime mAP@0.5 = {:.4f} on {} images ({}) in {:.1f} s".format(
            mean,
            len(items),
            ", ".join("{} {:.4f}".format(n, ap) for n, ap in zip(shapes.CLASSES, per_class)),
            time.time() - start,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
