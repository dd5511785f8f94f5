"""Host-side work around the engine: fitting a frame into the input buffer,
class-aware NMS for the ``host`` form, and mapping boxes back to the frame.

Everything is NumPy (plus OpenCV's resize and NMS when present) and reuses buffers:
the runtime must add almost nothing around the engine.
"""

import math
import weakref
from typing import Any, Dict, NamedTuple, Optional, Tuple

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


#: buffer (address, shape, strides) -> (the placement whose padding it holds, a weak reference to the
#: array that owns its memory: a buffer freed and another allocated at the same address is not the same)
_PADDED = {}  # type: Dict[Tuple[int, Tuple[int, ...], Tuple[int, ...]], Tuple[Tuple[int, ...], Any]]


def _pad_key(out: np.ndarray) -> Tuple[int, Tuple[int, ...], Tuple[int, ...]]:
    return out.__array_interface__["data"][0], out.shape, out.strides


def _owner(out: np.ndarray) -> np.ndarray:
    while isinstance(out.base, np.ndarray):
        out = out.base
    return out


def fit_into(frame: np.ndarray, out: np.ndarray, mode: str = "letterbox", pad_value: int = 114,
             align: str = "center", keep_pad: bool = False) -> Fit:
    """Resize ``frame`` (H, W, 3 uint8) into ``out`` (h, w, 3 uint8) in place.

    ``letterbox`` keeps the aspect ratio and fills the rest with
    ``pad_value``; ``align`` says where the image sits: ``center`` (padding
    split evenly, the left/top half rounded down) or ``top_left`` (padding at
    the right and bottom only, as YOLOX trains). ``stretch`` fills the input.
    Returns the mapping back (the padding is in it, so :func:`to_frame`
    needs no ``align``).

    ``keep_pad``: ``out`` is a buffer only ``fit_into`` writes (the runtime's
    reused input buffers), so its padding needs writing only when the
    placement in it changes, not for every frame of a stream (a 1280x720
    frame in 416x416 leaves 227 KB of padding).
    """
    fh, fw = frame.shape[:2]
    h, w = out.shape[:2]
    x0, y0, nw, nh, fit = placement(fh, fw, h, w, mode, align)
    if nw == w and nh == h:  # stretched, or the frame has the input's aspect ratio: no padding
        _resize(frame, w, h, out)
        if keep_pad:
            forget_pad(out)  # the whole buffer is image now: the next letterboxed frame pads it again
        return fit
    placed = (x0, y0, nw, nh, pad_value)
    entry = None
    if keep_pad:
        pad_key = _pad_key(out)
        owner = _owner(out)
        entry = _PADDED.get(pad_key)
    if entry is None or entry[0] != placed or entry[1]() is not owner:
        out[:y0] = pad_value
        out[y0 + nh:] = pad_value
        out[y0:y0 + nh, :x0] = pad_value
        out[y0:y0 + nh, x0 + nw:] = pad_value
        if keep_pad:
            if len(_PADDED) > 256:
                _PADDED.clear()
            _PADDED[pad_key] = (placed, weakref.ref(owner))
    _resize(frame, nw, nh, out[y0:y0 + nh, x0:x0 + nw])
    return fit


def placement(fh: int, fw: int, h: int, w: int, mode: str, align: str) -> Tuple[int, int, int, int, Fit]:
    """(x0, y0, nw, nh, fit): where a fh x fw frame goes in a h x w input (worked out once per
    frame size: every frame of a stream has the same). Engines built with a frame size
    letterbox inside at this same placement."""
    key = (fh, fw, h, w, mode, align)
    found = _PLACEMENTS.get(key)
    if found is None:
        found = _placement(fh, fw, h, w, mode, align)
        if len(_PLACEMENTS) > 256:
            _PLACEMENTS.clear()
        _PLACEMENTS[key] = found
    return found


