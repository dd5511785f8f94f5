"""Read a spec: YAML (or the resolved dict) -> validated :class:`ModelSpec`.

This is the only module that reads YAML. Every error is a :class:`SpecError`
naming the file, the field (as a dotted path) and what is allowed.
"""

import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import SpecError
from . import schema as S

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))
LABELS_DIR = os.path.join(BUILTIN_DIR, "labels")
MODELS_DIR = os.path.join(os.path.dirname(BUILTIN_DIR), "models")

_MISSING = object()


class _Section:
    """One mapping of the spec, read field by field; unknown keys are errors."""

    def __init__(self, data: Any, file: str, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError(
                "{}: '{}' must be a mapping of fields, not {}".format(
                    file, path or "<top level>", _kind(data)
                )
            )
        self.data = data
        self.file = file
        self.path = path
        self.used = set()  # type: set

    def where(self, key: str) -> str:
        return "{}.{}".format(self.path, key) if self.path else key

    def fail(self, key: str, message: str) -> "SpecError":
        return SpecError("{}: field '{}' {}".format(self.file, self.where(key), message))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.fail(key, "is required")
            return default
        return self.data[key]

    def str(self, key: str, default: Any = _MISSING, choices: Optional[Sequence[str]] = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.fail(key, "must be a string, not {}".format(_kind(value)))
        if choices is not None and value.lower() not in choices:
            raise self.fail(
                key, "is '{}'; allowed: {}".format(value, ", ".join(choices))
            )
        return value.lower() if choices is not None else value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false, not {}".format(_kind(value)))
        return value

    def int(self, key: str, default: Any = _MISSING, minimum: Optional[int] = None) -> Any:
        return _check_int(self.raw(key, default), minimum, lambda m: self.fail(key, m))

    def float(self, key: str, default: Any = _MISSING, low: Optional[float] = None,
              high: Optional[float] = None) -> Any:
        return _check_float(self.raw(key, default), low, high, lambda m: self.fail(key, m))

    def floats(self, key: str, default: Any = _MISSING, length: Optional[int] = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * (length or 1)
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of numbers, not {}".format(_kind(value)))
        out = tuple(_check_float(v, None, None, lambda m: self.fail(key, m)) for v in value)
        if length is not None and len(out) != length:
            raise self.fail(key, "must have {} values, has {}".format(length, len(out)))
        return out

    def strs(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of tensor names (strings)")
        return tuple(value)

    def section(self, key: str) -> "_Section":
        return _Section(self.raw(key, {}), self.file, self.where(key))

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            allowed = sorted(self.used | set(self._allowed))
            raise self.fail(
                str(unknown[0]), "is not a known field; allowed here: {}".format(", ".join(allowed))
            )

    _allowed = ()  # type: Sequence[str]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number ({})".format(value)
    if isinstance(value, str):
        return "a string ('{}')".format(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _check_int(value: Any, minimum: Optional[int], fail: Callable[[str], SpecError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail("must be a whole number, not {}".format(_kind(value)))
    if minimum is not None and value < minimum:
        raise fail("must be at least {}, is {}".format(minimum, value))
    return value


def _check_float(value: Any, low: Optional[float], high: Optional[float],
                 fail: Callable[[str], SpecError]) -> float:
    if isinstance(value, str):
        value = _fraction(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail("must be a number, not {}".format(_kind(value)))
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail("must be between {} and {}, is {}".format(low, high, value))
    return float(value)


def _fraction(text: str) -> Any:
    """'1/3' -> 0.333..; other strings are returned unchanged (and then refused)."""
    parts = text.split("/")
    try:
        if len(parts) == 2:
            return float(parts[0]) / float(parts[1])
        return float(text)
    except (ValueError, ZeroDivisionError):
        return text


def _size(sec: _Section) -> Tuple[int, int]:
    if sec.has("size"):
        value = sec.raw("size")
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, list) and len(value) == 2):
            raise sec.fail("size", "must be [height, width] or one number, not {}".format(_kind(value)))
        h, w = (_check_int(v, 1, lambda m: sec.fail("size", m)) for v in value)
        return h, w
    return sec.int("height", minimum=1), sec.int("width", minimum=1)


def _normalisation(sec: _Section) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    norm = sec.section("normalize")
    if sec.has("scale") or sec.has("offset"):  # resolved form
        return sec.floats("scale", length=3), sec.floats("offset", (0.0, 0.0, 0.0), length=3)
    if norm.has("mean") or norm.has("std"):
        mean = norm.floats("mean", (0.0, 0.0, 0.0), length=3)
        std = norm.floats("std", (1.0, 1.0, 1.0), length=3)
        if any(s == 0 for s in std):
            raise norm.fail("std", "must not contain 0")
        norm.done()
        return tuple(1.0 / s for s in std), tuple(-m / s for m, s in zip(mean, std))
    scale = norm.floats("scale", (1.0 / 255.0,) * 3, length=3)
    offset = norm.floats("offset", (0.0, 0.0, 0.0), length=3)
    norm.done()
    return scale, offset


def _input(sec: _Section) -> S.InputSpec:
    h, w = _size(sec)
    scale, offset = _normalisation(sec)
    spec = S.InputSpec(
        height=h,
        width=w,
        channels=sec.str("channels", "rgb", S.CHANNEL_ORDERS),
        layout=sec.str("layout", "nchw", S.LAYOUTS),
        scale=tuple(scale),  # type: ignore[arg-type]
        offset=tuple(offset),  # type: ignore[arg-type]
        resize=sec.str("resize", "letterbox", S.RESIZE_MODES),
        pad_value=sec.int("pad_value", 114, minimum=0),
        engine_channels=sec.str("engine_channels", "bgr", S.CHANNEL_ORDERS),
    )
    if spec.pad_value > 255:
        raise sec.fail("pad_value", "must be between 0 and 255, is {}".format(spec.pad_value))
    sec.done()
    return spec


def _labels(value: Any, file: str, base_dir: Optional[str]) -> Tuple[str, ...]:
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise SpecError("{}: field 'labels' must be a non-empty list of names".format(file))
        return tuple(v.strip() for v in value)
    if not isinstance(value, str):
        raise SpecError(
            "{}: field 'labels' must be a label file name or a list of names, not {}".format(
                file, _kind(value)
            )
        )
    candidates = [os.path.join(d, value) for d in (base_dir, LABELS_DIR) if d]
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
            if not names:
                raise SpecError("{}: label file {} is empty".format(file, path))
            return tuple(names)
    raise SpecError(
        "{}: field 'labels' names '{}', which is not in {}; built-in label files: {}".format(
            file, value, " or ".join(candidates), ", ".join(sorted(os.listdir(LABELS_DIR)))
        )
    )


def _anchors(sec: _Section, strides: int) -> Tuple[Tuple[Tuple[float, float], ...], ...]:
    value = sec.raw("anchors", [])
    if not isinstance(value, list):
        raise sec.fail("anchors", "must be a list (one entry per stride), not {}".format(_kind(value)))
    out = []
    for level in value:
        if not isinstance(level, list):
            raise sec.fail("anchors", "must hold one list of w, h values per stride")
        flat = []  # type: List[float]
        for v in level:
            flat.extend(v if isinstance(v, list) else [v])
        nums = [_check_float(v, 0.0, None, lambda m: sec.fail("anchors", m)) for v in flat]
        if len(nums) % 2 or not nums:
            raise sec.fail("anchors", "each stride needs w, h pairs; got {} values".format(len(nums)))
        out.append(tuple((nums[i], nums[i + 1]) for i in range(0, len(nums), 2)))
    if out and len(out) != strides:
        raise sec.fail("anchors", "has {} levels but 'strides' has {}".format(len(out), strides))
    return tuple(out)


def _yolo(sec: _Section) -> S.YoloSpec:
    head = sec.str("head", "anchor_free", S.YOLO_HEADS)
    strides = tuple(int(s) for s in sec.floats("strides", (8.0, 16.0, 32.0)))
    anchors = _anchors(sec, len(strides))
    sxy = sec.floats("scale_x_y", (1.0,) * len(strides))
    if len(sxy) == 1:
        sxy = sxy * len(strides)
    if len(sxy) != len(strides):
        raise sec.fail("scale_x_y", "needs one value or one per stride ({})".format(len(strides)))
    spec = S.YoloSpec(
        head=head,
        strides=strides,
        anchors=anchors,
        scale_x_y=sxy,
        box_format=sec.str("box_format", "cxcywh", S.BOX_FORMATS),
        score_activation=sec.str(
            "score_activation", "sigmoid" if head == "raw" else "none", S.SCORE_ACTIVATIONS
        ),
        objectness=sec.bool("objectness", True),
    )
    if head == "raw" and not anchors:
        raise sec.fail("anchors", "is required for raw (darknet) heads: w, h pairs per stride")
    sec.done()
    return spec


def _ssd(sec: _Section, legacy: Dict[str, Any]) -> S.SsdSpec:
    a = sec.section("anchors")
    d = S.AnchorSpec()
    num_layers = a.int("num_layers", d.num_layers, minimum=1)
    pairs = lambda key: tuple(  # noqa: E731
        tuple(p) for p in _pairs(a, key)
    )
    anchors = S.AnchorSpec(
        num_layers=num_layers,
        min_scale=a.float("min_scale", legacy.get("min_size", d.min_scale), 0.0, 1.0),
        max_scale=a.float("max_scale", legacy.get("max_size", d.max_scale), 0.0, 1.0),
        scales=a.floats("scales", ()),
        aspect_ratios=a.floats("aspect_ratios", d.aspect_ratios),
        interpolated_scale_aspect_ratio=a.float("interpolated_scale_aspect_ratio", 1.0, 0.0),
        reduce_boxes_in_lowest_layer=a.bool("reduce_boxes_in_lowest_layer", True),
        base_anchor_size=a.floats("base_anchor_size", (1.0, 1.0), length=2),
        strides=pairs("strides"),
        offsets=pairs("offsets"),
        feature_map_sizes=tuple(tuple(int(v) for v in p) for p in _pairs(a, "feature_map_sizes")),
    )
    for key in ("strides", "offsets", "feature_map_sizes"):
        n = len(getattr(anchors, key))
        if n and n != num_layers:
            raise a.fail(key, "has {} entries but num_layers is {}".format(n, num_layers))
    if anchors.scales and len(anchors.scales) != num_layers:
        raise a.fail("scales", "has {} values but num_layers is {}".format(len(anchors.scales), num_layers))
    a.done()
    spec = S.SsdSpec(
        anchors=anchors,
        box_coder_scales=sec.floats("box_coder_scales", (10.0, 10.0, 5.0, 5.0), length=4),
        box_order=sec.str("box_order", "yxhw", S.SSD_BOX_ORDERS),
        score_activation=sec.str("score_activation", "sigmoid", S.SCORE_ACTIVATIONS),
        background_class=sec.bool("background_class", True),
    )
    sec.done()
    return spec


def _pairs(sec: _Section, key: str) -> List[Tuple[float, float]]:
    value = sec.raw(key, [])
    if not isinstance(value, list):
        raise sec.fail(key, "must be a list of [a, b] pairs")
    out = []
    for item in value:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = [item, item]
        if not (isinstance(item, list) and len(item) == 2):
            raise sec.fail(key, "must be a list of [a, b] pairs")
        out.append(tuple(_check_float(v, 0.0, None, lambda m: sec.fail(key, m)) for v in item))
    return out  # type: ignore[return-value]


def _nms(sec: _Section) -> S.NmsSpec:
    d = S.NmsSpec()
    spec = S.NmsSpec(
        score_threshold=sec.float("score_threshold", d.score_threshold, 0.0, 1.0),
        iou_threshold=sec.float("iou_threshold", d.iou_threshold, 0.0, 1.0),
        max_per_class=sec.int("max_per_class", d.max_per_class, minimum=1),
        max_detections=sec.int("max_detections", d.max_detections, minimum=1),
        candidates=sec.int("candidates", d.candidates, minimum=1),
        class_agnostic=sec.bool("class_agnostic", False),
    )
    if spec.candidates > 3840:
        raise sec.fail("candidates", "must be at most 3840 (TensorRT's TopK limit), is {}".format(spec.candidates))
    if spec.max_detections > spec.candidates:
        raise sec.fail("max_detections", "must not exceed 'candidates' ({})".format(spec.candidates))
    sec.done()
    return spec


def spec_from_data(data: Any, file: str, base_dir: Optional[str]) -> S.ModelSpec:
    """Validate parsed YAML (or a resolved dict) into a :class:`ModelSpec`."""
    top = _Section(data, file, "")
    name = top.str("name")
    if not name.strip() or any(c in name for c in "/\\ "):
        raise top.fail("name", "must be a non-empty name without spaces or slashes")
    family = top.str("family", choices=S.FAMILIES)
    notes = list(top.strs("notes", ()))
    legacy = {}  # type: Dict[str, Any]
    for key in ("min_size", "max_size"):
        if top.has(key):
            legacy[key] = top.float(key, low=0.0, high=1.0)
            notes.append("legacy '{}: {}' became ssd.anchors.{}".format(
                key, legacy[key], key.replace("size", "scale")))

    src = top.section("source")
    source = S.SourceSpec(
        format=src.str("format", "auto", S.SOURCE_FORMATS),
        file=src.str("file", None),
        url=src.str("url", None),
        sha256=src.str("sha256", None),
        input=src.str("input", None),
        howto=src.str("howto", None),
    )
    if source.sha256 is not None and (
        len(source.sha256) != 64 or any(c not in "0123456789abcdef" for c in source.sha256.lower())
    ):
        raise src.fail("sha256", "must be 64 hexadecimal digits")
    src.done()

    inp = _input(top.section("input"))
    labels = _labels(top.raw("labels"), file, base_dir)
    if top.has("num_classes"):
        n = top.int("num_classes", minimum=1)
        expected = len(labels) + (1 if family == "ssd" else 0)
        if n != expected:
            raise top.fail(
                "num_classes",
                "is {} but the labels list {} classes{}; fix one of them".format(
                    n, len(labels), " plus background" if family == "ssd" else ""),
            )
        notes.append("legacy 'num_classes: {}' checked against the {} labels".format(n, len(labels)))

    cut_sec = top.section("cut")
    cut = S.CutSpec(input=cut_sec.str("input", None), outputs=cut_sec.strs("outputs", ()))
    cut_sec.done()
    if top.has("input_order"):
        cut = _map_input_order(top, cut, family, notes)

    yolo = _yolo(top.section("yolo")) if family == "yolo" else None
    ssd = _ssd(top.section("ssd"), legacy) if family == "ssd" else None
    for other in ("yolo", "ssd"):
        if other != family and top.has(other):
            raise top.fail(other, "does not apply to family '{}'".format(family))
        top.used.add(other)
    if family == "yolo" and yolo is not None:
        _check_yolo_cut(top, yolo, cut)
    if family == "ssd" and len(cut.outputs) not in (0, 2):
        raise top.fail("cut.outputs", "needs two tensors for SSD: box encodings, then class predictions")

    spec = S.ModelSpec(
        name=name,
        family=family,
        description=top.str("description", ""),
        source=source,
        input=inp,
        labels=labels,
        cut=cut,
        yolo=yolo,
        ssd=ssd,
        nms=_nms(top.section("nms")),
        notes=tuple(notes),
        origin=file,
    )
    top.done()
    return spec


def _check_yolo_cut(top: _Section, yolo: S.YoloSpec, cut: S.CutSpec) -> None:
    if not cut.outputs:
        return
    expected = len(yolo.strides) if yolo.head == "raw" else 1
    if len(cut.outputs) != expected:
        raise top.fail(
            "cut.outputs",
            "lists {} tensors; a '{}' head needs {}{}".format(
                len(cut.outputs), yolo.head, expected,
                " (one per stride)" if yolo.head == "raw" else ""),
        )


def _map_input_order(top: _Section, cut: S.CutSpec, family: str, notes: List[str]) -> S.CutSpec:
    """UFF-era ``input_order: [loc, conf, priorbox]``: the position of each
    NMS_TRT input among the listed tensors. trtedge generates the priors, so
    only the first two matter: they pick the box and score tensors."""
    order = top.raw("input_order")
    if not (isinstance(order, list) and len(order) == 3 and sorted(order) == [0, 1, 2]):
        raise top.fail("input_order", "must be a permutation of [0, 1, 2] (loc, conf, priorbox)")
    if family != "ssd":
        raise top.fail("input_order", "only applies to family 'ssd' (NMS_TRT plugin inputs)")
    if len(cut.outputs) < 2:
        notes.append("legacy 'input_order: {}' ignored: no cut.outputs to reorder".format(order))
        return cut
    outs = list(cut.outputs)
    try:
        boxes, scores = outs[order[0]], outs[order[1]]
    except IndexError:
        raise top.fail("input_order", "points past the {} cut.outputs".format(len(outs)))
    notes.append(
        "legacy 'input_order: {}' became cut.outputs: [{}, {}] (box encodings, class predictions); "
        "priors are generated from ssd.anchors".format(order, boxes, scores)
    )
    return S.CutSpec(input=cut.input, outputs=(boxes, scores))
