"""SSD family: anchors, head checks, and the engine ONNX against NumPy references.

The anchor generator and the box decoder below are written here from the TF
Object Detection API formulas, independently of ``trtedge.engines.ssd``. The
test models are tiny TF-shaped SSDs built with onnx.helper: an NHWC float
``image_tensor:0`` -> a stand-in preprocessor ending in ``Preprocessor/sub:0``
-> strided convs giving three feature maps -> per-layer box and class convs,
transposed to NHWC, reshaped and joined by ``concat:0`` / ``concat_1:0`` -> a
stand-in postprocessor (so the cut tensors are not the graph outputs).
"""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import reference as ref
from trtedge.engines import nms as nms_mod
from trtedge.engines.families import ssd
from trtedge.engines import surgery
from trtedge.errors import ModelError
from trtedge.specs import load_spec
from trtedge.specs.loader import LABELS_DIR, spec_from_data
from trtedge.engines.families.ssd import AnchorSpec

ort = pytest.importorskip("onnxruntime")

HEIGHT, WIDTH = 48, 64  # non-square on purpose
LABELS = ["a", "b", "c"]
RATIOS = [1.0, 2.0, 0.5]
#: feature maps of the test models: stride 8, 16, 32
SIZES = [(6, 8), (3, 4), (2, 2)]
SCALES = (10.0, 10.0, 5.0, 5.0)


# --------------------------------------------------------------------------- references


def reference_anchors(num_layers, min_scale, max_scale, ratios, interpolated, reduce_lowest, sizes,
                      image=(1, 1), scales=None, base=(1.0, 1.0), strides=None, offsets=None):
    """TF's SSD anchors, one at a time: [N, 4] ycenter, xcenter, height, width (normalised)."""
    if scales:
        s = list(scales) + [1.0]
    else:
        s = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    im_h, im_w = image
    short = min(im_h, im_w)
    base_h, base_w = base[0] * short / im_h, base[1] * short / im_w
    out = []
    for layer, (fh, fw) in enumerate(sizes):
        if layer == 0 and reduce_lowest:
            boxes = [(0.1, 1.0), (s[0], 2.0), (s[0], 0.5)]
        else:
            boxes = [(s[layer], r) for r in ratios]
            if interpolated > 0:
                boxes.append((math.sqrt(s[layer] * s[layer + 1]), interpolated))
        step_y, step_x = (strides[layer][0] / im_h, strides[layer][1] / im_w) if strides else (1.0 / fh, 1.0 / fw)
        off_y, off_x = (offsets[layer][0] / im_h, offsets[layer][1] / im_w) if offsets else (step_y / 2, step_x / 2)
        for i in range(fh):
            for j in range(fw):
                for scale, ratio in boxes:
                    out.append((i * step_y + off_y, j * step_x + off_x,
                                scale / math.sqrt(ratio) * base_h, scale * math.sqrt(ratio) * base_w))
    return np.array(out, np.float64)


def reference_decode(encodings, logits, anchors, activation, box_order="yxhw", scales=SCALES,
                     size=(HEIGHT, WIDTH)):
    """One image: encodings [N, 4], logits [N, C+1] -> boxes [N, 4] x1y1x2y2 pixels, scores [N, C]."""
    e = encodings.astype(np.float64)
    if box_order == "yxhw":
        ty, tx, th, tw = e[:, 0], e[:, 1], e[:, 2], e[:, 3]
    else:
        tx, ty, tw, th = e[:, 0], e[:, 1], e[:, 2], e[:, 3]
    ya, xa, ha, wa = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    yc = ty / scales[0] * ha + ya
    xc = tx / scales[1] * wa + xa
    h = np.exp(th / scales[2]) * ha
    w = np.exp(tw / scales[3]) * wa
    img_h, img_w = size
    boxes = np.stack([(xc - w / 2) * img_w, (yc - h / 2) * img_h, (xc + w / 2) * img_w, (yc + h / 2) * img_h], 1)
    boxes = np.clip(boxes, 0, [img_w, img_h, img_w, img_h])
    z = logits.astype(np.float64)
    if activation == "sigmoid":
        p = 1 / (1 + np.exp(-z))
    else:
        p = np.exp(z - z.max(1, keepdims=True))
        p = p / p.sum(1, keepdims=True)
    return boxes.astype(np.float32), p[:, 1:].astype(np.float32)


