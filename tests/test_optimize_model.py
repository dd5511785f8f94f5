"""``optimize_model.py`` (the seeds' interface) and plain models built as they are.

A tiny Keras model with a dynamic height/width is exported as a SavedModel
(``model.export``) and a ``.keras`` file; a ``.npy`` batch fixes its input
shape; the engine ONNX is checked against TensorFlow's own outputs; each flag
combination builds with TensorRT for RTX; the exclusive ones are refused with
one line and exit 2. The end-to-end run is the real script in a subprocess;
the flag combinations run in this process (TensorFlow is imported once).
"""

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cli  # noqa: E402

SCRIPT = os.path.join(cli.ROOT, "optimize_model.py")
sys.path.insert(0, cli.ROOT)
import optimize_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 + NumPy 2 noise


def needs_tf():
    pytest.importorskip("tf2onnx", reason="TensorFlow models need tf2onnx (pip install \"trtedge[tf]\")")
    return pytest.importorskip("tensorflow", reason="TensorFlow models need tensorflow (pip install \"trtedge[tf]\")")


def needs_rtx():
    return pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds engines")


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    tf = needs_tf()
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3), name="image")
    # 16 channels: ModelOpt leaves narrower convolutions in float, and --int8 should quantise one
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    out = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, out)
    d = tmp_path_factory.mktemp("keras")
    model.export(str(d / "tiny_sm"), verbose=False)
    model.save(str(d / "tiny.keras"))
    batch = np.random.default_rng(1).uniform(0, 1, (2, 24, 40, 3)).astype(np.float32)
    np.save(str(d / "batch.npy"), batch)
    return d


def _one(directory, stem, ext):
    """The file a build wrote for ``stem`` (``_b<N>`` follows the precision for a batch above 1)."""
    import glob

    found = [f for f in glob.glob(os.path.join(str(directory), stem + "*" + ext)) if not f.endswith(".ort.onnx")]
    assert len(found) == 1, found
    return found[0]


def _max_diffs(stdout):
    return [float(v) for v in re.findall(r"max abs difference (\S+)", stdout)]


