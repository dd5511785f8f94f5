"""The end of every detection graph: NMS in one of three forms.

Input to each form: ``boxes`` float32 [B, N, 4] (x1, y1, x2, y2 in input
pixels) and ``scores`` float32 [B, N, C] (probabilities, background already
dropped). Family-blind: nothing here knows YOLO from SSD.

* ``plugin`` — one ``EfficientNMS_TRT`` node (full TensorRT with its plugin
  library). ONNX Runtime cannot run it; :func:`swap_plugin_for_onnx` replaces
  it with the ``onnx`` form's subgraph so the same graph can be checked.
* ``onnx`` — ONNX ``NonMaxSuppression`` (class-aware, per-class top-K), then a
  batched top-K over every class, padded to K rows.
* ``host`` — a top-C of (box, class) candidates; the runtime applies the
  thresholds and class-aware NMS.

The ``plugin`` and ``onnx`` forms end in the contract's outputs:
``num_detections`` int32 [B, 1], ``detection_boxes`` float32 [B, K, 4],
``detection_scores`` float32 [B, K], ``detection_classes`` int32 [B, K]
(rows past ``num_detections`` are zero, classes -1 in the ``onnx`` form).
"""

from typing import Any, List, Optional, Sequence

import numpy as np

from .graph import OpBuilder

FORMS = ("plugin", "onnx", "host")
DETECTION_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
CANDIDATE_OUTPUTS = ("candidate_boxes", "candidate_scores", "candidate_classes")
PLUGIN_OP = "EfficientNMS_TRT"


def output_names(form: str) -> Sequence[str]:
    return CANDIDATE_OUTPUTS if form == "host" else DETECTION_OUTPUTS


def _named_outputs(names: Sequence[str], dtypes: Sequence[Any], shapes: Sequence[Any]) -> List[Any]:
    import onnx_graphsurgeon as gs

    return [gs.Variable(n, dtype=d, shape=list(s)) for n, d, s in zip(names, dtypes, shapes)]


def add_nms(graph: Any, boxes: Any, scores: Any, form: str, nms: Any, batch: Any,
            num_boxes: int, num_classes: int) -> None:
    """Append the NMS ``form`` and make its outputs the graph's outputs.

    ``nms`` is the spec's :class:`NmsSpec`; ``batch`` the batch dimension (an
    int or a symbolic name) used for the output shapes.
    """
    if form not in FORMS:
        raise ValueError("NMS form must be one of {}".format(", ".join(FORMS)))
    b = OpBuilder(graph, "nms")
    k = nms.max_detections
    if form == "host":
        outs = _named_outputs(
            CANDIDATE_OUTPUTS,
            (np.float32, np.float32, np.int32),
            ([batch, min(nms.candidates, num_boxes * num_classes), 4],
             [batch, min(nms.candidates, num_boxes * num_classes)],
             [batch, min(nms.candidates, num_boxes * num_classes)]),
        )
        _host_form(b, boxes, scores, nms.candidates, num_boxes, num_classes, outs)
    else:
        outs = _named_outputs(
            DETECTION_OUTPUTS,
            (np.int32, np.float32, np.float32, np.int32),
            ([batch, 1], [batch, k, 4], [batch, k], [batch, k]),
        )
        if form == "plugin":
            b.op(
                PLUGIN_OP,
                [boxes, scores],
                {
                    "plugin_version": "1",
                    "background_class": -1,
                    "max_output_boxes": k,
                    "score_threshold": float(nms.score_threshold),
                    "iou_threshold": float(nms.iou_threshold),
                    "score_activation": 0,
                    "class_agnostic": int(bool(nms.class_agnostic)),
                    "box_coding": 0,
                },
                out=outs,
            )
        else:
            onnx_nms(b, boxes, scores, k, nms.max_per_class, nms.score_threshold,
                     nms.iou_threshold, bool(nms.class_agnostic), outs)
    graph.outputs = outs


def _host_form(b: OpBuilder, boxes: Any, scores: Any, candidates: int, num_boxes: int,
               num_classes: int, outs: List[Any]) -> None:
    """Top-C (box, class) pairs by score over the flattened [B, N*C] scores."""
    c = min(candidates, num_boxes * num_classes)
    flat = b.op("Reshape", [scores, np.array([0, -1], np.int64)])
    values, index = b.op("TopK", [flat, np.array([c], np.int64)],
                         {"axis": 1, "largest": 1, "sorted": 1}, outputs=2)
    index = b.cast(index, np.int32)
    box_index = b.op("Div", [index, np.array(num_classes, np.int32)])
    cls = b.op("Sub", [index, b.op("Mul", [box_index, np.array(num_classes, np.int32)])])
    b.op("Identity", [values], out=[outs[1]])
    b.op("Identity", [cls], out=[outs[2]])
    _gather_boxes(b, boxes, box_index, out=outs[0])


