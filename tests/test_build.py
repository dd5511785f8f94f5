"""Real builds with TensorRT for RTX (the ``host`` NMS form), the files a build
writes, the manifest, reuse, ``--onnx-only`` and rebuilding from the engine ONNX."""

import json
import os

import onnx
import pytest
import yaml

import cli
import models
from trtedge.utils.files import sha256_file

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")


def tiny_spec(tmp_path, kind, **nms):
    model = models.make(kind)
    onnx.save(model, str(tmp_path / "tiny.onnx"))
    path = tmp_path / "tiny_{}.yaml".format(kind)
    path.write_text(yaml.safe_dump(models.spec(kind, file="tiny.onnx", **nms)))
    return path


@pytest.mark.parametrize("kind", sorted(models.KINDS))
def test_build_each_head_kind(tmp_path, kind):
    spec = tiny_spec(tmp_path, kind)
    out = tmp_path / "out"
    proc = cli.run("build", spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    stem = out / "tiny_{}_fp32".format(kind)
    engine = stem.with_suffix(".bin")
    assert proc.stdout.strip() == str(engine)
    plan = engine.read_bytes()
    assert plan[:4] == b"vtrt" and len(plan) > 10000
    m = json.loads(stem.with_suffix(".json").read_text())
    assert m["engine"]["sha256"] == sha256_file(str(engine)) and m["engine"]["bytes"] == len(plan)
    assert m["onnx"]["sha256"] == sha256_file(str(stem.with_suffix(".onnx")))
    assert m["nms"]["form"] == "host" and m["family"] == "yolo"
    assert m["tensorrt"]["module"] == "tensorrt_rtx" and m["tensorrt"]["version"] == trt.__version__
    assert m["gpu"] == {"name": "none (ahead of time)", "compute_capability": "none"}
    assert m["labels"] == list(models.CLASSES)
    assert m["input"]["shape"] == ["batch", 64, 64, 3] and m["input"]["dtype"] == "uint8"
    assert m["input"]["channels"] == "bgr" and m["input"]["resize"] == "letterbox"
    assert [o["name"] for o in m["outputs"]] == ["candidate_boxes", "candidate_scores", "candidate_classes"]
    assert [o["dtype"] for o in m["outputs"]] == ["float32", "float32", "int32"]
    assert m["source"]["path"].endswith("tiny.onnx") and len(m["source"]["sha256"]) == 64
    assert m["spec"]["yolo"]["head"] == kind and m["precision"] == "fp32"
    assert m["trtedge_version"] and m["build_options"]["max_batch"] == 1


def test_second_build_reuses_and_force_rebuilds(tmp_path):
    spec = tiny_spec(tmp_path, "anchor_free")
    out = tmp_path / "out"
    assert cli.run("build", spec, "--out", out).returncode == 0
    engine = out / "tiny_anchor_free_fp32.bin"
    before = os.stat(engine).st_mtime_ns
    again = cli.run("build", spec, "--out", out)
    assert again.returncode == 0 and "Up to date: reusing" in again.stderr
    assert os.stat(engine).st_mtime_ns == before
    forced = cli.run("build", spec, "--out", out, "--force")
    assert forced.returncode == 0 and "reusing" not in forced.stderr
    forced_at = os.stat(engine).st_mtime_ns
    changed = cli.run("build", spec, "--out", out, "--batch", "2")  # other options: rebuild
    assert changed.returncode == 0 and "reusing" not in changed.stderr
    assert os.stat(engine).st_mtime_ns == forced_at  # the batch-1 engine is still there, untouched
    m = json.loads((out / "tiny_anchor_free_fp32_b2.json").read_text())
    assert (m["build_options"]["min_batch"], m["build_options"]["opt_batch"], m["build_options"]["max_batch"]) == (1, 2, 2)
    assert not [f for f in os.listdir(out) if ".partial-" in f]


def test_onnx_only_then_build_elsewhere_without_spec(tmp_path):
    spec = tiny_spec(tmp_path, "decoded")
    first = tmp_path / "desktop"
    proc = cli.run("build", spec, "--out", first, "--onnx-only")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(first)) == ["tiny_decoded_fp32.json", "tiny_decoded_fp32.onnx"]
    device = tmp_path / "device"
    os.makedirs(device)
    onnx_copy = device / "model.onnx"
    onnx_copy.write_bytes((first / "tiny_decoded_fp32.onnx").read_bytes())
    os.remove(spec)
    os.remove(tmp_path / "tiny.onnx")  # nothing but the engine ONNX is left
    proc = cli.run("build", onnx_copy, "--out", device / "out", cwd=device)
    assert proc.returncode == 0, proc.stderr
    out = device / "out"
    assert (out / "tiny_decoded_fp32.onnx").read_bytes() == onnx_copy.read_bytes()
    a = json.loads((first / "tiny_decoded_fp32.json").read_text())
    b = json.loads((out / "tiny_decoded_fp32.json").read_text())
    for key in ("name", "family", "labels", "input", "outputs", "nms", "spec", "source", "precision", "onnx"):
        assert a[key] == b[key], key
    assert a["engine"] is None and b["engine"]["file"] == "tiny_decoded_fp32.bin"


