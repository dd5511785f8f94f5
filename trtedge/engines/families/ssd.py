"""SSD heads (TF Object Detection API style): anchors, shape checks, decode.

An SSD graph is cut at two tensors (``cut.outputs``, in this order):

* box encodings — one row of 4 values per anchor: ``[B, N, 4]``,
  ``[B, N, 1, 4]`` (TF1 frozen graphs: ``concat:0``), ``[B, 1, N, 4]`` or
  ``[B, 4, N]``;
* class predictions — logits per anchor, ``[B, N, C+1]`` with a background
  column 0 (``ssd.background_class: true``, TF's default) or ``[B, N, C]``;
  ``[B, N, 1, C(+1)]`` and ``[B, C(+1), N]`` are read too.

The anchors are not taken from the model: :func:`generate_anchors` computes
them from ``ssd.anchors`` and the feature-map sizes, exactly as TF's
``ssd_anchor_generator`` does, and the decode carries them as a constant.

Feature-map sizes come from, in this order: ``ssd.anchors.feature_map_sizes``;
the graph (walking back from the box encodings through
Concat/Reshape/Squeeze/Transpose/Identity to the per-layer predictor outputs,
``[B, H, W, A*4]`` from TF or ``[B, A*4, H, W]``); the SSD rule of
:func:`rule_feature_map_sizes`. Whatever their source, the anchors they give
must add up to the N rows of the box encodings, or :func:`check_heads` stops
with a :class:`ModelError`.

Non-square inputs, as TF's SSD meta-architecture: it generates the anchors
with ``im_height, im_width`` of the preprocessed input, which normalises the
base anchor size to the shorter side (a ratio-1 anchor is square in pixels)
and divides pixel strides/offsets by the input height and width; the decoded
boxes are normalised and only scaled by the width (x) and height (y) at the end.

Decode (:func:`decode`): TF's center-size (``faster_rcnn``) box coder with
``ssd.box_coder_scales`` = (sy, sx, sh, sw)::

    ycenter = ty / sy * ha + ya        xcenter = tx / sx * wa + xa
    h = exp(th / sh) * ha              w = exp(tw / sw) * wa

(the four values per anchor are ``ty, tx, th, tw`` for ``box_order: yxhw``,
TF's order, or ``tx, ty, tw, th`` for ``xywh``). The box is then turned into
corners, scaled from normalised coordinates to input pixels (x by the input
width, y by its height: what TF does to its normalised ``detection_boxes``)
and, with ``ssd.clip_before_nms`` (the default), clipped to the input. TF's
Object Detection API instead runs NMS on the unclipped boxes and clips the
survivors (the runtime clips every box to the frame): ``clip_before_nms:
false`` gives TF's detections exactly, also where boxes cross the border.

Scores: ``ssd.score_activation`` over all columns (softmax includes the
background column), then column 0 is dropped when it is background, so class
ids are 0-based label indices (TF's class id k is column k, label k - 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...utils.lazy import lazy_import

np = lazy_import("numpy")

from ...errors import ModelError
from ...fields import Section
from ...fields import pairs as pair_list
from ..graph import OpBuilder, model_input, static_dim
from .base import Family, HeadInfo

SCORE_ACTIVATIONS = ("none", "sigmoid", "softmax")
SSD_BOX_ORDERS = ("yxhw", "xywh")


@dataclass(frozen=True)
class AnchorSpec:
    """TF Object Detection API ``ssd_anchor_generator`` settings."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    scales: Tuple[float, ...] = ()
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    base_anchor_size: Tuple[float, float] = (1.0, 1.0)
    strides: Tuple[Tuple[float, float], ...] = ()
    offsets: Tuple[Tuple[float, float], ...] = ()
    #: (height, width) per layer; read from the graph when empty
    feature_map_sizes: Tuple[Tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SsdSpec:
    """The spec's ``ssd:`` section."""

    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    #: center-size box coder scales (y, x, h, w)
    box_coder_scales: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    #: order of the four box-encoding values per anchor
    box_order: str = "yxhw"
    score_activation: str = "sigmoid"
    #: whether score column 0 is a background class to drop
    background_class: bool = True
    #: clip the decoded boxes to the input before NMS; TF's OD API runs NMS on
    #: unclipped boxes and clips after it (the runtime clips to the frame), so
    #: ``false`` reproduces TF's detections exactly where boxes cross the border
    clip_before_nms: bool = True

__all__ = [
    "generate_anchors",
    "anchors_per_location",
    "layer_box_specs",
    "rule_feature_map_sizes",
    "read_feature_maps",
    "SsdLayout",
    "SsdHeads",
    "check_heads",
    "decode",
]

#: ops the feature-map walk passes through on its way back to a predictor
_PASS_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Flatten", "Cast",
             "QuantizeLinear", "DequantizeLinear")
