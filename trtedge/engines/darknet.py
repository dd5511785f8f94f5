"""Darknet ``.cfg`` + ``.weights`` -> ONNX, with the facts a YOLO spec needs.

Three steps, each usable alone:

* :func:`parse_cfg` reads a darknet ``.cfg`` into a :class:`DarknetNet`: every
  layer with its inputs and its output shape (channels, height, width), and the
  ``[yolo]`` layers as :class:`YoloLayer`. No weights are needed, so shapes
  and parameter counts can be checked before a weights file is downloaded.
* :func:`read_weights` reads a ``.weights`` file (darknet's binary layout) into
  the flat float32 array that follows its header, checked against the cfg.
* :func:`build_onnx` turns both into a :class:`DarknetModel`: an opset-17 ONNX
  model with one float32 RGB NCHW input ``000_net`` in [0, 1] (batch dimension
  ``batch``) whose outputs are the raw tensors feeding each ``[yolo]`` layer,
  ``[batch, A*(5+C), H/s, W/s]``.

:func:`convert` does all three; :func:`spec_data` gives the matching spec in
trtedge's YAML form (family ``yolo``, head ``raw``).

Tensors are named as jkjung-avt/tensorrt_demos' ``yolo_to_onnx.py`` names them,
``NNN_<layer type>`` with ``NNN`` the section's position in the cfg counting
``[net]`` as 000 (so darknet layer ``i`` is ``i + 1``): YOLOv3's heads are
``082_convolutional``, ``094_convolutional`` and ``106_convolutional``, as the
built-in specs expect.

Every problem with the files is a :class:`~trtedge.errors.ModelError` of one
line naming the cfg file, the line and layer, and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..utils.lazy import lazy_import

np = lazy_import("numpy")

from ..errors import ModelError

#: the cfgs shipped with trtedge (yolov3, yolov3-tiny, yolov4, yolov4-tiny)
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "darknet")
INPUT_NAME = "000_net"
OPSET = 17
ACTIVATIONS = ("leaky", "mish", "linear", "logistic", "swish", "relu")
LEAKY_SLOPE = 0.1
#: darknet's batch-norm epsilon at inference: normalize_cpu() divides by
#: ``sqrt(variance) + .000001f`` (added to the square root, not under it)
BN_EPSILON = 0.000001

#: section name (and darknet's aliases) -> layer type
_SECTIONS = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "shortcut": "shortcut",
    "route": "route",
    "upsample": "upsample",
    "maxpool": "maxpool", "max": "maxpool",
    "dropout": "dropout",
    "yolo": "yolo",
}

#: per layer type: the keys read here, and keys that only matter for training
#: (accepted and ignored). Any other key is refused: darknet keys such as
#: ``dilation``, ``dontload`` or ``new_coords`` change the network or the
#: weights layout, and a silent wrong model is worse than an error.
_KEYS = {
    "convolutional": (("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize",
                       "activation"),
                      ("stopbackward", "train_only_bn", "learning_rate")),
    "shortcut": (("from", "activation"), ("stopbackward",)),
    "route": (("layers", "groups", "group_id"), ("stopbackward",)),
    "upsample": (("stride",), ()),
    "maxpool": (("size", "stride", "padding"), ()),
    "dropout": ((), ("probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs")),
    "yolo": (("anchors", "mask", "classes", "num", "scale_x_y"),
             ("jitter", "ignore_thresh", "truth_thresh", "random", "iou_normalizer", "cls_normalizer",
              "obj_normalizer", "uc_normalizer", "delta_normalizer", "iou_loss", "iou_thresh",
              "iou_thresh_kind", "nms_kind", "beta_nms", "max_delta", "max", "resize", "focal_loss",
              "label_smooth_eps", "counters_per_class", "objectness_smooth", "map", "show_details",
              "embedding_layer", "track_history_size", "sim_thresh", "dets_for_track",
              "dets_for_show", "track_ciou_norm")),
}


# --------------------------------------------------------------------------- parsed cfg


@dataclass(frozen=True)
class Layer:
    """One section after ``[net]``.

    ``index`` is darknet's layer number (0 = the first section after
    ``[net]``); ``inputs`` are layer numbers, -1 meaning the network input;
    ``shape`` is the output (channels, height, width); ``params`` holds the
    typed values the type needs (e.g. ``filters``, ``size``, ``stride``,
    ``pad``, ``groups``, ``batch_normalize``, ``activation`` for a convolution).
    """

    index: int
    type: str
    line: int
    inputs: Tuple[int, ...]
    shape: Tuple[int, int, int]
    params: Dict[str, Any]

    @property
    def name(self) -> str:
        """The ONNX tensor name of this layer's output (``NNN_<type>``)."""
        return "{:03d}_{}".format(self.index + 1, self.type)


