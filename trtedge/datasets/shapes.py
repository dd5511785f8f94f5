"""A deterministic synthetic detection data set: circles, squares and triangles.

Every sample is a function of ``(seed, index, size)`` only: the same triple
gives the same image and labels on any machine, because the random stream is
``np.random.default_rng([seed, index])`` and the geometry is snapped to a
1/256-pixel grid and rasterised with exact arithmetic (no ``sin``/``exp``
results reach a pixel test unrounded).

Each image holds 1 to 6 filled shapes (classes :data:`CLASSES`, ids 0, 1, 2)
of about 16 px up to 35 % of the shorter image side, in colours chosen to
stand out from what lies under them, drawn over a textured background
(gradient plus stripes, low-frequency noise or soft blobs) with pixel noise
on top. In frames larger than 256 px the smallest shapes are 1/16 of the
longer side rather than 16 px (never above the largest size), so a frame
letterboxed to 256 px still shows every shape at about 16 px or more.
Circles are round, squares are axis-aligned or slightly rotated (up to 15
degrees), triangles are roughly equilateral at any rotation. Shapes may
overlap; a placement that would hide more than 40 % of an earlier shape is
retried elsewhere or skipped, and labels of shapes less than 40 % visible
are dropped, so every labelled shape is mostly visible.

Formats
-------
``Sample.image``
    ``uint8`` array ``[H, W, 3]``, channels in **BGR** order (OpenCV order).
``Sample.boxes``
    ``float32`` array ``[n, 4]``: ``x1, y1, x2, y2`` in pixels, the tight
    axis-aligned box of the shape's filled pixels (whole shape, including any
    part covered by a later shape). Bounds are pixel edges: a shape filling
    columns 10..19 has ``x1 = 10`` and ``x2 = 20``. Always inside the image:
    ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``.
``Sample.classes``
    ``int32`` array ``[n]`` with values in ``0 .. len(CLASSES) - 1``.

Only NumPy is needed; :func:`write_coco` imports OpenCV (``cv2``) when called.
"""

import json
import os
import threading
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["CLASSES", "Sample", "generate", "iterate", "to_coco", "write_coco"]

CLASSES = ("circle", "square", "triangle")

MIN_OBJECT = 16.0
"""Smallest shape extent in pixels (and :data:`MIN_OBJECT_FRACTION` of the longer side)."""
MIN_OBJECT_FRACTION = 1.0 / 16.0
"""Smallest shape extent as a fraction of the longer image side (when above 16 px)."""
MAX_OBJECT_FRACTION = 0.35
"""Largest shape extent as a fraction of the shorter image side."""
MIN_VISIBLE = 0.4
"""Labels of shapes with less than this fraction of pixels visible are dropped."""
MAX_OBJECTS = 6

_PLACE_VISIBLE = 0.6  # a new shape may hide at most 40 % of an earlier one
_PLACE_TRIES = 8
_QUANTUM = 256.0  # geometry is snapped to 1/256 px so rasterisation is exact
_MIN_SIDE = 48

SizeLike = Union[int, Tuple[int, int], Sequence[int]]


class Sample(NamedTuple):
    """One generated image with its labels (see the module docstring for formats)."""

    image: np.ndarray  # uint8 [H, W, 3], BGR
    boxes: np.ndarray  # float32 [n, 4], x1 y1 x2 y2 in pixels
    classes: np.ndarray  # int32 [n]


def _size(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        if len(size) != 2:
            raise ValueError("size must be (height, width), got {!r}".format(size))
        h, w = int(size[0]), int(size[1])
    if min(h, w) < _MIN_SIDE:
        raise ValueError("image sides must be at least {} px, got {}x{}".format(_MIN_SIDE, h, w))
    return h, w


def _snap(values: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64) * _QUANTUM) / _QUANTUM


# --------------------------------------------------------------------------- background