_CONV_OPS = ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv")
#: output strides of the first SSD layer the rule tries, in order
_RULE_FIRST_STRIDES = (16, 8, 32)
_ANCHOR_FIELDS = "ssd.anchors (num_layers, aspect_ratios, reduce_boxes_in_lowest_layer) or feature_map_sizes"


# --------------------------------------------------------------------------- anchors


def _layer_scales(a: Any) -> List[float]:
    """One scale per layer, then 1.0 (the 'next scale' of the last layer)."""
    if a.scales:
        scales = [float(s) for s in a.scales]
    elif a.num_layers == 1:
        scales = [float(a.min_scale)]  # TF divides by num_layers - 1 here; one layer gets min_scale
    else:
        scales = [a.min_scale + (a.max_scale - a.min_scale) * i / (a.num_layers - 1)
                  for i in range(a.num_layers)]
    return scales + [1.0]


def layer_box_specs(anchor_spec: Any) -> List[List[Tuple[float, float]]]:
    """Per layer, the (scale, aspect ratio) of each anchor of one location, in order.

    As TF's ``create_ssd_anchors``: layer ``i`` has scale
    ``s_i = min_scale + (max_scale - min_scale) * i / (num_layers - 1)``
    (or ``scales[i]`` when ``scales`` is given) and one anchor per aspect
    ratio, plus, when ``interpolated_scale_aspect_ratio`` > 0, one anchor of
    scale ``sqrt(s_i * s_{i+1})`` (``s_{num_layers} = 1.0``) with that ratio.
    With ``reduce_boxes_in_lowest_layer``, layer 0 instead has exactly
    ``(0.1, 1.0), (s_0, 2.0), (s_0, 0.5)``.
    """
    a = anchor_spec
    scales = _layer_scales(a)
    out = []  # type: List[List[Tuple[float, float]]]
    for layer in range(a.num_layers):
        s, s_next = scales[layer], scales[layer + 1]
        if layer == 0 and a.reduce_boxes_in_lowest_layer:
            specs = [(0.1, 1.0), (s, 2.0), (s, 0.5)]
        else:
            specs = [(s, float(r)) for r in a.aspect_ratios]
            if a.interpolated_scale_aspect_ratio > 0.0:
                specs.append((math.sqrt(s * s_next), float(a.interpolated_scale_aspect_ratio)))
        out.append(specs)
    return out


def anchors_per_location(anchor_spec: Any) -> List[int]:
    """Anchors at each location of each layer (e.g. 3, 6, 6, 6, 6, 6 for TF's SSDs)."""
    return [len(s) for s in layer_box_specs(anchor_spec)]


