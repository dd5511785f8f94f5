"""Tiny YOLO-shaped ONNX models built by the tests (random, seeded weights).

Each has the exact head layout of one head kind, on an RGB float NCHW input
scaled to [0, 1]. One table describes them; ``make(kind)`` builds one and
``spec(kind)`` gives the matching spec data.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

SIZE = 64
STRIDES = (8, 16, 32)
CLASSES = ("a", "b", "c")
ANCHORS = {8: [[4, 5], [8, 10], [12, 9]], 16: [[16, 20], [24, 18], [30, 30]], 32: [[40, 36], [52, 60], [60, 50]]}
SCALE_X_Y = (1.2, 1.1, 1.05)

KINDS = {
    # kind: (output names, description)
    "anchor_free": (["output0"], "[B, 4+C, N], v8-style, probabilities"),
    "decoded": (["output"], "[B, N, 5+C], v5-style, probabilities"),
    "raw": (["head32", "head16", "head8"], "darknet heads, written coarse to fine"),
}


def _conv(nodes, inits, name, x, cout, stride, rng, scale=0.2):
    w = (rng.normal(size=(cout, 3, stride, stride)) * scale).astype(np.float32)
    b = (rng.normal(size=(cout,)) * 0.5).astype(np.float32)
    inits += [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]
    nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], strides=[stride, stride]))
    return name


def make(kind, seed=0, batch="batch", classes=len(CLASSES)):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    c = classes
    outputs = []
    if kind == "raw":
        for stride in sorted(STRIDES, reverse=True):
            name = "head{}".format(stride)
            _conv(nodes, inits, name, "images_f", 3 * (5 + c), stride, rng)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    else:
        rows = 4 + c + (1 if kind == "decoded" else 0)
        parts = []
        for stride in STRIDES:
            conv = _conv(nodes, inits, "p{}".format(stride), "images_f", rows, stride, rng)
            flat = conv + "_flat"
            inits.append(numpy_helper.from_array(np.array([0, rows, -1], np.int64), flat + "_shape"))
            nodes.append(helper.make_node("Reshape", [conv, flat + "_shape"], [flat]))
            parts.append(flat)
        nodes.append(helper.make_node("Concat", parts, ["cat"], axis=2))
        nodes.append(helper.make_node("Sigmoid", ["cat"], ["sig"]))
        scale = np.array([SIZE, SIZE, 30, 30] + [1] * (rows - 4), np.float32).reshape(1, rows, 1)
        shift = np.array([0, 0, 4, 4] + [0] * (rows - 4), np.float32).reshape(1, rows, 1)
        inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")]
        nodes.append(helper.make_node("Mul", ["sig", "scale"], ["scaled"]))
        name = KINDS[kind][0][0]
        if kind == "decoded":
            nodes.append(helper.make_node("Add", ["scaled", "shift"], ["decoded_t"]))
            nodes.append(helper.make_node("Transpose", ["decoded_t"], [name], perm=[0, 2, 1]))
        else:
            nodes.append(helper.make_node("Add", ["scaled", "shift"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    # a stand-in for the model's own input handling: Identity from the real input
    nodes.insert(0, helper.make_node("Identity", ["x"], ["images_f"]))
    graph = helper.make_graph(
        nodes, "tiny_" + kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def spec(kind, file=None, **nms):
    data = {
        "name": "tiny_" + kind,
        "family": "yolo",
        "input": {"size": SIZE, "channels": "rgb", "normalize": {"scale": 1 / 255.0}},
        "labels": list(CLASSES),
        "yolo": {"head": kind, "strides": list(STRIDES)},
        "nms": dict({"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 20}, **nms),
    }
    if file:
        data["source"] = {"file": file}
    if kind == "raw":
        data["yolo"]["anchors"] = [sum(ANCHORS[s], []) for s in STRIDES]
        data["yolo"]["scale_x_y"] = list(SCALE_X_Y)
    return data


def reference_input(images_bgr):
    """What the engine's preprocessing must produce: RGB, NCHW, / 255."""
    return (images_bgr[..., ::-1].astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()