def test_savedmodel_with_input_file(keras_model, tmp_path):
    needs_rtx()
    out = tmp_path / "out"
    proc = cli.run("-m", keras_model / "tiny_sm", "-o", out, "-i", keras_model / "batch.npy", script=SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "Check on {} (2x24x40x3): engine ONNX in ONNX Runtime vs the source model in TensorFlow".format(
        keras_model / "batch.npy") in proc.stdout
    diffs = _max_diffs(proc.stdout)
    assert len(diffs) == 1 and diffs[0] < 1e-4, proc.stdout
    assert proc.stdout.splitlines()[-1] == _one(out, "tiny_sm_fp32", ".bin")
    m = json.loads(open(_one(out, "tiny_sm_fp32", ".json")).read())
    assert m["family"] == "none" and m["inputs"][0]["shape"][1:] == [24, 40, 3]  # fixed from the batch
    assert isinstance(m["inputs"][0]["shape"][0], str)  # the batch stays dynamic ...
    assert (m["build_options"]["min_batch"], m["build_options"]["max_batch"]) == (1, 2)  # ... profiled 1..2
    assert (out / "source" / "tiny_sm.onnx").is_file()  # the fixed-shape ONNX that was built


COMBINATIONS = [
    ([], "fp32"),
    (["--fp16"], "fp16"),
    (["--fp32", "-g"], "fp32"),
    (["-l", "256", "--fp16"], "fp16"),
    (["--wsz", "268435456"], "fp32"),
    (["-g", "--fp16", "--wsz", "64M"], "fp16"),
]


@pytest.mark.parametrize("flags, precision", COMBINATIONS, ids=[" ".join(c[0]) or "defaults" for c in COMBINATIONS])
def test_flag_combinations(keras_model, tmp_path, capsys, flags, precision):
    tf = needs_tf()
    needs_rtx()
    out = tmp_path / "o"
    code = optimize_model.main(["-m", str(keras_model / "tiny_sm"), "-o", str(out), "-i",
                                str(keras_model / "batch.npy")] + flags)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    diffs = _max_diffs(captured.out)
    assert len(diffs) == 1 and diffs[0] < (5e-2 if precision == "fp16" else 1e-4), captured.out
    m = json.loads(open(_one(out, "tiny_sm_" + precision, ".json")).read())
    assert m["precision"] == precision and m["engine"]["file"] == "tiny_sm_{}_b2.bin".format(precision)  # batch 2
    if "--wsz" in flags:
        assert m["build_options"]["workspace"] == {"268435456": 268435456, "64M": 64 << 20}[
            flags[flags.index("--wsz") + 1]]
    if not tf.config.list_physical_devices("GPU"):  # here: the memory flags are seen and say they change nothing
        if "-g" in flags:
            assert "Note: TensorFlow sees no GPU, so memory growth changes nothing" in captured.err
        if "-l" in flags:
            assert "Note: TensorFlow sees no GPU, so a 256 MB memory limit changes nothing" in captured.err


def test_keras_file_without_input_file_is_the_same_build_as_trtedge_build(keras_model, tmp_path, capsys):
    tf = needs_tf()
    needs_rtx()
    fixed = tmp_path / "fixed.keras"
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    keras.Model(inp, keras.layers.Conv2D(2, 3)(inp)).save(str(fixed))
    assert optimize_model.main(["-m", str(fixed), "-o", str(tmp_path / "a")]) == 0
    assert cli.run("build", fixed, "--out", tmp_path / "b").returncode == 0
    a = json.loads(open(_one(tmp_path / "a", "fixed_fp32", ".json")).read())
    b = json.loads(open(_one(tmp_path / "b", "fixed_fp32", ".json")).read())
    assert a["build_key"] == b["build_key"]  # same source, spec, options and TensorRT
    ops = [[n.op_type for n in onnx.load(_one(tmp_path / d, "fixed_fp32", ".onnx")).graph.node] for d in "ab"]
    assert ops[0] == ops[1] and "Conv" in ops[0]  # (tf2onnx's bytes differ from run to run; the graph does not)
    assert "Check on" not in capsys.readouterr().out  # no -i: nothing to check against


@pytest.mark.parametrize("flags, message", [
    (["-g", "-l", "512"], "argument -l/--memory_limit: not allowed with argument -g/--memory_growth"),
    (["--fp16", "--int8"], "argument --int8: not allowed with argument --fp16"),
    (["--fp32", "--fp16"], "argument --fp16: not allowed with argument --fp32"),
    (["--int8"], "--int8 needs calibration data: --calib BATCH.npy or -i BATCH.npy"),
    (["--int8", "--calib", "frames/"], "--calib frames/: a plain model calibrates on a .npy batch of its own input"),
    (["--int8", "-i", "b.npy", "--calib", "cam.mp4"], "--calib cam.mp4: a plain model calibrates on a .npy batch"),
    (["--fp16", "--calib", "b.npy"], "--calib goes with --int8 (precision is fp16)"),
    (["-l", "lots"], "argument -l/--memory_limit: invalid int value: 'lots'"),
])
def test_refused_flags(tmp_path, flags, message):
    proc = cli.run("-m", tmp_path / "any.onnx", "-o", tmp_path / "o", *flags, script=SCRIPT)
    line = cli.assert_one_line_error(proc, 2, message)
    assert not (tmp_path / "o").exists(), line


def _dynamic_conv(path, extra_fold=False):
    """NCHW conv with dynamic batch, height and width; ``extra_fold``: a constant branch to fold."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(np.full((1, 4, 1, 1), 2.0, np.float32), "two")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    if extra_fold:  # (two * two) computed in the graph, then a dead branch nothing reads
        nodes += [helper.make_node("Mul", ["two", "two"], ["four"], name="fold_me"),
                  helper.make_node("Mul", ["c", "four"], ["y"], name="scale"),
                  helper.make_node("Relu", ["c"], ["unused"], name="dead")]
    else:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    model.metadata_props.add(key="author", value="tests")
    onnx.save(model, str(path))
    return path


def test_onnx_with_input_file(tmp_path, capsys):
    needs_rtx()
    pytest.importorskip("onnxruntime", reason="the check runs ONNX Runtime")
    path = _dynamic_conv(tmp_path / "dyn.onnx")
    np.save(str(tmp_path / "b.npy"), np.random.default_rng(0).normal(size=(3, 3, 20, 28)))  # float64 on purpose
    assert optimize_model.main(["-m", str(path), "-o", str(tmp_path / "o"), "-i", str(tmp_path / "b.npy")]) == 0
    out = capsys.readouterr().out
    assert "vs the source model in ONNX Runtime" in out and _max_diffs(out)[0] < 1e-5, out
    assert "note: the input file is float64; fed as the model's float32" in out
    m = json.loads(open(_one(tmp_path / "o", "dyn_fp32", ".json")).read())
    assert m["inputs"][0]["shape"] == ["N", 3, 20, 28] and m["build_options"]["max_batch"] == 3


def test_input_file_that_does_not_fit(tmp_path):
    path = _dynamic_conv(tmp_path / "dyn.onnx")
    np.save(str(tmp_path / "b.npy"), np.zeros((2, 4, 20, 28), np.float32))
    proc = cli.run("-m", path, "-o", tmp_path / "o", "-i", tmp_path / "b.npy", script=SCRIPT)
    cli.assert_one_line_error(proc, 2, "has shape (2, 4, 20, 28) but the model input 'x' is [N, 3, H, W]: axis 1 must be 3")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    proc = cli.run("-m", path, "-i", tmp_path / "bad.npy", script=SCRIPT)
    cli.assert_one_line_error(proc, 2, "is not a .npy array")


def test_dynamic_input_without_input_file_says_how_to_fix_it(tmp_path):
    needs_rtx()
    path = _dynamic_conv(tmp_path / "dyn.onnx")
    proc = cli.run("-m", path, "-o", tmp_path / "o", script=SCRIPT)
    cli.assert_one_line_error(proc, 2, "has dynamic dimensions besides the batch")
    assert "optimize_model.py -i INPUT.npy" in proc.stderr


def test_plain_model_is_sanitised_and_nothing_else(tmp_path):
    """Family none: constants folded, dead nodes dropped; I/O, opset, IR version, metadata and outputs kept."""
    ort = pytest.importorskip("onnxruntime", reason="the outputs are compared in ONNX Runtime")
    path = _dynamic_conv(tmp_path / "plain.onnx", extra_fold=True)
    proc = cli.run("build", path, "--family", "none", "--onnx-only", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    src, eng = onnx.load(str(path)), onnx.load(_one(tmp_path / "o", "plain_fp32", ".onnx"))
    assert [n.op_type for n in eng.graph.node] == ["Conv", "Mul"]  # fold_me folded, dead gone
    assert [i.name for i in eng.graph.input] == ["x"] and [o.name for o in eng.graph.output] == ["y"]
    assert eng.opset_import[0].version == 13 and eng.ir_version == 7
    assert {p.key: p.value for p in eng.metadata_props}["author"] == "tests"
    x = np.random.default_rng(2).normal(size=(2, 3, 10, 12)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa
        None, {"x": x})[0]
    np.testing.assert_allclose(run(eng), run(src), rtol=1e-6, atol=1e-6)


def test_tensorflow_out_of_gpu_memory_says_use_g_or_l(keras_model, capsys, monkeypatch):
    """TensorFlow's own ResourceExhaustedError, raised where the SavedModel is loaded, as it is on a full GPU."""
    tf = needs_tf()
    from tf2onnx import tf_loader

    def exhausted(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1,24,40,4] and "
                                               "type float on /job:localhost/replica:0/task:0/device:GPU:0")

    monkeypatch.setattr(tf_loader, "from_saved_model", exhausted)
    code = optimize_model.main(["-m", str(keras_model / "tiny_sm"), "-i", str(keras_model / "batch.npy")])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("trtedge: error:")]
    assert code == 2 and len(errors) == 1, errors
    assert "TensorFlow failed converting {}".format(keras_model / "tiny_sm") in errors[0]
    assert "ResourceExhaustedError: OOM when allocating" in errors[0]
    assert "optimize_model.py -g" in errors[0] and "-l 2048" in errors[0]