class _Workspace(object):
    """Scratch arrays reused between calls of one thread.

    Filling freshly allocated megabytes costs more than the arithmetic on
    some virtual machines (page faults), so the big buffers are kept.
    """

    def __init__(self, h: int, w: int) -> None:
        self.img = np.empty((3, h, w), dtype=np.float32)  # planar background
        self.t = np.empty((h, w), dtype=np.float32)
        self.tmp = np.empty((h, w), dtype=np.float32)
        self.canvas = np.empty((3, h, w), dtype=np.int16)
        self.noise = np.empty((h, w), dtype=np.int16)
        self.owner = np.empty((h, w), dtype=np.int8)


_LOCAL = threading.local()


def _workspace(h: int, w: int) -> _Workspace:
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    work = cache.get((h, w))
    if work is None:
        if len(cache) >= 4:
            cache.clear()
        work = cache[(h, w)] = _Workspace(h, w)
    return work


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _f32(value: float) -> np.float32:
    return np.float32(value)


def _mix(work: _Workspace, wgt: np.ndarray, colour: np.ndarray) -> None:
    """``img += wgt * (colour - img)`` in place, per channel (``wgt`` is [h, w])."""
    tmp = work.tmp
    for ch in range(3):
        np.subtract(colour[ch], work.img[ch], out=tmp)
        tmp *= wgt
        work.img[ch] += tmp


def _background(rng: np.random.Generator, work: _Workspace, h: int, w: int) -> np.ndarray:
    """Fill and return ``work.img``: a float32 planar [3, h, w] texture, roughly 0..255.

    Planar layout and per-channel loops keep NumPy on contiguous inner loops;
    all scalars are float32 so the arithmetic is plain IEEE float32.
    """
    img, t, tmp = work.img, work.t, work.tmp
    ys = ((np.arange(h, dtype=np.float32) + _f32(0.5)) / _f32(h))[:, None]
    xs = ((np.arange(w, dtype=np.float32) + _f32(0.5)) / _f32(w))[None, :]

    # Base: a linear gradient between two colours in a random direction.
    c0, c1 = _colour(rng), _colour(rng)
    a, b = (rng.random(2) * 2.0 - 1.0).astype(np.float32)
    lo = _f32(min(a, 0) + min(b, 0))
    span = _f32(max(abs(a) + abs(b), 1e-3))
    np.add(ys * a, xs * b, out=t)
    t -= lo
    t /= span  # 0..1
    for ch in range(3):
        np.multiply(t, c1[ch] - c0[ch], out=img[ch])
        img[ch] += c0[ch]

    kind = int(rng.integers(0, 4))
    if kind == 1:  # stripes (triangle wave, any direction)
        period = _f32(rng.integers(6, 41))
        u, v = (rng.random(2) * 2.0 - 1.0).astype(np.float32)
        norm = _f32(np.sqrt(float(u) * u + float(v) * v) + 1e-6)
        np.add(xs * (_f32(w) * (u / norm) / period), ys * (_f32(h) * (v / norm) / period), out=t)
        np.floor(t, out=tmp)
        t -= tmp
        t *= _f32(2.0)
        t -= _f32(1.0)
        np.abs(t, out=t)
        t *= _f32(0.2 + 0.5 * rng.random())
        _mix(work, t, _colour(rng))
    elif kind == 2:  # low-frequency value noise, bilinear from a coarse grid
        gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        amp = _f32(40.0 + 80.0 * rng.random())
        grid = ((rng.random((3, gh + 1, gw + 1)) - 0.5) * amp).astype(np.float32)
        py = ys[:, 0] * _f32(gh)
        px = xs[0, :] * _f32(gw)
        iy = np.minimum(py.astype(np.int64), gh - 1)
        ix = np.minimum(px.astype(np.int64), gw - 1)
        fy = (py - iy.astype(np.float32))[None, :, None]
        fx = (px - ix.astype(np.float32))[None, :]
        gx = _f32(1.0) - fx
        rows = grid[:, iy] * (_f32(1.0) - fy) + grid[:, iy + 1] * fy  # [3, h, gw+1], small
        for ch in range(3):
            np.take(rows[ch], ix, axis=1, out=tmp)
            tmp *= gx
            img[ch] += tmp
            np.take(rows[ch], ix + 1, axis=1, out=tmp)
            tmp *= fx
            img[ch] += tmp
    elif kind == 3:  # soft blobs
        side = float(min(h, w))
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.random() * h, rng.random() * w
            r = _f32((0.1 + 0.4 * rng.random()) * side)
            dy = ((np.arange(h, dtype=np.float32) + _f32(0.5 - cy)) / r)[:, None]
            dx = ((np.arange(w, dtype=np.float32) + _f32(0.5 - cx)) / r)[None, :]
            np.add(dy * dy, dx * dx, out=t)
            np.subtract(_f32(1.0), t, out=t)
            np.maximum(t, _f32(0.0), out=t)
            t *= t
            t *= _f32(0.4 + 0.5 * rng.random())
            _mix(work, t, _colour(rng))
    return img