def test_fp16_by_onnx_types(tmp_path):
    spec = tiny_spec(tmp_path, "anchor_free")
    out = tmp_path / "out"
    proc = cli.run("build", spec, "--out", out, "--precision", "fp16", "--engine-ext", "engine")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "tiny_anchor_free_fp16.json").read_text())
    assert m["precision"] == "fp16" and m["precision_road"] == "onnx_types"
    assert (out / "tiny_anchor_free_fp16.engine").read_bytes()[:4] == b"vtrt"
    model = onnx.load(str(out / "tiny_anchor_free_fp16.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert {o.type.tensor_type.elem_type for o in model.graph.output} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32}


def test_python_api_and_explicit_forms(tmp_path):
    import trtedge

    spec = tiny_spec(tmp_path, "raw")
    art = trtedge.build(str(spec), out=str(tmp_path / "o"), nms="host")
    assert art.engine.endswith(".bin") and art.data["nms"]["form"] == "host" and not art.reused
    with pytest.raises(trtedge.errors.BuildError, match="no EfficientNMS_TRT plugin"):
        trtedge.build(str(spec), out=str(tmp_path / "o"), nms="plugin")
    with pytest.raises(trtedge.errors.BuildError, match="cannot build ONNX NonMaxSuppression"):
        trtedge.build(str(spec), out=str(tmp_path / "o"), nms="onnx")
    # --onnx-only makes any form, for a machine whose TensorRT can build it
    art = trtedge.build(str(spec), out=str(tmp_path / "p"), nms="plugin", onnx_only=True)
    assert art.engine is None and art.data["plugins"]["required"] == ["EfficientNMS_TRT"]


def test_plain_model_keeps_its_io(tmp_path):
    model = models.make("anchor_free")
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    proc = cli.run("build", path, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "o" / "plain_fp32.json").read_text())
    assert m["family"] == "none" and m["nms"] is None
    assert [i["name"] for i in m["inputs"]] == ["x"] and [o["name"] for o in m["outputs"]] == ["output0"]


def test_build_engine_script(tmp_path):
    spec = tiny_spec(tmp_path, "anchor_free")
    proc = cli.run(spec, "--out", tmp_path / "o", script=os.path.join(cli.ROOT, "build_engine.py"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "tiny_anchor_free_fp32.bin").exists()


def test_onnx_form_parses_into_tensorrts_nms_layer(tmp_path):
    """TensorRT for RTX cannot build NMS, but its ONNX parser (shared with full
    TensorRT) must turn the ``onnx`` form into TensorRT's own NMS layer."""
    spec = tiny_spec(tmp_path, "anchor_free")
    art = __import__("trtedge").build(str(spec), out=str(tmp_path / "o"), nms="onnx", onnx_only=True)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(art.onnx), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    kinds = {network.get_layer(i).type for i in range(network.num_layers)}
    assert trt.LayerType.NMS in kinds and trt.LayerType.TOPK in kinds
    outputs = {network.get_output(i).name: network.get_output(i).dtype for i in range(network.num_outputs)}
    assert outputs["num_detections"] == trt.DataType.INT32 and outputs["detection_classes"] == trt.DataType.INT32
