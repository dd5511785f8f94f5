"""INT8 on the Q/DQ road, end to end: calibration images written here, the engine ONNX quantised on the
CPU (ModelOpt), gated against FP32, and built by TensorRT for RTX; and the gate's layer choice on a model
built to overflow in INT8 (tests/int8_models.py)."""

import json
import os

import numpy as np
import onnx
import pytest
import yaml

import cli
import int8_models
from trtedge.config import BuildConfig
from trtedge.datasets.shapes import generate, write_coco
from trtedge.errors import TrtedgeError
from trtedge.evaluation import average_precision

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX and the calibration")
pytest.importorskip("cv2", reason="OpenCV writes and reads the calibration images")

CALIB_COUNT = 64  # + 16 held out
#: validation frames: square and letterboxed, a seed neither training nor calibration used
SIZES = ((256, 256), (480, 640), (360, 640), (400, 300))


def _need_quantizer():
    pytest.importorskip("modelopt.onnx.quantization", reason="the Q/DQ road quantises with NVIDIA ModelOpt "
                                                            "(pip install \"trtedge[int8]\")")


def _need_rtx():
    return pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")


def engine_onnx_map(path, manifest, samples):
    """mAP@0.5 of an engine ONNX on ``samples``, frames fitted and detections decoded as the runtime does."""
    from trtedge.runtime.postprocess import detections_from_outputs, fit_into, to_frame

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    inp = manifest["input"]
    form = manifest["nms"]["form"]
    dets = []
    for s in samples:
        batch = np.zeros((1, inp["height"], inp["width"], 3), np.uint8)
        frame = s.image[..., ::-1] if inp["channels"] == "rgb" else s.image
        fit = fit_into(frame, batch[0], inp["resize"], inp["pad_value"])
        outs = dict(zip(names, sess.run(names, {inp["name"]: batch})))
        boxes, scores, classes = detections_from_outputs(outs, form, 0, manifest["nms"], None)
        dets.append((to_frame(boxes, fit), scores, classes))
    return average_precision(dets, [(s.boxes, s.classes) for s in samples], len(manifest["labels"]), 0.5)[0]


def check_qdq_graph(int8_path, fp32_path):
    """Q/DQ only in the model body; trtedge's own nodes exactly the FP32 engine ONNX's, fed by float tensors."""
    q, f = onnx.load(int8_path), onnx.load(fp32_path)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    ours = lambda m: [(n.name, n.op_type, list(n.input), list(n.output)) for n in m.graph.node  # noqa: E731
                      if n.name.startswith("trtedge/")]
    assert sorted(ours(q)) == sorted(ours(f))
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.name.startswith("trtedge/"):
            assert all(producer.get(i) != "DequantizeLinear" for i in n.input), n.name
    assert [(i.name, i.type.tensor_type.elem_type) for i in q.graph.input] == \
        [(i.name, i.type.tensor_type.elem_type) for i in f.graph.input]
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) == 17


