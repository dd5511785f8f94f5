"""Tiny ONNX models with the exact head layouts of YOLOX and NanoDet (random,
seeded weights), and the spec data that describes each.

* ``yolox`` — YOLOX's head as its ``export_onnx.py`` writes it without
  ``--decode_in_inference``: per stride a reg (4), obj (1) and cls (C) conv,
  ``cat([reg, obj.sigmoid(), cls.sigmoid()], 1)``, ``flatten(2)``, ``cat`` over
  strides on the cell axis, ``permute(0, 2, 1)`` -> ``[B, N, 5+C]``. The model
  takes BGR 0..255 (YOLOX since 0.2); ``logits=True`` leaves obj/cls without
  the sigmoid.
* ``nanodet_plus`` — NanoDet(-Plus)'s export: per stride one conv of
  C + 4*(reg_max+1) channels, split, sigmoid on the class part, ``cat``,
  ``flatten(2)``, ``cat`` over strides, ``permute`` -> ``[B, N, C + 4*(reg_max+1)]``.
* ``nanodet_levels`` — the older per-level export: ``cls_pred_stride_S``
  ``[B, HW, C]`` (sigmoid) and ``dis_pred_stride_S`` ``[B, HW, 4*(reg_max+1)]``.

Grids are ``ceil(size / stride)`` (convolutions padded at the end), as
NanoDet computes them; YOLOX's sizes divide by every stride.
"""

import math

import numpy as np
from onnx import TensorProto, helper, numpy_helper

CLASSES = ("a", "b", "c")
YOLOX_SIZE = (64, 96)  # height, width: non-square, so rows and columns cannot be swapped unnoticed
YOLOX_STRIDES = (8, 16, 32)
NANODET_SIZE = (48, 80)  # 80 / 32 is not whole: the last level's grid is rounded up
NANODET_STRIDES = (8, 16, 32)
REG_MAX = 5
NANODET_MEAN = (103.53, 116.28, 123.675)
NANODET_STD = (57.375, 57.12, 58.395)


class _Graph(object):
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self._n = 0

    def name(self, base):
        self._n += 1
        return "{}_{}".format(base, self._n)

    def const(self, value, base="c"):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, base=None, out=None, **attrs):
        out = out or self.name(base or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def conv(self, x, cout, stride, size, bias_mean=0.0, bias_std=0.5, gain=1.5):
        """A stride x stride conv from the 3-channel image; padded at the end so the grid is ceil(size / stride)."""
        fan_in = 3 * stride * stride
        w = (self.rng.normal(size=(cout, 3, stride, stride)) * gain / math.sqrt(fan_in)).astype(np.float32)
        b = (self.rng.normal(bias_mean, bias_std, size=(cout,))).astype(np.float32)
        pads = [0, 0, int(math.ceil(size[0] / stride)) * stride - size[0],
                int(math.ceil(size[1] / stride)) * stride - size[1]]
        return self.node("Conv", [x, self.const(w, "w"), self.const(b, "b")], "conv", strides=[stride, stride],
                         pads=pads)

    def flatten_cells(self, x, channels):
        """[B, C, H, W] -> [B, C, H*W] (torch's flatten(start_dim=2))."""
        return self.node("Reshape", [x, self.const(np.array([0, channels, -1], np.int64), "shape")])

    def model(self, name, input_name, size, outputs, batch):
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, size[0], size[1]])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


def make_yolox(seed=0, batch="batch", classes=len(CLASSES), logits=False, strides=YOLOX_STRIDES):
    g = _Graph(seed)
    c = classes
    x = g.node("Mul", ["images", g.const(np.array(1 / 255.0, np.float32))], "backbone_in")  # stands in for a backbone
    levels = []
    for stride in strides:
        reg = g.conv(x, 4, stride, YOLOX_SIZE, bias_std=0.3, gain=0.6)
        obj = g.conv(x, 1, stride, YOLOX_SIZE, bias_mean=-0.5)
        cls = g.conv(x, c, stride, YOLOX_SIZE, bias_mean=0.0)
        if not logits:
            obj, cls = g.node("Sigmoid", [obj]), g.node("Sigmoid", [cls])
        level = g.node("Concat", [reg, obj, cls], axis=1)
        levels.append(g.flatten_cells(level, 5 + c))
    cat = g.node("Concat", levels, axis=2)
    g.node("Transpose", [cat], out="output", perm=[0, 2, 1])
    return g.model("tiny_yolox", "images", YOLOX_SIZE, ["output"], batch)


