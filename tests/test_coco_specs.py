"""The built-in COCO YOLO specs against models with the exact head shapes and
output names of each published export (random weights): the spec and the
graph fit, and TensorRT for RTX builds the engine (``host`` NMS form)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cli
from trtedge.engines import surgery
from trtedge.specs import list_specs, load_spec

TEN = {"shapes_yolo", "shapes_ssd", "ssd_mobilenet_v1_coco", "ssd_mobilenet_v2_coco", "ssd_inception_v2_coco",
       "yolov3", "yolov4", "yolov4-tiny", "yolov5s", "yolov8n"}


def _conv(nodes, inits, rng, x, name, cout, stride):
    w = (rng.normal(size=(cout, 3, stride, stride)) * 0.05).astype(np.float32)
    inits.append(numpy_helper.from_array(w, name + "_w"))
    nodes.append(helper.make_node("Conv", [x, name + "_w"], [name], strides=[stride, stride]))
    return name


def exported_like(spec, seed=0):
    """A model shaped like the published export the spec names."""
    rng = np.random.default_rng(seed)
    size = spec.input.height
    c = spec.num_classes
    nodes, inits, outputs = [], [], []
    x = spec.source.input or "images"
    y = spec.yolo
    if y.head == "raw":
        for name, stride in zip(spec.cut.outputs, y.strides):
            _conv(nodes, inits, rng, x, name, 3 * (5 + c), stride)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3 * (5 + c), size // stride,
                                                                                   size // stride]))
    else:
        rows = 4 + c + (1 if y.head == "decoded" else 0)
        parts = []
        for stride in y.strides:
            g = size // stride
            if y.head == "decoded":  # [1, 3*85, g, g] -> [1, 3*g*g, 85]
                conv = _conv(nodes, inits, rng, x, "p{}".format(stride), 3 * rows, stride)
                inits.append(numpy_helper.from_array(np.array([1, 3, rows, g * g], np.int64), conv + "_s1"))
                nodes.append(helper.make_node("Reshape", [conv, conv + "_s1"], [conv + "_r"]))
                nodes.append(helper.make_node("Transpose", [conv + "_r"], [conv + "_t"], perm=[0, 1, 3, 2]))
                inits.append(numpy_helper.from_array(np.array([1, -1, rows], np.int64), conv + "_s2"))
                nodes.append(helper.make_node("Reshape", [conv + "_t", conv + "_s2"], [conv + "_f"]))
            else:  # [1, 84, g, g] -> [1, 84, g*g]
                conv = _conv(nodes, inits, rng, x, "p{}".format(stride), rows, stride)
                inits.append(numpy_helper.from_array(np.array([1, rows, -1], np.int64), conv + "_s"))
                nodes.append(helper.make_node("Reshape", [conv, conv + "_s"], [conv + "_f"]))
            parts.append(conv + "_f")
        nodes.append(helper.make_node("Concat", parts, ["cat"], axis=1 if y.head == "decoded" else 2))
        nodes.append(helper.make_node("Sigmoid", ["cat"], ["output0"]))
        n = sum((size // s) ** 2 for s in y.strides) * (3 if y.head == "decoded" else 1)
        shape = [1, n, rows] if y.head == "decoded" else [1, rows, n]
        outputs.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, spec.name, [helper.make_tensor_value_info(x, TensorProto.FLOAT,
                                                                               [1, 3, size, size])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_ten_builtin_specs():
    assert set(list_specs()) >= TEN - {"shapes_ssd"}  # shapes_ssd arrives with its SavedModel
    proc = cli.run("specs")
    assert proc.returncode == 0
    for name in TEN & set(list_specs()):
        assert name in proc.stdout


EXPECTED = {  # published head shapes
    "yolov3": [[1, 255, 13, 13], [1, 255, 26, 26], [1, 255, 52, 52]],
    "yolov4": [[1, 255, 52, 52], [1, 255, 26, 26], [1, 255, 13, 13]],
    "yolov4-tiny": [[1, 255, 13, 13], [1, 255, 26, 26]],
    "yolov5s": [[1, 25200, 85]],
    "yolov8n": [[1, 84, 8400]],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_fits_export_and_builds(name, tmp_path):
    spec = load_spec(name)
    assert spec.num_classes == 80 and spec.labels[0] == "person" and spec.source.url
    model = exported_like(spec)
    assert [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output] == EXPECTED[name]
    engine, notes = surgery.transform(model, spec, "onnx")
    assert [o.name for o in engine.graph.output][:1] == ["num_detections"]
    path = tmp_path / (spec.source.file if spec.source.file.endswith(".onnx") else spec.name + ".onnx")
    onnx.save(model, str(path))  # darknet specs take an ONNX export with --model too
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")
    proc = cli.run("build", name, "--model", path, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    plan = (tmp_path / "out" / "{}_fp32.bin".format(name)).read_bytes()
    assert plan[:4] == b"vtrt"


def test_wrong_class_count_for_a_coco_spec(tmp_path):
    spec = load_spec("yolov4")
    data = spec.to_dict()
    data["labels"] = data["labels"][:20]
    from trtedge.specs import spec_from_dict

    bad = spec_from_dict(data)
    from trtedge.errors import ModelError

    with pytest.raises(ModelError, match="the model predicts 80 classes but the spec lists 20 labels"):
        surgery.transform(exported_like(spec), bad, "host")


def test_ssdlite_is_ssd_mobilenet_v2_with_its_own_release():
    """SSDLite's depthwise layers change neither anchors, box coder, scores, input nor NMS."""
    lite, v2 = load_spec("ssdlite_mobilenet_v2_coco").to_dict(), load_spec("ssd_mobilenet_v2_coco").to_dict()
    for key in ("name", "description", "source"):
        assert lite.pop(key) != v2.pop(key)
    assert lite == v2
    assert "ssdlite_mobilenet_v2_coco_2018_05_09" in load_spec("ssdlite_mobilenet_v2_coco").source.url