@dataclass(frozen=True)
class YoloLayer:
    """One ``[yolo]`` layer: the head tensor feeding it and how to decode it."""

    #: ONNX tensor name of the raw head [batch, A*(5+C), grid_h, grid_w]
    output: str
    #: input pixels per grid cell (input height / grid height)
    stride: int
    #: the masked (w, h) anchors, in input pixels
    anchors: Tuple[Tuple[float, float], ...]
    scale_x_y: float
    classes: int
    #: (height, width) of the grid
    grid: Tuple[int, int]


@dataclass(frozen=True)
class DarknetNet:
    """A parsed cfg: input size, layers with shapes, YOLO layers. No weights."""

    file: str
    height: int
    width: int
    channels: int
    letter_box: bool
    layers: Tuple[Layer, ...]
    yolo: Tuple[YoloLayer, ...]

    def weight_floats(self) -> int:
        """Floats a matching ``.weights`` file holds after its header."""
        return sum(_conv_floats(layer) for layer in self.layers if layer.type == "convolutional")

    def learnable_params(self) -> int:
        """Trainable parameters: :meth:`weight_floats` without batch norm's
        rolling mean and variance (what PyTorch ports of these models count)."""
        rolling = sum(2 * int(layer.params["filters"]) for layer in self.layers
                      if layer.type == "convolutional" and layer.params["batch_normalize"])
        return self.weight_floats() - rolling

    @property
    def classes(self) -> int:
        return self.yolo[0].classes if self.yolo else 0


@dataclass(frozen=True)
class DarknetModel:
    """The converted model: ONNX plus what a spec needs to decode its heads."""

    onnx: Any  # onnx.ModelProto
    height: int
    width: int
    letter_box: bool
    classes: int
    #: in cfg order
    yolo: Tuple[YoloLayer, ...]


# --------------------------------------------------------------------------- cfg reading