def _placement(fh: int, fw: int, h: int, w: int, mode: str, align: str) -> Tuple[int, int, int, int, Fit]:
    if align not in ALIGNS:
        raise ValueError("align must be one of {}, not {!r}".format(", ".join(ALIGNS), align))
    if mode == "stretch":
        return 0, 0, w, h, Fit(w / fw, h / fh, 0.0, 0.0, fw, fh)
    r = min(w / fw, h / fh)
    nw, nh = max(1, int(round(fw * r))), max(1, int(round(fh * r)))
    x0, y0 = ((w - nw) // 2, (h - nh) // 2) if align == "center" else (0, 0)
    return x0, y0, nw, nh, Fit(nw / fw, nh / fh, float(x0), float(y0), fw, fh)


#: (frame h, w, input h, w, mode, align) -> its placement (:func:`_placement`)
_PLACEMENTS = {}  # type: Dict[Tuple[int, int, int, int, str, str], Tuple[int, int, int, int, Fit]]


def forget_pad(out: np.ndarray) -> None:
    """``out`` was written by something other than :func:`fit_into`: pad it again next time."""
    _PADDED.pop(_pad_key(out), None)


def to_frame(boxes: np.ndarray, fit: Fit) -> np.ndarray:
    """Input-pixel boxes [n, 4] -> frame pixels (float32), clipped to the frame.

    Exact inverse of the placement :func:`fit_into` made, whatever its
    ``align``: ``frame = (input - pad) / scale``, in the boxes' own float type
    (as with the fit's numbers as plain scalars), in three whole-array steps
    with the per-column numbers made once per placement: this runs for every
    frame, and it was the largest part of the host work after the resize.
    """
    dtype = boxes.dtype if boxes.dtype.kind == "f" else np.dtype(np.float64)
    key = (fit, dtype.char)
    cols = _COLUMNS.get(key)
    if cols is None:
        if len(_COLUMNS) > 64:
            _COLUMNS.clear()
        cols = _COLUMNS[key] = (np.array([fit.pad_x, fit.pad_y] * 2, dtype), np.array([fit.scale_x, fit.scale_y] * 2, dtype),
                                np.array([fit.frame_w, fit.frame_h] * 2, np.float32))
    pad, scale, limit = cols
    out = ((boxes - pad) / scale).astype(np.float32, copy=False)
    return np.clip(out, 0, limit, out=out)


#: (fit, dtype) -> its pad, scale and clip limits as rows to broadcast against [n, 4] boxes
_COLUMNS = {}  # type: Dict[Tuple[Fit, str], Tuple[np.ndarray, np.ndarray, np.ndarray]]


_REQUIRED = object()


def _setting(nms_cfg: Any, key: str, default: Any = _REQUIRED) -> Any:
    """One NMS setting, from the manifest's dict or from an object with those attributes."""
    if isinstance(nms_cfg, dict):
        return nms_cfg[key] if default is _REQUIRED else nms_cfg.get(key, default)
    return getattr(nms_cfg, key) if default is _REQUIRED else getattr(nms_cfg, key, default)


def _pair_iou(cols: np.ndarray, area: np.ndarray, j: np.ndarray, i: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU of the pairs (j[k], i[k]), or (j[k], k) without ``i``; 0 where the union is not positive.

    ``cols`` is the float64 boxes transposed ([4, n]: x1, y1, x2, y2), ``area``
    their :func:`_areas`. The one definition every path is held to:
    intersection sides clamped at 0, ``inter / (area_j + area_i - inter)``.
    """
    x1, y1, x2, y2 = cols
    ix1, iy1, ix2, iy2, iarea = (x1, y1, x2, y2, area) if i is None else (x1[i], y1[i], x2[i], y2[i], area[i])
    iw = np.minimum(x2[j], ix2)
    iw -= np.maximum(x1[j], ix1)
    ih = np.minimum(y2[j], iy2)
    ih -= np.maximum(y1[j], iy1)
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    union = area[j] + iarea
    union -= inter
    iou = np.zeros(inter.shape)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def _areas(cols: np.ndarray) -> np.ndarray:
    """Areas of boxes given as [4, n] float64 columns; an inverted side counts as 0."""
    return np.maximum(cols[2] - cols[0], 0.0) * np.maximum(cols[3] - cols[1], 0.0)


def _sweep(cols: np.ndarray, group: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes sorted by (group, low edge on ``axis``), and for each how many of the
    following boxes of its group start before its high edge: the only ones it can overlap.

    Edges are replaced by their rank in one stable sort (high edges first on
    ties, as touching boxes do not overlap), so the keys are exact integers
    and groups never mix.
    """
    n = group.size
    order = np.argsort(np.concatenate([cols[axis + 2], cols[axis]]), kind="stable")
    rank = np.empty(2 * n, np.int64)
    rank[order] = np.arange(2 * n)
    base = group * (2 * n + 1)
    lo = base + rank[n:]
    by_lo = np.argsort(lo, kind="stable")
    end = np.searchsorted(lo[by_lo], (base + rank[:n])[by_lo], side="left")
    return by_lo, np.maximum(end - np.arange(1, n + 1), 0)


def _overlaps(cols: np.ndarray, group: np.ndarray, iou_threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Every pair (j, i), j < i, of one group with IoU > ``iou_threshold`` (>= 0).

    Boxes are columns in score order. Only pairs whose extents overlap along
    one axis are measured (IoU > 0 needs that), on the axis with fewer such
    pairs: clusters and chains cost about boxes x neighbours, not n².
    """
    n = group.size
    order, cnt = _sweep(cols, group, 0)
    total = int(cnt.sum())
    if total > 16 * n:  # many boxes share this axis' extent (a vertical chain): try the other
        order_y, cnt_y = _sweep(cols, group, 1)
        total_y = int(cnt_y.sum())
        if total_y < total:
            order, cnt, total = order_y, cnt_y, total_y
    if total == 0:
        none = np.zeros(0, np.intp)
        return none, none
    u = np.repeat(np.arange(n), cnt)
    v = np.arange(total) + np.repeat(np.arange(1, n + 1) - (np.cumsum(cnt) - cnt), cnt)
    pu, pv = order[u], order[v]
    j, i = np.minimum(pu, pv), np.maximum(pu, pv)
    over = _pair_iou(cols, _areas(cols), j, i) > iou_threshold
    return j[over], i[over]


def _resolve(n: int, j: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Greedy NMS given who would suppress whom (j -> i, j < i): keep mask over n rows.

    A few vectorised rounds settle what is certain (a row nothing can
    suppress is kept; a row a kept row suppresses is dropped), usually all
    of it. What is left (chains) takes one pass in score order with the
    live rows as one Python integer bit mask, one cheap step per link.
    """
    dropped = np.zeros(n, bool)
    if j.size == 0:
        return ~dropped
    settled = np.zeros(n, bool)
    for _ in range(3):
        live = ~dropped[j]
        blockers = np.bincount(i[live], minlength=n)  # suppressors not (yet) known to be dropped
        kept = (blockers == 0) & ~dropped & ~settled
        if not kept.any():
            break
        settled |= kept
        dropped[i[kept[j]]] = True
        settled |= dropped
        if settled.all():
            return ~dropped
    todo = ~settled[j] & ~dropped[j]  # suppressions by rows not settled yet
    if not todo.any():
        return ~dropped
    j, i = j[todo], i[todo]
    by_j = np.argsort(j, kind="stable")
    j, i = j[by_j], i[by_j]
    first = np.flatnonzero(np.concatenate([[True], j[1:] != j[:-1]]))
    rows = j[first]
    width = (n + 7) // 8
    masks = np.zeros((rows.size, width), np.uint8)
    row_of = np.repeat(np.arange(rows.size), np.diff(np.append(first, j.size)))
    np.bitwise_or.at(masks, (row_of, i >> 3), np.left_shift(1, i & 7).astype(np.uint8))
    data = masks.tobytes()
    alive = int.from_bytes(np.packbits(~dropped, bitorder="little").tobytes(), "little")
    for k, p in enumerate(rows.tolist()):
        if alive >> p & 1:
            alive &= ~int.from_bytes(data[k * width:(k + 1) * width], "little")
    bits = np.frombuffer(alive.to_bytes(width, "little"), np.uint8)
    return np.unpackbits(bits, bitorder="little")[:n].astype(bool)


def _best_per_group(cols: np.ndarray, group: np.ndarray,
                    iou_threshold: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """One round of greedy NMS for all groups at once: (kept, dropped) masks.

    The best box of each group is kept for sure; the boxes of its group it
    overlaps by more than the threshold are dropped. For clusters of
    candidates that settles most of them with one IoU per box, before any
    pair is measured. None when groups are too many for that to pay (on
    average fewer than 8 boxes each).
    """
    n = group.size
    low = int(group.min())
    span = int(group.max()) - low + 1
    if span <= 4 * n:  # class ids: a table of each group's first (best) row
        table = np.full(span, n, np.intp)
        every = np.arange(n)
        np.minimum.at(table, group - low, every)
        if 8 * int(np.count_nonzero(table < n)) > n:
            return None
        best = table[group - low]
    else:
        _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
        if 8 * first.size > n:
            return None
        every = np.arange(n)
        best = first[inverse.reshape(-1)]
    kept = best == every
    dropped = _pair_iou(cols, _areas(cols), best) > iou_threshold
    dropped &= ~kept
    return kept, dropped


#: up to this many boxes, all pairs at once (one bit mask per row fits a 64-bit integer)
_DENSE_MAX = 64


def _greedy_dense(cols: np.ndarray, group: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Exact greedy NMS over at most ``_DENSE_MAX`` boxes: every pair's IoU in one
    matrix, then one pass in score order over 64-bit row masks; keep mask."""
    n = group.size
    side = np.minimum(cols[2:, :, None], cols[2:, None, :])  # [2, n, n]: x and y at once
    side -= np.maximum(cols[:2, :, None], cols[:2, None, :])
    np.maximum(side, 0.0, out=side)
    inter = np.multiply(side[0], side[1], out=side[0])
    area = _areas(cols)
    union = np.add.outer(area, area)
    union -= inter
    iou = np.zeros((n, n))
    np.divide(inter, union, out=iou, where=union > 0)  # the same operations as _pair_iou
    over = (iou > iou_threshold) & np.equal.outer(group, group)
    rows = np.zeros((n, 8), np.uint8)
    rows[:, :(n + 7) // 8] = np.packbits(np.triu(over, 1), axis=1, bitorder="little")
    alive = (1 << n) - 1
    for p, mask in enumerate(rows.view("<u8").ravel().tolist()):
        if mask and alive >> p & 1:
            alive &= ~mask
    return np.unpackbits(np.array([alive], "<u8").view(np.uint8), bitorder="little")[:n].astype(bool)


def _greedy_numpy(cols: np.ndarray, group: np.ndarray, iou_threshold: float, rounds: bool = True) -> np.ndarray:
    """Exact greedy NMS over boxes in score order ([4, n] float64 columns); keep mask.

    Few boxes: all pairs at once (:func:`_greedy_dense`). More: where groups
    hold many boxes, a round settles every group's best box first
    (:func:`_best_per_group`); what is left is overlapped by no box kept so
    far (all better than it), so greedy NMS over the rest alone finishes it,
    with another round while rounds settle at least half of what is left.
    Otherwise a sweep finds the overlapping pairs (:func:`_overlaps`) and
    one pass settles them (:func:`_resolve`): a chain costs one pass.
    """
    n = group.size
    if iou_threshold < 0:  # every IoU (>= 0) is above it: the best box of each group survives
        keep = np.zeros(n, bool)
        keep[np.unique(group, return_index=True)[1]] = True
        return keep
    if n <= _DENSE_MAX:
        return _greedy_dense(cols, group, iou_threshold)
    first = _best_per_group(cols, group, iou_threshold) if rounds else None
    if first is None:
        return _resolve(n, *_overlaps(cols, group, iou_threshold))
    keep, dropped = first
    rest = np.flatnonzero(~keep & ~dropped)
    if rest.size:
        keep[rest[_greedy_numpy(cols[:, rest], group[rest], iou_threshold, 2 * rest.size <= n)]] = True
    return keep


#: how far from the threshold OpenCV's float32 comparison is kept (see :func:`_greedy_opencv`)
_CV_MARGIN = 1e-6


def _greedy_opencv(cv2: Any, cols: np.ndarray, group: np.ndarray, iou_threshold: float) -> Optional[np.ndarray]:
    """Exact greedy NMS through ``cv2.dnn.NMSBoxesBatched``; None where it cannot vouch.

    What OpenCV (4.x, 5.0) does, read in its nms.cpp and checked in the tests:
    the Python binding takes the ``Rect2d`` overload (float64 x, y, w, h);
    areas are w * h (no +1); scores must exceed the score threshold
    (strictly) and are ordered by ``std::stable_sort``, so equal scores keep
    input order; a candidate is kept while ``overlap <= nms_threshold`` for
    every kept box, where ``overlap = 1 - float32(1 - IoU)`` and the
    comparison is in float32; classes are kept apart by shifting boxes by
    ``class * (max_coord + 1)``, ``max_coord`` counted from 0. So, against
    exact greedy NMS:

    * an IoU within ~1e-7 of the threshold may land on either side (an IoU
      of exactly 1/6 at threshold 1/6 is suppressed, one 1e-8 above 0.5 is
      kept at 0.5);
    * boxes with coordinates below -1 can suppress boxes of the next class;
    * two empty boxes suppress each other, whatever their classes (IoU is
      taken as 1 when the areas sum to 0, before the class shift matters);
    * ``nms_threshold`` must be >= 0;
    * every candidate is compared with the kept boxes of ALL classes, and the
      binding parses the boxes row by row (~0.2-0.3 us each): from Python it
      is slower than :func:`_greedy_numpy` beyond a few dozen candidates.

    So here: boxes are shifted to non-negative coordinates; empty boxes are
    kept without asking OpenCV (they overlap nothing); ranks stand in for
    the scores (ties are already broken). OpenCV runs twice, suppressing
    above ``threshold + 1e-6`` and above ``threshold - 1e-6``. Its rounding
    stays below 1e-6 for the boxes it is given (checked per call: sides of at
    least ~1e-6 px against the class shift), so in the first run whatever it
    suppresses has an exact IoU above the threshold with a kept box, and in
    the second whatever it keeps has none. When both runs keep the same
    boxes, that is exactly the greedy answer; when they differ (an IoU
    within 1e-6 of the threshold), None sends the caller to NumPy.
    """
    if iou_threshold < _CV_MARGIN:  # OpenCV refuses a negative threshold
        return None
    wh = cols[2:] - cols[:2]
    np.maximum(wh, 0.0, out=wh)
    side = wh.min(axis=0)
    small = float(side.min())
    top = float(cols.max())
    shift = min(0.0, float(cols[:2].min()))
    if not math.isfinite(small + top + shift):
        return None
    keep = side == 0  # empty boxes overlap nothing: kept, and left out of OpenCV's list
    rows = None
    if small == 0:
        rows = np.flatnonzero(side > 0)
        if rows.size == 0:
            return keep
        cols, group, wh = cols[:, rows], group[rows], wh[:, rows]
        small = float(side[rows].min())
    ids = group - group.min()
    reach = (float(ids.max()) + 1) * (top - shift + 1)  # the largest shifted coordinate
    if small < 1e-6 or 12 * reach * 2.0 ** -52 > 0.5 * _CV_MARGIN * small:
        return None  # boxes too thin for OpenCV's rounding to stay inside the margin
    n = group.size
    rects = np.empty((n, 4))
    rects[:, :2] = (cols[:2] - shift).T
    rects[:, 2:] = wh.T
    ranks = np.arange(n, 0, -1, dtype=np.float32)
    ids = ids.astype(np.int32)
    kept = cv2.dnn.NMSBoxesBatched(rects, ranks, ids, 0.0, float(np.float32(iou_threshold + _CV_MARGIN)))
    if not np.array_equal(kept, cv2.dnn.NMSBoxesBatched(rects, ranks, ids, 0.0,
                                                        float(np.float32(iou_threshold - _CV_MARGIN)))):
        return None
    kept = np.asarray(kept, np.intp).reshape(-1)
    keep[kept if rows is None else rows[kept]] = True
    return keep


#: above this many candidates (after the score threshold) NumPy is faster than OpenCV from Python
_CV_MAX_CANDIDATES = 64


def _opencv() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    return cv2 if hasattr(cv2, "dnn") and hasattr(cv2.dnn, "NMSBoxesBatched") else None


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_threshold: float,
        iou_threshold: float, max_per_class: int, max_total: int,
        class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS per class on candidates; returns kept indices by descending score.

    Exactly: candidates scoring >= ``score_threshold`` (compared as NumPy
    does, in the scores' float32), in descending score order with equal
    scores in input order, each kept unless an already kept box of its class
    (of any class when ``class_agnostic``) has IoU > ``iou_threshold`` with
    it (IoU as :func:`_pair_iou` defines it, in float64); then at most
    ``max_per_class`` per class (the best; all one class when
    ``class_agnostic``) and ``max_total`` in all.

    Up to ``_CV_MAX_CANDIDATES`` candidates OpenCV's C++ NMS does it where
    installed and able to vouch for the answer (:func:`_greedy_opencv`);
    otherwise, and above that, NumPy (:func:`_greedy_numpy`). Measured warm
    on one core (2026-12), OpenCV against NumPy: 20-40 candidates in 2-4
    clusters 22-30 us against 24-32 us; 300 in 12 clusters of 25: 144
    against 69 us; 300 spread out: 373 against 47 us; a chain of 300, each
    box overlapping the next: 257 against 178 us (the fixed-point iteration
    this replaces: 1.7 ms; a plain greedy loop in NumPy: 2.0 ms).
    """
    idx = np.flatnonzero(scores >= score_threshold)
    if idx.size == 0:
        return idx
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    group = np.zeros(idx.size, np.int64) if class_agnostic else classes[idx].astype(np.int64)
    cols = np.ascontiguousarray(boxes[idx].T, dtype=np.float64)
    keep = None
    cv2 = _opencv() if idx.size <= _CV_MAX_CANDIDATES else None
    if cv2 is not None:
        keep = _greedy_opencv(cv2, cols, group, float(iou_threshold))
    if keep is None:
        keep = _greedy_numpy(cols, group, float(iou_threshold))
    kept = np.flatnonzero(keep)
    if kept.size > max_per_class:  # rank inside the class, in score order
        kc = group[kept]
        by_class = np.argsort(kc, kind="stable")
        sorted_kc = kc[by_class]
        rank = np.empty(kept.size, np.intp)
        rank[by_class] = np.arange(kept.size) - np.searchsorted(sorted_kc, sorted_kc, side="left")
        kept = kept[rank < max_per_class]
    return idx[kept[:max(int(max_total), 0)]]


def detections_from_outputs(outputs: Any, form: str, i: int, nms_cfg: Any,
                            conf: Optional[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``i`` of a batch -> (boxes [n, 4] input pixels, scores, class ids).

    ``conf`` overrides the built score threshold. For the ``plugin`` and
    ``onnx`` forms the engine already dropped what scored below the built
    threshold, so only a higher ``conf`` changes anything there.
    """
    built = _setting(nms_cfg, "score_threshold")
    threshold = built if conf is None else conf
    if form == "host":
        boxes = outputs["candidate_boxes"][i]
        scores = outputs["candidate_scores"][i]
        classes = outputs["candidate_classes"][i]
        keep = nms(boxes, scores, classes, threshold, _setting(nms_cfg, "iou_threshold"),
                   _setting(nms_cfg, "max_per_class"), _setting(nms_cfg, "max_detections"),
                   bool(_setting(nms_cfg, "class_agnostic", False)))
        return boxes[keep], scores[keep], classes[keep].astype(np.int32, copy=False)
    n = int(outputs["num_detections"][i].reshape(-1)[0])
    boxes = outputs["detection_boxes"][i, :n]
    scores = outputs["detection_scores"][i, :n]
    classes = outputs["detection_classes"][i, :n].astype(np.int32, copy=False)
    if threshold > built:
        keep = scores >= threshold
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    return boxes, scores, classes