def make_nanodet(seed=0, batch="batch", classes=len(CLASSES), per_level=False, reg_max=REG_MAX,
                 strides=NANODET_STRIDES):
    g = _Graph(seed)
    c, box = classes, 4 * (reg_max + 1)
    x = g.node("Identity", ["data"], "backbone_in")
    levels, cls_outs, box_outs = [], [], []
    for stride in strides:
        out = g.conv(x, c + box, stride, NANODET_SIZE, bias_std=0.8)
        cls = g.node("Slice", [out] + [g.const(np.array([v], np.int64)) for v in (0, c, 1)])
        reg = g.node("Slice", [out] + [g.const(np.array([v], np.int64)) for v in (c, c + box, 1)])
        cls = g.node("Sigmoid", [cls])
        if per_level:
            for part, channels, name, outs in ((cls, c, "cls_pred_stride_{}", cls_outs),
                                               (reg, box, "dis_pred_stride_{}", box_outs)):
                flat = g.flatten_cells(part, channels)
                outs.append(g.node("Transpose", [flat], out=name.format(stride), perm=[0, 2, 1]))
        else:
            levels.append(g.flatten_cells(g.node("Concat", [cls, reg], axis=1), c + box))
    if per_level:
        outputs = cls_outs + box_outs
    else:
        g.node("Transpose", [g.node("Concat", levels, axis=2)], out="output", perm=[0, 2, 1])
        outputs = ["output"]
    return g.model("tiny_nanodet", "data", NANODET_SIZE, outputs, batch)


def yolox_spec(file=None, **yolo):
    data = {
        "name": "tiny_yolox",
        "family": "yolo",
        "input": {"size": list(YOLOX_SIZE), "channels": "bgr", "normalize": {"scale": 1.0},
                  "resize": "letterbox", "letterbox_align": "top_left"},
        "labels": list(CLASSES),
        "yolo": dict({"head": "yolox", "strides": list(YOLOX_STRIDES)}, **yolo),
        "nms": {"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 20},
    }
    if file:
        data["source"] = {"file": file}
    return data


def nanodet_spec(file=None, per_level=False, **gfl):
    data = {
        "name": "tiny_nanodet_levels" if per_level else "tiny_nanodet",
        "family": "gfl",
        "input": {"size": list(NANODET_SIZE), "channels": "bgr", "resize": "stretch",
                  "normalize": {"mean": list(NANODET_MEAN), "std": list(NANODET_STD)}},
        "labels": list(CLASSES),
        "gfl": dict({"strides": list(NANODET_STRIDES), "reg_max": REG_MAX}, **gfl),
        "nms": {"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 20},
    }
    if per_level:
        data["cut"] = {"outputs": ["cls_pred_stride_{}".format(s) for s in NANODET_STRIDES]
                       + ["dis_pred_stride_{}".format(s) for s in NANODET_STRIDES]}
    if file:
        data["source"] = {"file": file}
    return data


def yolox_input(images_bgr):
    """What the engine's preprocessing must give a YOLOX model: BGR, NCHW, 0..255."""
    return images_bgr.astype(np.float32).transpose(0, 3, 1, 2).copy()


def nanodet_input(images_bgr):
    """NanoDet's: BGR, NCHW, (x - mean) / std."""
    x = (images_bgr.astype(np.float32) - np.array(NANODET_MEAN, np.float32)) / np.array(NANODET_STD, np.float32)
    return x.transpose(0, 3, 1, 2).copy()
