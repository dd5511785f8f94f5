"""Calibration frames for INT8: what the engine's input will see, read from a source.

``--calib SRC`` is an image directory, a video file or a ``.npy`` batch
(uint8 ``[N, H, W, 3]`` or one ``[H, W, 3]`` frame, BGR like OpenCV's). Every
frame goes through exactly the runtime's fitting — the channel swap the
manifest asks for, then :func:`trtedge.runtime.postprocess.fit_into`
(letterbox or stretch, the spec's pad value) — into uint8 NHWC arrays of the
engine input's size, so calibration sees what the engine will see.

:func:`read` picks ``count`` calibration frames and a quarter as many
held-out frames (for the accuracy gate), spread evenly over the source; an
image directory holding a COCO ``annotations.json`` (what ``python -m
trtedge.datasets images DIR`` writes) also gives the held-out frames' labels,
mapped into input pixels. Nothing here imports numpy, OpenCV or onnx until it
is called.
"""

import json
import math
import os
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import TrtedgeError
from ..utils.files import sha256_path
from ..utils.lazy import lazy_import

np = lazy_import("numpy")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts")
#: the COCO file an image directory may hold (``python -m trtedge.datasets images DIR`` writes it)
ANNOTATIONS = "annotations.json"


class CalibrationError(TrtedgeError):
    """The calibration source is missing, unreadable or too small."""


class InputFit(NamedTuple):
    """How a frame is fitted into the engine input (the manifest's ``input`` section)."""

    height: int
    width: int
    resize: str = "letterbox"
    pad_value: int = 114
    #: the engine takes RGB: frames (BGR) are swapped first, as the Detector does
    swap_rb: bool = False

    @classmethod
    def of_spec(cls, spec: Any) -> "InputFit":
        inp = spec.input
        return cls(int(inp.height), int(inp.width), inp.resize, int(inp.pad_value), inp.engine_channels == "rgb")


class Frames(NamedTuple):
    """Fitted frames: ``calib`` and ``held_out`` are uint8 ``[N, H, W, 3]`` as the engine input sees them."""

    calib: Any
    held_out: Any
    #: per held-out frame (boxes [n, 4] x1 y1 x2 y2 in input pixels, class ids [n]); None without annotations
    truth: Optional[List[Tuple[Any, Any]]]
    source: str
    sha256: str


def source_sha(path: Optional[str]) -> Optional[str]:
    """The sha256 of a calibration source (a file, or a directory's names and contents); None when absent."""
    if not path or not os.path.exists(path):
        return None
    return sha256_path(path)


def held_out_count(count: int) -> int:
    """How many held-out frames go with ``count`` calibration frames (a fifth of the whole)."""
    return max(4, int(math.ceil(count / 4.0)))


def _pick(available: int, wanted: int) -> List[int]:
    """``wanted`` indices spread evenly over ``range(available)`` (all when there are fewer)."""
    if available <= wanted:
        return list(range(available))
    return sorted({int(i * available / wanted) for i in range(wanted)})


def _split(indices: Sequence[int], count: int) -> Tuple[List[int], List[int]]:
    """Every fifth picked frame is held out; at most ``count`` calibrate."""
    held = [i for k, i in enumerate(indices) if k % 5 == 4]
    calib = [i for k, i in enumerate(indices) if k % 5 != 4][:count]
    return calib, held


def _fit(frame: Any, fit: InputFit, out: Any) -> Any:
    from ..runtime.postprocess import fit_into

    if not (getattr(frame, "ndim", 0) == 3 and frame.shape[2] == 3 and frame.shape[0] > 0 and frame.shape[1] > 0):
        raise CalibrationError("a calibration frame has shape {}; frames are (height, width, 3)".format(
            getattr(frame, "shape", "?")))
    if frame.dtype != np.uint8:
        raise CalibrationError("calibration frames must be uint8 BGR images, not {}".format(frame.dtype))
    return fit_into(frame[..., ::-1] if fit.swap_rb else frame, out, fit.resize, fit.pad_value)


def _image_files(directory: str) -> List[str]:
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith(IMAGE_EXTS)
                   and os.path.isfile(os.path.join(directory, n)))
    return names


def _read_image(path: str) -> Any:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationError("cannot read calibration image {}".format(path))
    return image