# --------------------------------------------------------------------------- tiny SSD models


def make_model(per_location, classes=len(LABELS), box_layout="n14", seed=0, batch="batch", expose=False):
    """A TF-shaped SSD with ``per_location[l]`` anchors on feature map ``l`` (see module doc).

    ``box_layout``: "n14" -> concat:0 is [B, N, 1, 4] (TF1); "n4" -> [B, N, 4];
    "4n" -> the box cut tensor is ``box_t:0`` = [B, 4, N].
    ``expose`` makes the two head tensors the graph's only outputs.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv(name, x, cin, cout, k, s, pad=0, scale=0.3):
        w = const(name + "/w", (rng.normal(size=(cout, cin, k, k)) * scale).astype(np.float32))
        b = const(name + "/b", (rng.normal(size=(cout,)) * 0.3).astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, w, b], [name + ":0"], name=name, strides=[s, s],
                                      pads=[pad] * 4, kernel_shape=[k, k]))
        return name + ":0"

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [x + "/relu"]))
        return x + "/relu"

    cols = classes + 1
    nodes.append(helper.make_node("Mul", ["image_tensor:0", const("Preprocessor/scale", np.float32(1 / 127.5))],
                                  ["Preprocessor/mul:0"], name="Preprocessor/mul"))
    nodes.append(helper.make_node("Sub", ["Preprocessor/mul:0", const("Preprocessor/one", np.float32(1.0))],
                                  ["Preprocessor/sub:0"], name="Preprocessor/sub"))
    nodes.append(helper.make_node("Transpose", ["Preprocessor/sub:0"], ["nchw:0"], perm=[0, 3, 1, 2]))
    f0 = relu(conv("FeatureExtractor/conv0", "nchw:0", 3, 8, 8, 8))
    f1 = relu(conv("FeatureExtractor/conv1", f0, 8, 8, 2, 2))
    f2 = relu(conv("FeatureExtractor/conv2", f1, 8, 8, 3, 2, pad=1))
    box_parts, cls_parts = [], []
    box_shape = [0, -1, 1, 4] if box_layout == "n14" else [0, -1, 4]
    for layer, (f, a) in enumerate(zip((f0, f1, f2), per_location)):
        p = "BoxPredictor_{}".format(layer)
        for kind, channels, shape, parts in (("BoxEncodingPredictor", a * 4, box_shape, box_parts),
                                            ("ClassPredictor", a * cols, [0, -1, cols], cls_parts)):
            y = conv("{}/{}".format(p, kind), f, 8, channels, 1, 1, scale=0.5 if kind[0] == "C" else 0.4)
            nodes.append(helper.make_node("Transpose", [y], [y + "/nhwc"], perm=[0, 2, 3, 1]))
            out = "{}/Reshape{}:0".format(p, "" if kind[0] == "B" else "_1")
            nodes.append(helper.make_node("Reshape", [y + "/nhwc", const(out + "/shape", np.array(shape, np.int64))],
                                          [out]))
            parts.append(out)
    nodes.append(helper.make_node("Concat", box_parts, ["concat:0"], name="concat", axis=1))
    nodes.append(helper.make_node("Concat", cls_parts, ["concat_1:0"], name="concat_1", axis=1))
    box_name = "concat:0"
    if box_layout == "4n":
        nodes.append(helper.make_node("Transpose", ["concat:0"], ["box_t:0"], perm=[0, 2, 1]))
        box_name = "box_t:0"
    # a stand-in for TF's Postprocessor: what the cut removes
    nodes.append(helper.make_node("Sigmoid", ["concat_1:0"], ["Postprocessor/convert_scores:0"]))
    nodes.append(helper.make_node("Identity", [box_name], ["Postprocessor/boxes:0"]))
    outputs = [box_name, "concat_1:0"] if expose else ["Postprocessor/boxes:0", "Postprocessor/convert_scores:0"]
    graph = helper.make_graph(
        nodes, "tiny_ssd",
        [helper.make_tensor_value_info("image_tensor:0", TensorProto.FLOAT, [batch, HEIGHT, WIDTH, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), box_name


def spec_data(reduce_lowest=True, activation="sigmoid", box_order="yxhw", box_name="concat:0", **nms):
    return {
        "name": "tiny_ssd",
        "family": "ssd",
        "input": {"size": [HEIGHT, WIDTH], "channels": "rgb", "layout": "nhwc", "resize": "stretch",
                  "normalize": {"mean": [127.5] * 3, "std": [127.5] * 3}},
        "labels": list(LABELS),
        "cut": {"input": "Preprocessor/sub:0", "outputs": [box_name, "concat_1:0"]},
        "ssd": {
            "anchors": {"num_layers": 3, "min_scale": 0.2, "max_scale": 0.9, "aspect_ratios": RATIOS,
                        "interpolated_scale_aspect_ratio": 1.0, "reduce_boxes_in_lowest_layer": reduce_lowest},
            "box_coder_scales": list(SCALES),
            "box_order": box_order,
            "score_activation": activation,
        },
        "nms": dict({"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 20}, **nms),
    }


def per_location(reduce_lowest):
    return [3 if reduce_lowest else 4, 4, 4]


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def images(n=2, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (n, HEIGHT, WIDTH, 3), dtype=np.uint8)


def head_outputs(reduce_lowest, box_layout, frames):
    """The source model's own head tensors for BGR uint8 ``frames`` (fed as RGB floats)."""
    model, box_name = make_model(per_location(reduce_lowest), box_layout=box_layout, expose=True)
    enc, logits = session(model).run(None, {"image_tensor:0": frames[..., ::-1].astype(np.float32)})
    if box_layout == "4n":
        enc = enc.transpose(0, 2, 1)
    return enc.reshape(len(frames), -1, 4), logits