class _Section(object):
    """One ``[section]`` of the cfg with its ``key=value`` lines, read key by key."""

    def __init__(self, file: str, header: str, line: int, index: int) -> None:
        self.file = file
        self.header = header
        self.type = _SECTIONS.get(header.lower(), "")
        self.line = line
        self.index = index  # darknet layer number; -1 for [net]
        self.values = {}  # type: Dict[str, Tuple[str, int]]

    def where(self, key: Optional[str] = None, line: Optional[int] = None) -> str:
        """``file: line N: [section] (layer i)`` for the key's line (default: the header's)."""
        if line is None:
            line = self.values[key][1] if key is not None and key in self.values else self.line
        layer = "[{}]".format(self.header) if self.index < 0 else "[{}] (layer {})".format(self.header, self.index)
        return "{}: line {}: {}".format(self.file, line, layer)

    def fail(self, key: Optional[str], message: str) -> ModelError:
        what = "'{}' ".format(key) if key is not None else ""
        return ModelError("{}: {}{}".format(self.where(key), what, message))

    def text(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self.values[key][0] if key in self.values else default

    def integer(self, key: str, default: Optional[int] = None, minimum: Optional[int] = None) -> int:
        raw = self.text(key)
        if raw is None:
            if default is None:
                raise self.fail(key, "is required (a whole number)")
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(key, "is '{}'; it must be a whole number".format(raw))
        if minimum is not None and value < minimum:
            raise self.fail(key, "is {}; it must be at least {}".format(value, minimum))
        return value

    def flag(self, key: str) -> bool:
        value = self.integer(key, 0)
        if value not in (0, 1):
            raise self.fail(key, "is {}; allowed: 0 or 1".format(value))
        return bool(value)

    def real(self, key: str, default: float) -> float:
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.fail(key, "is '{}'; it must be a number".format(raw))
        if not math.isfinite(value) or value <= 0:
            raise self.fail(key, "is {}; it must be a positive number".format(raw))
        return value

    def integers(self, key: str) -> List[int]:
        raw = self.text(key)
        if raw is None or not raw:
            raise self.fail(key, "is required (comma-separated whole numbers)")
        try:
            return [int(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise self.fail(key, "is '{}'; it must be comma-separated whole numbers".format(raw))

    def reals(self, key: str) -> List[float]:
        raw = self.text(key)
        if raw is None or not raw:
            raise self.fail(key, "is required (comma-separated numbers)")
        try:
            values = [float(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise self.fail(key, "is '{}'; it must be comma-separated numbers".format(raw))
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise self.fail(key, "is '{}'; every value must be a positive number".format(raw))
        return values

    def activation(self, default: str) -> str:
        value = (self.text("activation") or default).lower()
        if value not in ACTIVATIONS:
            raise self.fail("activation", "is '{}'; allowed: {}".format(value, ", ".join(ACTIVATIONS)))
        return value

    def check_keys(self) -> None:
        if self.type == "net":
            return  # everything else in [net] is a training or augmentation setting
        used, ignored = _KEYS[self.type]
        for key in self.values:
            if key not in used and key not in ignored:
                raise self.fail(key, "is not supported here; allowed keys: {}".format(
                    ", ".join(used + ignored) or "none"))


def _read_sections(path: str) -> List[_Section]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ModelError("cannot read darknet cfg {}: {}".format(path, exc.strerror or exc))
    sections = []  # type: List[_Section]
    index = -1
    allowed = ", ".join("[{}]".format(s) for s in sorted(_SECTIONS))
    for number, raw in enumerate(lines, 1):
        # darknet strips all whitespace from a line; '#' and ';' start comments
        # (darknet knows them only at the start of a line; no value contains them)
        line = "".join(raw.split("#", 1)[0].split(";", 1)[0].split())
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ModelError("{}: line {}: '{}' is not a [section] header".format(path, number, raw.strip()))
            header = line[1:-1]
            kind = _SECTIONS.get(header.lower())
            if kind is None:
                raise ModelError("{}: line {}: [{}] (layer {}) is not a supported section; allowed: {}".format(
                    path, number, header, index + 1, allowed))
            if kind == "net":
                if sections:
                    raise ModelError("{}: line {}: [{}] must be the first section, and only once".format(
                        path, number, header))
            elif not sections:
                raise ModelError("{}: line {}: the cfg must start with [net], not [{}]".format(path, number, header))
            else:
                index += 1
            sections.append(_Section(path, header, number, index if kind != "net" else -1))
            continue
        if not sections:
            raise ModelError("{}: line {}: '{}' comes before the first [section]".format(path, number, raw.strip()))
        key, sep, value = line.partition("=")
        sec = sections[-1]
        if not sep or not key:
            raise ModelError("{}: expected key=value, got '{}'".format(sec.where(line=number), raw.strip()))
        if key in sec.values:
            raise ModelError("{}: '{}' is given twice (first at line {})".format(
                sec.where(line=number), key, sec.values[key][1]))
        sec.values[key] = (value, number)
    if not sections:
        raise ModelError("{}: no [net] section: this is not a darknet cfg".format(path))
    return sections


def parse_cfg(path: str) -> DarknetNet:
    """Read a darknet cfg: layers, their shapes and the YOLO layers."""
    sections = _read_sections(path)
    net = sections[0]
    width = net.integer("width", minimum=1)
    height = net.integer("height", minimum=1)
    channels = net.integer("channels", 3, minimum=1)
    if channels != 3:
        raise net.fail("channels", "is {}; trtedge feeds 3-channel (RGB) images".format(channels))
    letter_box = net.flag("letter_box")
    if len(sections) == 1:
        raise ModelError("{}: the cfg has no layers after [net]".format(path))
    layers = []  # type: List[Layer]
    yolos = []  # type: List[YoloLayer]
    for sec in sections[1:]:
        sec.check_keys()
        prev = (channels, height, width) if not layers else layers[-1].shape
        layer = _LAYERS[sec.type](sec, layers, prev)
        c, h, w = layer.shape
        if h < 1 or w < 1:
            raise sec.fail(None, "gives an empty {}x{} output at input {}x{}; use a larger [net] width/height".format(
                w, h, width, height))
        layers.append(layer)
        if sec.type == "yolo":
            yolos.append(_yolo_info(sec, layers, height, width))
    if not yolos:
        raise ModelError("{}: the cfg has no [yolo] layer; trtedge converts darknet YOLO detectors".format(path))
    classes = {y.classes for y in yolos}
    if len(classes) > 1:
        raise ModelError("{}: the [yolo] layers disagree on 'classes' ({}); they must all predict the same "
                         "classes".format(path, ", ".join(str(c) for c in sorted(classes))))
    strides = [y.stride for y in yolos]
    if len(set(strides)) != len(strides):
        raise ModelError("{}: two [yolo] layers have the same stride ({}); trtedge matches heads to strides "
                         "by grid size".format(path, ", ".join(str(s) for s in strides)))
    return DarknetNet(path, height, width, channels, letter_box, tuple(layers), tuple(yolos))


def _resolve(sec: _Section, key: str, ref: int) -> int:
    """A layer reference (relative if negative) -> an absolute layer number."""
    target = sec.index + ref if ref < 0 else ref
    if not 0 <= target < sec.index:
        allowed = "layers 0..{} (or -1..-{})".format(sec.index - 1, sec.index) if sec.index else "none"
        raise sec.fail(key, "refers to layer {} ({}), which is not an earlier layer; allowed: {}".format(
            target, ref, allowed))
    return target


def _conv(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    c, h, w = prev
    filters = sec.integer("filters", 1, minimum=1)
    size = sec.integer("size", 1, minimum=1)
    stride = sec.integer("stride", 1, minimum=1)
    pad = size // 2 if sec.flag("pad") else sec.integer("padding", 0, minimum=0)
    groups = sec.integer("groups", 1, minimum=1)
    if c % groups or filters % groups:
        raise sec.fail("groups", "is {}; it must divide both the {} input channels and the {} filters".format(
            groups, c, filters))
    params = {"filters": filters, "size": size, "stride": stride, "pad": pad, "groups": groups,
              "batch_normalize": sec.flag("batch_normalize"), "activation": sec.activation("logistic"),
              "in_channels": c}
    out = (filters, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)
    return Layer(sec.index, "convolutional", sec.line, (sec.index - 1,), out, params)


def _maxpool(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    c, h, w = prev
    size = sec.integer("size", 1, minimum=1)
    stride = sec.integer("stride", 1, minimum=1)
    # darknet pads size - 1 in total by default, padding // 2 of it before:
    # size 2 stride 1 keeps the spatial size (yolov3-tiny), size 2 stride 2 halves it
    padding = sec.integer("padding", size - 1, minimum=0)
    params = {"size": size, "stride": stride, "padding": padding}
    out = (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
    return Layer(sec.index, "maxpool", sec.line, (sec.index - 1,), out, params)


def _upsample(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    c, h, w = prev
    stride = sec.integer("stride", 2, minimum=1)
    return Layer(sec.index, "upsample", sec.line, (sec.index - 1,), (c, h * stride, w * stride),
                 {"stride": stride})


def _dropout(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    return Layer(sec.index, "dropout", sec.line, (sec.index - 1,), prev, {})


def _shortcut(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    refs = sec.integers("from")
    if len(refs) != 1:
        raise sec.fail("from", "lists {} layers; trtedge supports a shortcut from one layer".format(len(refs)))
    other = _resolve(sec, "from", refs[0])
    if layers[other].shape != prev:
        raise sec.fail("from", "adds layer {} of shape {} to layer {} of shape {}; the shapes must be equal".format(
            other, list(layers[other].shape), sec.index - 1, list(prev)))
    return Layer(sec.index, "shortcut", sec.line, (sec.index - 1, other), prev,
                 {"activation": sec.activation("linear")})


def _route(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    refs = [_resolve(sec, "layers", r) for r in sec.integers("layers")]
    groups = sec.integer("groups", 1, minimum=1)
    group_id = sec.integer("group_id", 0, minimum=0)
    if group_id >= groups:
        raise sec.fail("group_id", "is {}; with groups={} it must be 0..{}".format(group_id, groups, groups - 1))
    c_total = 0
    hw = layers[refs[0]].shape[1:]
    for r in refs:
        c, h, w = layers[r].shape
        if (h, w) != hw:
            raise sec.fail("layers", "joins layer {} ({}x{}) with layer {} ({}x{}); routed layers must have the "
                                     "same width and height".format(refs[0], hw[1], hw[0], r, w, h))
        if c % groups:
            raise sec.fail("groups", "is {} but layer {} has {} channels; groups must divide them".format(
                groups, r, c))
        c_total += c // groups
    return Layer(sec.index, "route", sec.line, tuple(refs), (c_total,) + hw,
                 {"groups": groups, "group_id": group_id})


def _yolo(sec: _Section, layers: List[Layer], prev: Tuple[int, int, int]) -> Layer:
    anchors = sec.reals("anchors")
    if len(anchors) % 2:
        raise sec.fail("anchors", "has {} values; it must be w,h pairs".format(len(anchors)))
    num = sec.integer("num", len(anchors) // 2, minimum=1)
    if num * 2 != len(anchors):
        raise sec.fail("num", "is {} but 'anchors' has {} w,h pairs".format(num, len(anchors) // 2))
    mask = sec.integers("mask") if "mask" in sec.values else list(range(num))
    bad = [m for m in mask if not 0 <= m < num]
    if bad or not mask:
        raise sec.fail("mask", "is '{}'; it must pick anchors 0..{}".format(sec.text("mask"), num - 1))
    classes = sec.integer("classes", 20, minimum=1)
    scale = sec.real("scale_x_y", 1.0)
    c = prev[0]
    if c != len(mask) * (5 + classes):
        raise sec.fail(None, "reads {} channels from layer {}, but {} masked anchors x (5 + {} classes) = {}; "
                             "set the previous layer's filters to {}".format(
                                 c, sec.index - 1, len(mask), classes, len(mask) * (5 + classes),
                                 len(mask) * (5 + classes)))
    pairs = tuple((anchors[2 * m], anchors[2 * m + 1]) for m in mask)
    params = {"anchors": pairs, "classes": classes, "scale_x_y": scale}
    return Layer(sec.index, "yolo", sec.line, (sec.index - 1,), prev, params)


_LAYERS = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "upsample": _upsample,
    "dropout": _dropout,
    "shortcut": _shortcut,
    "route": _route,
    "yolo": _yolo,
}


def _yolo_info(sec: _Section, layers: List[Layer], height: int, width: int) -> YoloLayer:
    layer = layers[-1]
    _, gh, gw = layer.shape
    if height % gh or width % gw or height // gh != width // gw:
        raise sec.fail(None, "has a {}x{} grid at input {}x{}: not a whole stride in both directions; "
                             "use a [net] width/height divisible by the network's stride".format(
                                 gw, gh, width, height))
    source = _alias_of(layers, layer.index - 1)
    return YoloLayer(output=_tensor_name(layers, source), stride=height // gh,
                     anchors=layer.params["anchors"], scale_x_y=layer.params["scale_x_y"],
                     classes=layer.params["classes"], grid=(gh, gw))


def _alias_of(layers: Sequence[Layer], index: int) -> int:
    """Dropout, yolo and single-layer routes make no tensor of their own."""
    while index >= 0:
        layer = layers[index]
        if layer.type in ("dropout", "yolo") or (layer.type == "route" and len(layer.inputs) == 1
                                                  and layer.params["groups"] == 1):
            index = layer.inputs[0]
        else:
            break
    return index


def _tensor_name(layers: Sequence[Layer], index: int) -> str:
    return INPUT_NAME if index < 0 else layers[index].name


def _conv_floats(layer: Layer) -> int:
    p = layer.params
    n, size = int(p["filters"]), int(p["size"])
    per_filter = 4 if p["batch_normalize"] else 1
    return n * per_filter + n * (int(p["in_channels"]) // int(p["groups"])) * size * size


# --------------------------------------------------------------------------- weights


def read_weights(path: str, net: DarknetNet) -> "np.ndarray":
    """The float32 values after a ``.weights`` header, checked against ``net``.

    Header: int32 major, minor, revision, then ``seen`` (images trained on):
    int64 when ``major * 10 + minor >= 2`` and both are below 1000, else int32.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelError("cannot read darknet weights {}: {}".format(path, exc.strerror or exc))
    if len(data) < 12:
        raise ModelError("{}: {} bytes is too short for a darknet weights header".format(path, len(data)))
    major, minor, _revision = (int(v) for v in np.frombuffer(data[:12], "<i4"))
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    offset = 12 + (8 if wide_seen else 4)
    body = len(data) - offset
    expected = net.weight_floats()
    if body < 0 or body % 4 or body // 4 != expected:
        found = "{} floats".format(body // 4) if body >= 0 and body % 4 == 0 else "{} bytes".format(max(body, 0))
        raise ModelError(
            "{}: the cfg {} expects {} floats after the {}-byte header (version {}.{}), the file has {}; "
            "the cfg and the weights do not belong together".format(
                path, net.file, expected, offset, major, minor, found))
    floats = np.frombuffer(data, "<f4", count=expected, offset=offset)  # type: np.ndarray
    return floats


# --------------------------------------------------------------------------- ONNX


class _Graph(object):
    def __init__(self) -> None:
        self.nodes = []  # type: List[Any]
        self.inits = []  # type: List[Any]

    def const(self, name: str, value: "np.ndarray") -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def activation(self, x: str, kind: str, out: str) -> str:
        if kind == "linear":
            return x
        if kind == "leaky":
            return self.node("LeakyRelu", [x], out, alpha=LEAKY_SLOPE)
        if kind == "relu":
            return self.node("Relu", [x], out)
        if kind == "logistic":
            return self.node("Sigmoid", [x], out)
        if kind == "swish":  # x * sigmoid(x)
            return self.node("Mul", [x, self.node("Sigmoid", [x], out + "/sigmoid")], out)
        # mish: x * tanh(softplus(x)) (ONNX has Mish only from opset 18)
        soft = self.node("Softplus", [x], out + "/softplus")
        return self.node("Mul", [x, self.node("Tanh", [soft], out + "/tanh")], out)


def _conv_weights(layer: Layer, floats: "np.ndarray", at: int) -> Tuple["np.ndarray", "np.ndarray", int]:
    """Darknet order: biases (beta) [, scales (gamma), rolling mean, rolling
    variance], then weights [filters, in/groups, size, size]; BN folded in."""
    p = layer.params
    n = p["filters"]
    shape = (n, p["in_channels"] // p["groups"], p["size"], p["size"])

    def take(count: int) -> "np.ndarray":
        nonlocal at
        part = floats[at:at + count].astype(np.float64)  # type: np.ndarray
        at += count
        return part

    bias = take(n)
    if p["batch_normalize"]:
        gamma, mean, var = take(n), take(n), take(n)
    weights = take(int(np.prod(shape))).reshape(shape)
    if p["batch_normalize"]:
        # y = gamma * (x - mean) / (sqrt(var) + .000001) + beta, as darknet's
        # normalize_cpu() computes it (cuDNN builds use sqrt(var + .00001))
        factor = gamma / (np.sqrt(var) + BN_EPSILON)
        weights = weights * factor[:, None, None, None]
        bias = bias - mean * factor
    return weights.astype(np.float32), bias.astype(np.float32), at


def build_onnx(net: DarknetNet, floats: "np.ndarray") -> DarknetModel:
    """The ONNX model of ``net`` with the weights ``floats`` (see :func:`read_weights`)."""
    from onnx import TensorProto, helper

    expected = net.weight_floats()
    if len(floats) != expected:
        raise ModelError("{}: {} weight values given, the cfg needs {}; the cfg and the weights do not belong "
                         "together".format(net.file, len(floats), expected))
    g = _Graph()
    names = {-1: INPUT_NAME}  # type: Dict[int, str]
    at = 0
    for layer in net.layers:
        out = layer.name
        src = [names[i] for i in layer.inputs]
        p = layer.params
        if layer.type == "convolutional":
            weights, bias, at = _conv_weights(layer, floats, at)
            pad = p["pad"]
            conv_out = out if p["activation"] == "linear" else out + "/conv"
            g.node("Conv", [src[0], g.const(out + "/weights", weights), g.const(out + "/bias", bias)], conv_out,
                   kernel_shape=[p["size"]] * 2, strides=[p["stride"]] * 2, pads=[pad] * 4, group=p["groups"])
            names[layer.index] = g.activation(conv_out, p["activation"], out)
        elif layer.type == "maxpool":
            before = p["padding"] // 2
            after = p["padding"] - before
            names[layer.index] = g.node("MaxPool", src, out, kernel_shape=[p["size"]] * 2,
                                        strides=[p["stride"]] * 2, pads=[before, before, after, after])
        elif layer.type == "upsample":
            s = float(p["stride"])
            scales = g.const(out + "/scales", np.array([1.0, 1.0, s, s], np.float32))
            names[layer.index] = g.node("Resize", [src[0], "", scales], out, mode="nearest",
                                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        elif layer.type == "shortcut":
            total = g.node("Add", src, out if p["activation"] == "linear" else out + "/add")
            names[layer.index] = g.activation(total, p["activation"], out)
        elif layer.type == "route":
            parts = src
            if p["groups"] > 1:
                parts = []
                for k, (i, name) in enumerate(zip(layer.inputs, src)):
                    step = net.layers[i].shape[0] // p["groups"]
                    begin = step * p["group_id"]
                    part = out if len(src) == 1 else "{}/group{}".format(out, k)
                    parts.append(g.node("Slice", [name, g.const(part + "/starts", np.array([begin], np.int64)),
                                                  g.const(part + "/ends", np.array([begin + step], np.int64)),
                                                  g.const(part + "/axes", np.array([1], np.int64))], part))
            names[layer.index] = parts[0] if len(parts) == 1 else g.node("Concat", parts, out, axis=1)
        else:  # dropout, yolo: the input passes through
            names[layer.index] = src[0]
    outputs = [helper.make_tensor_value_info(y.output, TensorProto.FLOAT,
                                             ["batch", len(y.anchors) * (5 + y.classes), y.grid[0], y.grid[1]])
               for y in net.yolo]
    graph = helper.make_graph(
        g.nodes, os.path.splitext(os.path.basename(net.file))[0] or "darknet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, net.height, net.width])],
        outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="trtedge.darknet")
    model.ir_version = 8  # what ONNX Runtime and TensorRT 8.5+ read
    return DarknetModel(model, net.height, net.width, net.letter_box, net.classes, net.yolo)


def convert(cfg: str, weights: str) -> DarknetModel:
    """Darknet ``cfg`` + ``weights`` files -> :class:`DarknetModel`."""
    net = parse_cfg(cfg)
    return build_onnx(net, read_weights(weights, net))


def builtin_cfg(name: str) -> str:
    """Path of a cfg shipped with trtedge (``yolov4-tiny`` or ``yolov4-tiny.cfg``)."""
    base = name[:-4] if name.endswith(".cfg") else name
    path = os.path.join(BUILTIN_DIR, base + ".cfg")
    if not os.path.isfile(path):
        known = sorted(f[:-4] for f in os.listdir(BUILTIN_DIR) if f.endswith(".cfg"))
        raise ModelError("no built-in darknet cfg '{}'; built-in: {}".format(name, ", ".join(known)))
    return path


# --------------------------------------------------------------------------- spec


def spec_data(model: Any, labels: Sequence[str], name: str) -> Dict[str, Any]:
    """The spec for ``model`` (a :class:`DarknetModel` or :class:`DarknetNet`)
    as plain data in trtedge's YAML form, for ``spec_from_data``.

    Heads are listed fine to coarse (strides ascending). Darknet's letterbox
    pads with 0.5, i.e. 127 on 0..255 pixels.
    """
    if isinstance(labels, str) or not all(isinstance(v, str) for v in labels):
        raise ModelError("labels must be a list of class names, one per class")
    labels = list(labels)
    if len(labels) != model.classes:
        raise ModelError("the darknet model predicts {} classes but {} labels were given; give one name per "
                         "class".format(model.classes, len(labels)))
    heads = sorted(model.yolo, key=lambda y: y.stride)
    data = {
        "name": name,
        "family": "yolo",
        "description": "darknet YOLO, {}x{}, raw heads".format(model.width, model.height),
        "source": {"format": "onnx", "input": INPUT_NAME},
        "input": {
            "size": [model.height, model.width],
            "channels": "rgb",
            "layout": "nchw",
            "normalize": {"scale": 1.0 / 255.0},
            "resize": "letterbox" if model.letter_box else "stretch",
        },
        "labels": labels,
        "cut": {"outputs": [y.output for y in heads]},
        "yolo": {
            "head": "raw",
            "strides": [y.stride for y in heads],
            "anchors": [[v for pair in y.anchors for v in pair] for y in heads],
            "scale_x_y": [y.scale_x_y for y in heads],
        },
    }  # type: Dict[str, Any]
    if model.letter_box:
        data["input"]["pad_value"] = 127
    return data
