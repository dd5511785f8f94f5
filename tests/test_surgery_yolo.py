"""The YOLO engine ONNX in ONNX Runtime against NumPy reference decoders + NMS,
for every head kind and every NMS form (``plugin`` through its node swap)."""

import numpy as np
import onnx
import pytest

import models
import reference as ref
from trtedge.engines import nms as nms_mod
from trtedge.engines import surgery
from trtedge.errors import ModelError
from trtedge.specs.loader import spec_from_data, spec_from_dict

ort = pytest.importorskip("onnxruntime")


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _images(n=2, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, models.SIZE, models.SIZE, 3), dtype=np.uint8)


def _reference(kind, source, images, spec):
    raw = _session(source).run(None, {"x": models.reference_input(images)})
    names = [o.name for o in source.graph.output]
    by_name = dict(zip(names, raw))
    c = spec.num_classes
    per_image = []
    for i in range(len(images)):
        if kind == "anchor_free":
            boxes, scores = ref.decode_anchor_free(by_name["output0"][i], c)
        elif kind == "decoded":
            boxes, scores = ref.decode_v5(by_name["output"][i], c)
        else:
            heads = [by_name["head{}".format(s)][i] for s in models.STRIDES]
            anchors = [models.ANCHORS[s] for s in models.STRIDES]
            boxes, scores = ref.decode_darknet(heads, models.STRIDES, anchors, models.SCALE_X_Y, c)
        per_image.append((boxes, scores))
    return per_image


@pytest.mark.parametrize("form", ["onnx", "plugin", "host"])
@pytest.mark.parametrize("kind", sorted(models.KINDS))
def test_engine_onnx_matches_reference(kind, form):
    source = models.make(kind)
    spec = spec_from_data(models.spec(kind), "tiny.yaml", None)
    engine, notes = surgery.transform(source, spec, form)
    if kind == "raw":
        assert any("matched to strides" in n for n in notes)
    assert [i.name for i in engine.graph.input] == ["images"]
    assert surgery.nms_form_of(engine) == form
    if form == "plugin":
        node = [n for n in engine.graph.node if n.op_type == "EfficientNMS_TRT"][0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["max_output_boxes"] == 20 and attrs["background_class"] == -1
        assert attrs["score_threshold"] == pytest.approx(0.3) and attrs["iou_threshold"] == pytest.approx(0.5)
        assert attrs["box_coding"] == 0 and attrs["score_activation"] == 0
        engine = nms_mod.swap_plugin_for_onnx(engine)
        assert not nms_mod.has_plugin(engine)
    onnx.checker.check_model(engine)
    images = _images()
    outs = dict(zip([o.name for o in engine.graph.output], _session(engine).run(None, {"images": images})))
    expected = _reference(kind, source, images, spec)
    for i, (boxes, scores) in enumerate(expected):
        if form == "host":
            flat = scores.reshape(-1)
            top = np.argsort(-flat, kind="stable")[: outs["candidate_scores"].shape[1]]
            np.testing.assert_allclose(outs["candidate_scores"][i], flat[top], rtol=1e-4, atol=1e-5)
            got_cls = outs["candidate_classes"][i]
            assert outs["candidate_classes"].dtype == np.int32
            want = ref.nms(boxes, scores, 0.3, 0.5, 100, 20)
            mine = ref.nms(outs["candidate_boxes"][i], np.eye(3, dtype=np.float32)[got_cls]
                           * outs["candidate_scores"][i][:, None], 0.3, 0.5, 100, 20)
            ref.same_detections(mine, want)
        else:
            n = int(outs["num_detections"][i, 0])
            assert outs["num_detections"].dtype == np.int32 and outs["detection_classes"].dtype == np.int32
            want = ref.nms(boxes, scores, 0.3, 0.5, 20, 20)
            assert n > 0, "the test model should give detections"
            got = (outs["detection_boxes"][i, :n], outs["detection_scores"][i, :n], outs["detection_classes"][i, :n])
            ref.same_detections(got, want)
            assert np.all(outs["detection_scores"][i, n:] == 0)


def test_preprocessing_swaps_channels_and_normalises():
    """uint8 BGR NHWC in -> the model sees RGB NCHW / 255 (checked through an Identity head)."""
    source = models.make("anchor_free")
    spec = spec_from_data(models.spec("anchor_free"), "tiny.yaml", None)
    graph = surgery._import(source)
    heads = surgery.check_fit(graph, spec)
    x, _ = surgery.cut(graph, spec, heads)
    surgery.add_preprocessing(graph, spec, x)
    graph.outputs = [x]
    import onnx_graphsurgeon as gs

    model = gs.export_onnx(graph.cleanup())
    images = _images(1)
    (got,) = _session(model).run(None, {"images": images})
    np.testing.assert_allclose(got, models.reference_input(images), rtol=1e-6)


MISMATCHES = [
    ("anchor_free", lambda d: d.update(labels=["a", "b"]), "predicts 3 classes but the spec lists 2 labels"),
    ("anchor_free", lambda d: d["yolo"].update(strides=[8, 16, 64]), "84 boxes but input 64x64 with strides"),
    ("anchor_free", lambda d: d.update(cut={"outputs": ["nope"]}), "cut tensor 'nope' is not in the model"),
    ("anchor_free", lambda d: d["input"].update(size=[64, 96]), "width 64 but the spec's input.size says 96"),
    ("decoded", lambda d: d.update(labels=["a", "b", "c", "d"]), "predicts 3 classes but the spec lists 4"),
    ("raw", lambda d: d.update(labels=["a"] * 80), "predicts 3 classes but the spec lists 80 labels"),
    ("raw", lambda d: d["yolo"].update(strides=[8, 16, 64]), "no head has the 1x1 grid that stride 64 gives"),
    ("raw", lambda d: d.update(cut={"outputs": ["head8", "head16", "nope"]}), "cut tensor 'nope' is not in"),
    ("raw", lambda d: d["yolo"].update(anchors=[[1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]]),
     "head 'head8' has 24 channels; 2 anchors x (5 + 3 classes) = 16 expected"),
]


@pytest.mark.parametrize("kind, mutate, message", MISMATCHES)
def test_spec_graph_mismatch_is_one_precise_line(kind, mutate, message):
    data = models.spec(kind)
    mutate(data)
    spec = spec_from_data(data, "tiny.yaml", None)
    with pytest.raises(ModelError) as err:
        surgery.transform(models.make(kind), spec, "host")
    text = str(err.value)
    assert "\n" not in text and message in text


def test_head_order_and_class_count_raw():
    data = models.spec("raw")
    data["cut"] = {"outputs": ["head8", "head16", "head32"]}
    spec = spec_from_data(data, "tiny.yaml", None)
    _, notes = surgery.transform(models.make("raw"), spec, "host")
    assert not any("matched" in n for n in notes)  # given in stride order: nothing to say


def test_metadata_round_trip():
    source = models.make("decoded")
    spec = spec_from_data(models.spec("decoded"), "tiny.yaml", None)
    engine, _ = surgery.transform(source, spec, "onnx")
    surgery.set_metadata(engine, {"spec": spec.to_dict(), "nms": "onnx"})
    meta = surgery.get_metadata(onnx.ModelProto.FromString(engine.SerializeToString()))
    again = spec_from_dict(meta["spec"])
    assert again.to_dict() == spec.to_dict() and meta["nms"] == "onnx"
