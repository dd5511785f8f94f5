"""``trtedge inspect``: TensorRT's parser on what a build would give it, before any build; an engine's
manifest; ``trtedge specs --show``.

The parser is TensorRT for RTX's, for real (skipped where it is not installed).
Custom-domain ops are what it rejects at parse time ("Plugin not found");
NonMaxSuppression parses and fails only at build, which inspect says.
"""

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cli
import models

pytest.importorskip("tensorrt_rtx", reason="inspect runs TensorRT's parser: TensorRT for RTX (pip install tensorrt-rtx)")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 + NumPy 2 noise


def _model(nodes, inputs, outputs, inits=(), domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


@pytest.fixture(scope="module")
def custom_ops(tmp_path_factory):
    """Relu, Foo, Relu, Foo, Bar: two custom ops TensorRT has no importer or plugin for."""
    path = tmp_path_factory.mktemp("custom") / "custom.onnx"
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu1"),
             helper.make_node("Foo", ["a"], ["b"], name="foo1", domain="com.example"),
             helper.make_node("Relu", ["b"], ["c"], name="relu2"),
             helper.make_node("Foo", ["c"], ["d"], name="foo2", domain="com.example"),
             helper.make_node("Bar", ["d"], ["y"], name="bar1", domain="com.example")]
    onnx.save(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], domains=["com.example"]),
              str(path))
    return path


def test_names_every_rejected_node_grouped_by_op(custom_ops):
    proc = cli.run("inspect", custom_ops)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "{}: the engine ONNX `trtedge build {}` makes".format(custom_ops, custom_ops)
    assert lines[1].startswith("nodes: 5 of 3 op types; parsed by tensorrt_rtx 1.7")
    assert lines[2] == "ops: Foo 2, Relu 2, Bar 1"
    assert lines[3] == "rejected by the TensorRT parser (3 nodes, 2 ops):"
    assert lines[4].split()[:4] == ["Foo", "2", "foo1,", "foo2:"] and "Plugin not found" in lines[4]
    assert lines[5].split()[:3] == ["Bar", "1", "bar1:"]
    assert lines[-1].startswith("inspect: TensorRT (tensorrt_rtx 1.7")
    assert lines[-1].endswith("rejects 3 of the 5 nodes of {}: Foo 2, Bar 1".format(custom_ops))


def test_json_report(custom_ops):
    proc = cli.run("inspect", custom_ops, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rejected_nodes"] == 3 and report["nodes"] == 5 and report["parsed"] is False
    assert [(g["op"], g["count"], g["nodes"]) for g in report["rejected"]] == [
        ("Foo", 2, ["foo1", "foo2"]), ("Bar", 1, ["bar1"])]
    assert report["ops"] == {"Foo": 2, "Relu": 2, "Bar": 1}
    assert report["tensorrt"]["module"] == "tensorrt_rtx"


def test_nms_parses_and_inspect_says_the_build_will_refuse_it(tmp_path):
    inits = [numpy_helper.from_array(np.array([10], np.int64), "k"),
             numpy_helper.from_array(np.array([0.5], np.float32), "iou")]
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "k", "iou"], ["selected"], name="nms")
    path = tmp_path / "nms.onnx"
    onnx.save(_model([node], [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4]),
                              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 100])],
                     [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])], inits), str(path))
    proc = cli.run("inspect", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rejected by the TensorRT parser: none" in proc.stdout
    assert "note: 1 NonMaxSuppression node parse, but TensorRT for RTX cannot build it" in proc.stdout
    assert "inspect parses, it does not build" in proc.stdout


def test_shapes_yolo_has_nothing_rejected():
    proc = cli.run("inspect", "shapes_yolo")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    nodes = int(lines[1].split()[1])
    assert nodes > 100 and "Conv" in lines[2]
    assert lines[-1].endswith("rejects none of the {} nodes of shapes_yolo".format(nodes))
    # the engine ONNX, not the source: its decode ends in the host NMS form's TopK
    assert "TopK" in json.loads(cli.run("inspect", "shapes_yolo", "--json").stdout)["ops"]


def test_raw_on_a_keras_model(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="a Keras model needs TensorFlow")
    pytest.importorskip("tf2onnx", reason="converting it needs tf2onnx")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    out = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "tiny.keras"
    keras.Model(inp, out).save(str(path))
    proc = cli.run("inspect", path, "--raw", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["graph"] == "the source model as ONNX, as it is (--raw)"
    assert report["ops"]["Conv"] == 1 and report["ops"]["Transpose"] == 1  # tf2onnx's NHWC -> NCHW, as it is
    assert report["rejected"] == [] and report["parsed"] is True


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    onnx.save(models.make("anchor_free"), str(d / "tiny.onnx"))
    proc = cli.run("build", d / "tiny.onnx", "--family", "none", "--out", d / "out", "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    return d / "out" / "tiny_fp32_b2.bin"


def test_engine_file_prints_its_manifest_and_io(engine):
    proc = cli.run("inspect", engine)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0] == "{} (manifest {})".format(engine, str(engine)[:-4] + ".json")
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ")}
    assert rows["name"].split()[1] == "tiny" and rows["family"].split()[1] == "none"
    assert "1..2 (optimised for 2)" in rows["batch"] and "tensorrt_rtx" in rows["TensorRT"]
    assert "matches the manifest (size and sha256)" in out
    io = out.split("\nI/O\n", 1)[1].splitlines()
    assert io[0].split() == ["in", "x", "float32", "[batch,", "3,", "64,", "64]"]
    assert io[1].split()[:3] == ["out", "output0", "float32"]


def test_engine_file_json_and_a_replaced_engine(engine, tmp_path):
    data = json.loads(cli.run("inspect", engine, "--json").stdout)
    assert data["data"]["name"] == "tiny" and data["data"]["engine"]["file"] == "tiny_fp32_b2.bin"
    copy = tmp_path / "tiny_fp32_b2.bin"
    copy.write_bytes(engine.read_bytes()[:-10])
    (tmp_path / "tiny_fp32_b2.json").write_bytes((engine.parent / "tiny_fp32_b2.json").read_bytes())
    proc = cli.run("inspect", copy)
    assert proc.returncode == 0 and "truncated or replaced" in proc.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path, engine):
    cli.assert_one_line_error(cli.run("inspect", tmp_path / "none.bin"), 2, "does not exist")
    lonely = tmp_path / "lonely.plan"
    lonely.write_bytes(b"vtrt")
    cli.assert_one_line_error(cli.run("inspect", lonely), 2, "no manifest beside")
    cli.assert_one_line_error(cli.run("inspect", engine, "--raw"), 2, "--raw goes with a spec or a model")
    cli.assert_one_line_error(cli.run("inspect", "no_such_spec"), 2, "not a built-in spec")


def test_specs_show_prints_the_yaml_verbatim():
    proc = cli.run("specs", "--show", "yolov4")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(cli.ROOT, "trtedge", "specs", "yolov4.yaml"), encoding="utf-8") as f:
        assert proc.stdout == f.read()
    cli.assert_one_line_error(cli.run("specs", "--show", "yolov9"), 2, "'yolov9' is not a built-in spec; built-in specs:")