@pytest.mark.parametrize("name,calib_size", [("shapes_yolo", (360, 640)), ("shapes_ssd", (240, 320))])
def test_int8_qdq_within_001_of_fp32(tmp_path, name, calib_size):
    trt = _need_rtx()
    _need_quantizer()
    if name == "shapes_ssd":
        pytest.importorskip("tensorflow", reason="shapes_ssd is a SavedModel: needs tensorflow")
        pytest.importorskip("tf2onnx", reason="shapes_ssd is a SavedModel: needs tf2onnx")
    import trtedge

    calib = tmp_path / "calib"
    write_coco(str(calib), 5100, CALIB_COUNT + 16, calib_size)  # frames letterboxed into the input
    out = tmp_path / "int8"
    proc = cli.run("build", name, "--precision", "int8", "--calib", calib, "--calib-count", CALIB_COUNT,
                   "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "INT8 accuracy gate, round 1" in proc.stderr
    m = json.loads((out / "{}_int8.json".format(name)).read_text())
    assert m["precision"] == "int8" and m["precision_road"] == "onnx_types"
    assert m["tensorrt"]["module"] == "tensorrt_rtx" and m["tensorrt"]["version"] == trt.__version__
    info = m["int8"]
    assert info["road"] == "qdq" and info["frames"] == CALIB_COUNT and info["held_out"] == 16
    assert info["reference"] == "annotations" and info["quantizer"].startswith("nvidia-modelopt")
    assert info["fp32_map"] - info["int8_map"] <= 0.01 and info["quantized_layers"] > 5
    assert (out / "{}_int8.bin".format(name)).read_bytes()[:4] == b"vtrt"

    fp32 = trtedge.build(name, out=str(tmp_path / "fp32"), onnx_only=True, nms=m["nms"]["form"])
    check_qdq_graph(str(out / "{}_int8.onnx".format(name)), fp32.onnx)
    samples = [generate(9101, i, SIZES[i % len(SIZES)]) for i in range(100)]
    map_fp32 = engine_onnx_map(fp32.onnx, fp32.data, samples)
    map_int8 = engine_onnx_map(str(out / "{}_int8.onnx".format(name)), m, samples)
    print("{} mAP@0.5 on 100 frames: fp32 {:.4f}, int8 {:.4f} ({} layers in float)".format(
        name, map_fp32, map_int8, len(info["layers_kept"])))
    assert map_fp32 >= 0.85
    assert map_int8 >= map_fp32 - 0.01

    # the same command again reuses everything; the calibration data is part of the key
    again = cli.run("build", name, "--precision", "int8", "--calib", calib, "--calib-count", CALIB_COUNT,
                    "--out", out)
    assert again.returncode == 0 and "Up to date" in again.stderr, again.stderr


def _overflow(tmp_path):
    from trtedge.runtime.postprocess import fit_into

    onnx.save(int8_models.make(), str(tmp_path / "overflow.onnx"))
    (tmp_path / "overflow.yaml").write_text(yaml.safe_dump(int8_models.spec("overflow.onnx")))
    frames = np.zeros((CALIB_COUNT + 16, 64, 64, 3), np.uint8)
    for i in range(len(frames)):
        fit_into(generate(31, i, (64, 64)).image, frames[i])
    np.save(str(tmp_path / "calib.npy"), frames)
    return tmp_path / "overflow.yaml", tmp_path / "calib.npy"


def test_gate_keeps_the_overflowing_layer_in_float(tmp_path):
    _need_quantizer()
    spec, calib = _overflow(tmp_path)
    proc = cli.run("build", spec, "--precision", "int8", "--calib", calib, "--calib-count", CALIB_COUNT,
                   "--out", tmp_path / "out", "--onnx-only", "--int8-road", "qdq")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "overflow_int8.json").read_text())["int8"]
    assert info["layers_kept"] == ["head"] and info["rounds"] == 2, info
    assert info["reference"] == "fp32_detections" and info["fp32_map"] == 1.0 and info["int8_map"] >= 0.99
    assert "round 1: mAP@0.5 0.0" in proc.stderr  # INT8 everywhere loses everything
    q = onnx.load(str(tmp_path / "out" / "overflow_int8.onnx"))
    producer = {o: n for n in q.graph.node for o in n.output}
    head = [n for n in q.graph.node if n.name == "head"][0]
    assert producer[head.input[0]].op_type != "DequantizeLinear"  # its activation stays float
    mix = [n for n in q.graph.node if n.name == "mix"][0]
    assert producer[mix.input[0]].op_type == "DequantizeLinear"  # the rest is INT8

    # a stricter limit than INT8 can meet: the build says so in one line, exit 1, and writes nothing
    strict = cli.run("build", spec, "--precision", "int8", "--calib", calib, "--calib-count", CALIB_COUNT,
                     "--out", tmp_path / "strict", "--onnx-only", "--int8-road", "qdq", "--max-map-drop", "0")
    line = cli.assert_one_line_error(strict, code=1, contains="INT8 cannot stay within --max-map-drop 0")
    assert "1 of 3 layers in float" in line
    assert not (tmp_path / "strict" / "overflow_int8.onnx").exists()