# --------------------------------------------------------------------------- shapes


def _window(lo: np.ndarray, hi: np.ndarray, h: int, w: int) -> Tuple[int, int, int, int]:
    x0 = max(int(np.floor(lo[0])), 0)
    y0 = max(int(np.floor(lo[1])), 0)
    x1 = min(int(np.ceil(hi[0])), w)
    y1 = min(int(np.ceil(hi[1])), h)
    return x0, y0, x1, y1


def _polygon_mask(vertices: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, int, int]:
    """Pixels whose centre lies inside a convex polygon ([k, 2] x, y, snapped)."""
    x0, y0, x1, y1 = _window(vertices.min(0), vertices.max(0), h, w)
    xs = (np.arange(x0, x1, dtype=np.float64) + 0.5)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float64) + 0.5)[:, None]
    nxt = vertices[np.arange(1, len(vertices) + 1) % len(vertices)]
    area2 = float(np.sum(vertices[:, 0] * nxt[:, 1] - nxt[:, 0] * vertices[:, 1]))
    sign = 1.0 if area2 > 0 else -1.0
    mask = None  # type: Optional[np.ndarray]
    for (ax, ay), (bx, by) in zip(vertices.tolist(), nxt.tolist()):
        # inside: sign * ((bx-ax)(y-ay) - (by-ay)(x-ax)) >= 0; every product is
        # exact on the 1/256 grid, so the test is the same on every machine
        inside = (ys - ay) * (sign * (bx - ax)) >= (xs - ax) * (sign * (by - ay))
        mask = inside if mask is None else np.logical_and(mask, inside, out=mask)
    assert mask is not None
    return mask, x0, y0


def _circle_mask(cx: float, cy: float, r: float, h: int, w: int) -> Tuple[np.ndarray, int, int]:
    x0, y0, x1, y1 = _window(np.array([cx - r, cy - r]), np.array([cx + r, cy + r]), h, w)
    dx = (np.arange(x0, x1, dtype=np.float64) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float64) + 0.5 - cy)[:, None]
    return dx * dx + dy * dy <= r * r, x0, y0


def _place(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, h: int, w: int) -> np.ndarray:
    """A snapped offset that keeps the extent [lo, hi] (relative to the centre) inside the image."""
    span = np.array([w, h], dtype=np.float64) - (hi - lo) - 2.0
    return _snap(1.0 - lo + rng.random(2) * np.maximum(span, 0.0))


