"""TensorFlow sources through tf2onnx: SavedModel, frozen graph and Keras file.

One tiny SSD-shaped Keras model (random, seeded weights) is saved three ways:
a SavedModel whose signature takes a dynamic-size image (the converter fixes
height/width from the spec), a frozen GraphDef (``convert_variables_to_constants_v2``)
with a TF-side preprocessor (uint8 input, cast, resize) in front of
``preprocessed:0``, and a ``.keras`` file. Each is converted and built to the
``host`` NMS form with TensorRT for RTX. Heads: box encodings ``[B, N, 4]`` and
class logits ``[B, N, 3]`` (background + 2 labels) on 8x8 and 4x4 maps with
2 anchors per location (N = 160), matching the spec written here.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

tf = pytest.importorskip("tensorflow", reason="TensorFlow sources need tensorflow (pip install \"trtedge[tf]\")")
pytest.importorskip("tf2onnx", reason="TensorFlow sources need tf2onnx (pip install \"trtedge[tf]\")")

import cli  # noqa: E402
import trtedge  # noqa: E402
from trtedge.engines import sources, tf_source  # noqa: E402
from trtedge.errors import ModelError, TrtedgeError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 + NumPy 2 noise

SIZE = 64
LABELS = ["a", "b"]
ANCHORS_PER_LOCATION = 2
NUM_ANCHORS = (8 * 8 + 4 * 4) * ANCHORS_PER_LOCATION


def needs_rtx():
    return pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds engines")


def tiny_model(height=SIZE, width=SIZE):
    """NHWC float RGB 0..255 -> (box encodings [B, 160, 4], class logits [B, 160, 3])."""
    keras = tf.keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    image = keras.Input((height, width, 3), name="image")
    x = L.Rescaling(1.0 / 255.0)(image)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    f0 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)   # 8x8
    f1 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(f0)  # 4x4
    boxes, logits = [], []
    for i, f in enumerate((f0, f1)):
        boxes.append(L.Reshape((-1, 4))(L.Conv2D(ANCHORS_PER_LOCATION * 4, 3, padding="same",
                                                 name="box_{}".format(i))(f)))
        logits.append(L.Reshape((-1, len(LABELS) + 1))(L.Conv2D(ANCHORS_PER_LOCATION * (len(LABELS) + 1), 3,
                                                                padding="same", name="cls_{}".format(i))(f)))
    box = L.Concatenate(axis=1, name="box_encodings")(boxes)
    cls = L.Concatenate(axis=1, name="class_predictions")(logits)
    return keras.Model(image, [box, cls], name="tiny_ssd")


def write_spec(directory, name, fmt, file, **extra):
    data = {
        "name": name,
        "family": "ssd",
        "source": {"format": fmt, "file": file},
        "input": {"size": [SIZE, SIZE], "channels": "rgb", "layout": "nhwc", "normalize": {"scale": 1.0},
                  "resize": "letterbox"},
        "labels": LABELS,
        "ssd": {"anchors": {"num_layers": 2, "scales": [0.2, 0.5], "aspect_ratios": [1.0],
                            "interpolated_scale_aspect_ratio": 1.0, "reduce_boxes_in_lowest_layer": False},
                "score_activation": "softmax"},
        "nms": {"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 20},
    }
    for key, value in extra.items():
        data[key] = value
    path = os.path.join(str(directory), name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The tiny model as SavedModel, frozen graph and Keras file, with a spec for each."""
    d = tmp_path_factory.mktemp("tf_sources")
    model = tiny_model()
    files = {}

    # SavedModel: dynamic height/width in the signature
    class Serving(tf.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="input_tensor")])
        def serve(self, input_tensor):
            box, cls = self.net(input_tensor, training=False)
            return {"box_encodings": box, "class_predictions": cls}

    serving = Serving(model)
    tf.saved_model.save(serving, str(d / "tiny_saved"), signatures={"serving_default": serving.serve})
    files["savedmodel"] = write_spec(d, "tiny_saved", "savedmodel", "tiny_saved",
                                     cut={"outputs": ["box_encodings", "class_predictions"]})

    # frozen graph: uint8 image_tensor -> TF preprocessing -> preprocessed:0 -> model
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image_tensor")])
    def detect(image_tensor):
        x = tf.image.resize(tf.cast(image_tensor, tf.float32), (SIZE, SIZE))
        x = tf.identity(x, name="preprocessed")
        box, cls = model(x, training=False)
        return tf.identity(box, name="box_encodings"), tf.identity(cls, name="class_predictions")

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(detect.get_concrete_function())
    with open(str(d / "tiny_frozen.pb"), "wb") as f:
        f.write(frozen.graph.as_graph_def().SerializeToString())
    outs = [t.name for t in frozen.outputs]
    files["frozen_graph"] = write_spec(d, "tiny_frozen", "frozen_graph", "tiny_frozen.pb",
                                       source={"format": "frozen_graph", "file": "tiny_frozen.pb",
                                               "input": "image_tensor:0"},
                                       cut={"input": "preprocessed:0", "outputs": outs})
    files["frozen_outputs"] = outs

    # Keras file
    model.save(str(d / "tiny.keras"))
    files["keras"] = write_spec(d, "tiny_keras", "keras", "tiny.keras")
    files["dir"] = d
    return files