def _video_frames(path: str, wanted: int) -> Iterator[Tuple[int, Any]]:
    """(index, frame) of ``wanted`` frames spread over the video (the first ``wanted`` if its length is unknown)."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise CalibrationError("OpenCV cannot open the calibration video {}".format(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        chosen = set(_pick(total, wanted)) if total > 0 else set(range(wanted))
        last = max(chosen) if chosen else -1
        index = 0
        while index <= last:
            if index in chosen:
                ok, frame = cap.read()
                if not ok:
                    break
                yield index, frame
            elif not cap.grab():
                break
            index += 1
    finally:
        cap.release()


def _load_npy(path: str) -> Any:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError("cannot read {} as a NumPy array: {}".format(path, " ".join(str(exc).split())[:160]))
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4 or data.shape[3] != 3 or data.dtype != np.uint8:
        raise CalibrationError("{} holds {} {}; a calibration batch is uint8 [N, H, W, 3] (BGR)".format(
            path, data.dtype, list(data.shape)))
    return data


def _coco_truth(directory: str, names: Sequence[str], fits: Sequence[Any],
                labels: Sequence[str]) -> Optional[List[Tuple[Any, Any]]]:
    """Labels of ``names`` from ``directory/annotations.json``, mapped into input pixels; None without the file."""
    path = os.path.join(directory, ANNOTATIONS)
    if not os.path.isfile(path) or not labels:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
        images = {str(im["file_name"]): int(im["id"]) for im in coco["images"]}
        cats = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        anns = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError("{} is not a COCO annotation file: {}".format(path, exc))
    index = {name: i for i, name in enumerate(labels)}
    by_image = {}  # type: Dict[int, List[Tuple[List[float], int]]]
    for a in anns:
        cls = index.get(cats.get(int(a.get("category_id", -1)), ""))
        if cls is None or a.get("iscrowd"):
            continue
        by_image.setdefault(int(a["image_id"]), []).append(([float(v) for v in a["bbox"]], cls))
    if not any(cats.get(k) in index for k in cats):
        return None  # other classes than the model's: nothing to measure against
    truth = []
    for name, fit in zip(names, fits):
        rows = by_image.get(images.get(name, -1), [])
        boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in rows], np.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2] * fit.scale_x + fit.pad_x
        boxes[:, 1::2] = boxes[:, 1::2] * fit.scale_y + fit.pad_y
        truth.append((boxes, np.array([c for _, c in rows], np.int64)))
    return truth


def read(path: Optional[str], count: int, fit: InputFit, labels: Sequence[str] = ()) -> Frames:
    """``count`` calibration frames and :func:`held_out_count` held-out frames from ``path``, fitted."""
    if not path:
        raise CalibrationError("--precision int8 needs calibration frames: --calib SRC (an image directory, a video "
                               "or a .npy batch of what the camera sees)")
    if not os.path.exists(path):
        raise CalibrationError("calibration source {} does not exist".format(path))
    if count < 1:
        raise CalibrationError("--calib-count must be at least 1")
    wanted = count + held_out_count(count)
    shape = (fit.height, fit.width, 3)
    names = {}  # type: Dict[int, str]  # image directories: index -> file name
    fitted = []  # type: List[Tuple[int, Any, Any]]  # (index, fitted frame, Fit)
    if os.path.isdir(path):
        files = _image_files(path)
        picked = _pick(len(files), wanted)
        for i in picked:
            out = np.empty(shape, np.uint8)
            fitted.append((i, out, _fit(_read_image(os.path.join(path, files[i])), fit, out)))
            names[i] = files[i]
    elif path.lower().endswith(".npy"):
        data = _load_npy(path)
        for i in _pick(len(data), wanted):
            out = np.empty(shape, np.uint8)
            fitted.append((i, out, _fit(np.ascontiguousarray(data[i]), fit, out)))
    elif path.lower().endswith(VIDEO_EXTS):
        for i, frame in _video_frames(path, wanted):
            out = np.empty(shape, np.uint8)
            fitted.append((i, out, _fit(frame, fit, out)))
    else:
        raise CalibrationError("calibration source {} is not an image directory, a video ({}) or a .npy "
                               "batch".format(path, ", ".join(VIDEO_EXTS[:4])))
    if len(fitted) < 2:
        raise CalibrationError("{} has {} usable frame(s); INT8 calibration needs at least 2 (and about {} to "
                               "be representative)".format(path, len(fitted), wanted))
    order = [i for i, _, _ in fitted]
    calib_idx, held_idx = _split(order, count)
    pos = {i: k for k, i in enumerate(order)}
    calib = np.stack([fitted[pos[i]][1] for i in calib_idx])
    held = np.stack([fitted[pos[i]][1] for i in held_idx])
    truth = None
    if names:
        truth = _coco_truth(path, [names[i] for i in held_idx], [fitted[pos[i]][2] for i in held_idx], labels)
    return Frames(calib, held, truth, path, sha256_path(path))


def batches(frames: Any, batch: int) -> Iterator[Any]:
    """``frames`` in C-contiguous chunks of exactly ``batch`` rows (a short last chunk is dropped, unless it is all)."""
    n = len(frames)
    if n < batch:
        yield np.ascontiguousarray(np.resize(frames, (batch,) + tuple(frames.shape[1:])))
        return
    for start in range(0, n - batch + 1, batch):
        yield np.ascontiguousarray(frames[start:start + batch])