def _shape(cls: int, extent: float, rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, int, int]:
    """Rasterise one shape of class ``cls`` and extent ``extent`` px; returns (mask, x0, y0)."""
    if cls == 0:  # circle
        r = float(_snap(extent / 2.0))
        cx, cy = _place(rng, np.array([-r, -r]), np.array([r, r]), h, w)
        return _circle_mask(float(cx), float(cy), r, h, w)
    if cls == 1:  # square, axis-aligned or slightly rotated
        half = extent / 2.0
        angle = 0.0 if rng.random() < 0.5 else (rng.random() * 2.0 - 1.0) * np.pi / 12.0
        c, s = np.cos(angle), np.sin(angle)
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        rel = corners @ np.array([[c, s], [-s, c]])
        rel = rel * (extent / (rel.max(0) - rel.min(0)).max())  # keep the drawn extent
    else:  # triangle: roughly equilateral, any rotation
        start = rng.random() * 2.0 * np.pi
        angles = start + np.arange(3) * (2.0 * np.pi / 3.0) + (rng.random(3) - 0.5) * 0.35
        radius = 1.0 + (rng.random(3) - 0.5) * 0.2
        rel = np.stack([np.cos(angles) * radius, np.sin(angles) * radius], axis=1)
        rel = rel * (extent / (rel.max(0) - rel.min(0)).max())
    rel = _snap(rel)
    centre = _place(rng, rel.min(0), rel.max(0), h, w)
    return _polygon_mask(_snap(rel + centre), h, w)


