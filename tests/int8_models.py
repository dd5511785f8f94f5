"""A tiny anchor-free detector built to overflow in INT8 (random, seeded weights).

``x`` [B, 3, 64, 64] -> ``stem`` (Conv 8x8 stride 8 to 16 channels, ReLU; ModelOpt leaves convolutions
with fewer channels in float) -> ``mix`` (1x1 Conv
whose output channel 0 sits near 5000 while the others stay within a few
units: the huge outlier) -> ``head`` (1x1 Conv to 4 + 3 rows, channel 0 with a
tiny weight) -> [B, 7, 64] -> sigmoid, scaled like ``tests/models.py``'s
anchor_free head. In INT8, ``head``'s input shares one scale between the
outlier and the informative channels, so every informative value rounds away;
keeping ``head`` in float fixes it, keeping ``stem`` or ``mix`` does not.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

SIZE = 64
CLASSES = ("a", "b", "c")
ROWS = 4 + len(CLASSES)
OUTLIER = 5000.0
CLASS_BIAS = -3.0


def make(seed=3):
    rng = np.random.default_rng(seed)
    inits = []

    def w(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    stem_w = rng.normal(size=(16, 3, 8, 8)) * 0.15
    stem_w -= stem_w.mean(axis=(1, 2, 3), keepdims=True)  # edges, not brightness
    nodes = [
        helper.make_node("Conv", ["x", w("stem_w", stem_w),
                                  w("stem_b", rng.normal(size=16) * 0.3)], ["stem_out"], name="stem",
                         strides=[8, 8]),
        helper.make_node("Relu", ["stem_out"], ["stem_relu"], name="stem_act"),
    ]
    mix_w = rng.normal(size=(16, 16, 1, 1)) * 0.6
    mix_w[0] = 0.0
    mix_b = rng.normal(size=16) * 0.3
    mix_b[0] = OUTLIER
    head_w = rng.normal(size=(ROWS, 16, 1, 1)) * 0.9
    head_w[:, 0] = 2e-4
    head_b = rng.normal(size=ROWS) * 0.3
    head_b[4:] = CLASS_BIAS  # a few confident cells per frame, not all of them
    nodes += [
        helper.make_node("Conv", ["stem_relu", w("mix_w", mix_w), w("mix_b", mix_b)], ["mix_out"], name="mix"),
        helper.make_node("Conv", ["mix_out", w("head_w", head_w), w("head_b", head_b)],
                         ["head_out"], name="head"),
        helper.make_node("Reshape", ["head_out", w("flat_shape", [0, ROWS, -1])], ["flat"], name="flat"),
        helper.make_node("Sigmoid", ["flat"], ["sig"], name="sig"),
    ]
    inits.append(numpy_helper.from_array(np.array([0, ROWS, -1], np.int64), "flat_shape"))
    inits = [i for i in inits if not (i.name == "flat_shape" and i.data_type == TensorProto.FLOAT)]
    scale = np.array([SIZE, SIZE, 30, 30] + [1] * len(CLASSES), np.float32).reshape(1, ROWS, 1)
    shift = np.array([0, 0, 4, 4] + [0] * len(CLASSES), np.float32).reshape(1, ROWS, 1)
    nodes += [helper.make_node("Mul", ["sig", w("scale", scale)], ["scaled"], name="scale_mul"),
              helper.make_node("Add", ["scaled", w("shift", shift)], ["output0"], name="shift_add")]
    graph = helper.make_graph(
        nodes, "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def spec(file):
    return {
        "name": "overflow",
        "family": "yolo",
        "source": {"file": file},
        "input": {"size": SIZE, "channels": "rgb", "normalize": {"scale": 1 / 255.0}},
        "labels": list(CLASSES),
        "yolo": {"head": "anchor_free", "strides": [8]},
        "nms": {"score_threshold": 0.5, "iou_threshold": 0.5, "max_detections": 20},
    }
