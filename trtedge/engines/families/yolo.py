"""YOLO heads: shape checks and the decode to boxes + per-class scores.

Three head kinds (``yolo.head`` in the spec):

* ``raw`` — darknet v3/v4: one ``[B, A*(5+C), H, W]`` tensor per stride.
  Decode: ``xy = (sigmoid(t_xy) * s - (s - 1) / 2 + grid) * stride``,
  ``wh = exp(t_wh) * anchor``, score = sigmoid(obj) * sigmoid(cls), with
  ``s`` the stride's ``scale_x_y``. Heads are matched to strides by their
  grid size, so the order the exporter wrote them in does not matter.
* ``decoded`` — v5-style ``[B, N, 5+C]``: cx, cy, w, h (input pixels),
  objectness, class scores; score = obj * cls.
* ``anchor_free`` — v8-style ``[B, 4+C, N]``: cx, cy, w, h, class scores.
* ``yolox`` — YOLOX exported without decode (its ``export_onnx.py`` without
  ``--decode_in_inference``, the default): ``[B, N, 5+C]`` per cell, the cells
  of ``strides`` one level after the other, row-major inside a level (the
  head's ``flatten(start_dim=2)`` then ``cat``, then ``permute(0, 2, 1)``).
  Per cell: t_x, t_y, t_w, t_h, objectness, class scores. Decode, on the
  level's grid (``H // stride`` x ``W // stride``):
  ``cx, cy = (t_xy + (col, row)) * stride``, ``w, h = exp(t_wh) * stride``,
  score = obj * cls. YOLOX's exported graphs already apply the sigmoid to
  objectness and classes (``score_activation: none``, the default); say
  ``sigmoid`` for graphs that leave logits. An export made with
  ``--decode_in_inference`` is a ``decoded`` head instead. YOLOX
  letterboxes to the top-left corner (``input.letterbox_align: top_left``)
  and feeds BGR 0..255 (no normalisation) since its 0.2 release.

Output of :func:`decode`: boxes float32 [B, N, 4] (x1, y1, x2, y2, input
pixels), scores float32 [B, N, C].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...utils.lazy import lazy_import

np = lazy_import("numpy")

from ...errors import ModelError
from ...fields import Section, check_float, kind
from ..graph import OpBuilder, static_dim
from .base import Family, HeadInfo

#: ``raw`` = darknet v3/v4 heads ``[B, A*(5+C), H, W]`` per stride (sigmoid,
#: grid and anchors still to apply); ``decoded`` = v5-style ``[B, N, 5+C]``
#: (cx, cy, w, h in input pixels, objectness, class scores); ``anchor_free`` =
#: v8-style ``[B, 4+C, N]`` (cx, cy, w, h, class scores).
#: ``yolox`` = YOLOX without decode ``[B, N, 5+C]`` (grid offsets, log sizes, scores).
YOLO_HEADS = ("raw", "decoded", "anchor_free", "yolox")
SCORE_ACTIVATIONS = ("none", "sigmoid", "softmax")
BOX_FORMATS = ("cxcywh", "xyxy")


@dataclass(frozen=True)
class YoloSpec:
    """The spec's ``yolo:`` section."""

    head: str = "anchor_free"
    strides: Tuple[int, ...] = (8, 16, 32)
    #: per stride, (w, h) anchor pairs in input pixels (``raw`` heads only)
    anchors: Tuple[Tuple[Tuple[float, float], ...], ...] = ()
    #: per stride; 1.0 means plain sigmoid offsets (YOLOv4 uses 1.2/1.1/1.05)
    scale_x_y: Tuple[float, ...] = ()
    #: box format of ``decoded``/``anchor_free`` heads
    box_format: str = "cxcywh"
    #: activation still to apply to class scores (and objectness)
    score_activation: str = "none"
    #: ``decoded`` heads: whether column 4 is an objectness score
    objectness: bool = True


def _classes_hint(spec: Any, got: int) -> str:
    return (
        "the model predicts {} classes but the spec lists {} labels; give the spec a label "
        "list with {} names (or check the head and anchors)".format(got, spec.num_classes, got)
    )