def _gather_boxes(b: OpBuilder, boxes: Any, index: Any, out: Optional[Any] = None) -> Any:
    """boxes [B, N, 4] at index [B, K] -> [B, K, 4]."""
    tiled = b.op("Tile", [b.unsqueeze(index, [2]), np.array([1, 1, 4], np.int64)])
    return b.op("GatherElements", [boxes, tiled], {"axis": 1}, out=[out] if out is not None else None)


def onnx_nms(b: OpBuilder, boxes: Any, scores: Any, k: int, max_per_class: int,
             score_threshold: float, iou_threshold: float, class_agnostic: bool,
             outs: List[Any]) -> None:
    """Standard ``NonMaxSuppression`` padded to K rows per image.

    The selected (batch, class, box) triples are scored, laid out as a
    [B, M+K] matrix (a score where the triple belongs to that image, -1
    elsewhere; K padding columns so TopK's K is a constant), and the top K of
    each row become the contract's outputs.
    """
    if class_agnostic:
        best = b.op("ReduceMax", [scores, np.array([2], np.int64)], {"keepdims": 1})
        best_class = b.cast(b.op("ArgMax", [scores], {"axis": 2, "keepdims": 0}), np.int64)
        nms_scores = b.op("Transpose", [best], {"perm": [0, 2, 1]})  # [B, 1, N]
    else:
        nms_scores = b.op("Transpose", [scores], {"perm": [0, 2, 1]})  # [B, C, N]
    selected = b.op(
        "NonMaxSuppression",
        [boxes, nms_scores, np.array([max_per_class], np.int64),
         np.array([iou_threshold], np.float32), np.array([score_threshold], np.float32)],
        {"center_point_box": 0},
    )  # [M, 3] int64: batch, class, box
    sel_b, sel_c, sel_i = (
        b.op("Gather", [selected, np.array(j, np.int64)], {"axis": 1}) for j in range(3)
    )
    sel_score = b.op("GatherND", [nms_scores, selected])  # [M]
    if class_agnostic:
        flat_index = b.op("Add", [b.op("Mul", [sel_b, b.op("Gather", [b.op("Shape", [boxes]),
                                                                        np.array(1, np.int64)])]),
                                  sel_i])
        sel_c = b.op("Gather", [b.op("Reshape", [best_class, np.array([-1], np.int64)]), flat_index])

    def pad(x: Any, value: Any, dtype: Any) -> Any:
        return b.op("Concat", [x, np.full([k], value, dtype)], {"axis": 0})

    p_score = pad(sel_score, -1.0, np.float32)
    p_b, p_c, p_i = pad(sel_b, -1, np.int64), pad(sel_c, -1, np.int64), pad(sel_i, 0, np.int64)
    batch = b.op("Gather", [b.op("Shape", [boxes]), np.array(0, np.int64)])
    rows = b.op("Range", [np.array(0, np.int64), batch, np.array(1, np.int64)])  # [B]
    mine = b.op("Equal", [b.unsqueeze(rows, [1]), b.unsqueeze(p_b, [0])])  # [B, M+K]
    table = b.op("Where", [mine, b.unsqueeze(p_score, [0]), np.array(-1.0, np.float32)])
    top_score, top_index = b.op("TopK", [table, np.array([k], np.int64)],
                                {"axis": 1, "largest": 1, "sorted": 1}, outputs=2)
    valid = b.op("Greater", [top_score, np.array(-0.5, np.float32)])  # [B, K]
    b.op("ReduceSum", [b.cast(valid, np.int32), np.array([1], np.int64)], {"keepdims": 1},
         out=[outs[0]])
    box_index = b.op("Gather", [p_i, top_index])  # [B, K]
    cls = b.cast(b.op("Gather", [p_c, top_index]), np.int32)
    picked = _gather_boxes(b, boxes, box_index)
    b.op("Where", [b.unsqueeze(valid, [2]), picked, np.array(0.0, np.float32)], out=[outs[1]])
    b.op("Where", [valid, top_score, np.array(0.0, np.float32)], out=[outs[2]])
    b.op("Where", [valid, cls, np.array(-1, np.int32)], out=[outs[3]])


def swap_plugin_for_onnx(model: Any) -> Any:
    """Replace every ``EfficientNMS_TRT`` node with the ``onnx`` form's subgraph.

    The result computes the same contract outputs from the same inputs and
    attributes, and runs in ONNX Runtime. ``max_per_class`` is set to K
    (the plugin keeps at most K boxes overall, per class too).
    """
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    nodes = [n for n in graph.nodes if n.op == PLUGIN_OP]
    for node in nodes:
        boxes, scores = node.inputs[:2]
        outs = list(node.outputs)
        node.outputs.clear()
        node.inputs.clear()
        a = node.attrs
        onnx_nms(OpBuilder(graph, "nms_swap"), boxes, scores, int(a["max_output_boxes"]),
                 int(a["max_output_boxes"]), float(a["score_threshold"]),
                 float(a["iou_threshold"]), bool(a.get("class_agnostic", 0)), outs)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.metadata_props.extend(model.metadata_props)
    return out


def has_plugin(model: Any) -> bool:
    return any(n.op_type == PLUGIN_OP for n in model.graph.node)
