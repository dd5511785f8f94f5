"""TF Object Detection API SSDs as users have them: TF1 ``frozen_inference_graph.pb``
files and a TF2 SavedModel with the model zoo's exact structure, each with its
``pipeline.config`` beside it.

The graphs are made by the API's own ``model_builder`` and exporters
(``tests/odapi_fixtures.py``, 300x300, 90 classes, random weights), one for
each of trtedge's built-in TF1 COCO SSD specs: SSD MobileNet v2
(``ssd_mobilenet_v2_coco``, kind tf1), SSD MobileNet v1
(``ssd_mobilenet_v1_coco``, tf1_v1), SSDLite MobileNet v2
(``ssdlite_mobilenet_v2_coco``, tf1_lite) and SSD Inception v2
(``ssd_inception_v2_coco``, tf1_inception), plus SSD MobileNet v2 as a TF2
SavedModel (tf2). Each is exported in its own subprocess (TF1 graph mode and
TF2 cannot share one), two at a time, and cached under pytest's cache
directory keyed by the script's hash: a clean checkout (CI) makes them once
per run, in about 100 s on two cores.

Each TF1 graph is built with its built-in spec, unchanged (tf1 with
``build_engine.py``, the others with ``trtedge build SPEC --model
frozen_inference_graph.pb``; two at a time), the SavedModel with a spec made
of its pipeline.config. Per model:

* **Structure and cut.** The graph has the zoo's uint8 input, preprocessor
  loop, BatchMultiClassNonMaxSuppression and its own extractor and heads;
  ``odapi_cut`` finds the model body, the build logs the cut with its counts
  (and a ``Note:`` line), and no node of TF's pre- or postprocessing reaches
  the engine ONNX.
* **Anchors.** The spec's anchors equal the graph's own (the anchor
  generator's concat that the Postprocessor reads, ``Concatenate/concat:0``
  in all four TF1 graphs), anchor for anchor.

What is checked, on three real photos (scikit-image's astronaut, coffee and
chelsea, resized to 300x300 and fed to both sides as the same uint8 pixels):

* **Candidates before any threshold.** Random weights make scores that a
  trained model would not have, so the comparison starts below NMS: TF's own
  ``raw_detection_boxes`` / ``raw_detection_scores`` (decoded boxes and
  sigmoid scores of all 1917 anchors x 90 classes, TF's Postprocessor before
  its NMS) against the engine ONNX's ``candidate_*`` outputs in ONNX Runtime:
  the top 300 (anchor, class) pairs by score match one to one (class, score
  within 1e-4, box IoU >= 0.99). This pins anchors, box decode, score
  conversion and the class offset (TF class id k = label k - 1).
* **Detections.** TF's ``detection_*`` outputs (its BatchMultiClassNonMaxSuppression,
  score threshold 1e-8, IoU 0.6, top 100) against trtedge's detections (the
  runtime's host NMS on the engine's candidates): every one of TF's 100
  detections has a trtedge detection of the same class, score within 0.01
  and box IoU >= 0.9. The fixture's weights are scaled so that the top-100
  scores spread over about 0.65-0.95 with clear gaps (see odapi_fixtures.py),
  so which boxes NMS keeps does not hinge on round-off. All the specs here set
  ``ssd.clip_before_nms: false``, TF's order (NMS on unclipped boxes, clipped
  after), and must match all 100; a spec that clipped first may decide a few
  boxes on the image border differently, and the test would allow at most 3
  in 100 of those.
* The TensorRT for RTX build of each cut graph (host NMS form) succeeds and
  makes an RTX engine (``vtrt``); for tf1 and tf2 the same graph from its own
  uint8 input, with TF's preprocessor loop left in, is rejected by the parser.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

import cli  # noqa: E402

_MISSING = [m for m in ("object_detection", "tf_slim", "tf_keras") if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip("the TF Object Detection API is not installed ({} missing): pip install --no-deps -r "
                "requirements-odapi.txt".format(", ".join(_MISSING)), allow_module_level=True)
tf = pytest.importorskip("tensorflow", reason="TensorFlow sources need tensorflow (pip install \"trtedge[tf]\")")
tf2onnx = pytest.importorskip("tf2onnx", reason="TensorFlow sources need tf2onnx (pip install \"trtedge[tf]\")")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX here")
cv2 = pytest.importorskip("cv2", reason="OpenCV resizes the photos: pip install opencv-python-headless")
skdata = pytest.importorskip("skimage.data", reason="the photos come from scikit-image: pip install scikit-image")
trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")

import trtedge  # noqa: E402
from trtedge.engines import tensorrt_build as tb  # noqa: E402
from trtedge.engines import tf_source  # noqa: E402
from trtedge.engines.families import ssd  # noqa: E402
from trtedge.errors import BuildError, ModelError  # noqa: E402
from trtedge.specs import load_spec  # noqa: E402
from trtedge.specs.pipeline_config import read_pipeline_config  # noqa: E402

pytestmark = [pytest.mark.odapi, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "odapi_fixtures.py")
BUILD_ENGINE = os.path.join(cli.ROOT, "build_engine.py")
SIZE = 300
PHOTOS = ("astronaut", "coffee", "chelsea")
TOP_CANDIDATES = 300
#: subprocesses (exports, builds) run at once: the machine has two cores
PARALLEL = 2

#: kind of tests/odapi_fixtures.py -> (trtedge's built-in spec of that model, its feature extractor
#: type, a scope its graph must have: its feature extractor's, SSDLite's depthwise heads), TF1 graphs first
ZOO = {
    "tf1": ("ssd_mobilenet_v2_coco", "ssd_mobilenet_v2", "FeatureExtractor/MobilenetV2/expanded_conv_"),
    "tf1_v1": ("ssd_mobilenet_v1_coco", "ssd_mobilenet_v1", "FeatureExtractor/MobilenetV1/MobilenetV1/"),
    "tf1_lite": ("ssdlite_mobilenet_v2_coco", "ssd_mobilenet_v2", "BoxPredictor_0/ClassPredictor_depthwise/"),
    "tf1_inception": ("ssd_inception_v2_coco", "ssd_inception_v2", "FeatureExtractor/InceptionV2/InceptionV2/"),
    "tf2": (None, "ssd_mobilenet_v2_keras", None),
}
TF1_KINDS = tuple(k for k in ZOO if k.startswith("tf1"))
KINDS = tuple(ZOO)
#: the orders exports and builds start in, the longest first (exports: TF2 about 55 s, Inception v2
#: 40 s, the others 20-35 s; builds: Inception v2 about 50 s, the others about 20 s)
EXPORT_ORDER = ("tf2", "tf1_inception", "tf1_lite", "tf1", "tf1_v1")
BUILD_ORDER = ("tf1_inception", "tf1", "tf1_v1", "tf1_lite")


# --------------------------------------------------------------------------- fixtures


def run_parallel(jobs, env=None, timeout=600):
    """Run ``jobs`` ({name: argv}, started in that order) as subprocesses, PARALLEL at a time;
    {name: CompletedProcess} with a ``seconds`` attribute (its own wall time). Output goes to
    temporary files: a pipe left unread while another job runs could fill and stall its writer."""
    waiting, running, done = list(jobs.items()), {}, {}
    while waiting or running:
        while waiting and len(running) < PARALLEL:
            name, argv = waiting.pop(0)
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            running[name] = (subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env), out, err,
                             time.time())
        time.sleep(0.2)
        for name, (proc, out, err, start) in list(running.items()):
            if proc.poll() is None and time.time() - start < timeout:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.seek(0)
            err.seek(0)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
            done[name].seconds = round(time.time() - start, 1)
            out.close()
            err.close()
            del running[name]
    return done


@pytest.fixture(scope="session")
def zoo(request):
    """{kind: dir} for each kind of ZOO, laid out as the zoo's tarballs (made once, cached)."""
    with open(SCRIPT, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    root = str(request.config.cache.mkdir("odapi-" + key))
    jobs = {}
    for kind in EXPORT_ORDER:
        final = os.path.join(root, kind)
        if os.path.isfile(os.path.join(final, "made.json")):
            continue
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(final + ".partial", ignore_errors=True)
        jobs[kind] = [sys.executable, SCRIPT, kind, final + ".partial"]
    start = time.time()
    for kind, proc in run_parallel(jobs, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).items():
        if proc.returncode != 0:
            pytest.fail("tests/odapi_fixtures.py {} failed (exit {}):\n{}".format(kind, proc.returncode,
                                                                                proc.stderr[-4000:]))
        made = json.loads(proc.stdout.strip().splitlines()[-1])
        made["wall_seconds"] = proc.seconds
        tmp = os.path.join(root, kind + ".partial")
        with open(os.path.join(tmp, "made.json"), "w") as f:
            json.dump(made, f)
        os.replace(tmp, os.path.join(root, kind))
        print("odapi fixture {}: exported in {} s ({} s wall, {} at a time)".format(
            kind, made["seconds"], made["wall_seconds"], PARALLEL))
    if jobs:
        print("odapi fixtures: {} exported in {:.1f} s".format(", ".join(jobs), time.time() - start))
    return {kind: os.path.join(root, kind) for kind in KINDS}


def frozen_graph(zoo, kind="tf1"):
    return os.path.join(zoo[kind], "frozen_inference_graph.pb")


def saved_model(zoo):
    return os.path.join(zoo["tf2"], "saved_model")


def exported(zoo, kind):
    """What the fixture script reported for ``kind`` (its feature map sizes among them)."""
    with open(os.path.join(zoo[kind], "made.json")) as f:
        return json.load(f)


def read_graph_def(path):
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def


@pytest.fixture(scope="module")
def tf1_builds(zoo, tmp_path_factory):
    """kind -> the build of each TF1 graph with its built-in spec (host NMS, as TensorRT for RTX
    builds it), PARALLEL at a time: tf1 with ``python build_engine.py -v ssd_mobilenet_v2_coco --model
    frozen_inference_graph.pb``, the others with ``trtedge build SPEC --model ... -v`` (-v: the cut's log)."""
    jobs, outs = {}, {}
    for kind in BUILD_ORDER:
        spec = ZOO[kind][0]
        outs[kind] = tmp_path_factory.mktemp(kind + "_builtin")
        if kind == "tf1":
            argv, env = cli.command("-v", spec, "--model", frozen_graph(zoo, kind), "--out", outs[kind],
                                    script=BUILD_ENGINE)
        else:
            argv, env = cli.command("build", spec, "--model", frozen_graph(zoo, kind), "--out", outs[kind], "-v")
        jobs[kind] = argv
    builds = {}
    for kind, proc in run_parallel(jobs, env=env).items():
        assert proc.returncode == 0, (kind, proc.stderr[-4000:])
        spec = ZOO[kind][0]
        print("{} {} ({}): {:.1f} s, {} at a time".format(
            "build_engine.py" if kind == "tf1" else "trtedge build", spec, kind, proc.seconds, PARALLEL))
        engine = str(outs[kind] / (spec + "_fp32.bin"))
        builds[kind] = {"kind": kind, "spec": spec, "out": str(outs[kind]), "engine": engine,
                        "onnx": os.path.splitext(engine)[0] + ".onnx", "stderr": proc.stderr, "stdout": proc.stdout}
    return builds


def tf2_spec_file(zoo, directory, name="odapi_tf2", clip_before_nms=False):
    """A spec YAML made from the SavedModel's own pipeline.config (the --pipeline-config mapping)."""
    data = read_pipeline_config(os.path.join(zoo["tf2"], "pipeline.config"), name=name,
                                source={"format": "savedmodel", "file": saved_model(zoo)})
    spec = dict(data.spec)
    spec["ssd"] = dict(spec["ssd"], clip_before_nms=clip_before_nms)
    path = os.path.join(str(directory), name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(spec, f)
    return path


@pytest.fixture(scope="module")
def tf2_build(zoo, tmp_path_factory):
    """The SavedModel, built from a spec of its pipeline.config (no cut given: trtedge finds it)."""
    out = tmp_path_factory.mktemp("tf2_config")
    start = time.time()
    art = trtedge.build(tf2_spec_file(zoo, out), out=str(out), nms="host")
    print("trtedge.build(SavedModel spec from pipeline.config): {:.1f} s".format(time.time() - start))
    return {"out": str(out), "engine": art.engine, "onnx": art.onnx, "manifest": art.data}


@pytest.fixture(scope="module")
def tf2_graph(zoo):
    """(frozen GraphDef, input names) of the SavedModel, as tf2onnx (and so trtedge) loads it."""
    from tf2onnx import tf_loader

    graph_def, inputs, _ = tf_loader.from_saved_model(saved_model(zoo), None, None, tag=["serve"],
                                                      signatures=["serving_default"])
    return graph_def, list(inputs)


def graph_anchors(graph_def):
    """The anchors tensor of a TF1 graph: the concat of the anchor generator's per-layer boxes that the
    Postprocessor decodes against (``Concatenate/concat:0`` in these graphs)."""
    def node_of(tensor):
        return tensor.lstrip("^").split(":")[0]

    nodes = {n.name: n for n in graph_def.node}
    read = {node_of(i) for n in graph_def.node if n.name.startswith("Postprocessor/") for i in n.input}
    found = []
    for n in graph_def.node:
        data = [node_of(i) for i in n.input if not i.startswith("^")]
        data = [d for d in data if nodes[d].op != "Const"]
        if n.op == "ConcatV2" and n.name in read and data and all(d.startswith("MultipleGridAnchorGenerator/")
                                                                   for d in data):
            found.append(n.name + ":0")
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def tf_outputs(zoo):
    """kind -> photo -> the graph's own outputs for that photo (TF runs the exported graph);
    "anchors" -> TF1 kind -> (tensor name, the graph's anchors)."""
    names = ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
             "raw_detection_boxes", "raw_detection_scores")
    got = {kind: {} for kind in KINDS}
    got["anchors"] = {}
    for kind in TF1_KINDS:
        graph_def = read_graph_def(frozen_graph(zoo, kind))
        anchors = graph_anchors(graph_def)
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            for photo in PHOTOS:
                values = sess.run([n + ":0" for n in names], {"image_tensor:0": rgb_photo(photo)[None]})
                got[kind][photo] = dict(zip(names, values))
            got["anchors"][kind] = (anchors, sess.run(anchors))
    serve = tf.saved_model.load(saved_model(zoo)).signatures["serving_default"]
    for photo in PHOTOS:
        out = serve(input_tensor=tf.constant(rgb_photo(photo)[None]))
        got["tf2"][photo] = {n: out[n].numpy() for n in names}
    return got


@pytest.fixture(scope="module")
def built(request):
    """The build of the zoo kind ``request.param`` (parametrize with indirect=True): a TF1 graph with
    its built-in spec (tf1_builds), the SavedModel with a spec of its pipeline.config (tf2_build)."""
    if request.param == "tf2":
        return dict(request.getfixturevalue("tf2_build"), kind="tf2")
    return request.getfixturevalue("tf1_builds")[request.param]


# --------------------------------------------------------------------------- helpers


def rgb_photo(name):
    """A scikit-image photo as 300x300 RGB uint8 (what both sides are fed)."""
    image = getattr(skdata, name)()
    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def tf_pixels(boxes):
    """TF's normalised [ymin, xmin, ymax, xmax] -> x1, y1, x2, y2 input pixels."""
    return np.asarray(boxes, np.float64)[:, [1, 0, 3, 2]] * SIZE


def engine_input(manifest, rgb):
    return rgb[None] if manifest["input"]["channels"] == "rgb" else rgb[None, :, :, ::-1].copy()


def read_manifest(engine):
    with open(os.path.splitext(engine)[0] + ".json") as f:
        return json.load(f)


def match(want, got, score_tol, iou_min):
    """Indices of ``want`` rows (class, score, box) with no ``got`` row of that class, close score and box."""
    used, missing = set(), []
    for i, (c, s, box) in enumerate(want):
        found = None
        for k, (c2, s2, box2) in enumerate(got):
            if k not in used and c2 == c and abs(s2 - s) <= score_tol and iou(box, box2) >= iou_min:
                found = k
                break
        if found is None:
            missing.append(i)
        else:
            used.add(found)
    return missing


def on_border(box, tol=0.5):
    return min(box[0], box[1]) <= tol or max(box[2], box[3]) >= SIZE - tol


# --------------------------------------------------------------------------- the fixtures' structure


@pytest.mark.parametrize("kind", KINDS)
def test_fixtures_have_the_zoo_layout_and_structure(kind, zoo):
    _, extractor, scope = ZOO[kind]
    if kind == "tf2":
        for name in ("pipeline.config", "saved_model/saved_model.pb", "saved_model/variables/variables.index",
                     "checkpoint/checkpoint"):
            assert os.path.isfile(os.path.join(zoo[kind], name)), name
    else:
        for name in ("frozen_inference_graph.pb", "pipeline.config", "model.ckpt.index", "model.ckpt.meta",
                     "saved_model/saved_model.pb"):
            assert os.path.isfile(os.path.join(zoo[kind], name)), name
        ops = {n.name: n.op for n in read_graph_def(frozen_graph(zoo, kind)).node}
        # what TensorRT refuses, as in the zoo's graphs: the uint8 input, the preprocessor's while
        # loop of resizes, the Postprocessor's BatchMultiClassNonMaxSuppression over TensorArrays
        assert ops["image_tensor"] == "Placeholder"
        assert any(n.startswith("Preprocessor/map/while/") for n in ops)
        assert "NonMaxSuppressionV3" in ops.values() or "NonMaxSuppressionV5" in ops.values()
        assert sum(n.startswith("Postprocessor/BatchMultiClassNonMaxSuppression/") for n in ops) > 1000
        for name in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
            assert name in ops
        assert any(n.startswith(scope) for n in ops), scope  # the model's own feature extractor / heads
        # six layers of box and class heads, each ending in a conv whose weights the fixture scaled
        for layer in range(6):
            for head in ("BoxEncodingPredictor", "ClassPredictor"):
                assert "BoxPredictor_{}/{}/weights".format(layer, head) in ops
    # the pipeline.config beside each model reads as the model's spec
    spec = read_pipeline_config(os.path.join(zoo[kind], "pipeline.config")).model_spec()
    assert (spec.input.height, spec.input.width, spec.num_classes) == (SIZE, SIZE, 90)
    assert spec.description.startswith(extractor + " ")


def test_odapi_cut_finds_the_model_body(zoo, tf2_graph):
    """Where the real graphs are cut: not Preprocessor/sub:0 in these newer TF1 exports."""
    for kind in TF1_KINDS:
        assert tf_source.odapi_cut(frozen_graph(zoo, kind)) == tf_source.OdapiCut(
            "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0", ("concat:0", "concat_1:0"), "tf1"), kind
    cut2 = tf_source.odapi_cut(tf2_graph[0])
    assert cut2 == tf_source.OdapiCut("StatefulPartitionedCall/map/TensorArrayV2Stack/TensorListStack:0",
                                      ("StatefulPartitionedCall/concat:0", "StatefulPartitionedCall/concat_1:0"),
                                      "tf2")
    plain = tf.compat.v1.GraphDef()
    node = plain.node.add()
    node.name, node.op = "x", "Placeholder"
    assert tf_source.odapi_cut(plain) is None


@pytest.mark.parametrize("kind", TF1_KINDS)
def test_anchors_are_the_graphs_own(kind, zoo, tf_outputs):
    """The built-in spec's anchors = the graph's MultipleGridAnchorGenerator output, anchor for anchor."""
    spec = load_spec(ZOO[kind][0])
    sizes = [tuple(m) for m in exported(zoo, kind)["feature_maps"]]
    assert sizes == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    ours = ssd.generate_anchors(spec.ssd.anchors, sizes, (SIZE, SIZE)).astype(np.float64)
    corners = np.stack([ours[:, 0] - ours[:, 2] / 2, ours[:, 1] - ours[:, 3] / 2,
                        ours[:, 0] + ours[:, 2] / 2, ours[:, 1] + ours[:, 3] / 2], 1)
    name, theirs = tf_outputs["anchors"][kind]
    print("{}: anchors {} {}".format(kind, name, theirs.shape))
    assert theirs.shape == (1917, 4)
    np.testing.assert_allclose(corners, theirs, atol=2e-6)


@pytest.mark.parametrize("kind", TF1_KINDS)
def test_builtin_spec_is_the_models_pipeline_config(kind, zoo):
    """The built-in spec says what the pipeline.config exported with the graph says (input, labels,
    anchors, box coder, NMS), but for its display threshold and the cut it names."""
    ours = load_spec(ZOO[kind][0]).to_dict()
    theirs = read_pipeline_config(os.path.join(zoo[kind], "pipeline.config")).model_spec().to_dict()
    for key in ("name", "description", "notes", "source"):
        ours.pop(key, None)
        theirs.pop(key, None)
    assert (ours["nms"].pop("score_threshold"), theirs["nms"].pop("score_threshold")) == (0.3, 1e-8)
    assert ours.pop("cut") == {"input": "Preprocessor/sub:0", "outputs": ["concat:0", "concat_1:0"]}
    assert theirs.pop("cut") == {"input": None, "outputs": []}  # found in the graph
    assert ours == theirs


# --------------------------------------------------------------------------- builds


@pytest.mark.parametrize("built", TF1_KINDS, indirect=True)
def test_tf1_builtin_spec_builds(built):
    with open(built["engine"], "rb") as f:
        assert f.read(4) == b"vtrt"  # a TensorRT for RTX engine
    m = read_manifest(built["engine"])
    assert m["name"] == built["spec"] and m["family"] == "ssd" and m["nms"]["form"] == "host"
    assert m["source"]["format"] == "frozen_graph" and len(m["labels"]) == 90
    assert m["input"]["dtype"] == "uint8" and m["input"]["shape"][1:] == [SIZE, SIZE, 3]
    if built["kind"] != "tf1":  # `trtedge build` prints the engine it made
        assert built["stdout"].strip().splitlines()[-1] == built["engine"]


@pytest.mark.parametrize("built", TF1_KINDS, indirect=True)
def test_tf1_cut_is_logged_with_counts(built):
    found = re.search(r"TF Object Detection API graph cut at (\S+) and (\S+), (\S+): cut (\d+) of (\d+) source "
                      r"nodes \((\d+) Preprocessor, (\d+) Postprocessor, (\d+) other\); (\d+) nodes reach TensorRT",
                      built["stderr"])
    assert found, built["stderr"][-3000:]
    print("{}: {}".format(built["kind"], found.group(0)))
    cut_input, box, cls = found.group(1), found.group(2), found.group(3)
    cut, total, pre, post, other, kept = (int(found.group(i)) for i in range(4, 10))
    # the spec's Preprocessor/sub:0 lies before this graph's resize loop: the cut moved to its end
    assert cut_input == "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0"
    assert (box, cls) == ("concat:0", "concat_1:0")
    assert pre + post + other == cut and cut < total and pre >= 50 and post >= 5000
    assert 100 <= kept < total - cut  # ONNX nodes of the model body (TF's BatchNorms fold into convs)


@pytest.mark.parametrize("built", TF1_KINDS, indirect=True)
def test_tf1_cut_counts_are_a_build_note(built):
    assert re.search(r"^Note: cut \d+ of \d+ source nodes .*; \d+ nodes reach TensorRT$", built["stderr"],
                     re.M), built["stderr"][-2000:]


def test_trtedge_build_command_is_the_same_build(zoo, tf1_builds):
    tf1_build = tf1_builds["tf1"]  # made with build_engine.py
    proc = cli.run("build", "ssd_mobilenet_v2_coco", "--model", frozen_graph(zoo), "--out", tf1_build["out"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Up to date: reusing" in proc.stderr and proc.stdout.strip() == tf1_build["engine"]


def test_tf2_spec_from_pipeline_config_builds(tf2_build):
    with open(tf2_build["engine"], "rb") as f:
        assert f.read(4) == b"vtrt"
    m = tf2_build["manifest"]
    assert m["source"]["format"] == "savedmodel" and m["nms"]["form"] == "host" and len(m["labels"]) == 90
    assert m["spec"]["cut"] == {"input": None, "outputs": []}  # the config names no tensors: found in the graph
    assert m["input"]["shape"][1:] == [SIZE, SIZE, 3]


@pytest.mark.parametrize("built", KINDS, indirect=True)
def test_nothing_of_tfs_pre_or_postprocessing_reaches_tensorrt(built):
    import onnx

    model = onnx.load(built["onnx"])
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Loop", "If", "Scan", "NonMaxSuppression", "Resize", "NonZero"}, ops
    tf_scopes = ("Preprocessor", "Postprocessor", "map/while")
    assert not [n.name for n in model.graph.node if any(s in n.name for s in tf_scopes)]
    # the one such tensor name is where trtedge's own preprocessing feeds the model body (the spec's cut.input)
    fed = [(n.op_type, o) for n in model.graph.node for o in n.output if any(s in o for s in tf_scopes)]
    assert fed in ([], [("Add", "Preprocessor/sub:0")]), fed
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["candidate_boxes", "candidate_scores", "candidate_classes"]


def raw_graph(zoo, kind, tf2_graph):
    """The graph from its own uint8 image input to the box predictor, TF's preprocessor included
    (tf2onnx on the Postprocessor as well would take minutes here; the parser stops earlier)."""
    if kind == "tf1":
        graph_def, inputs = read_graph_def(frozen_graph(zoo)), ["image_tensor:0"]
    else:
        graph_def, inputs = tf2_graph
    cut = tf_source.odapi_cut(graph_def)
    model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=list(inputs), output_names=list(cut.outputs),
                                              opset=17)
    return model


@pytest.mark.parametrize("built, refusal", [
    ("tf1", "TensorRT cannot infer the shape of scan output Preprocessor/map/while/"),
    ("tf2", "Found unsupported input type of UINT8"),
], indirect=["built"])
def test_rtx_builds_the_cut_graph_and_rejects_the_raw_one(built, refusal, zoo, tf2_graph, tmp_path):
    import onnx

    kind, engine = built["kind"], built["engine"]
    with open(engine, "rb") as f:
        assert f.read(4) == b"vtrt" and os.path.getsize(engine) > 10_000_000
    path = str(tmp_path / "raw_{}.onnx".format(kind))
    onnx.save(raw_graph(zoo, kind, tf2_graph), path)
    with pytest.raises(BuildError) as exc:
        tb.build_engine(path, tb.BuildOptions(), trt=trt)
    message = str(exc.value)
    print("raw {} graph: {}".format(kind, message))
    assert "could not parse" in message and refusal in message and "map/while" in message


def test_a_cut_inside_the_postprocessor_is_refused(zoo, tmp_path):
    spec = load_spec("ssd_mobilenet_v2_coco")
    data = spec.to_dict()
    data["cut"] = {"input": "Preprocessor/sub:0", "outputs": ["Postprocessor/raw_box_encodings:0", "concat_1:0"]}
    from trtedge.specs import spec_from_dict

    with pytest.raises(ModelError) as exc:
        tf_source.convert(frozen_graph(zoo), "frozen_graph", spec_from_dict(data))
    message = str(exc.value)
    assert "\n" not in message and "Postprocessor" in message
    assert "'Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0'" in message and "'concat:0'" in message


# --------------------------------------------------------------------------- the same detections


def engine_candidates(build, rgb):
    manifest = read_manifest(build["engine"])
    sess = ort.InferenceSession(build["onnx"], providers=["CPUExecutionProvider"])
    boxes, scores, classes = sess.run(["candidate_boxes", "candidate_scores", "candidate_classes"],
                                      {"images": engine_input(manifest, rgb)})
    return boxes[0].astype(np.float64), scores[0].astype(np.float64), classes[0].astype(int), manifest


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("built", KINDS, indirect=True)
def test_candidates_before_nms_are_tfs(built, photo, tf_outputs):
    rgb = rgb_photo(photo)
    boxes, scores, classes, manifest = engine_candidates(built, rgb)
    clip = manifest["spec"]["ssd"]["clip_before_nms"]
    tf_out = tf_outputs[built["kind"]][photo]
    raw_scores = tf_out["raw_detection_scores"][0][:, 1:].astype(np.float64)  # column 0: background
    raw_boxes = tf_pixels(tf_out["raw_detection_boxes"][0])
    if clip:
        raw_boxes = np.clip(raw_boxes, 0, SIZE)
    order = np.argsort(-raw_scores.ravel(), kind="stable")[:TOP_CANDIDATES]
    anchor, cls = np.unravel_index(order, raw_scores.shape)
    want = [(int(c), float(raw_scores[a, c]), raw_boxes[a]) for a, c in zip(anchor, cls)]
    np.testing.assert_allclose(scores[:TOP_CANDIDATES], [w[1] for w in want], atol=1e-4)
    got = list(zip(classes[:TOP_CANDIDATES + 20], scores[:TOP_CANDIDATES + 20], boxes[:TOP_CANDIDATES + 20]))
    missing = match(want, got, 1e-4, 0.99)
    print("{} {}: {} of the top {} candidates matched, scores {:.3f}-{:.3f}".format(
        built["kind"], photo, len(want) - len(missing), len(want), want[0][1], want[-1][1]))
    assert not missing, [want[i] for i in missing[:5]]
    # the scores are spread out, not all alike (random weights scaled like a trained model's)
    assert want[0][1] - want[-1][1] > 0.1 and len({w[0] for w in want}) > 20


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("built", KINDS, indirect=True)
def test_detections_are_the_graphs_own(built, photo, tf_outputs):
    kind, rgb = built["kind"], rgb_photo(photo)
    tf_out = tf_outputs[kind][photo]
    n = int(tf_out["num_detections"][0])
    want = [(int(c) - 1, float(s), b) for c, s, b in zip(tf_out["detection_classes"][0][:n],
                                                         tf_out["detection_scores"][0][:n],
                                                         tf_pixels(tf_out["detection_boxes"][0][:n]))]
    with trtedge.Detector(built["engine"], backend="onnxrt") as det:
        dets = det(rgb[:, :, ::-1].copy()).to_json()  # the Detector takes BGR frames
    got = [(d["class_id"], d["score"], d["box"]) for d in dets]
    assert n == 100 and len(got) == 100
    assert want[0][1] - want[-1][1] > 0.1  # a spread of scores, not a tie
    missing = match(want, got, 0.01, 0.9)
    print("{} {}: {} of {} TF detections matched, scores {:.3f}-{:.3f}".format(
        kind, photo, n - len(missing), n, want[0][1], want[-1][1]))
    if read_manifest(built["engine"])["spec"]["ssd"]["clip_before_nms"]:
        # trtedge clipped before NMS, TF after: only boxes on the border may be decided differently
        assert len(missing) <= 3 and all(on_border(want[i][2]) for i in missing), [want[i] for i in missing]
    else:
        assert not missing, [want[i] for i in missing]


# --------------------------------------------------------------------------- no spec: the model's pipeline.config


@pytest.fixture(scope="module")
def wired_out(tmp_path_factory):
    return tmp_path_factory.mktemp("from_config")


def test_python_api_builds_a_savedmodel_with_its_pipeline_config(zoo, tf2_build, wired_out):
    art = trtedge.build(saved_model(zoo), pipeline_config=os.path.join(zoo["tf2"], "pipeline.config"),
                        out=str(wired_out), nms="host")
    m = art.data
    assert m["family"] == "ssd" and len(m["labels"]) == 90 and m["input"]["shape"][1:] == [SIZE, SIZE, 3]
    with open(art.engine, "rb") as f:
        assert f.read(4) == b"vtrt"
    # the same model as the spec made of the same pipeline.config (which only also sets clip_before_nms: false)
    rgb = rgb_photo("astronaut")
    ours = engine_candidates({"engine": art.engine, "onnx": art.onnx}, rgb)
    made = engine_candidates(tf2_build, rgb)
    np.testing.assert_allclose(ours[1], made[1], atol=1e-5)
    assert (ours[2] == made[2]).all()


def test_cli_builds_a_savedmodel_with_the_pipeline_config_flag(zoo, wired_out):
    """``trtedge build saved_model/ --pipeline-config pipeline.config``: no spec file; the same build
    as the Python API's (reused when that one ran first)."""
    proc = cli.run("build", saved_model(zoo), "--pipeline-config", os.path.join(zoo["tf2"], "pipeline.config"),
                   "--out", wired_out, "--nms", "host")
    assert proc.returncode == 0, proc.stderr[-3000:]
    engine = proc.stdout.strip().splitlines()[-1]
    m = read_manifest(engine)
    assert m["family"] == "ssd" and m["source"]["format"] == "savedmodel" and m["spec"]["cut"]["input"] is None


def test_saved_model_next_to_its_pipeline_config_needs_no_flag(zoo, wired_out):
    first = read_manifest(os.path.join(str(wired_out), "tf2_fp32.bin")) if os.path.isfile(
        os.path.join(str(wired_out), "tf2_fp32.json")) else None
    proc = cli.run("build", saved_model(zoo), "--out", wired_out, "--nms", "host")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_manifest(proc.stdout.strip().splitlines()[-1])
    assert m["family"] == "ssd" and len(m["labels"]) == 90
    if first is not None:  # what the flag gave, found without it
        assert "Up to date: reusing" in proc.stderr and m["build_key"] == first["build_key"]


def test_a_pb_next_to_its_pipeline_config_needs_no_flag(zoo, tmp_path):
    proc = cli.run("build", frozen_graph(zoo), "--out", tmp_path / "pb", "--nms", "host")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_manifest(proc.stdout.strip().splitlines()[-1])
    assert m["family"] == "ssd" and m["source"]["format"] == "frozen_graph" and len(m["labels"]) == 90
    with open(proc.stdout.strip().splitlines()[-1], "rb") as f:
        assert f.read(4) == b"vtrt"