def generate_anchors(anchor_spec: Any, feature_map_sizes: Sequence[Tuple[int, int]],
                     image_size: Tuple[int, int] = (1, 1)) -> np.ndarray:
    """SSD anchors as TF's ``ssd_anchor_generator`` makes them.

    Returns float32 ``[N, 4]`` rows ``(ycenter, xcenter, height, width)``,
    normalised to the image (0..1). ``feature_map_sizes`` is one
    ``(height, width)`` per layer, finest first; ``image_size`` is the model
    input ``(height, width)`` in pixels.

    For layer ``l`` with grid ``(fh, fw)`` and (scale ``s``, ratio ``r``)
    pairs from :func:`layer_box_specs`:

    * anchor size: ``height = s / sqrt(r) * bh``, ``width = s * sqrt(r) * bw``
      with ``(bh, bw) = base_anchor_size * (m / H, m / W)``, ``m = min(H, W)``:
      TF normalises the base size to the shorter image side, so an anchor of
      ratio 1 is square in pixels on a non-square input;
    * centres: ``yc = i * sy + oy`` for ``i = 0..fh-1``, ``xc = j * sx + ox``
      for ``j = 0..fw-1``; stride ``(sy, sx) = (1 / fh, 1 / fw)`` and offset
      ``(oy, ox) = (sy / 2, sx / 2)`` unless ``strides`` / ``offsets`` are
      given, which are in input pixels ``(y, x)`` and are divided by
      ``(H, W)``.

    Order (TF's): layers in the given order; inside a layer row-major over
    ``y`` then ``x``; the anchors of one location consecutive, in
    :func:`layer_box_specs` order. Row ``((l, i, j, k))`` is at
    ``offset(l) + (i * fw + j) * A_l + k``, which is also the order of TF's
    box predictor rows (``[B, H, W, A*4]`` reshaped to ``[B, H*W*A, 4]``).
    """
    a = anchor_spec
    sizes = [(int(h), int(w)) for h, w in feature_map_sizes]
    specs = layer_box_specs(a)
    if len(sizes) != len(specs):
        raise ValueError("{} feature map sizes for {} anchor layers".format(len(sizes), len(specs)))
    im_h, im_w = float(image_size[0]), float(image_size[1])
    shortest = min(im_h, im_w)
    base_h = a.base_anchor_size[0] * shortest / im_h
    base_w = a.base_anchor_size[1] * shortest / im_w
    layers = []
    for layer, ((fh, fw), pairs) in enumerate(zip(sizes, specs)):
        if a.strides:
            sy, sx = a.strides[layer][0] / im_h, a.strides[layer][1] / im_w
        else:
            sy, sx = 1.0 / fh, 1.0 / fw
        if a.offsets:
            oy, ox = a.offsets[layer][0] / im_h, a.offsets[layer][1] / im_w
        else:
            oy, ox = 0.5 * sy, 0.5 * sx
        scales = np.array([p[0] for p in pairs], np.float64)
        root = np.sqrt(np.array([p[1] for p in pairs], np.float64))
        heights, widths = scales / root * base_h, scales * root * base_w
        k = len(pairs)
        grid = np.empty((fh, fw, k, 4), np.float64)
        grid[..., 0] = (np.arange(fh) * sy + oy)[:, None, None]
        grid[..., 1] = (np.arange(fw) * sx + ox)[None, :, None]
        grid[..., 2] = heights[None, None, :]
        grid[..., 3] = widths[None, None, :]
        layers.append(grid.reshape(-1, 4))
    if not layers:
        return np.zeros((0, 4), np.float32)
    return np.concatenate(layers, 0).astype(np.float32)