# --------------------------------------------------------------------------- anchors


ANCHOR_CASES = [
    # (AnchorSpec fields, sizes, image size)
    (dict(), [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], (300, 300)),
    (dict(reduce_boxes_in_lowest_layer=False), [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], (300, 300)),
    (dict(num_layers=3, aspect_ratios=(1.0, 2.0, 0.5), interpolated_scale_aspect_ratio=0.0), SIZES, (HEIGHT, WIDTH)),
    (dict(num_layers=3, scales=(0.1, 0.4, 0.7), interpolated_scale_aspect_ratio=2.0,
          reduce_boxes_in_lowest_layer=False), SIZES, (HEIGHT, WIDTH)),
    (dict(num_layers=3, base_anchor_size=(0.5, 1.5), strides=((8.0, 8.0), (16.0, 16.0), (24.0, 32.0)),
          offsets=((0.0, 4.0), (8.0, 8.0), (12.0, 16.0))), SIZES, (HEIGHT, WIDTH)),
]


@pytest.mark.parametrize("fields, sizes, image", ANCHOR_CASES)
def test_generate_anchors_matches_reference(fields, sizes, image):
    a = AnchorSpec(**fields)
    got = ssd.generate_anchors(a, sizes, image)
    want = reference_anchors(a.num_layers, a.min_scale, a.max_scale, a.aspect_ratios,
                             a.interpolated_scale_aspect_ratio, a.reduce_boxes_in_lowest_layer, sizes, image,
                             scales=a.scales, base=a.base_anchor_size, strides=a.strides, offsets=a.offsets)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    per = ssd.anchors_per_location(a)
    assert len(got) == sum(h * w * k for (h, w), k in zip(sizes, per))