def check_heads(spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                graph: Any = None) -> Any:
    y = spec.yolo
    c = spec.num_classes
    notes = []  # type: List[str]
    if y.head == "raw":
        if len(names) != len(y.strides):
            raise ModelError("the spec lists {} strides but {} head tensors ({}); list one head per "
                             "stride in cut.outputs".format(len(y.strides), len(names), ", ".join(names)))
        order = _match_strides(spec, names, shapes)
        if order != list(range(len(names))):
            notes.append("heads matched to strides by grid size: {}".format(", ".join(
                "{} -> stride {}".format(names[i], y.strides[k]) for k, i in enumerate(order))))
        names = tuple(names[i] for i in order)
        shapes = tuple(shapes[i] for i in order)
        return HeadInfo(names, shapes, tuple(notes))
    if len(names) != 1:
        raise ModelError("a '{}' head is one tensor; the model/spec gives {} ({})".format(
            y.head, len(names), ", ".join(names)))
    shape = shapes[0]
    if len(shape) != 3:
        raise ModelError("head '{}' has shape {}; a '{}' head is [batch, ..., ...] (3 dimensions)".format(
            names[0], list(shape) or "unknown", y.head))
    extra = 4 + (1 if (y.head == "yolox" or (y.head == "decoded" and y.objectness)) else 0)
    n_expected = expected_boxes(spec) if y.head in ("anchor_free", "yolox") else None
    attr_axis = 1 if y.head == "anchor_free" else 2
    box_axis = 3 - attr_axis
    got_attr, got_n = static_dim(shape[attr_axis]), static_dim(shape[box_axis])
    if (y.head == "anchor_free" and got_attr != c + extra and static_dim(shape[2]) == c + extra
            and static_dim(shape[1]) == n_expected):
        notes.append("head '{}' is [B, N, 4+C]; read as transposed".format(names[0]))
        got_attr, got_n = c + extra, static_dim(shape[1])
        attr_axis = 2
    if got_attr is not None and got_attr != c + extra:
        raise ModelError("head '{}' has shape {}: {} values per box, the spec expects {} = {} + {} "
                         "classes; {}".format(names[0], list(shape), got_attr, c + extra, extra, c,
                                              _classes_hint(spec, got_attr - extra)))
    if n_expected is not None and got_n is not None and got_n != n_expected:
        raise ModelError("head '{}' has {} {} but input {}x{} with strides {} gives {}; check "
                         "input.size and yolo.strides".format(
                             names[0], got_n, "cells" if y.head == "yolox" else "boxes", spec.input.width,
                             spec.input.height, list(y.strides), n_expected))
    return HeadInfo(names, (tuple(shape),), tuple(notes), attr_axis)