def _sha256(path):
    import hashlib

    return hashlib.sha256(open(str(path), "rb").read()).hexdigest()


def _int8_line(stdout):
    found = re.findall(r"INT8 vs FP32 engine ONNX on (\d+) (held-out|calibration) rows: max abs output difference "
                       r"(\S+) \((\d+) layers in INT8\)", stdout)
    assert len(found) == 1, stdout
    rows, kind, diff, layers = found[0]
    return int(rows), kind, float(diff), int(layers)


def _int8_build(out, stem):
    m = json.loads(open(_one(out, stem, ".json")).read())
    assert m["precision"] == "int8" and m["precision_road"] == "onnx_types" and m["family"] == "none"
    assert m["tensorrt"]["module"] == "tensorrt_rtx" and os.path.getsize(_one(out, stem, ".bin")) > 0
    ops = [n.op_type for n in onnx.load(_one(out, stem, ".onnx")).graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 2, ops  # strongly typed Q/DQ
    return m


def test_int8_calibrates_on_the_input_file_with_a_warning(keras_model, tmp_path, capsys):
    needs_tf()
    needs_rtx()
    pytest.importorskip("modelopt.onnx.quantization", reason="INT8 Q/DQ needs NVIDIA ModelOpt")
    out = tmp_path / "o"
    batch = keras_model / "batch.npy"
    code = optimize_model.main(["-m", str(keras_model / "tiny_sm"), "-o", str(out), "-i", str(batch), "--int8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [ln for ln in captured.err.splitlines() if ln.startswith("Warning: no --calib")]
    assert warnings == ["Warning: no --calib: INT8 calibrates on the -i batch {}, so the check below runs on the "
                        "data it was calibrated on".format(batch)]
    m = _int8_build(out, "tiny_sm_int8")
    info = m["int8"]
    assert info["calib_sha256"] == _sha256(batch) and m["build_options"]["calib"] == str(batch)
    assert info["road"] == "qdq" and info["reference"] == "fp32_outputs" and info["fp32_map"] is None
    assert (info["frames"], info["held_out"]) == (2, 0)  # 2 rows (< 8): the whole batch calibrates and measures
    assert info["quantized_layers"] >= 1 and 0.0 < info["max_abs_diff"] < 1.0, info
    rows, kind, diff, layers = _int8_line(captured.out)
    assert (rows, kind, layers) == (2, "calibration", info["quantized_layers"])
    assert diff == pytest.approx(info["max_abs_diff"], rel=1e-2)
    # -i still checks the engine ONNX (here INT8) against TensorFlow on the batch, and says what it compares
    assert "Check on {} (2x24x40x3): INT8 engine ONNX in ONNX Runtime vs the source model in TensorFlow".format(
        batch) in captured.out
    assert "note: INT8: this compares the INT8 engine ONNX with the source, so the difference includes the " \
           "quantisation error; no FP32 tolerance is applied" in captured.out
    checked = _max_diffs(captured.out)
    # the same rows: INT8 vs TensorFlow is INT8 vs the FP32 engine ONNX up to FP32's own ~1e-6
    assert len(checked) == 1 and checked[0] == pytest.approx(info["max_abs_diff"], abs=1e-3), captured.out
    assert captured.out.splitlines()[-1] == _one(out, "tiny_sm_int8", ".bin")


def test_int8_with_its_own_calibration_batch(keras_model, tmp_path, capsys):
    needs_tf()
    needs_rtx()
    pytest.importorskip("modelopt.onnx.quantization", reason="INT8 Q/DQ needs NVIDIA ModelOpt")
    other = tmp_path / "other.npy"
    np.save(str(other), np.random.default_rng(7).uniform(0, 1, (10, 24, 40, 3)).astype(np.float32))
    out = tmp_path / "o"
    code = optimize_model.main(["-m", str(keras_model / "tiny_sm"), "-o", str(out), "--int8", "--calib", str(other),
                                "-i", str(keras_model / "batch.npy")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Warning" not in captured.err
    info = _int8_build(out, "tiny_sm_int8")["int8"]
    assert info["calib_sha256"] == _sha256(other) and info["calib_sha256"] != _sha256(keras_model / "batch.npy")
    assert (info["frames"], info["held_out"]) == (8, 2)  # every fifth of 10 rows held out
    rows, kind, diff, _ = _int8_line(captured.out)
    assert (rows, kind) == (2, "held-out") and info["max_abs_diff"] > 0
    assert diff == pytest.approx(info["max_abs_diff"], rel=1e-2)
    assert "INT8 engine ONNX in ONNX Runtime vs the source model in TensorFlow" in captured.out


def test_int8_calibration_batch_that_does_not_fit(tmp_path):
    pytest.importorskip("modelopt.onnx.quantization", reason="INT8 Q/DQ needs NVIDIA ModelOpt")
    needs_rtx()
    path = _dynamic_conv(tmp_path / "dyn.onnx")
    np.save(str(tmp_path / "b.npy"), np.zeros((2, 3, 20, 28), np.float32))
    np.save(str(tmp_path / "c.npy"), np.zeros((4, 20, 28, 3), np.float32))  # NHWC: not the model's NCHW
    proc = cli.run("-m", path, "-o", tmp_path / "o", "-i", tmp_path / "b.npy", "--int8", "--calib",
                   tmp_path / "c.npy", script=SCRIPT)
    cli.assert_one_line_error(proc, 2, "calibration batch {} has shape (4, 20, 28, 3) but the model input 'x' is "
                                       "[?, 3, 20, 28]".format(tmp_path / "c.npy"))


def _model_with_input(dims):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("rows, dims, count, calib, held, whole", [
    (20, ["N", 3], 500, 16, 4, False),  # every fifth row held out
    (8, ["N", 3], 500, 7, 1, False),
    (7, ["N", 3], 500, 7, 7, True),  # < 8 rows: the whole batch calibrates and measures
    (20, ["N", 3], 5, 5, 4, False),  # --calib-count caps the calibration rows, not the held-out ones
    (11, [2, 3], 500, 8, 2, False),  # a fixed batch of 2: whole batches (the odd row dropped)
    (8, [2, 3], 500, 8, 8, True),  # 4 batches of 2: too few to hold one out
])
def test_plain_int8_rows(tmp_path, rows, dims, count, calib, held, whole):
    from trtedge.engines import int8

    path = tmp_path / "c.npy"
    np.save(str(path), np.arange(rows * 3, dtype=np.float64).reshape(rows, 3))  # float64: cast to the input's
    got = int8.plain_rows(str(path), _model_with_input(dims), count)
    assert (len(got.calib), len(got.held_out), got.whole) == (calib, held, whole)
    assert got.calib.dtype == np.float32 and got.input_name == "x" and got.sha256 == _sha256(path)
    if not whole:  # held-out rows are never calibrated on
        assert not set(got.calib[:, 0].tolist()) & set(got.held_out[:, 0].tolist())


def test_trtedge_build_of_a_plain_model_refuses_images_and_the_calibrator(tmp_path):
    needs_rtx()
    path = _dynamic_conv(tmp_path / "dyn.onnx")
    (tmp_path / "frames").mkdir()
    proc = cli.run("build", path, "--family", "none", "--precision", "int8", "--calib", tmp_path / "frames",
                   "--out", tmp_path / "o")
    cli.assert_one_line_error(proc, 2, "is not a .npy batch: dyn is a plain model (family none), calibrated on a "
                                       ".npy batch of its own input")
    np.save(str(tmp_path / "c.npy"), np.zeros((2, 3, 8, 8), np.float32))
    proc = cli.run("build", path, "--family", "none", "--precision", "int8", "--calib", tmp_path / "c.npy",
                   "--int8-road", "calibrator", "--out", tmp_path / "o")
    cli.assert_one_line_error(proc, 2, "INT8 for a plain model (family 'none') is Q/DQ only")
    assert not list((tmp_path / "o").glob("*.bin"))