def test_published_mobilenet_v2_anchors_by_hand():
    spec = load_spec("ssd_mobilenet_v2_coco")
    sizes = ssd.rule_feature_map_sizes((300, 300), 6)
    assert sizes == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert ssd.anchors_per_location(spec.ssd.anchors) == [3, 6, 6, 6, 6, 6]
    anchors = ssd.generate_anchors(spec.ssd.anchors, sizes, (300, 300))
    # 19*19*3 + 10*10*6 + 5*5*6 + 3*3*6 + 2*2*6 + 1*1*6 = 1083 + 600 + 150 + 54 + 24 + 6
    assert len(anchors) == 1917
    c = 0.5 / 19  # first centre: offset = stride / 2 = (1/19) / 2 = 0.0263158
    r2 = math.sqrt(2.0)
    # layer 0 (reduced), first location: (0.1, 1.0) -> 0.1 x 0.1;
    # (s0 = 0.2, 2.0) -> h = 0.2/sqrt2 = 0.1414214, w = 0.2*sqrt2 = 0.2828427; (0.2, 0.5) -> swapped
    np.testing.assert_allclose(anchors[:3], [[c, c, 0.1, 0.1], [c, c, 0.2 / r2, 0.2 * r2],
                                            [c, c, 0.2 * r2, 0.2 / r2]], rtol=1e-6)
    np.testing.assert_allclose(anchors[:3], [[0.0263158, 0.0263158, 0.1, 0.1], [0.0263158, 0.0263158, 0.1414214,
                                            0.2828427], [0.0263158, 0.0263158, 0.2828427, 0.1414214]], atol=1e-6)
    # the next location is one step right: xcenter = 1.5/19 (row-major over y, then x)
    np.testing.assert_allclose(anchors[3, :2], [0.5 / 19, 1.5 / 19], rtol=1e-6)
    # layer 1 starts at row 1083: 10x10, centre 0.05; s1 = 0.2 + 0.75 * 1/5 = 0.35, then ratios 2, 0.5, 3,
    # 0.3333 and the interpolated sqrt(0.35 * 0.5) = 0.4183300
    first = anchors[1083:1089]
    np.testing.assert_allclose(first[:, :2], 0.05, rtol=1e-6)
    np.testing.assert_allclose(first[0, 2:], [0.35, 0.35], rtol=1e-6)
    np.testing.assert_allclose(first[5, 2:], [0.4183300, 0.4183300], rtol=1e-6)
    np.testing.assert_allclose(first[3, 2:], [0.35 / math.sqrt(3), 0.35 * math.sqrt(3)], rtol=1e-6)
    # last layer 1x1 at (0.5, 0.5), s5 = 0.95, interpolated with 1.0: sqrt(0.95) = 0.9746794;
    # ratio 0.3333: h = 0.95 / sqrt(0.3333) = 1.6455, w = 0.95 * sqrt(0.3333) = 0.5485
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, 0.9746794, 0.9746794], rtol=1e-6)
    np.testing.assert_allclose(anchors[-2], [0.5, 0.5, 1.645525, 0.548460], rtol=1e-4)


def test_non_square_input_keeps_ratio_one_anchors_square_in_pixels():
    a = AnchorSpec(num_layers=3, aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=0.0,
                   reduce_boxes_in_lowest_layer=False)
    anchors = ssd.generate_anchors(a, SIZES, (HEIGHT, WIDTH))
    np.testing.assert_allclose(anchors[:, 2] * HEIGHT, anchors[:, 3] * WIDTH, rtol=1e-6)


def test_rule_feature_map_sizes():
    assert ssd.rule_feature_map_sizes((300, 300), 6) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert ssd.rule_feature_map_sizes((512, 512), 6) == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert ssd.rule_feature_map_sizes((HEIGHT, WIDTH), 3, first_stride=8) == SIZES


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("name, date", [("ssd_mobilenet_v1_coco", "2018_01_28"),
                                        ("ssd_mobilenet_v2_coco", "2018_03_29"),
                                        ("ssd_inception_v2_coco", "2018_01_28")])
def test_builtin_tf_model_zoo_specs(name, date):
    spec = load_spec(name)
    assert spec.family == "ssd" and spec.num_classes == 90
    assert (spec.input.height, spec.input.width, spec.input.layout, spec.input.resize) == (300, 300, "nhwc", "stretch")
    assert spec.input.channels == "rgb"
    assert spec.input.scale == pytest.approx((1 / 127.5,) * 3) and spec.input.offset == pytest.approx((-1.0,) * 3)
    assert spec.source.file == "{}_{}/frozen_inference_graph.pb".format(name, date) and spec.source.format == "frozen_graph"
    assert spec.source.url == "http://download.tensorflow.org/models/object_detection/{}_{}.tar.gz".format(name, date)
    assert spec.cut.input == "Preprocessor/sub:0" and spec.cut.outputs == ("concat:0", "concat_1:0")
    a = spec.ssd.anchors
    assert (a.num_layers, a.min_scale, a.max_scale) == (6, 0.2, 0.95)
    assert a.aspect_ratios == (1.0, 2.0, 0.5, 3.0, 0.3333) and a.reduce_boxes_in_lowest_layer
    assert a.interpolated_scale_aspect_ratio == 1.0
    assert spec.ssd.box_coder_scales == (10.0, 10.0, 5.0, 5.0) and spec.ssd.box_order == "yxhw"
    assert spec.ssd.score_activation == "sigmoid" and spec.ssd.background_class
    assert (spec.nms.iou_threshold, spec.nms.max_per_class, spec.nms.max_detections) == (0.6, 100, 100)
    assert spec.nms.score_threshold == 0.3


