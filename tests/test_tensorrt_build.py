"""trtedge.engines.tensorrt_build: real ahead-of-time builds with TensorRT for RTX.

Tests that need TensorRT take the ``rtx`` fixture, which skips (with the reason)
where ``tensorrt_rtx`` is not installed; the rest run anywhere.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from trtedge.engines import tensorrt_build as tb
from trtedge.errors import BuildError, TrtedgeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rtx():
    return pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (tensorrt_rtx) is not installed")


# --------------------------------------------------------------------------- tiny models


def _save(graph, path, opset=17, extra_opsets=()):
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    )
    model.ir_version = 8
    save(model, str(path))
    return str(path)


def conv_relu(path, batch="N", dtype=TensorProto.FLOAT, height=16, width=16):
    npdt = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(npdt), "W")
    bias = numpy_helper.from_array(rng.normal(size=(4,)).astype(npdt), "B")
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="body/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="body/relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_relu",
        [helper.make_tensor_value_info("x", dtype, [batch, 3, height, width])],
        [helper.make_tensor_value_info("y", dtype, [batch, 4, height, width])],
        [weights, bias],
    )
    return _save(graph, path)


def nms_model(path):
    inits = [
        numpy_helper.from_array(np.array([10], np.int64), "max_boxes"),
        numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
        numpy_helper.from_array(np.array([0.1], np.float32), "score"),
    ]
    node = helper.make_node(
        "NonMaxSuppression", ["boxes", "scores", "max_boxes", "iou", "score"], ["selected"], name="nms/NonMaxSuppression"
    )
    graph = helper.make_graph(
        [node],
        "nms",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 100]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        inits,
    )
    return _save(graph, path)


def unknown_op_model(path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="weird/FancyOp", domain="custom.domain")
    graph = helper.make_graph(
        [node],
        "unknown",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _save(graph, path, extra_opsets=[("custom.domain", 1)])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {
        "dynamic": conv_relu(d / "dynamic.onnx"),
        "fixed": conv_relu(d / "fixed.onnx", batch=1),
        "fp16": conv_relu(d / "fp16.onnx", dtype=TensorProto.FLOAT16),
        "dynamic_hw": conv_relu(d / "dynamic_hw.onnx", height="H", width="W"),
        "nms": nms_model(d / "nms.onnx"),
        "unknown": unknown_op_model(d / "unknown.onnx"),
    }


def one_line(exc):
    text = str(exc)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- no TensorRT needed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4G", 4 << 30),
        ("512M", 512 << 20),
        ("64K", 64 << 10),
        ("1073741824", 1073741824),
        ("4g", 4 << 30),
        ("4GiB", 4 << 30),
        ("2GB", 2 << 30),
        (" 1.5G ", 3 << 29),
        ("0", 0),
    ],
)
def test_parse_size(text, expected):
    assert tb.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "abc", "-1", "4X", "4 G B", "1e9", "4iB"])
def test_parse_size_rejects(text):
    with pytest.raises(TrtedgeError) as info:
        tb.parse_size(text)
    assert "4G" in one_line(info.value)


def test_import_without_tensorrt():
    code = (
        "import sys\n"
        "sys.modules['tensorrt'] = None\n"
        "sys.modules['tensorrt_rtx'] = None\n"
        "import trtedge.engines.tensorrt_build as tb\n"
        "from trtedge.errors import BuildError\n"
        "try:\n"
        "    tb.import_trt()\n"
        "except BuildError as exc:\n"
        "    print(str(exc))\n"
        "else:\n"
        "    raise SystemExit('import_trt() did not raise')\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60
    )
    assert run.returncode == 0, run.stderr.decode()
    out = run.stdout.decode().strip()
    assert len(out.splitlines()) == 1
    assert 'pip install "trtedge[rtx]"' in out
    assert "full TensorRT" in out and "JetPack" in out


def test_import_is_lazy():
    code = (
        "import sys\n"
        "import trtedge.engines.tensorrt_build\n"
        "bad = [m for m in ('tensorrt', 'tensorrt_rtx', 'cuda', 'onnx') if m in sys.modules]\n"
        "print(bad)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, timeout=60)
    assert run.stdout.decode().strip() == "[]"


def test_import_trt_rejects_unknown_name():
    with pytest.raises(TrtedgeError):
        tb.import_trt("tensorrt_llm")


def _enum(*names):
    return type("FakeEnum", (), {"__members__": {n: i for i, n in enumerate(names)}})


def _fake_trt(name, version, builder_flags, network_flags, max_batch_size, add_nms=True, progress=True):
    mod = types.ModuleType(name)
    mod.__version__ = version
    mod.BuilderFlag = _enum(*builder_flags)
    mod.NetworkDefinitionCreationFlag = _enum(*network_flags)
    mod.Builder = type("Builder", (), {"max_batch_size": 1} if max_batch_size else {})
    mod.OnnxParser = type("OnnxParser", (), {})
    mod.MemoryPoolType = _enum("WORKSPACE")
    config = {"set_memory_pool_limit": None, "create_timing_cache": None, "hardware_compatibility_level": None}
    if progress:
        config["progress_monitor"] = None
        mod.IProgressMonitor = type("IProgressMonitor", (), {})
    mod.IBuilderConfig = type("IBuilderConfig", (), config)
    mod.INetworkDefinition = type("INetworkDefinition", (), {"add_nms": None} if add_nms else {})
    mod.HardwareCompatibilityLevel = _enum("NONE", "AMPERE_PLUS")
    creators = [types.SimpleNamespace(name="EfficientNMS_TRT"), types.SimpleNamespace(name="BatchedNMS_TRT")]
    mod.get_plugin_registry = lambda: types.SimpleNamespace(plugin_creator_list=creators)
    return mod


def test_capabilities_of_other_tensorrt_versions():
    """What full TensorRT 8.6 / 10.x / 11.x would answer, from their API surface (no real TensorRT)."""
    jetpack5 = tb.capabilities(
        _fake_trt("tensorrt", "8.6.2", ["FP16", "INT8", "VERSION_COMPATIBLE"], ["EXPLICIT_BATCH"], True, progress=False)
    )
    assert jetpack5.explicit_batch_flag and jetpack5.fp16_flag and jetpack5.int8_flag
    assert not jetpack5.strongly_typed_only and not jetpack5.strongly_typed_flag and not jetpack5.progress_monitor
    assert jetpack5.efficient_nms_plugin and jetpack5.nms_layer and jetpack5.timing_cache and jetpack5.hardware_compat
    ten = tb.capabilities(
        _fake_trt("tensorrt", "10.13.0", ["FP16", "INT8"], ["EXPLICIT_BATCH", "STRONGLY_TYPED"], False)
    )
    assert not ten.explicit_batch_flag  # deprecated and ignored in 10.x: not passed
    assert ten.strongly_typed_flag and ten.fp16_flag and ten.progress_monitor
    eleven = tb.capabilities(_fake_trt("tensorrt", "11.0.0", [], ["STRONGLY_TYPED"], False))
    assert eleven.strongly_typed_only and not eleven.fp16_flag and not eleven.int8_flag
    assert json.loads(json.dumps(eleven.as_dict()))["plugins"] == ["BatchedNMS_TRT", "EfficientNMS_TRT"]


def test_parser_error_without_node_name_is_named_from_the_onnx(models):
    """TensorRT 8.5 reports only the node index; the name and op come from the ONNX file."""
    error = types.SimpleNamespace(node=lambda: 0, desc=lambda: "unsupported")
    assert tb._error_node(error, models["nms"], []) == ("nms/NonMaxSuppression", "NonMaxSuppression")


# --------------------------------------------------------------------------- TensorRT for RTX


def test_import_trt_rtx(rtx):
    assert tb.import_trt("tensorrt_rtx") is rtx
    assert tb.import_trt().__name__ in tb.MODULE_NAMES  # "tensorrt" only where full TensorRT is usable


def test_capabilities_rtx(rtx):
    caps = tb.capabilities(rtx)
    assert caps.module == "tensorrt_rtx" and caps.version == rtx.__version__
    assert caps.strongly_typed_only and not caps.fp16_flag and not caps.int8_flag
    assert caps.strongly_typed_flag and not caps.explicit_batch_flag
    assert caps.memory_pools and caps.progress_monitor
    assert not caps.efficient_nms_plugin and not caps.nms_layer
    assert not caps.timing_cache and not caps.hardware_compat
    assert caps.version_compatible  # the flag exists; the build then fails (see below)
    data = caps.as_dict()
    assert json.loads(json.dumps(data)) == data


def test_build_dynamic_batch_profile(rtx, models):
    progress = []
    result = tb.build_engine(
        models["dynamic"],
        tb.BuildOptions(min_batch=1, opt_batch=2, max_batch=4, workspace=256 << 20),
        trt=rtx,
        progress=progress.append,
    )
    assert result.plan.startswith(b"vtrt") and len(result.plan) > 1000
    assert result.flags["profile"] == {"x": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}
    assert result.flags["strongly_typed"] is True
    assert result.flags["precision_road"] == "none"
    assert result.flags["workspace"] == 256 << 20
    assert result.capabilities.module == "tensorrt_rtx"
    assert set(result.gpu) == {"name", "compute_capability"}
    assert result.seconds > 0
    assert progress and any(m.startswith("Building engine") for m in progress)


def test_build_static_model_batch_one(rtx, models):
    result = tb.build_engine(models["fixed"], tb.BuildOptions(hardware_compat="none"), trt=rtx)
    assert result.plan.startswith(b"vtrt")
    assert result.flags["profile"] is None and result.flags["hardware_compat"] == "none"


def test_build_fp16_typed_onnx(rtx, models):
    result = tb.build_engine(models["fp16"], tb.BuildOptions(precision="fp16", max_batch=2), trt=rtx)
    assert result.plan.startswith(b"vtrt")
    assert result.flags["precision_road"] == "onnx_types" and result.flags["strongly_typed"] is True


def test_fixed_batch_refused(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["fixed"], tb.BuildOptions(max_batch=2), trt=rtx)
    assert "fixed batch of 1" in one_line(info.value)


def test_dynamic_image_size_refused(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["dynamic_hw"], tb.BuildOptions(max_batch=2), trt=rtx)
    text = one_line(info.value)
    assert "'x'" in text and "spec must fix the input size" in text


def test_nms_has_no_runners(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["nms"], tb.BuildOptions(), trt=rtx)
    text = one_line(info.value)
    assert "could not build nms.onnx" in text and "no runners" in text
    assert "tensorrt_rtx" in text


def test_unknown_op_fails_to_parse(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["unknown"], tb.BuildOptions(), trt=rtx)
    text = one_line(info.value)
    assert text.startswith("TensorRT (tensorrt_rtx ")
    assert "could not parse unknown.onnx: node 'weird/FancyOp' (FancyOp)" in text


def test_version_compatible_fails_in_one_line(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["fixed"], tb.BuildOptions(version_compatible=True), trt=rtx)
    text = one_line(info.value)
    assert "version-compatible" in text and "lean" in text


def test_hardware_compat_refused(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["fixed"], tb.BuildOptions(hardware_compat="ampere_plus"), trt=rtx)
    assert "cannot build hardware-compatible engines" in one_line(info.value)


def test_weak_typing_refused(rtx, models):
    with pytest.raises(BuildError) as info:
        tb.build_engine(models["fixed"], tb.BuildOptions(strongly_typed=False), trt=rtx)
    assert "strongly typed networks only" in one_line(info.value)


@pytest.mark.parametrize(
    "options",
    [
        tb.BuildOptions(precision="int8"),
        tb.BuildOptions(min_batch=2, opt_batch=1, max_batch=4),
        tb.BuildOptions(workspace=0),
        tb.BuildOptions(hardware_compat="turing"),
    ],
)
def test_bad_options(rtx, models, options):
    with pytest.raises(TrtedgeError) as info:
        tb.build_engine(models["fixed"], options, trt=rtx)
    one_line(info.value)


def test_missing_onnx(rtx, tmp_path):
    with pytest.raises(BuildError) as info:
        tb.build_engine(str(tmp_path / "nope.onnx"), tb.BuildOptions(), trt=rtx)
    assert "not found" in one_line(info.value)


def test_timing_cache_skipped_on_rtx(rtx, models, tmp_path):
    path = tmp_path / "timing.cache"
    result = tb.build_engine(models["fixed"], tb.BuildOptions(timing_cache=str(path)), trt=rtx)
    assert result.plan.startswith(b"vtrt")
    assert result.flags["timing_cache"] is None and not path.exists()
    assert any("timing cache" in w and "no-ops" in w for w in result.warnings)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # tensorrt_rtx deprecates its timing cache API
def test_timing_cache_written_and_reused(rtx, models, tmp_path, monkeypatch):
    """The read / atomic write path, forced on with tensorrt_rtx (whose cache does nothing)."""
    real = tb.capabilities
    monkeypatch.setattr(tb, "capabilities", lambda mod: dataclasses.replace(real(mod), timing_cache=True))
    path = tmp_path / "caches" / "timing.cache"
    first = tb.build_engine(models["fixed"], tb.BuildOptions(timing_cache=str(path)), trt=rtx)
    assert first.flags["timing_cache"] == {"path": str(path), "loaded": False, "written": True}
    assert path.stat().st_size > 0
    assert os.listdir(str(path.parent)) == ["timing.cache"]  # no temp file left behind
    second = tb.build_engine(models["fixed"], tb.BuildOptions(timing_cache=str(path)), trt=rtx)
    timing = second.flags["timing_cache"]
    assert timing["written"] is True
    # Without a GPU tensorrt_rtx cannot deserialize a cache (it needs CUDA): then it says so.
    assert timing["loaded"] or any("was not loaded" in w and str(path) in w for w in second.warnings)
    path.write_bytes(b"not a timing cache")
    third = tb.build_engine(models["fixed"], tb.BuildOptions(timing_cache=str(path)), trt=rtx)
    assert third.flags["timing_cache"]["loaded"] is False and third.plan.startswith(b"vtrt")
    assert path.read_bytes() != b"not a timing cache"


def test_verbose_forwards_info_to_logging(rtx, models, caplog):
    with caplog.at_level(logging.DEBUG, logger="trtedge"):
        tb.build_engine(models["fixed"], tb.BuildOptions(verbose=True), trt=rtx)
    assert any(r.levelno <= logging.INFO and r.getMessage().startswith("TensorRT: ") for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="trtedge"):
        tb.build_engine(models["fixed"], tb.BuildOptions(), trt=rtx)
    assert not any(r.levelno <= logging.INFO for r in caplog.records)
