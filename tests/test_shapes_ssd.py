"""The shipped shapes_ssd (a TensorFlow SavedModel in trtedge/models/shapes_ssd/).

Its engine ONNX (``onnx`` NMS form) runs in ONNX Runtime on a generated
validation set, frames fitted into the input as the runtime does
(``fit_into``, boxes mapped back with ``to_frame``), and must reach
mAP@0.5 >= 0.9; and a real TensorRT for RTX build of the ``host`` form.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("tensorflow", reason="shapes_ssd is a SavedModel: needs tensorflow (pip install \"trtedge[tf]\")")
pytest.importorskip("tf2onnx", reason="shapes_ssd is a SavedModel: needs tf2onnx (pip install \"trtedge[tf]\")")

import cli  # noqa: E402
import trtedge  # noqa: E402
from trtedge.datasets import shapes  # noqa: E402
from trtedge.evaluation import average_precision  # noqa: E402
from trtedge.runtime.postprocess import fit_into, to_frame  # noqa: E402
from trtedge.specs import MODELS_DIR, load_spec  # noqa: E402

SEED = 7002  # never used in training (training/train_shapes_ssd.py trains on seed 1100)
COUNT = 210
#: square inputs and 4:3 / 16:9 frames letterboxed into them
FRAMES = ((160, 160), (160, 160), (240, 320), (160, 160), (180, 320))


def test_shipped_savedmodel_is_small():
    path = os.path.join(MODELS_DIR, "shapes_ssd")
    assert os.path.isfile(os.path.join(path, "saved_model.pb")) and os.path.isdir(os.path.join(path, "variables"))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    assert size < 5e6


def test_engine_onnx_map(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = load_spec("shapes_ssd")
    art = trtedge.build("shapes_ssd", out=str(tmp_path), onnx_only=True, nms="onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(art.onnx, opts, providers=["CPUExecutionProvider"])
    h, w = spec.input.height, spec.input.width
    assert sess.get_inputs()[0].name == "images" and sess.get_inputs()[0].shape[1:] == [h, w, 3]
    detections, truth = [], []
    batch = np.empty((15, h, w, 3), np.uint8)
    samples = [shapes.generate(SEED, i, FRAMES[i % len(FRAMES)]) for i in range(COUNT)]
    for start in range(0, COUNT, len(batch)):
        chunk = samples[start:start + len(batch)]
        fits = [fit_into(s.image, batch[i], spec.input.resize, spec.input.pad_value) for i, s in enumerate(chunk)]
        num, boxes, scores, classes = sess.run(
            ["num_detections", "detection_boxes", "detection_scores", "detection_classes"], {"images": batch})
        for i, s in enumerate(chunk):
            n = int(num[i, 0])
            assert np.all(scores[i, :n] >= spec.nms.score_threshold)
            detections.append((to_frame(boxes[i, :n], fits[i]), scores[i, :n], classes[i, :n]))
            truth.append((s.boxes, s.classes))
    mean, per_class = average_precision(detections, truth, len(spec.labels), 0.5)
    assert mean >= 0.9, (mean, per_class)


def test_rtx_host_build(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds engines")
    out = tmp_path / "out"
    proc = cli.run("shapes_ssd", "--out", out, script=os.path.join(cli.ROOT, "build_engine.py"))
    assert proc.returncode == 0, proc.stderr
    engine = out / "shapes_ssd_fp32.bin"
    plan = engine.read_bytes()
    assert plan[:4] == b"vtrt" and len(plan) > 100000
    m = json.loads((out / "shapes_ssd_fp32.json").read_text())
    assert m["source"]["format"] == "savedmodel" and m["source"]["path"].rstrip("/").endswith("shapes_ssd")
    assert m["family"] == "ssd" and m["nms"]["form"] == "host"
    assert m["tensorrt"]["module"] == "tensorrt_rtx" and m["tensorrt"]["version"] == trt.__version__
    assert m["labels"] == ["circle", "square", "triangle"]
    assert m["input"]["shape"][1:] == [160, 160, 3] and m["input"]["dtype"] == "uint8"
    assert [o["name"] for o in m["outputs"]] == ["candidate_boxes", "candidate_scores", "candidate_classes"]
    assert m["spec"]["ssd"]["anchors"]["feature_map_sizes"] == [[20, 20], [10, 10], [5, 5]]
