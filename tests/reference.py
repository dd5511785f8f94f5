"""Plain NumPy reference decoders and NMS, written from the formulas.

The engine ONNX must agree with these; nothing here imports trtedge's
surgery code. Boxes are x1, y1, x2, y2 in input pixels; scores [N, C].
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def cxcywh_to_xyxy(b):
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def decode_anchor_free(head, num_classes):
    """v8-style [4+C, N] (one image) -> boxes [N, 4], scores [N, C]."""
    t = head.T
    return cxcywh_to_xyxy(t[:, :4]), t[:, 4:4 + num_classes]


def decode_v5(head, num_classes):
    """v5-style [N, 5+C] (one image), obj * cls."""
    return cxcywh_to_xyxy(head[:, :4]), head[:, 5:5 + num_classes] * head[:, 4:5]


def decode_darknet(heads, strides, anchors, scale_x_y, num_classes):
    """Raw darknet heads, one [A*(5+C), H, W] per stride (one image)."""
    all_boxes, all_scores = [], []
    for head, stride, anc, s in zip(heads, strides, anchors, scale_x_y):
        a = len(anc)
        _, h, w = head.shape
        t = head.reshape(a, 5 + num_classes, h, w)
        for k in range(a):
            for y in range(h):
                for x in range(w):
                    v = t[k, :, y, x]
                    cx = (sigmoid(v[0]) * s - (s - 1) / 2 + x) * stride
                    cy = (sigmoid(v[1]) * s - (s - 1) / 2 + y) * stride
                    bw = np.exp(v[2]) * anc[k][0]
                    bh = np.exp(v[3]) * anc[k][1]
                    all_boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
                    all_scores.append(sigmoid(v[4]) * sigmoid(v[5:]))
    return np.array(all_boxes, np.float32), np.array(all_scores, np.float32)


def decode_yolox(head, strides, size, num_classes, activation="none"):
    """YOLOX without decode, [N, 5+C] (one image), cells stride by stride, row-major.

    Per cell (column x, row y of its level): cx = (t0 + x) * stride,
    cy = (t1 + y) * stride, w = exp(t2) * stride, h = exp(t3) * stride;
    score = obj * cls (``activation`` applied to both first)."""
    act = sigmoid if activation == "sigmoid" else (lambda v: v)
    boxes, scores = [], []
    k = 0
    for stride in strides:
        for y in range(size[0] // stride):
            for x in range(size[1] // stride):
                t = head[k]
                k += 1
                cx, cy = (t[0] + x) * stride, (t[1] + y) * stride
                w, h = np.exp(t[2]) * stride, np.exp(t[3]) * stride
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
                scores.append(act(t[4]) * act(t[5:5 + num_classes]))
    assert k == len(head), "{} cells decoded, the head has {}".format(k, len(head))
    return np.array(boxes, np.float32), np.array(scores, np.float32)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode_gfl(cls, dist, strides, size, reg_max, center_offset, activation="none"):
    """GFL / NanoDet (one image): cls [N, C], dist [N, 4*(reg_max+1)], cells of
    ceil(size / stride) grids, stride by stride, row-major.

    Each side's distance is sum_i softmax(bins)_i * i, times the stride, from
    the point ((x, y) + center_offset) * stride; x1y1x2y2 clipped to the input."""
    scores = sigmoid(cls) if activation == "sigmoid" else cls
    boxes = []
    k = 0
    for stride in strides:
        rows, cols = -(-size[0] // stride), -(-size[1] // stride)
        for y in range(rows):
            for x in range(cols):
                p = softmax(dist[k].reshape(4, reg_max + 1))
                left, top, right, bottom = (p * np.arange(reg_max + 1)).sum(1) * stride
                px, py = (x + center_offset) * stride, (y + center_offset) * stride
                boxes.append([min(max(px - left, 0), size[1]), min(max(py - top, 0), size[0]),
                              min(max(px + right, 0), size[1]), min(max(py + bottom, 0), size[0])])
                k += 1
    assert k == len(cls) == len(dist), "{} cells decoded, the head has {}".format(k, len(cls))
    return np.array(boxes, np.float32), np.asarray(scores, np.float32)


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def nms(boxes, scores, score_threshold, iou_threshold, max_per_class, max_total):
    """Class-aware greedy NMS -> (boxes [K,4], scores [K], classes [K]) by score."""
    out = []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        idx = np.where(s > score_threshold)[0]
        idx = idx[np.argsort(-s[idx], kind="stable")]
        keep = []
        while len(idx) and len(keep) < max_per_class:
            i = idx[0]
            keep.append(i)
            rest = idx[1:]
            idx = rest[iou(boxes[i], boxes[rest]) <= iou_threshold]
        out += [(s[i], c, i) for i in keep]
    out.sort(key=lambda r: -r[0])
    out = out[:max_total]
    if not out:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    return (np.array([boxes[i] for _, _, i in out], np.float32),
            np.array([s for s, _, _ in out], np.float32),
            np.array([c for _, c, _ in out], np.int32))


def same_detections(a, b, atol=1e-3, rtol=1e-3):
    """Compare two (boxes, scores, classes) sets regardless of the order of ties."""
    (ba, sa, ca), (bb, sb, cb) = a, b
    assert len(sa) == len(sb), "{} vs {} detections".format(len(sa), len(sb))
    ka = np.lexsort((ba[:, 0], ca, -np.round(sa, 4)))
    kb = np.lexsort((bb[:, 0], cb, -np.round(sb, 4)))
    np.testing.assert_allclose(sa[ka], sb[kb], atol=atol, rtol=rtol)
    np.testing.assert_array_equal(ca[ka], cb[kb])
    np.testing.assert_allclose(ba[ka], bb[kb], atol=atol * 100, rtol=rtol)