def test_coco_label_files():
    with open(LABELS_DIR + "/coco_tf90.txt") as f:
        tf90 = [line.rstrip("\n") for line in f]
    with open(LABELS_DIR + "/coco.txt") as f:
        coco = [line.rstrip("\n") for line in f]
    assert len(tf90) == 90 and len(coco) == 80
    # line k holds TF class id k + 1
    assert tf90[0] == "person" and tf90[9] == "traffic light" and tf90[12] == "stop sign" and tf90[89] == "toothbrush"
    unused = [i + 1 for i, n in enumerate(tf90) if n.startswith("unused_")]
    assert unused == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert all(tf90[i - 1] == "unused_{}".format(i) for i in unused)
    assert [n for n in tf90 if not n.startswith("unused_")] == coco


# --------------------------------------------------------------------------- engine ONNX vs reference

ENGINE_CASES = [
    # (score activation, reduce_boxes_in_lowest_layer, box layout, box order)
    ("sigmoid", True, "n14", "yxhw"),
    ("softmax", True, "n4", "yxhw"),
    ("sigmoid", False, "4n", "xywh"),
    ("softmax", False, "n14", "yxhw"),
]


@pytest.mark.parametrize("form", ["onnx", "plugin", "host"])
@pytest.mark.parametrize("activation, reduce_lowest, box_layout, box_order", ENGINE_CASES)
def test_engine_onnx_matches_reference(activation, reduce_lowest, box_layout, box_order, form):
    source, box_name = make_model(per_location(reduce_lowest), box_layout=box_layout)
    spec = spec_from_data(spec_data(reduce_lowest, activation, box_order, box_name), "tiny_ssd.yaml", None)
    engine, notes = surgery.transform(source, spec, form)
    assert any("read from the graph: 6x8, 3x4, 2x2" in n for n in notes), notes
    assert [i.name for i in engine.graph.input] == ["images"] and surgery.nms_form_of(engine) == form
    if form == "plugin":
        engine = nms_mod.swap_plugin_for_onnx(engine)
    onnx.checker.check_model(engine)
    frames = images()
    outs = dict(zip([o.name for o in engine.graph.output], session(engine).run(None, {"images": frames})))
    enc, logits = head_outputs(reduce_lowest, box_layout, frames)
    anchors = reference_anchors(3, 0.2, 0.9, RATIOS, 1.0, reduce_lowest, SIZES, (HEIGHT, WIDTH))
    assert len(anchors) == enc.shape[1]
    detections = 0
    for i in range(len(frames)):
        boxes, scores = reference_decode(enc[i], logits[i], anchors, activation, box_order)
        if form == "host":
            flat = scores.reshape(-1)
            top = np.sort(flat)[::-1][: outs["candidate_scores"].shape[1]]
            np.testing.assert_allclose(outs["candidate_scores"][i], top, rtol=1e-4, atol=1e-5)
            cls = outs["candidate_classes"][i]
            onehot = np.eye(len(LABELS), dtype=np.float32)[cls] * outs["candidate_scores"][i][:, None]
            got = ref.nms(outs["candidate_boxes"][i], onehot, 0.3, 0.5, 100, 20)
            want = ref.nms(boxes, scores, 0.3, 0.5, 100, 20)
        else:
            n = int(outs["num_detections"][i, 0])
            got = (outs["detection_boxes"][i, :n], outs["detection_scores"][i, :n], outs["detection_classes"][i, :n])
            want = ref.nms(boxes, scores, 0.3, 0.5, 20, 20)
            assert np.all(outs["detection_scores"][i, n:] == 0)
        ref.same_detections(got, want)
        detections += len(want[1])
    assert detections > 0, "the test model should give detections"