def _pick_colour(rng: np.random.Generator, region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A colour (int16 [3]) that differs clearly from the pixels of ``region`` under ``mask``.

    ``region`` is planar int16 [3, h, w]; the mean is taken on every second
    row and column (exact integer arithmetic).
    """
    sub = mask[::2, ::2]
    count = max(int(np.count_nonzero(sub)), 1)
    mean = np.array([int(region[ch, ::2, ::2][sub].sum(dtype=np.int64)) // count for ch in range(3)])
    for _ in range(6):
        col = rng.integers(0, 256, 3)
        if int(np.abs(col - mean).sum()) >= 150:
            return col.astype(np.int16)
    return np.where(mean > 127, mean - 128, mean + 128).astype(np.int16)


# --------------------------------------------------------------------------- public API


def generate(seed: int, index: int, size: SizeLike = (256, 256)) -> Sample:
    """Generate sample ``index`` of the data set ``seed``.

    Args:
        seed: data set seed (any non-negative int).
        index: sample number within the data set (non-negative int).
        size: ``(height, width)`` of the image (or one int for a square);
            both sides at least 48 px.

    Returns:
        :class:`Sample` ``(image, boxes, classes)``: image ``uint8 [H, W, 3]``
        BGR; boxes ``float32 [n, 4]`` ``x1, y1, x2, y2`` in pixels (tight box
        of the shape's filled pixels, edges exclusive on the right/bottom);
        classes ``int32 [n]`` indices into :data:`CLASSES`; ``1 <= n <= 6``.
    """
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    h, w = _size(size)
    rng = np.random.default_rng([int(seed), int(index)])

    work = _workspace(h, w)
    background = _background(rng, work, h, w)
    np.clip(background, _f32(0.0), _f32(255.0), out=background)
    np.rint(background, out=background)
    canvas = work.canvas
    np.copyto(canvas, background, casting="unsafe")
    owner = work.owner
    owner.fill(-1)
    smallest = max(MIN_OBJECT, min(MIN_OBJECT_FRACTION * max(h, w), MAX_OBJECT_FRACTION * min(h, w)))
    largest = max(MAX_OBJECT_FRACTION * min(h, w), smallest + 1.0)

    boxes = []  # type: List[Tuple[int, int, int, int]]
    classes = []  # type: List[int]
    totals = []  # type: List[int]
    visible = []  # type: List[int]
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        cls = int(rng.integers(0, len(CLASSES)))
        u = rng.random()
        extent = smallest + (largest - smallest) * u * u  # favour small shapes
        for _attempt in range(_PLACE_TRIES):
            mask, x0, y0 = _shape(cls, extent, rng, h, w)
            mh, mw = mask.shape
            total = int(mask.sum())
            if total == 0:
                continue
            if boxes:
                hidden = owner[y0 : y0 + mh, x0 : x0 + mw][mask]
                lost = np.bincount(hidden.astype(np.int64) + 1, minlength=len(boxes) + 1)[1:]
                after = np.asarray(visible) - lost
                if np.any(after < _PLACE_VISIBLE * np.asarray(totals)):
                    continue
                visible = after.tolist()
            region = canvas[:, y0 : y0 + mh, x0 : x0 + mw]
            colour = _pick_colour(rng, region, mask)
            for ch in range(3):
                np.copyto(region[ch], colour[ch], where=mask)
            owner[y0 : y0 + mh, x0 : x0 + mw][mask] = len(boxes)
            rows = np.flatnonzero(mask.any(1))
            cols = np.flatnonzero(mask.any(0))
            boxes.append((x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1))
            classes.append(cls)
            totals.append(total)
            visible.append(total)
            break

    amp = int(rng.integers(0, 21))
    if amp:
        noise = work.noise
        noise[...] = rng.integers(0, 256, (h, w), dtype=np.uint8)
        noise *= 2 * amp + 1
        noise >>= 8
        noise -= amp  # uniform integers in -amp..amp, same on all channels
        for ch in range(3):
            canvas[ch] += noise
    np.clip(canvas, 0, 255, out=canvas)
    image = np.empty((h, w, 3), dtype=np.uint8)
    for ch in range(3):  # planar -> interleaved
        image[:, :, ch] = canvas[ch]

    keep = [i for i in range(len(boxes)) if visible[i] >= MIN_VISIBLE * totals[i]]
    out_boxes = np.array([boxes[i] for i in keep], dtype=np.float32).reshape(-1, 4)
    out_classes = np.array([classes[i] for i in keep], dtype=np.int32)
    return Sample(image, out_boxes, out_classes)


def iterate(seed: int, count: int, size: SizeLike = (256, 256), start: int = 0) -> Iterator[Sample]:
    """Yield samples ``start .. start + count - 1`` of data set ``seed`` (see :func:`generate`)."""
    for index in range(start, start + count):
        yield generate(seed, index, size)


def to_coco(
    samples: Iterable[Sample],
    file_names: Optional[Sequence[str]] = None,
    first_image_id: int = 1,
) -> Dict[str, list]:
    """Labels of ``samples`` as a COCO detection dict (no image files are written).

    Image ``i`` (0-based) gets id ``first_image_id + i`` and file name
    ``file_names[i]`` (default ``"{i:06d}.png"``). Annotations have ``bbox``
    ``[x, y, w, h]`` in pixels, ``area = w * h``, ``iscrowd = 0`` and
    ``category_id = class + 1`` (1 circle, 2 square, 3 triangle).
    """
    images = []  # type: List[dict]
    annotations = []  # type: List[dict]
    for i, sample in enumerate(samples):
        image_id = first_image_id + i
        name = file_names[i] if file_names is not None else "{:06d}.png".format(i)
        height, width = sample.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": int(height), "width": int(width)})
        for box, cls in zip(sample.boxes.tolist(), sample.classes.tolist()):
            x1, y1, x2, y2 = box
            bw, bh = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [x1, y1, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(directory: str, seed: int, count: int, size: SizeLike = (256, 256)) -> str:
    """Write ``count`` samples of data set ``seed`` as PNG files plus a COCO file.

    Images go to ``directory/{index:06d}.png`` (BGR written by OpenCV, so the
    files hold the true colours) and labels to ``directory/annotations.json``
    (see :func:`to_coco`; image id = index + 1). Returns the path of
    ``annotations.json``. Needs OpenCV (``opencv-python-headless``).
    """
    try:
        import cv2  # noqa: PLC0415 - optional dependency, only needed here
    except ImportError as exc:
        raise ImportError(
            "write_coco needs OpenCV to write PNG files; install it with "
            "'pip install opencv-python-headless'"
        ) from exc
    os.makedirs(directory, exist_ok=True)
    samples = []  # type: List[Sample]
    names = []  # type: List[str]
    for index in range(count):
        sample = generate(seed, index, size)
        name = "{:06d}.png".format(index)
        if not cv2.imwrite(os.path.join(directory, name), sample.image):
            raise OSError("could not write {}".format(os.path.join(directory, name)))
        samples.append(sample)
        names.append(name)
    path = os.path.join(directory, "annotations.json")
    with open(path, "w") as handle:
        json.dump(to_coco(samples, names), handle)
    return path