def test_the_layer_choice_matters(tmp_path):
    """Keeping the layer the gate ranks first in float restores FP32's detections; keeping another does not."""
    _need_quantizer()
    import trtedge
    from trtedge.engines import gate
    from trtedge.engines import quantize as qz

    from trtedge.engines import calibration
    from trtedge.specs import load_spec

    spec, calib = _overflow(tmp_path)
    art = trtedge.build(str(spec), out=str(tmp_path / "fp32"), onnx_only=True)
    fp32 = onnx.load(art.onnx)
    # the frames the gate sees: fitted as the runtime fits them, every fifth one held out
    frames = calibration.read(str(calib), CALIB_COUNT, calibration.InputFit.of_spec(load_spec(str(spec))))
    assert frames.calib.shape == (CALIB_COUNT, 64, 64, 3) and len(frames.held_out) == 16 and frames.truth is None
    held = frames.held_out
    nms = dict(art.data["nms"])
    ref = gate.detections(fp32, held, "host", nms)
    truth = [(b, c) for b, _, c in ref]
    assert sum(len(b) for b, _ in truth) >= 16  # enough detections to measure

    def int8_map(exclude):
        q = qz.quantize(fp32, frames.calib, exclude=exclude)
        return q, gate.mean_ap(gate.detections(q, held, "host", nms), truth, 3)

    q_all, map_all = int8_map([])
    assert qz.quantized_layers(q_all) == ["stem", "mix", "head"]
    errors = qz.layer_errors(fp32, q_all, held[:8])
    assert qz.rank(errors, qz.body_nodes(fp32))[0] == "head" and errors["head"] > 10 * errors["mix"]
    results = {"none": map_all}
    for layer in ("stem", "mix", "head"):
        results[layer] = int8_map([layer])[1]
    print("overflow model, INT8 mAP@0.5 against FP32 by the layer kept in float:", results)
    assert results["none"] < 0.2 and results["stem"] < 0.2 and results["mix"] < 0.2
    assert results["head"] >= 0.99


def test_int8_refusals(tmp_path):
    """One line each, before anything is written."""
    _need_rtx()
    proc = cli.run("build", "shapes_yolo", "--precision", "int8", "--out", tmp_path / "a")
    cli.assert_one_line_error(proc, code=2, contains="needs calibration frames: --calib SRC")
    proc = cli.run("build", "shapes_yolo", "--precision", "int8", "--calib", tmp_path / "missing", "--out", tmp_path)
    cli.assert_one_line_error(proc, code=2, contains="does not exist")
    proc = cli.run("build", "shapes_yolo", "--precision", "int8", "--calib", tmp_path, "--int8-road", "calibrator",
                   "--out", tmp_path / "b")
    cli.assert_one_line_error(proc, code=2, contains="has no INT8 calibrator")
    proc = cli.run("build", "shapes_yolo", "--calib", tmp_path, "--out", tmp_path / "c")
    cli.assert_one_line_error(proc, code=2, contains="--calib goes with --precision int8")
    assert not [f for d in ("a", "b", "c") if (tmp_path / d).is_dir() for f in os.listdir(str(tmp_path / d))]


def test_build_config_int8_options_round_trip():
    c = BuildConfig.create(precision="int8", calib="frames/", calib_count=64, max_map_drop=0.02, int8_road="qdq")
    args = c.to_cli_args()
    assert args[:2] == ["--precision", "int8"]
    assert args[args.index("--calib") + 1] == "frames/" and args[args.index("--calib-count") + 1] == "64"
    assert float(args[args.index("--max-map-drop") + 1]) == 0.02 and args[args.index("--int8-road") + 1] == "qdq"
    from trtedge.cli import build_config, make_parser

    parsed = build_config(make_parser().parse_args(["build", "x"] + args))
    assert parsed == c
    assert "calib" not in c.key() and c.key()["calib_count"] == 64  # the data's sha256 is keyed, not its path
    assert BuildConfig.from_dict(c.to_dict()) == c
    for bad, text in ((dict(max_map_drop=2), "max mAP drop"), (dict(calib_count=0), "calib count"),
                      (dict(int8_road="fast"), "unknown INT8 road")):
        with pytest.raises(TrtedgeError, match=text):
            BuildConfig.create(precision="int8", **bad)
