"""The embedded default, ``shapes_yolo``: its accuracy through ONNX Runtime on
the engine ONNX (the graph TensorRT is given), and a real TensorRT-for-RTX
build of it."""

import json

import numpy as np
import pytest

import cli
from trtedge.datasets.shapes import generate
from trtedge.evaluation import average_precision

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX")


def validation_set():
    """200 images of a seed the training never used, square and letterboxed."""
    sizes = [(256, 256), (480, 640), (360, 640), (400, 300)]
    return [generate(9001, i, sizes[i % len(sizes)]) for i in range(200)]


def engine_onnx(tmp_path, form):
    import trtedge

    art = trtedge.build("shapes_yolo", out=str(tmp_path / form), nms=form, onnx_only=True, batch=4)
    return art


def run_engine_onnx(path, form, samples, manifest):
    from trtedge.runtime.postprocess import detections_from_outputs, fit_into, to_frame

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    dets = []
    for start in range(0, len(samples), 4):
        chunk = samples[start:start + 4]
        batch = np.zeros((len(chunk), h, w, 3), np.uint8)
        fits = [fit_into(s.image, batch[k], manifest["input"]["resize"], manifest["input"]["pad_value"])
                for k, s in enumerate(chunk)]
        outs = dict(zip(names, sess.run(names, {"images": batch})))
        for k, fit in enumerate(fits):
            boxes, scores, classes = detections_from_outputs(outs, form, k, manifest["nms"], 0.01)
            dets.append((to_frame(boxes, fit), scores, classes))
    return dets


@pytest.mark.parametrize("form", ["onnx", "host"])
def test_map_at_05_on_generated_validation_set(tmp_path, form):
    art = engine_onnx(tmp_path, form)
    samples = validation_set()
    dets = run_engine_onnx(art.onnx, form, samples, art.data)
    gts = [(s.boxes, s.classes) for s in samples]
    m, per_class = average_precision(dets, gts, num_classes=3, iou_threshold=0.5)
    print("shapes_yolo mAP@0.5 ({} form): {:.4f} per class {}".format(form, m, per_class))
    assert m >= 0.9


def test_rtx_build_of_shapes_yolo(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engine")
    proc = cli.run("build", "shapes_yolo", "--out", tmp_path, "--precision", "fp16")
    assert proc.returncode == 0, proc.stderr
    plan = (tmp_path / "shapes_yolo_fp16.bin").read_bytes()
    assert plan[:4] == b"vtrt" and len(plan) > 100000
    m = json.loads((tmp_path / "shapes_yolo_fp16.json").read_text())
    assert m["labels"] == ["circle", "square", "triangle"] and m["nms"]["form"] == "host"
    assert m["tensorrt"] == dict(m["tensorrt"], module="tensorrt_rtx", version=trt.__version__)
    assert m["precision"] == "fp16" and m["precision_road"] == "onnx_types"
    assert m["input"]["shape"][1:] == [256, 256, 3] and m["source"]["path"].endswith("shapes_yolo.onnx")


def test_shipped_model_is_small_and_fits_its_spec():
    import os

    import onnx

    from trtedge.engines.sources import locate
    from trtedge.specs import load_spec

    spec = load_spec("shapes_yolo")
    path = locate(spec)
    assert os.path.getsize(path) < 5 * 1024 * 1024
    model = onnx.load(path)
    out = model.graph.output[0]
    assert out.name == "output0"
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [7, 1344]