def test_engine_boxes_before_nms_match_reference():
    """The decoded boxes and scores themselves (cut before NMS), every anchor."""
    source, box_name = make_model(per_location(True))
    spec = spec_from_data(spec_data(True, "softmax"), "tiny_ssd.yaml", None)
    graph = surgery._import(source)
    heads = surgery.check_fit(graph, spec)
    x, outs = surgery.cut(graph, spec, heads)
    surgery.add_preprocessing(graph, spec, x)
    boxes, scores, n = ssd.decode(graph, spec, heads, outs)
    graph.outputs = [boxes, scores]
    for t in graph.outputs:
        t.dtype = np.float32
    import onnx_graphsurgeon as gs

    model = gs.export_onnx(graph.cleanup().toposort())
    frames = images(1)
    got_boxes, got_scores = session(model).run(None, {"images": frames})
    enc, logits = head_outputs(True, "n14", frames)
    anchors = reference_anchors(3, 0.2, 0.9, RATIOS, 1.0, True, SIZES, (HEIGHT, WIDTH))
    want_boxes, want_scores = reference_decode(enc[0], logits[0], anchors, "softmax")
    assert n == len(anchors) == 208  # 6*8*3 + 3*4*4 + 2*2*4
    np.testing.assert_allclose(got_boxes[0], want_boxes, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got_scores[0], want_scores, rtol=1e-4, atol=1e-6)
    assert got_boxes.min() >= 0 and got_boxes[..., 0::2].max() <= WIDTH and got_boxes[..., 1::2].max() <= HEIGHT


# --------------------------------------------------------------------------- where feature maps come from


def test_feature_maps_from_spec_and_from_the_rule():
    source, _ = make_model(per_location(True))
    data = spec_data(True)
    data["ssd"]["anchors"]["feature_map_sizes"] = [list(s) for s in SIZES]
    _, notes = surgery.transform(source, spec_from_data(data, "tiny_ssd.yaml", None), "host")
    assert not any("feature maps" in n for n in notes)  # given: nothing to say
    # no graph to read: the SSD rule, here with the first layer at stride 8
    spec = spec_from_data(spec_data(True), "tiny_ssd.yaml", None)
    info = ssd.check_heads(spec, ("concat:0", "concat_1:0"), (("b", 208, 1, 4), ("b", 208, 4)))
    assert info.layout.feature_map_sizes == tuple(SIZES) and info.layout.num_anchors == 208
    (note,) = info.notes
    assert "used 6x8, 3x4, 2x2 from the SSD rule (first layer at stride 8" in note


def test_feature_maps_read_when_the_model_shapes_are_unknown():
    """A dynamic-size model input: shapes are re-inferred from the spec's input size."""
    source, _ = make_model(per_location(True))
    source.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "h"
    source.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "w"
    spec = spec_from_data(spec_data(True), "tiny_ssd.yaml", None)
    _, notes = surgery.transform(source, spec, "host")
    assert any("read from the graph: 6x8, 3x4, 2x2 (208 anchors)" in n for n in notes), notes


def test_heads_taken_from_the_two_model_outputs_when_unambiguous():
    source, _ = make_model(per_location(True), expose=True)
    data = spec_data(True)
    data["cut"] = {"input": "Preprocessor/sub:0"}
    engine, notes = surgery.transform(source, spec_from_data(data, "tiny_ssd.yaml", None), "onnx")
    assert any("took the model outputs 'concat:0' as box encodings and 'concat_1:0'" in n for n in notes)
    assert surgery.nms_form_of(engine) == "onnx"


def test_legacy_uff_style_spec_maps():
    """UFF-era fields (NMS_TRT plugin settings) map onto the modern spec and build the same engine."""
    data = spec_data(True)
    data["ssd"]["anchors"].pop("min_scale")
    data["ssd"]["anchors"].pop("max_scale")
    data.update(num_classes=4, min_size=0.2, max_size=0.9, input_order=[1, 0, 2])
    data["cut"]["outputs"] = ["concat_1:0", "concat:0"]  # NMS_TRT inputs: conf listed first, loc second
    legacy = spec_from_data(data, "legacy.yaml", None)
    assert legacy.cut.outputs == ("concat:0", "concat_1:0")
    assert (legacy.ssd.anchors.min_scale, legacy.ssd.anchors.max_scale) == (0.2, 0.9)
    assert any("num_classes: 4" in n for n in legacy.notes) and any("input_order" in n for n in legacy.notes)
    modern = spec_from_data(spec_data(True), "tiny_ssd.yaml", None)
    source, _ = make_model(per_location(True))
    frames = images(1)
    a = session(surgery.transform(source, legacy, "onnx")[0]).run(None, {"images": frames})
    b = session(surgery.transform(source, modern, "onnx")[0]).run(None, {"images": frames})
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- mismatches: one precise line