def check_build(made, fmt, tmp_path):
    needs_rtx()
    art = trtedge.build(made[fmt], out=str(tmp_path / "out"), nms="host")
    with open(art.engine, "rb") as f:
        plan = f.read()
    assert plan[:4] == b"vtrt" and len(plan) > 1000
    with open(art.manifest) as f:
        m = json.load(f)
    assert m["source"]["format"] == fmt
    assert m["family"] == "ssd" and m["nms"]["form"] == "host" and m["labels"] == LABELS
    assert m["input"]["shape"][1:] == [SIZE, SIZE, 3] and m["input"]["dtype"] == "uint8"
    assert [o["name"] for o in m["outputs"]] == ["candidate_boxes", "candidate_scores", "candidate_classes"]
    return m


def test_savedmodel_converts_with_signature_names_and_fixed_size(made):
    from trtedge.specs import load_spec

    spec = load_spec(made["savedmodel"])
    model = sources.load(sources.locate(spec), spec)
    assert model.ir_version <= 8
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = model.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input_tensor" and dims[1:] == [SIZE, SIZE, 3] and isinstance(dims[0], str)
    assert [o.name for o in model.graph.output] == ["box_encodings", "class_predictions"]
    # every other tensor keeps TF's name with its output index
    assert any(n.output and n.output[0].endswith(":0") for n in model.graph.node)


def test_savedmodel_builds(made, tmp_path):
    check_build(made, "savedmodel", tmp_path)


def test_frozen_graph_is_cut_at_cut_input_and_builds(made, tmp_path):
    from trtedge.specs import load_spec

    spec = load_spec(made["frozen_graph"])
    model = sources.load(sources.locate(spec), spec)
    # TF's preprocessing (uint8 input, cast, resize) is not converted at all
    assert [i.name for i in model.graph.input] == ["preprocessed:0"]
    assert [o.name for o in model.graph.output] == made["frozen_outputs"]
    assert not any(n.op_type == "Resize" for n in model.graph.node)
    check_build(made, "frozen_graph", tmp_path)


def test_keras_file_builds(made, tmp_path):
    m = check_build(made, "keras", tmp_path)
    assert m["source"]["path"].endswith("tiny.keras")


