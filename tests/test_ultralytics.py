"""ONNX detectors with no spec file: Ultralytics exports (their metadata: names,
imgsz, stride, task; dynamic input), and any YOLO-shaped ONNX described by flags.
Each builds for real with TensorRT for RTX, and its engine ONNX gives exactly
what the same model built from a hand-written spec gives."""

import json

import numpy as np
import onnx
import pytest
import yaml

import cli
import models

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")
ort = pytest.importorskip("onnxruntime")


def export(kind, path, metadata=True, task="detect", dynamic=True):
    """A model shaped like an Ultralytics export: input 'images', output 'output0', metadata props."""
    m = models.make(kind)
    g = m.graph
    for node in g.node:
        node.input[:] = ["images" if i == "x" else i for i in node.input]
        node.output[:] = ["output0" if o == models.KINDS[kind][0][0] else o for o in node.output]
        node.input[:] = ["output0" if i == models.KINDS[kind][0][0] else i for i in node.input]
    g.input[0].name = "images"
    if dynamic:
        for d, name in zip(g.input[0].type.tensor_type.shape.dim, ["batch", None, "height", "width"]):
            if name:
                d.ClearField("dim_value")
                d.dim_param = name
    g.output[0].name = "output0"
    if metadata:
        for key, value in {"author": "Ultralytics", "task": task, "stride": "32", "batch": "1",
                           "imgsz": "[{0}, {0}]".format(models.SIZE),
                           "names": repr({i: n for i, n in enumerate(models.CLASSES)})}.items():
            p = m.metadata_props.add()
            p.key, p.value = key, value
    onnx.save(m, str(path))
    return path


def candidates(onnx_path):
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    feed = {"images": rng.integers(0, 255, (1, models.SIZE, models.SIZE, 3), dtype=np.uint8)}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


@pytest.mark.parametrize("kind", ["anchor_free", "decoded"])
def test_ultralytics_export_builds_with_no_spec(tmp_path, kind):
    path = export(kind, tmp_path / "yolo_{}.onnx".format(kind))
    out = tmp_path / "out"
    proc = cli.run("build", path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    stem = out / "yolo_{}_fp32".format(kind)
    m = json.loads(stem.with_suffix(".json").read_text())
    assert m["family"] == "yolo" and m["spec"]["yolo"]["head"] == kind
    assert m["labels"] == list(models.CLASSES) and (m["input"]["height"], m["input"]["width"]) == (64, 64)
    assert m["input"]["shape"][1:] == [64, 64, 3] and stem.with_suffix(".bin").read_bytes()[:4] == b"vtrt"
    # the same model with a hand-written spec makes the same engine ONNX outputs
    spec = tmp_path / "hand.yaml"
    data = models.spec(kind, file=str(path))
    data["nms"] = {}
    spec.write_text(yaml.safe_dump(data))
    assert cli.run("build", spec, "--out", tmp_path / "hand", "--onnx-only", "--nms", "host").returncode == 0
    ours, theirs = candidates(stem.with_suffix(".onnx")), candidates(tmp_path / "hand" / "tiny_{}_fp32.onnx".format(kind))
    for name in ("candidate_boxes", "candidate_scores", "candidate_classes"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-4)


def test_onnx_without_metadata_described_by_flags(tmp_path):
    path = export("anchor_free", tmp_path / "bare.onnx", metadata=False)
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    out = tmp_path / "out"
    plain = cli.run("build", path, "--out", tmp_path / "plain", "--onnx-only")
    assert plain.returncode == 0, plain.stderr  # no metadata, no flags: a plain model, built as it is
    assert json.loads((tmp_path / "plain" / "bare_fp32.json").read_text())["family"] == "none"
    dynamic = cli.run("build", path, "--out", out, "--family", "yolo", "--labels", names)
    cli.assert_one_line_error(dynamic, 2, "--input-size HxW")
    proc = cli.run("build", path, "--out", out, "--family", "yolo", "--labels", names, "--input-size", "64x64")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "bare_fp32.json").read_text())
    assert m["spec"]["yolo"]["head"] == "anchor_free" and m["labels"] == ["a", "b", "c"]
    wrong = cli.run("build", path, "--out", out, "--family", "yolo", "--num-classes", "5", "--input-size", "64")
    cli.assert_one_line_error(wrong, 2, "fits neither")
    bad = cli.run("build", path, "--out", out, "--family", "yolo", "--input-size", "big")
    cli.assert_one_line_error(bad, 2, "--input-size is 'big'")


def test_other_ultralytics_tasks_are_one_line(tmp_path):
    path = export("anchor_free", tmp_path / "seg.onnx", task="segment")
    cli.assert_one_line_error(cli.run("build", path, "--out", tmp_path / "o"), 2, "'segment' model")
    cli.assert_one_line_error(cli.run("build", "shapes_yolo", "--family", "yolo"), 2, "describe an ONNX model")