def _labels(d, n):
    d["labels"] = ["l{}".format(i) for i in range(n)]


MISMATCHES = [
    (True, lambda d: _labels(d, 4),
     "class predictions 'concat_1:0' have 4 scores per anchor but the spec expects 5 (4 labels + background); "
     "the model has no background column or one class less"),
    (True, lambda d: _labels(d, 80),
     "have 4 scores per anchor but the spec expects 81 (80 labels + background); the model predicts 3 classes "
     "plus background: give the spec 3 labels"),
    (True, lambda d: d["ssd"].update(background_class=False),
     "have 4 scores per anchor but the spec expects 3 (one per label, no background)"),
    (True, lambda d: d["ssd"]["anchors"].update(reduce_boxes_in_lowest_layer=False),
     "anchors do not fit: layer 0 of box encodings 'concat:0' is a 6x8 map with 3 anchors per location, but "
     "ssd.anchors gives 4 there"),
    (True, lambda d: d["ssd"]["anchors"].update(feature_map_sizes=[[6, 8], [3, 4], [1, 1]]),
     "anchors do not fit: layers give 196 anchors (6x8x3 + 3x4x4 + 1x1x4) but box encodings 'concat:0' have "
     "208 rows; check ssd.anchors (num_layers, aspect_ratios, reduce_boxes_in_lowest_layer) or feature_map_sizes"),
    (True, lambda d: d["ssd"]["anchors"].update(num_layers=2),
     "box encodings 'concat:0' join 3 predictor layers (feature maps 6x8, 3x4, 2x2) but "
     "ssd.anchors.num_layers is 2"),
    (False, lambda d: d["cut"].update(outputs=["nope:0", "concat_1:0"]), "cut tensor 'nope:0' is not in the model"),
    (False, lambda d: d["cut"].update(input="Preprocessor/sub"), "cut.input 'Preprocessor/sub' is not a tensor"),
    (False, lambda d: d["cut"].update(outputs=["concat_1:0", "concat:0"]),
     "cut.outputs lists 'concat_1:0' [batch, 256, 4] first, but box encodings"),
]


@pytest.mark.parametrize("reduce_lowest, mutate, message", MISMATCHES)
def test_spec_graph_mismatch_is_one_precise_line(reduce_lowest, mutate, message):
    data = spec_data(reduce_lowest)
    mutate(data)
    spec = spec_from_data(data, "tiny_ssd.yaml", None)
    source, _ = make_model(per_location(reduce_lowest))
    with pytest.raises(ModelError) as err:
        surgery.transform(source, spec, "host")
    text = str(err.value)
    assert "\n" not in text and message in text, text


def test_ambiguous_model_outputs_ask_for_cut_outputs():
    data = spec_data(True)
    data["cut"] = {"input": "Preprocessor/sub:0"}
    spec = spec_from_data(data, "tiny_ssd.yaml", None)
    source, _ = make_model(per_location(True))  # outputs: the stand-in postprocessor's boxes and scores
    source.graph.output.extend([helper.make_tensor_value_info("concat:0", TensorProto.FLOAT, None)])
    with pytest.raises(ModelError) as err:
        surgery.transform(source, spec, "host")
    assert "the model has 3 outputs" in str(err.value) and "cut.outputs" in str(err.value)
    # [B, N, 4] boxes next to [B, N, 3 + 1] scores: either could be the boxes
    source, _ = make_model(per_location(True), box_layout="n4", expose=True)
    with pytest.raises(ModelError) as err:
        surgery.transform(source, spec, "host")
    assert "cannot tell which of the model's outputs concat:0 [batch, 208, 4] and concat_1:0" in str(err.value)


# --------------------------------------------------------------------------- TensorRT for RTX


def test_host_form_builds_with_tensorrt_rtx(tmp_path):
    rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (tensorrt_rtx) is not installed")
    from trtedge.engines.tensorrt_build import BuildOptions, build_engine

    source, _ = make_model(per_location(True))
    engine, _ = surgery.transform(source, spec_from_data(spec_data(True), "tiny_ssd.yaml", None), "host")
    path = tmp_path / "tiny_ssd_host.onnx"
    onnx.save(engine, str(path))
    result = build_engine(str(path), BuildOptions(), trt=rtx)
    assert result.plan.startswith(b"vtrt")