def rule_feature_map_sizes(image_size: Tuple[int, int], num_layers: int,
                           first_stride: int = 16) -> List[Tuple[int, int]]:
    """Feature-map sizes of a TF SSD whose layers halve the resolution.

    Layer 0 is the input after ``first_stride`` (a power of two) with SAME
    padding, ``ceil(H / first_stride)``; each next layer is a stride-2 SAME
    reduction of the one before, ``ceil(h / 2)``. For TF's MobileNet v1/v2 and
    Inception v2 SSDs (first layer at stride 16), 300 gives 19, 10, 5, 3, 2, 1.
    """
    h = -(-int(image_size[0]) // first_stride)
    w = -(-int(image_size[1]) // first_stride)
    out = []
    for _ in range(num_layers):
        out.append((h, w))
        h, w = -(-h // 2), -(-w // 2)
    return out


# --------------------------------------------------------------------------- head checks


@dataclass(frozen=True)
class SsdLayout:
    """What :func:`check_heads` learned, for :func:`decode`."""

    #: box encodings: "n4" [B,N,4], "n14" [B,N,1,4], "1n4" [B,1,N,4], "4n" [B,4,N]
    box_layout: str
    #: class predictions: "nc" [B,N,C'], "n1c" [B,N,1,C'], "cn" [B,C',N]
    class_layout: str
    num_anchors: int
    #: score columns in the class predictions (C + 1 with a background column)
    columns: int
    feature_map_sizes: Tuple[Tuple[int, int], ...]
    #: [N, 4] ycenter, xcenter, height, width, normalised
    anchors: Any


class SsdHeads(HeadInfo):
    """:class:`HeadInfo` for SSD; the ``layout`` attribute carries an :class:`SsdLayout`."""

    layout = None  # type: Optional[SsdLayout]


def _dims(shape: Sequence[Any]) -> List[Optional[int]]:
    return [static_dim(d) for d in shape]


def _shape_text(shape: Sequence[Any]) -> str:
    return "[{}]".format(", ".join(str(d) for d in shape)) if shape else "unknown"


def _box_layout(shape: Sequence[Any]) -> Optional[Tuple[str, Optional[int]]]:
    """(layout, N) when ``shape`` looks like box encodings, else None."""
    d = _dims(shape)
    if len(d) == 3:
        if d[2] == 4:
            return "n4", d[1]
        if d[1] == 4:
            return "4n", d[2]
    if len(d) == 4 and d[3] == 4:
        if d[2] == 1:
            return "n14", d[1]
        if d[1] == 1:
            return "1n4", d[2]
    return None


def _class_layout(shape: Sequence[Any], n: Optional[int], columns: int) -> Optional[Tuple[str, Optional[int], Optional[int]]]:
    """(layout, N, columns found) of class predictions, else None."""
    d = _dims(shape)
    if len(d) == 4 and d[2] == 1:
        return "n1c", d[1], d[3]
    if len(d) != 3:
        return None
    if n is not None and d[2] == n and d[1] != n:
        return "cn", d[2], d[1]
    if n is None and d[2] != columns and d[1] == columns:
        return "cn", d[2], d[1]
    return "nc", d[1], d[2]


def _expected_columns(spec: Any) -> int:
    return spec.num_classes + (1 if spec.ssd.background_class else 0)


def _order_fit(box_shape: Sequence[Any], cls_shape: Sequence[Any], columns: int) -> int:
    """How well (box, class) shapes fit that order: 0 not at all, 1 plausible, 2 certain.

    "Certain" is TF1's [B, N, 1, 4] next to a 3-D class tensor: with C + 1 == 4
    columns nothing else tells box encodings from class predictions.
    """
    box = _box_layout(box_shape)
    if box is None or len(cls_shape) < 3:
        return 0
    got = static_dim(cls_shape[-1])
    if got is not None and got != columns and _box_layout(cls_shape) is not None:
        return 0  # the "class" tensor is the 4-wide one, and it is not C + 1 wide
    return 2 if box[0] in ("n14", "1n4") and len(cls_shape) == 3 else 1


def _pick_heads(spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                notes: List[str]) -> Tuple[Tuple[str, str], Tuple[Tuple[Any, ...], Tuple[Any, ...]]]:
    """(box name, class name) and their shapes; the graph's two outputs when cut.outputs is empty."""
    columns = _expected_columns(spec)
    if spec.cut.outputs:
        if len(names) != 2:
            raise ModelError("an SSD needs two cut.outputs, box encodings then class predictions; the spec "
                             "gives {} ({})".format(len(names), ", ".join(names)))
        if _order_fit(shapes[0], shapes[1], columns) < _order_fit(shapes[1], shapes[0], columns):
            raise ModelError("cut.outputs lists '{}' {} first, but box encodings (4 values per anchor) come "
                             "first: list them as [{}, {}]".format(names[0], _shape_text(shapes[0]),
                                                                  names[1], names[0]))
        return (names[0], names[1]), (shapes[0], shapes[1])
    if len(names) != 2:
        raise ModelError("the model has {} outputs ({}); name the SSD heads in the spec's cut.outputs: "
                         "[box encodings, class predictions] (TF1 model-zoo graphs: [concat:0, "
                         "concat_1:0])".format(len(names), ", ".join(names)))
    fit = [_order_fit(shapes[0], shapes[1], columns), _order_fit(shapes[1], shapes[0], columns)]
    if fit[0] == fit[1]:
        raise ModelError("cannot tell which of the model's outputs {} {} and {} {} are the box encodings "
                         "and which the class predictions; list them in the spec's cut.outputs: "
                         "[box encodings, class predictions]".format(
                             names[0], _shape_text(shapes[0]), names[1], _shape_text(shapes[1])))
    i = 0 if fit[0] > fit[1] else 1
    notes.append("cut.outputs not given: took the model outputs '{}' as box encodings and '{}' as class "
                 "predictions".format(names[i], names[1 - i]))
    return (names[i], names[1 - i]), (shapes[i], shapes[1 - i])


class _Shapes:
    """Static shapes of a graph, re-inferred from the spec's input size when needed.

    Graphs converted with a dynamic image input can leave the head shapes
    unknown; a copy of the graph cut at the model input, with that input
    fixed to ``[1, H, W, 3]`` (or NCHW), usually infers them all.
    """

    def __init__(self, graph: Any, spec: Any, names: Sequence[str]) -> None:
        self.graph = graph
        self.spec = spec
        self.names = list(names)
        self._copy = None  # type: Any
        self._tried = False

    def inferred(self) -> Any:
        if self._tried or self.graph is None:
            return self._copy
        self._tried = True
        try:
            self._copy = _reinfer(self.graph, self.spec, self.names)
        except Exception:  # best effort: the caller falls back to the SSD rule
            self._copy = None
        return self._copy

    def shape(self, name: str, given: Tuple[Any, ...]) -> Tuple[Any, ...]:
        if given and all(static_dim(d) is not None for d in list(given)[1:]):
            return given
        copy = self.inferred()
        if copy is not None:
            t = copy.tensors().get(name)
            if t is not None and t.shape is not None:
                return tuple(t.shape)
        return given


def _reinfer(graph: Any, spec: Any, names: Sequence[str]) -> Any:
    import onnx
    import onnx_graphsurgeon as gs

    g = graph.copy()
    x = model_input(g, spec)
    x.inputs.clear()
    inp = spec.input
    x.shape = [1, inp.height, inp.width, 3] if inp.layout == "nhwc" else [1, 3, inp.height, inp.width]
    if x.dtype is None:
        x.dtype = np.float32
    tensors = g.tensors()
    b = OpBuilder(g, "ssd_shapes")
    g.inputs = [x]
    g.outputs = [b.op("Identity", [tensors[n]], dtype=tensors[n].dtype) for n in names]
    g.cleanup()
    for t in g.tensors().values():
        if isinstance(t, gs.Variable) and t is not x and t not in g.outputs:
            t.shape = None
    model = onnx.shape_inference.infer_shapes(gs.export_onnx(g), data_prop=True)
    return gs.import_onnx(model)


def _walk_back(t: Any) -> Tuple[Any, List[Any]]:
    """Follow pass-through producers back from ``t``: (first other tensor, nodes passed in walk order)."""
    passed = []  # type: List[Any]
    seen = 0
    while len(t.inputs) and seen < 64:
        node = t.inputs[0]
        if node.op not in _PASS_OPS or not node.inputs:
            break
        passed.append(node)
        t = node.inputs[0]
        seen += 1
    return t, passed


def _read_layer(t: Any, rows: Optional[int], passed: List[Any], layout: str) -> Optional[Tuple[int, int, int]]:
    """(H, W, A) of one predictor output ``t`` contributing ``rows`` rows, or None."""
    if t.shape is None or len(t.shape) != 4:
        return None
    d = _dims(t.shape)
    if any(v is None for v in d[1:]):
        return None
    _, d1, d2, d3 = d
    candidates = {}
    if d1 % 4 == 0:
        candidates["nchw"] = (d2, d3, d1 // 4)
    if d3 % 4 == 0:
        candidates["nhwc"] = (d1, d2, d3 // 4)
    if rows is not None:
        candidates = {k: v for k, v in candidates.items() if v[0] * v[1] * v[2] == rows}
    if len(candidates) == 1:
        return list(candidates.values())[0]
    if not candidates:
        return None
    producer = t.inputs[0] if len(t.inputs) else None
    if producer is not None and producer.op in _CONV_OPS:
        return candidates["nchw"]
    if passed and passed[-1].op == "Transpose":
        perm = list(passed[-1].attrs.get("perm", []))
        if perm == [0, 2, 3, 1]:
            return candidates["nchw"]
        if perm == [0, 3, 1, 2]:
            return candidates["nhwc"]
    return candidates[layout]


def read_feature_maps(graph: Any, box_name: str, layout: str = "nhwc") -> Optional[List[Tuple[int, int, int]]]:
    """(H, W, anchors per location) of each predictor layer behind the box encodings, or None.

    Walks back from ``box_name`` through pass-through ops to a Concat (or,
    for one layer, straight to the predictor) and reads each input's 4-D
    predictor output. ``layout`` breaks ties between NHWC and NCHW readings
    that both fit (a Conv output, or a Transpose to NHWC after it, is NCHW).
    """
    tensor = graph.tensors().get(box_name)
    if tensor is None:
        return None
    top, _ = _walk_back(tensor)
    node = top.inputs[0] if len(top.inputs) else None
    if node is None or node.op != "Concat":
        n = _box_layout(tensor.shape or ())
        base, passed = _walk_back(tensor)
        one = _read_layer(base, n[1] if n else None, passed, layout)
        return [one] if one is not None else None
    out = []
    for inp in node.inputs:
        rows = None
        if inp.shape is not None and len(inp.shape) > 0:
            axis = int(node.attrs.get("axis", 1))
            axis = axis + len(inp.shape) if axis < 0 else axis
            if 0 <= axis < len(inp.shape):
                rows = static_dim(inp.shape[axis])
        base, passed = _walk_back(inp)
        got = _read_layer(base, rows, passed, layout)
        if got is None:
            return None
        out.append(got)
    return out


def _sum_text(sizes: Sequence[Tuple[int, int]], per: Sequence[int]) -> str:
    return " + ".join("{}x{}x{}".format(h, w, k) for (h, w), k in zip(sizes, per))


def _sizes_text(sizes: Sequence[Tuple[int, int]]) -> str:
    return ", ".join("{}x{}".format(h, w) for h, w in sizes)


def check_heads(spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                graph: Any = None) -> HeadInfo:
    """Check the SSD heads against the spec; return an :class:`SsdHeads`.

    ``graph`` (the source ``gs.Graph``, optional) is used to read the
    feature-map sizes and to re-infer head shapes the model leaves unknown.
    """
    ssd = spec.ssd
    a = ssd.anchors
    notes = []  # type: List[str]
    oracle = _Shapes(graph, spec, names)
    shapes = tuple(oracle.shape(n, s) for n, s in zip(names, shapes))
    (box_name, cls_name), (box_shape, cls_shape) = _pick_heads(spec, names, shapes, notes)

    box = _box_layout(box_shape)
    if box is None:
        raise ModelError("box encodings '{}' have shape {}; an SSD box tensor is [batch, N, 4] or "
                         "[batch, N, 1, 4] (or [batch, 4, N]); check cut.outputs (box encodings first)".format(
                             box_name, _shape_text(box_shape)))
    box_layout, n = box
    columns = _expected_columns(spec)
    cls = _class_layout(cls_shape, n, columns)
    if cls is None:
        raise ModelError("class predictions '{}' have shape {}; an SSD class tensor is [batch, N, classes]; "
                         "check cut.outputs (class predictions second)".format(cls_name, _shape_text(cls_shape)))
    cls_layout, n_cls, got = cls
    if got is not None and got != columns:
        raise ModelError(_classes_message(spec, cls_name, got))
    if n is not None and n_cls is not None and n != n_cls:
        raise ModelError("box encodings '{}' have {} rows but class predictions '{}' have {}; cut.outputs must "
                         "be the box encodings and class predictions of the same anchors".format(
                             box_name, n, cls_name, n_cls))
    n = n if n is not None else n_cls

    per = anchors_per_location(a)
    sizes, graph_per, source = _feature_maps(spec, graph, oracle, box_name, n, per)
    if graph_per is not None:
        for layer, ((h, w), got_k, want_k) in enumerate(zip(sizes, graph_per, per)):
            if got_k != want_k:
                raise ModelError(
                    "anchors do not fit: layer {} of box encodings '{}' is a {}x{} map with {} anchors per "
                    "location, but ssd.anchors gives {} there; check {}".format(
                        layer, box_name, h, w, got_k, want_k, _ANCHOR_FIELDS))
    total = sum(h * w * k for (h, w), k in zip(sizes, per))
    if n is not None and total != n:
        raise ModelError(
            "anchors do not fit: layers give {} anchors ({}{}) but box encodings '{}' have {} rows; check {}"
            .format(total, _sum_text(sizes, per), "" if source != "rule" else
                    ", feature maps {} by the SSD rule: none could be read from the graph".format(
                        _sizes_text(sizes)), box_name, n, _ANCHOR_FIELDS))
    if source == "graph":
        notes.append("SSD feature maps read from the graph: {} ({} anchors)".format(_sizes_text(sizes), total))
    elif source == "rule":
        notes.append("SSD feature maps not readable from the graph; used {} from the SSD rule (first layer at "
                     "stride {}, each next layer half the size, rounded up), {} anchors{}; set "
                     "ssd.anchors.feature_map_sizes to be explicit".format(
                         _sizes_text(sizes), _rule_stride(spec, sizes), total,
                         "" if n is not None else " (not checked: the box tensor has no static size)"))
    anchors = generate_anchors(a, sizes, (spec.input.height, spec.input.width))
    info = SsdHeads((box_name, cls_name), (tuple(box_shape), tuple(cls_shape)), tuple(notes))
    info.layout = SsdLayout(box_layout, cls_layout, total, columns, tuple(sizes), anchors)
    return info


def _classes_message(spec: Any, name: str, got: int) -> str:
    c = spec.num_classes
    if spec.ssd.background_class:
        want = "{} ({} labels + background)".format(c + 1, c)
        if got == c:
            fix = ("the model has no background column or one class less than the labels: set "
                   "ssd.background_class: false, or give the spec {} labels".format(c - 1))
        else:
            fix = "the model predicts {} classes plus background: give the spec {} labels".format(got - 1, got - 1)
    else:
        want = "{} (one per label, no background)".format(c)
        fix = ("give the spec {} labels, or set ssd.background_class: true if column 0 is background "
               "(then {} labels)".format(got, got - 1))
    return "class predictions '{}' have {} scores per anchor but the spec expects {}; {}".format(
        name, got, want, fix)


def _rule_stride(spec: Any, sizes: Sequence[Tuple[int, int]]) -> int:
    for stride in _RULE_FIRST_STRIDES:
        if rule_feature_map_sizes((spec.input.height, spec.input.width), len(sizes), stride) == list(sizes):
            return stride
    return _RULE_FIRST_STRIDES[0]


def _feature_maps(spec: Any, graph: Any, oracle: _Shapes, box_name: str, n: Optional[int],
                  per: Sequence[int]) -> Tuple[List[Tuple[int, int]], Optional[List[int]], str]:
    """(sizes, anchors per location read from the graph or None, source: spec|graph|rule)."""
    a = spec.ssd.anchors
    if a.feature_map_sizes:
        return [(int(h), int(w)) for h, w in a.feature_map_sizes], None, "spec"
    layers = None
    for g in (graph, oracle.inferred() if graph is not None else None):
        if g is not None:
            layers = read_feature_maps(g, box_name, spec.input.layout)
            if layers is not None:
                break
    if layers is not None:
        if len(layers) != a.num_layers:
            raise ModelError(
                "anchors do not fit: box encodings '{}' join {} predictor layers (feature maps {}) but "
                "ssd.anchors.num_layers is {}; set num_layers (and scales, if given) to {}".format(
                    box_name, len(layers), _sizes_text([(h, w) for h, w, _ in layers]), a.num_layers,
                    len(layers)))
        return [(h, w) for h, w, _ in layers], [k for _, _, k in layers], "graph"
    size = (spec.input.height, spec.input.width)
    for stride in _RULE_FIRST_STRIDES:
        sizes = rule_feature_map_sizes(size, a.num_layers, stride)
        if n is None or sum(h * w * k for (h, w), k in zip(sizes, per)) == n:
            return sizes, None, "rule"
    return rule_feature_map_sizes(size, a.num_layers, _RULE_FIRST_STRIDES[0]), None, "rule"


# --------------------------------------------------------------------------- decode


def decode(graph: Any, spec: Any, heads: Any, outs: Sequence[Any]) -> Tuple[Any, Any, int]:
    """Box encodings + class logits -> boxes [B, N, 4] (x1, y1, x2, y2, input pixels),
    scores [B, N, C] (background dropped), N."""
    layout = heads.layout  # type: SsdLayout
    ssd = spec.ssd
    n = layout.num_anchors
    height, width = float(spec.input.height), float(spec.input.width)
    b = OpBuilder(graph, "decode")
    box, cls = outs[0], outs[1]

    if layout.box_layout == "4n":
        box = b.op("Transpose", [box], {"perm": [0, 2, 1]})
    elif layout.box_layout != "n4":
        box = b.op("Reshape", [box, np.array([0, n, 4], np.int64)])
    sy, sx, sh, sw = (float(v) for v in ssd.box_coder_scales)
    if ssd.box_order == "yxhw":  # ty, tx, th, tw -> tx, ty, tw, th
        box = b.op("Gather", [box, np.array([1, 0, 3, 2], np.int64)], {"axis": 2})
    t = b.op("Div", [box, np.array([sx, sy, sw, sh], np.float32).reshape(1, 1, 4)])

    # anchors in input pixels, x first: x*W, y*H, w*W, h*H (same as decoding in
    # normalised coordinates and scaling the corners by the input size)
    anc = np.asarray(layout.anchors, np.float64)
    centre = np.stack([anc[:, 1] * width, anc[:, 0] * height], -1).reshape(1, n, 2).astype(np.float32)
    size = np.stack([anc[:, 3] * width, anc[:, 2] * height], -1).reshape(1, n, 2).astype(np.float32)
    xy = b.op("Add", [b.op("Mul", [b.slice(t, 0, 2, 2), size]), centre])
    wh = b.op("Mul", [b.op("Exp", [b.slice(t, 2, 4, 2)]), size])
    half = b.op("Mul", [wh, np.array(0.5, np.float32)])
    boxes = b.op("Concat", [b.op("Sub", [xy, half]), b.op("Add", [xy, half])], {"axis": 2})
    if ssd.clip_before_nms:
        corners = b.op("Max", [boxes, np.array(0.0, np.float32)])
        boxes = b.op("Min", [corners, np.array([width, height, width, height], np.float32).reshape(1, 1, 4)])

    cols = layout.columns
    if layout.class_layout == "cn":
        cls = b.op("Transpose", [cls], {"perm": [0, 2, 1]})
    elif layout.class_layout == "n1c":
        cls = b.op("Reshape", [cls, np.array([0, n, cols], np.int64)])
    scores = b.activation(cls, ssd.score_activation, axis=-1)
    if ssd.background_class:
        scores = b.slice(scores, 1, cols, 2)
    return boxes, scores, n


# --------------------------------------------------------------------------- the spec section


def _anchor_spec(sec: Section, legacy: Dict[str, Any]) -> AnchorSpec:
    a = sec.section("anchors")
    d = AnchorSpec()
    num_layers = a.int("num_layers", d.num_layers, minimum=1)
    anchors = AnchorSpec(
        num_layers=num_layers,
        min_scale=a.float("min_scale", legacy.get("min_size", d.min_scale), 0.0, 1.0),
        max_scale=a.float("max_scale", legacy.get("max_size", d.max_scale), 0.0, 1.0),
        scales=a.floats("scales", ()),
        aspect_ratios=a.floats("aspect_ratios", d.aspect_ratios),
        interpolated_scale_aspect_ratio=a.float("interpolated_scale_aspect_ratio", 1.0, 0.0),
        reduce_boxes_in_lowest_layer=a.bool("reduce_boxes_in_lowest_layer", True),
        base_anchor_size=a.floats("base_anchor_size", (1.0, 1.0), length=2),
        strides=tuple(tuple(p) for p in pair_list(a, "strides")),  # type: ignore[misc]
        offsets=tuple(tuple(p) for p in pair_list(a, "offsets")),  # type: ignore[misc]
        feature_map_sizes=tuple(tuple(int(v) for v in p) for p in pair_list(a, "feature_map_sizes")),  # type: ignore[misc]
    )
    for key in ("strides", "offsets", "feature_map_sizes"):
        n = len(getattr(anchors, key))
        if n and n != num_layers:
            raise a.fail(key, "has {} entries but num_layers is {}".format(n, num_layers))
    if anchors.scales and len(anchors.scales) != num_layers:
        raise a.fail("scales", "has {} values but num_layers is {}".format(len(anchors.scales), num_layers))
    if any(r <= 0 for r in anchors.aspect_ratios) or any(s <= 0 for s in anchors.base_anchor_size):
        raise a.fail("aspect_ratios", "aspect ratios and base_anchor_size must be more than 0")
    if any(v <= 0 for p in anchors.strides for v in p):
        raise a.fail("strides", "must be more than 0")
    a.done()
    return anchors


def _map_input_order(top: Section, cut: Any, notes: List[str]) -> Any:
    """UFF-era ``input_order: [loc, conf, priorbox]``: the position of each
    NMS_TRT input among the listed tensors. trtedge generates the priors, so
    only the first two matter: they pick the box and score tensors."""
    order = top.raw("input_order")
    if not (isinstance(order, list) and len(order) == 3 and sorted(order) == [0, 1, 2]):
        raise top.fail("input_order", "must be a permutation of [0, 1, 2] (loc, conf, priorbox)")
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
    return type(cut)(input=cut.input, outputs=(boxes, scores))


class SsdFamily(Family):
    name = "ssd"
    section = "ssd"
    extra_classes = 1  # the legacy num_classes counts the background

    def parse(self, sec: Section, top: Section, cut: Any, notes: List[str]) -> Tuple[Any, Any]:
        legacy = {}  # type: Dict[str, Any]
        for key in ("min_size", "max_size"):
            if top.has(key):
                legacy[key] = top.float(key, low=0.0, high=1.0)
                notes.append("legacy '{}: {}' became ssd.anchors.{}".format(
                    key, legacy[key], key.replace("size", "scale")))
        if top.has("input_order"):
            cut = _map_input_order(top, cut, notes)
        spec = SsdSpec(
            anchors=_anchor_spec(sec, legacy),
            box_coder_scales=sec.floats("box_coder_scales", (10.0, 10.0, 5.0, 5.0), length=4),
            box_order=sec.str("box_order", "yxhw", SSD_BOX_ORDERS),
            score_activation=sec.str("score_activation", "sigmoid", SCORE_ACTIVATIONS),
            background_class=sec.bool("background_class", True),
            clip_before_nms=sec.bool("clip_before_nms", True),
        )
        if any(v == 0 for v in spec.box_coder_scales):
            raise sec.fail("box_coder_scales", "must not contain 0")
        sec.done()
        return spec, cut

    def check_spec(self, top: Section, section: Any, cut: Any) -> None:
        if len(cut.outputs) not in (0, 2):
            raise top.fail("cut.outputs", "needs two tensors for SSD: box encodings, then class predictions")

    def describe(self, section: Any) -> str:
        return "ssd"

    # the module's functions are the family's head check and decode
    check_heads = staticmethod(check_heads)  # type: ignore[assignment]
    decode = staticmethod(decode)  # type: ignore[assignment]


FAMILY = SsdFamily()