def test_verbose_keeps_the_conversion_log(made, tmp_path):
    quiet = cli.run("build", made["keras"], "--onnx-only", "--nms", "onnx", "--out", tmp_path / "q")
    assert quiet.returncode == 0, quiet.stderr
    loud = cli.run("-v", "build", made["keras"], "--onnx-only", "--nms", "onnx", "--out", tmp_path / "v")
    assert loud.returncode == 0, loud.stderr
    assert "tf2onnx" in loud.stderr and "Using opset <onnx, 17>" in loud.stderr
    assert "tf2onnx" not in quiet.stderr and "opset" not in quiet.stderr, quiet.stderr
    # the wait is announced before TensorFlow loads, and the end names the files written
    said = (quiet.stdout + quiet.stderr).splitlines()
    converting = [k for k, line in enumerate(said) if line.startswith("Converting the TensorFlow keras")]
    wrote = [k for k, line in enumerate(said) if line.startswith("Wrote ") and "(--onnx-only)" in line]
    assert converting and wrote and converting[0] < wrote[-1], said
    assert str(tmp_path / "q") in said[wrote[-1]]


def test_pb_that_is_not_a_graph_def(tmp_path):
    bad = tmp_path / "broken.pb"
    bad.write_bytes(b"\x00\x01 this is not a GraphDef \xff\xfe" * 50)
    proc = cli.run("build", bad, "--out", tmp_path / "out")
    cli.assert_one_line_error(proc, 2, "not a TensorFlow GraphDef")


def test_savedmodel_dir_without_saved_model_pb(tmp_path):
    d = tmp_path / "empty_saved"
    (d / "variables").mkdir(parents=True)
    spec = write_spec(tmp_path, "empty_saved", "savedmodel", "empty_saved")
    proc = cli.run("build", spec, "--out", tmp_path / "out")
    cli.assert_one_line_error(proc, 2, "empty_saved is a directory")
    proc = cli.run("build", d, "--out", tmp_path / "out")
    cli.assert_one_line_error(proc, 2, "saved_model.pb")


def test_unconvertible_op_is_named(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def f(x):
        return tf.identity(tf.math.lgamma(x + 1.0) * 2.0, name="out")

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    path = tmp_path / "lgamma.pb"
    path.write_bytes(convert_variables_to_constants_v2(f.get_concrete_function()).graph.as_graph_def()
                     .SerializeToString())
    with pytest.raises(ModelError) as exc:
        sources.load(str(path))
    assert "Lgamma" in str(exc.value) and "\n" not in str(exc.value)


def test_cut_tensor_missing_is_one_line(made):
    from trtedge.specs.loader import spec_from_data

    spec = spec_from_data({"name": "x", "family": "ssd", "input": {"size": SIZE, "layout": "nhwc"}, "labels": LABELS,
                           "cut": {"outputs": ["box_encodings", "Identity"]}}, "<test>", None)
    with pytest.raises(ModelError) as exc:
        sources.load(str(made["dir"] / "tiny_frozen.pb"), spec)
    assert "cut.outputs 'box_encodings'" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_tf2onnx_says_how_to_install(monkeypatch, made):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(TrtedgeError) as exc:
        tf_source.convert(str(made["dir"] / "tiny.keras"), "keras", None)
    assert 'pip install "trtedge[tf]"' in str(exc.value)


def test_converted_heads_match_tensorflow(made):
    """The ONNX from the Keras file gives TF's numbers (ONNX Runtime)."""
    ort = pytest.importorskip("onnxruntime")
    model = sources.load(str(made["dir"] / "tiny.keras"))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    box, cls = sess.run(["box_encodings", "class_predictions"], {sess.get_inputs()[0].name: x})
    keras_model = tf.keras.models.load_model(str(made["dir"] / "tiny.keras"), compile=False)
    want_box, want_cls = keras_model(x, training=False)
    assert box.shape == (2, NUM_ANCHORS, 4) and cls.shape == (2, NUM_ANCHORS, len(LABELS) + 1)
    np.testing.assert_allclose(box, want_box.numpy(), atol=1e-4)
    np.testing.assert_allclose(cls, want_cls.numpy(), atol=1e-4)