def expected_boxes(spec: Any) -> int:
    return sum((spec.input.height // s) * (spec.input.width // s) for s in spec.yolo.strides)


def _match_strides(spec: Any, names: Sequence[str], shapes: Sequence[Tuple[Any, ...]]) -> List[int]:
    """For each stride in spec order, the index of the head with that grid."""
    y = spec.yolo
    c = spec.num_classes
    grids = {}
    for i, (name, shape) in enumerate(zip(names, shapes)):
        if len(shape) != 4:
            raise ModelError("head '{}' has shape {}; a raw darknet head is [batch, anchors*(5+C), "
                             "height, width]".format(name, list(shape) or "unknown"))
        h, w = static_dim(shape[2]), static_dim(shape[3])
        if h is None or w is None:
            raise ModelError("head '{}' has no fixed grid size ({}); fix the model's input size".format(
                name, list(shape)))
        grids[(h, w)] = i
    order = []
    for k, stride in enumerate(y.strides):
        want = (spec.input.height // stride, spec.input.width // stride)
        if want not in grids:
            raise ModelError("no head has the {}x{} grid that stride {} gives at input {}x{} (head grids: "
                             "{}); check yolo.strides and input.size".format(
                                 want[1], want[0], stride, spec.input.width, spec.input.height,
                                 ", ".join("{}x{}".format(g[1], g[0]) for g in grids)))
        i = grids[want]
        anchors = len(y.anchors[k])
        ch = static_dim(shapes[i][1])
        if ch is not None and ch != anchors * (5 + c):
            if ch % anchors == 0 and ch // anchors > 5:
                hint = _classes_hint(spec, ch // anchors - 5)
            else:
                hint = "the stride has {} anchors in the spec".format(anchors)
            raise ModelError("head '{}' has {} channels; {} anchors x (5 + {} classes) = {} expected; "
                             "{}".format(names[i], ch, anchors, c, anchors * (5 + c), hint))
        order.append(i)
    return order


def decode(graph: Any, spec: Any, heads: Any, outs: Sequence[Any]) -> Tuple[Any, Any, int]:
    b = OpBuilder(graph, "decode")
    y = spec.yolo
    c = spec.num_classes
    if y.head == "raw":
        boxes, scores, total = [], [], 0
        for k, (out, stride) in enumerate(zip(outs, y.strides)):
            bx, sc, n = _raw_level(b, out, spec, k, stride)
            boxes.append(bx)
            scores.append(sc)
            total += n
        return (b.op("Concat", boxes, {"axis": 1}), b.op("Concat", scores, {"axis": 1}), total)
    head = outs[0]
    attr_axis = heads.attr_axis
    n = static_dim(heads.shapes[0][3 - attr_axis])
    if n is None:
        n = expected_boxes(spec)
    if attr_axis == 1:
        head = b.op("Transpose", [head], {"perm": [0, 2, 1]})  # -> [B, N, attrs]
    if y.head == "yolox":
        return _yolox(b, head, spec, n)
    box = b.slice(head, 0, 4, 2)
    box = b.cxcywh_to_xyxy(box) if y.box_format == "cxcywh" else box
    if y.head == "decoded" and y.objectness:
        obj = b.activation(b.slice(head, 4, 5, 2), y.score_activation)
        cls = b.activation(b.slice(head, 5, 5 + c, 2), y.score_activation)
        score = b.op("Mul", [cls, obj])
    else:
        score = b.activation(b.slice(head, 4, 4 + c, 2), y.score_activation)
    return box, score, n


def _yolox(b: OpBuilder, head: Any, spec: Any, n: int) -> Tuple[Any, Any, int]:
    """YOLOX cells ``[B, N, 5+C]`` -> boxes, obj * cls (grid and stride per cell as constants)."""
    y = spec.yolo
    c = spec.num_classes
    grids, strides = [], []
    for stride in y.strides:
        h, w = spec.input.height // stride, spec.input.width // stride
        rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grids.append(np.stack([cols.reshape(-1), rows.reshape(-1)], -1))
        strides.append(np.full((h * w, 1), stride, np.float32))
    grid = np.concatenate(grids, 0)[None]  # [1, N, 2] (col, row)
    stride_col = np.concatenate(strides, 0)[None]  # [1, N, 1]
    centre = b.op("Mul", [b.op("Add", [b.slice(head, 0, 2, 2), grid]), stride_col])
    size = b.op("Mul", [b.op("Exp", [b.slice(head, 2, 4, 2)]), stride_col])
    half = b.op("Mul", [size, np.array(0.5, np.float32)])
    box = b.op("Concat", [b.op("Sub", [centre, half]), b.op("Add", [centre, half])], {"axis": 2})
    obj = b.activation(b.slice(head, 4, 5, 2), y.score_activation)
    cls = b.activation(b.slice(head, 5, 5 + c, 2), y.score_activation)
    return box, b.op("Mul", [cls, obj]), n


def _raw_level(b: OpBuilder, out: Any, spec: Any, k: int, stride: int) -> Tuple[Any, Any, int]:
    y = spec.yolo
    c = spec.num_classes
    anchors = np.array(y.anchors[k], np.float32)  # [A, 2]
    a = len(anchors)
    h, w = spec.input.height // stride, spec.input.width // stride
    t = b.op("Reshape", [out, np.array([0, a, 5 + c, h, w], np.int64)])
    t = b.op("Transpose", [t], {"perm": [0, 1, 3, 4, 2]})  # [B, A, H, W, 5+C]
    t = b.op("Reshape", [t, np.array([0, a * h * w, 5 + c], np.int64)])
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    grid = np.stack([gx, gy], -1).reshape(1, 1, h * w, 2).repeat(a, axis=1).reshape(1, a * h * w, 2)
    wh_anchor = np.repeat(anchors[:, None, :], h * w, axis=1).reshape(1, a * h * w, 2)
    s = float(y.scale_x_y[k])
    act = y.score_activation
    xy = b.activation(b.slice(t, 0, 2, 2), "sigmoid")
    if s != 1.0:
        xy = b.op("Add", [b.op("Mul", [xy, np.array(s, np.float32)]),
                          np.array(-(s - 1.0) / 2.0, np.float32)])
    xy = b.op("Mul", [b.op("Add", [xy, grid.astype(np.float32)]), np.array(stride, np.float32)])
    wh = b.op("Mul", [b.op("Exp", [b.slice(t, 2, 4, 2)]), wh_anchor.astype(np.float32)])
    half = b.op("Mul", [wh, np.array(0.5, np.float32)])
    box = b.op("Concat", [b.op("Sub", [xy, half]), b.op("Add", [xy, half])], {"axis": 2})
    obj = b.activation(b.slice(t, 4, 5, 2), act)
    cls = b.activation(b.slice(t, 5, 5 + c, 2), act)
    return box, b.op("Mul", [cls, obj]), a * h * w


# --------------------------------------------------------------------------- the spec section


def _anchors(sec: Section, strides: int) -> Tuple[Tuple[Tuple[float, float], ...], ...]:
    value = sec.raw("anchors", [])
    if not isinstance(value, list):
        raise sec.fail("anchors", "must be a list (one entry per stride), not {}".format(kind(value)))
    out = []
    for level in value:
        if not isinstance(level, list):
            raise sec.fail("anchors", "must hold one list of w, h values per stride")
        flat = []  # type: List[float]
        for v in level:
            flat.extend(v if isinstance(v, list) else [v])
        nums = [check_float(v, 0.0, None, lambda m: sec.fail("anchors", m)) for v in flat]
        if len(nums) % 2 or not nums:
            raise sec.fail("anchors", "each stride needs w, h pairs; got {} values".format(len(nums)))
        if any(v <= 0 for v in nums):
            raise sec.fail("anchors", "anchor sizes must be more than 0 pixels")
        out.append(tuple((nums[i], nums[i + 1]) for i in range(0, len(nums), 2)))
    if out and len(out) != strides:
        raise sec.fail("anchors", "has {} levels but 'strides' has {}".format(len(out), strides))
    return tuple(out)


def _strides(sec: Section) -> Tuple[int, ...]:
    values = sec.floats("strides", (8.0, 16.0, 32.0))
    if not values:
        raise sec.fail("strides", "must list at least one stride")
    for v in values:
        if v < 1 or v != int(v):
            raise sec.fail("strides", "must be whole numbers of pixels, at least 1; got {}".format(
                [int(x) if x == int(x) else x for x in values]))
    return tuple(int(v) for v in values)


class YoloFamily(Family):
    name = "yolo"
    section = "yolo"

    def parse(self, sec: Section, top: Section, cut: Any, notes: List[str]) -> Tuple[Any, Any]:
        head = sec.str("head", "anchor_free", YOLO_HEADS)
        strides = _strides(sec)
        anchors = _anchors(sec, len(strides))
        sxy = sec.floats("scale_x_y", (1.0,) * len(strides))
        if len(sxy) == 1:
            sxy = sxy * len(strides)
        if len(sxy) != len(strides):
            raise sec.fail("scale_x_y", "needs one value or one per stride ({})".format(len(strides)))
        if any(v <= 0 for v in sxy):
            raise sec.fail("scale_x_y", "must be more than 0")
        spec = YoloSpec(
            head=head,
            strides=strides,
            anchors=anchors,
            scale_x_y=sxy,
            box_format=sec.str("box_format", "cxcywh", BOX_FORMATS),
            score_activation=sec.str("score_activation", "sigmoid" if head == "raw" else "none",
                                     SCORE_ACTIVATIONS),
            objectness=sec.bool("objectness", True),
        )
        if head == "raw" and not anchors:
            raise sec.fail("anchors", "is required for raw (darknet) heads: w, h pairs per stride")
        if head == "yolox" and spec.score_activation == "softmax":
            raise sec.fail("score_activation", "is 'softmax'; a yolox head takes none (YOLOX's exports apply "
                                               "the sigmoid) or sigmoid")
        if head == "yolox" and len(set(strides)) != len(strides):
            raise sec.fail("strides", "repeats a stride ({}); YOLOX has one level per stride".format(
                list(strides)))
        sec.done()
        return spec, cut

    def check_spec(self, top: Section, section: Any, cut: Any) -> None:
        if not cut.outputs:
            return
        expected = len(section.strides) if section.head == "raw" else 1
        if len(cut.outputs) != expected:
            raise top.fail(
                "cut.outputs",
                "lists {} tensors; a '{}' head needs {}{}".format(
                    len(cut.outputs), section.head, expected,
                    " (one per stride)" if section.head == "raw" else ""),
            )

    def describe(self, section: Any) -> str:
        return str(section.head)

    def spec_from_model(self, model: Any, metadata: Dict[str, str], hints: Any, name: str) -> Any:
        return auto_spec_data(model, metadata, hints, name)

    # the module's functions are the family's head check and decode
    check_heads = staticmethod(check_heads)  # type: ignore[assignment]
    decode = staticmethod(decode)  # type: ignore[assignment]


FAMILY = YoloFamily()


# --------------------------------------------------------------------------- models without a spec

def _literal(text: Any) -> Any:
    import ast

    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _names_from_metadata(metadata: Dict[str, str]) -> Optional[List[str]]:
    """Ultralytics writes ``names`` as a Python dict literal: ``{0: 'person', 1: 'bicycle'}``."""
    value = _literal(metadata.get("names"))
    if isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
        return [str(value[k]) for k in sorted(value)]
    if isinstance(value, (list, tuple)) and value:
        return [str(v) for v in value]
    return None


def _size_from_metadata(metadata: Dict[str, str]) -> Optional[Tuple[int, int]]:
    value = _literal(metadata.get("imgsz"))
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    return None


def _static_output_shape(model: Any, size: Tuple[int, int]) -> Optional[List[Any]]:
    """The single output's shape with the input fixed to ``size`` (shape inference on a copy)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1 or len(m.graph.output) != 1:
        return None
    dims = ins[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        for d, v in zip(dims[2:], size):
            d.ClearField("dim_param")
            d.dim_value = v
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        pass
    out = m.graph.output[0].type.tensor_type
    if not out.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in out.shape.dim]


def auto_spec_data(model: Any, metadata: Dict[str, str], hints: Any, name: str) -> Optional[Dict[str, Any]]:
    """Spec data for Ultralytics exports (YOLOv5/v8/11, ``task: detect``: ``names``,
    ``imgsz``, ``stride`` in the metadata) and any YOLO-shaped ONNX the user names
    with ``--family yolo``. The head kind comes from the output's shape with the
    input fixed: ``[B, 4+C, N]`` is anchor-free (v8/11), ``[B, N, 5+C]`` decoded (v5)."""
    ultralytics = "Ultralytics" in str(metadata.get("author", "")) or (
        "names" in metadata and "imgsz" in metadata)
    if not ultralytics and hints.family != "yolo":
        return None
    task = str(metadata.get("task", "detect"))
    if task != "detect":
        raise ModelError("{} is an Ultralytics '{}' model; trtedge builds detection models (task 'detect') "
                         "with decode and NMS inside, and other models as they are without --family".format(
                             name, task))
    labels = list(hints.labels) if hints.labels else _names_from_metadata(metadata)
    size = hints.input_size or _size_from_metadata(metadata)
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if size is None and len(ins) == 1:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ins[0].type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[2] and dims[3]:
            size = (int(dims[2]), int(dims[3]))
    if size is None:
        raise ModelError("{}: the input size is dynamic and the model's metadata has no imgsz".format(name),
                         hint="give it with --input-size HxW (e.g. 640x640)")
    shape = _static_output_shape(model, size)
    if not shape or len(shape) != 3:
        raise ModelError("{}: cannot read a [batch, rows, columns] detection output from the graph (got "
                         "{})".format(name, shape), hint="give --head (raw needs a spec with anchors)")
    rows, cols = shape[1], shape[2]
    head = hints.head
    c = hints.num_classes or (len(labels) if labels else None)
    if head is None:
        if c is not None:
            head = "anchor_free" if rows == 4 + c else "decoded" if cols in (5 + c, 4 + c) else None
        elif rows and cols:
            head = "anchor_free" if rows < cols else "decoded"
        if head is None:
            raise ModelError("{}: output {} fits neither [B, 4+C, N] (anchor_free) nor [B, N, 5+C] (decoded) "
                             "for {} classes".format(name, shape, c), hint="give --head and --num-classes")
    if c is None:
        c = (rows - 4) if head == "anchor_free" else (cols - 5)
        if not c or c < 1:
            raise ModelError("{}: cannot tell the class count from output {}".format(name, shape),
                             hint="give --num-classes N or --labels FILE")
    if labels is None:
        labels = ["class{}".format(i) for i in range(c)]
    if len(labels) != c:
        raise ModelError("{}: {} labels given but the model predicts {} classes".format(name, len(labels), c),
                         hint="give one label per class")
    stride = _literal(metadata.get("stride"))
    strides = [8, 16, 32] + ([64] if stride == 64 else [])
    yolo = {"head": head, "strides": strides}  # type: Dict[str, Any]
    if head == "decoded" and cols == 4 + c:
        yolo["objectness"] = False
    return {
        "name": name,
        "family": "yolo",
        "description": "from {} (no spec: {})".format(name, "Ultralytics metadata" if ultralytics else "flags"),
        "input": {"size": list(size), "channels": "rgb", "layout": "nchw", "normalize": {"scale": 1 / 255.0},
                  "resize": "letterbox", "pad_value": 114},
        "labels": labels,
        "yolo": yolo,
    }

