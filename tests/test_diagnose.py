"""Memory and resource errors that say what to do (trtedge.engines.diagnose).

No GPU here, so TensorRT's, CUDA's and TensorFlow's own messages (as they
print them) are fed through the seams: the mapping itself, the builder's
failure functions, a TensorRT module whose Builder cannot start, the
TensorFlow conversion, TensorFlow's memory settings, and the CLI's handlers
for a full disk (a write that really fails: the staged file is opened on
``/dev/full``) and for host memory.
"""

import errno
import os
import re
import types

import onnx
import pytest

import models
from trtedge import cli
from trtedge.engines import diagnose as dg
from trtedge.engines import tensorrt_build as tb
from trtedge.engines import tf_source
from trtedge.errors import BuildError, ModelError, TrtedgeError
from trtedge.utils import files

# (message as the tool prints it, where, rule it must map to)
KNOWN = [
    # TensorRT 8.x / 10.x builder
    ("10: [optimizer.cpp::computeCosts::3728] Error Code 10: Internal Error (Could not find any implementation "
     "for node {ForeignNode[Conv_0...Relu_9]} due to insufficient workspace. See verbose log for requested sizes.)",
     "tensorrt", "workspace"),
    ("Some tactics do not have sufficient workspace memory to run. Increasing workspace size will enable more "
     "tactics, please check verbose output for requested sizes.", "tensorrt", "workspace"),
    ("Skipping tactic 0x0000000000000003 due to insufficient memory on requested size of 4294967296 detected for "
     "tactic 0x0000000000000005.", "tensorrt", "workspace"),
    ("1: [defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)", "tensorrt",
     "gpu_memory"),
    ("2: [virtualMemoryBuffer.cpp::resizePhysical::140] Error Code 2: OutOfMemory (Requested size was 34359738368 "
     "bytes.)", "tensorrt", "gpu_memory"),
    ("Requested amount of GPU memory (1073741824 bytes) could not be allocated. There may not be enough free memory "
     "for allocation to succeed.", "tensorrt", "gpu_memory"),
    ("[executionContext.cpp::commonEmitDebugTensor::1270] Error Code 1: Cuda Runtime (cudaErrorMemoryAllocation)",
     "tensorrt", "gpu_memory"),
    ("CUDA initialization failure with error: 2. Please check your CUDA installation", "tensorrt", "gpu_memory"),
    ("NvMapMemAllocInternalTagged: 1075072515 error 12", "tensorrt", "gpu_memory"),
    ("1: [cublasWrapper.cpp::cublasWrapper::85] Error Code 1: Cublas (CUBLAS_STATUS_NOT_INITIALIZED)", "tensorrt",
     "cuda_libraries"),
    ("1: [cudnnWrapper.cpp::CudnnWrapper::90] Error Code 1: Cudnn (CUDNN_STATUS_NOT_INITIALIZED)", "tensorrt",
     "cuda_libraries"),
    ("std::bad_alloc", "tensorrt", "host_memory"),
    # TensorFlow
    ("ResourceExhaustedError: OOM when allocating tensor with shape[1,512,38,38] and type float on "
     "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc", "tensorflow", "tf_gpu_memory"),
    ("failed to allocate 3.77G (4046333952 bytes) from device: CUDA_ERROR_OUT_OF_MEMORY: out of memory",
     "tensorflow", "tf_gpu_memory"),
    ("Could not create cudnn handle: CUDNN_STATUS_INTERNAL_ERROR", "tensorflow", "cuda_libraries"),
    ("UnknownError: Failed to get convolution algorithm. This is probably because cuDNN failed to initialize, so "
     "try looking to see if a warning log message was printed above.", "tensorflow", "cuda_libraries"),
    ("InternalError: Blas GEMM launch failed : a.shape=(1, 1280), b.shape=(1280, 1001), m=1, n=1001, k=1280",
     "tensorflow", "cuda_libraries"),
    ("OSError: [Errno 28] No space left on device", "tensorflow", "disk_full"),
]


@pytest.mark.parametrize("line, where, rule", KNOWN, ids=["{}-{}".format(k[2], i) for i, k in enumerate(KNOWN)])
def test_known_messages_map_to_their_cause(line, where, rule):
    found = dg.diagnose(["[W] some unrelated warning", line], where)
    assert found is not None and found.rule == rule, found
    assert found.line == line
    assert found.cause and found.advice and found.hint() == "{}: {}".format(found.cause, found.advice)


def test_unrelated_messages_are_not_diagnosed():
    assert dg.diagnose(["Network has dynamic or shape inputs, but no optimization profile has been defined.",
                        "layer 'nms' has no runners that implement it"]) is None
    assert dg.diagnose([]) is None


def test_the_same_words_from_tensorflow_and_tensorrt_mean_different_fixes():
    line = "failed to allocate 3.77G (4046333952 bytes) from device: CUDA_ERROR_OUT_OF_MEMORY: out of memory"
    tf = dg.diagnose([line], "tensorflow")
    trt = dg.diagnose([line], "tensorrt")
    assert tf.rule == "tf_gpu_memory" and "-g" in tf.advice and "TF_FORCE_GPU_ALLOW_GROWTH=true" in tf.advice
    assert trt.rule == "gpu_memory" and "close other GPU programs" in trt.advice and "swap" in trt.advice


def test_advice_names_the_flag_to_change():
    gpu = dg.diagnose(["Error Code 2: OutOfMemory"]).hint()
    assert "--batch" in gpu and "--workspace 512M" in gpu and "on a Jetson, add swap" in gpu
    libs = dg.diagnose(["CUBLAS_STATUS_NOT_INITIALIZED"]).hint()
    assert "-g" in libs and "-l MB" in libs
    default = dg.diagnose(["insufficient workspace"]).hint()
    assert "TensorRT's default" in default and "--workspace 2G" in default
    small = dg.diagnose(["insufficient workspace"], workspace=256 << 20).hint()
    assert "256M set by --workspace" in small and "--workspace 1G" in small
    big = dg.diagnose(["insufficient workspace"], workspace=2 << 30).hint()
    assert "2G set by --workspace" in big and "--workspace 8G" in big


def test_build_warnings_count_only_when_the_errors_say_nothing():
    no_impl = ["Error Code 10: Internal Error (Could not find any implementation for node Conv_0.)"]
    warned = ["Some tactics do not have sufficient workspace memory to run."]
    assert dg.diagnose_build(no_impl, warned).rule == "workspace"
    oom = ["Error Code 1: Cuda Runtime (out of memory)"]
    assert dg.diagnose_build(oom, warned).rule == "gpu_memory"  # the error wins over the warning
    assert dg.diagnose_build([], [], exc=RuntimeError("std::bad_alloc")).rule == "host_memory"


# ---------------------------------------------------------------- the builder's failure paths


def _caps(module="tensorrt", version="10.3.0"):
    return tb.Capabilities(
        module=module, version=version, strongly_typed_only=False, fp16_flag=True, int8_flag=True,
        explicit_batch_flag=False, strongly_typed_flag=True, memory_pools=True, progress_monitor=True,
        version_compatible=True, hardware_compat=True, plugins=(), efficient_nms_plugin=False, nms_layer=True,
        timing_cache=True)


def _sink(errors=(), warnings=()):
    sink = tb._Sink(False)
    sink.errors = list(errors)
    sink.warnings = list(warnings) + list(errors)
    return sink


def test_build_failure_out_of_workspace_names_the_flag():
    sink = _sink(errors=["10: [optimizer.cpp::computeCosts::3728] Error Code 10: Internal Error (Could not find "
                         "any implementation for node {ForeignNode[Conv_0]}.)"],
                 warnings=["Skipping tactic 0x3 due to insufficient memory on requested size of 4294967296"])
    err = tb._build_failure(_caps(), "/o/yolo_fp16.onnx.partial-4242", sink, tb.BuildOptions(workspace=256 << 20))
    text = str(err)
    assert isinstance(err, BuildError) and "\n" not in text
    assert text.startswith("TensorRT (tensorrt 10.3.0) could not build yolo_fp16.onnx: ")  # the staged name is not shown
    assert "Could not find any implementation" in text
    assert "builder workspace (256M set by --workspace) is too small" in text and "--workspace 1G" in text


def test_build_failure_out_of_gpu_memory_from_an_exception():
    err = tb._build_failure(_caps(), "m.onnx", _sink(), tb.BuildOptions(),
                            RuntimeError("[virtualMemoryBuffer.cpp::resizePhysical::140] Error Code 2: OutOfMemory"))
    assert "the GPU ran out of memory: close other GPU programs" in str(err) and "--batch" in str(err)


def test_build_failure_keeps_the_more_specific_hint():
    sink = _sink(errors=["[nms] has no runners that implement it"],
                 warnings=["Some tactics do not have sufficient workspace memory to run."])
    text = str(tb._build_failure(_caps("tensorrt_rtx", "1.7.1.116"), "m.onnx", sink, tb.BuildOptions()))
    assert "has no implementation in tensorrt_rtx" in text and "workspace" not in text


def test_parse_failure_out_of_memory():
    error = types.SimpleNamespace(desc=lambda: "std::bad_alloc", code=lambda: "ErrorCode.INTERNAL_ERROR",
                                  node=lambda: -1)
    parser = types.SimpleNamespace(num_errors=1, get_error=lambda i: error)
    text = str(tb._parse_failure(_caps(), parser, "big.onnx", _sink()))
    assert "could not parse big.onnx: std::bad_alloc" in text and "out of host memory" in text and "swap" in text


def _fake_trt_whose_builder_cannot_start(message):
    mod = types.ModuleType("tensorrt")
    mod.__version__ = "10.3.0"
    enum = lambda *names: type("E", (), {"__members__": {n: i for i, n in enumerate(names)}})  # noqa: E731
    mod.BuilderFlag = enum("FP16", "INT8")
    mod.NetworkDefinitionCreationFlag = enum("STRONGLY_TYPED")
    mod.ILogger = type("ILogger", (), {"__init__": lambda self: None})

    def builder(logger):
        logger.log(1, message)  # what TensorRT logs before the binding gives up
        raise TypeError("pybind11::init(): factory function returned nullptr")

    mod.Builder = builder
    mod.OnnxParser = object
    return mod


def test_builder_that_cannot_start_says_why(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(models.make("anchor_free"), str(path))
    mod = _fake_trt_whose_builder_cannot_start("CUDA initialization failure with error: 2. Please check your CUDA "
                                               "installation: http://docs.nvidia.com/cuda/")
    with pytest.raises(BuildError) as info:
        tb.build_engine(str(path), tb.BuildOptions(), trt=mod)
    text = str(info.value)
    assert "could not build m.onnx" in text and "factory function returned nullptr" in text
    assert "the GPU ran out of memory" in text


# ---------------------------------------------------------------- TensorFlow


class ResourceExhaustedError(Exception):
    """Stands for tf.errors.ResourceExhaustedError (the name and message are what the mapping reads)."""


def test_tf_conversion_out_of_gpu_memory(tmp_path, monkeypatch):
    saved = tmp_path / "sm"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    monkeypatch.setattr(tf_source, "_import_tf", lambda fmt: (object(), object()))

    def load(tf, path):  # what _load_saved_model does with TensorFlow's exception
        try:
            raise ResourceExhaustedError("OOM when allocating tensor with shape[1,300,300,32] and type float on "
                                         "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")
        except Exception as exc:
            raise ModelError("cannot load SavedModel {}: {}".format(path, exc))

    monkeypatch.setattr(tf_source, "_load_saved_model", load)
    with pytest.raises(TrtedgeError) as info:
        tf_source.convert(str(saved), "savedmodel", None)
    text = str(info.value)
    assert "\n" not in text and "TensorFlow failed converting {}".format(saved) in text
    assert "OOM when allocating" in text and "optimize_model.py -g" in text and "-l 2048" in text


def test_tf_conversion_cudnn_that_cannot_start(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    path.write_bytes(b"x")
    monkeypatch.setattr(tf_source, "_import_tf", lambda fmt: (object(), object()))

    def load(tf, p):
        raise RuntimeError("Failed to get convolution algorithm. This is probably because cuDNN failed to initialize")

    monkeypatch.setattr(tf_source, "_load_keras", load)
    with pytest.raises(TrtedgeError) as info:
        tf_source.convert(str(path), "keras", None)
    assert "cuBLAS/cuDNN could not initialise" in str(info.value) and "-g" in str(info.value)


def test_tf_conversion_other_errors_are_untouched(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    path.write_bytes(b"x")
    monkeypatch.setattr(tf_source, "_import_tf", lambda fmt: (object(), object()))
    monkeypatch.setattr(tf_source, "_load_keras", lambda tf, p: (_ for _ in ()).throw(ModelError("not a model")))
    with pytest.raises(ModelError, match="^not a model$"):
        tf_source.convert(str(path), "keras", None)


class _FakeConfig:
    """tf.config with two GPUs: records what trtedge asks of it."""

    def __init__(self, gpus, fail=False):
        self.gpus = gpus
        self.calls = []
        self.fail = fail
        self.experimental = types.SimpleNamespace(set_memory_growth=self._growth)
        self.LogicalDeviceConfiguration = lambda memory_limit: ("logical", memory_limit)

    def list_physical_devices(self, kind):
        assert kind == "GPU"
        return list(self.gpus)

    def _growth(self, gpu, on):
        if self.fail:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        self.calls.append(("growth", gpu, on))

    def set_logical_device_configuration(self, gpu, configs):
        self.calls.append(("limit", gpu, configs))


def test_tf_memory_growth_on_every_gpu():
    tf = types.SimpleNamespace(config=_FakeConfig(["GPU:0", "GPU:1"]))
    notes = tf_source.configure_memory(growth=True, tf=tf)
    assert tf.config.calls == [("growth", "GPU:0", True), ("growth", "GPU:1", True)]
    assert notes == ["TensorFlow: memory growth on 2 GPUs"]


def test_tf_memory_limit_is_a_logical_device_per_gpu():
    tf = types.SimpleNamespace(config=_FakeConfig(["GPU:0"]))
    assert tf_source.configure_memory(limit_mb=1024, tf=tf) == ["TensorFlow: a 1024 MB memory limit on 1 GPU"]
    assert tf.config.calls == [("limit", "GPU:0", [("logical", 1024)])]


def test_tf_memory_settings_refused_and_explained():
    with pytest.raises(TrtedgeError, match="not both"):
        tf_source.configure_memory(growth=True, limit_mb=10, tf=None)
    with pytest.raises(TrtedgeError, match="at least 1"):
        tf_source.configure_memory(limit_mb=0, tf=None)
    late = types.SimpleNamespace(config=_FakeConfig(["GPU:0"], fail=True))
    with pytest.raises(TrtedgeError) as info:
        tf_source.configure_memory(growth=True, tf=late)
    assert "cannot be modified after being initialized" in str(info.value)
    assert "must be set before TensorFlow runs anything" in str(info.value)
    cpu = types.SimpleNamespace(config=_FakeConfig([]))
    assert "sees no GPU" in tf_source.configure_memory(growth=True, tf=cpu)[0]
    assert tf_source.configure_memory(tf=None) == []  # nothing asked: TensorFlow is not even imported


# ---------------------------------------------------------------- a full disk, host memory (the CLI)


def test_disk_full_message():
    line = dg.disk_full("/data/out/m_fp32.bin.partial-77", needed=5_300_000)
    assert line.startswith("no space left on device writing /data/out/m_fp32.bin: it needs 5.3 MB, ")
    assert "MB free (the disk is full: free " in line and line.endswith(" there or choose another --out)")
    real = str(os.path.dirname(os.path.abspath(__file__)))
    huge = dg.disk_full(os.path.join(real, "x.bin"), needed=1 << 60)
    asked = re.search(r"free at least (\d+) MB there", huge)
    assert asked and abs(int(asked.group(1)) - ((1 << 60) - dg._free_bytes(real)) / 1e6) < 1e4, huge
    assert dg.final_path("x.onnx.partial-1.partial-1") == "x.onnx"
    assert "no space left on device" in dg.disk_full(None)


@pytest.fixture
def full_disk_for(monkeypatch):
    """Writes of a staged file whose name matches ``pattern`` go to /dev/full: the kernel's own ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not there to fill")
    real_open = open

    def arm(pattern):
        def fake_open(path, mode="r", *args, **kwargs):
            if re.search(pattern, str(path)) and "w" in mode:
                return real_open("/dev/full", mode, *args, **kwargs)
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(files, "open", fake_open, raising=False)

    return arm


def _build_cli(tmp_path, capsys, *extra):
    path = tmp_path / "tiny.onnx"
    onnx.save(models.make("anchor_free"), str(path))
    out = tmp_path / "out"
    code = cli.main(["build", str(path), "--family", "none", "--out", str(out)] + list(extra))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("trtedge: error:")]
    return code, lines, out


def test_full_disk_writing_the_onnx(tmp_path, capsys, full_disk_for):
    full_disk_for(r"_fp32\.onnx\.partial-\d+\.partial-\d+$")
    code, lines, out = _build_cli(tmp_path, capsys, "--onnx-only")
    assert code == 2 and len(lines) == 1, lines
    line = lines[0]
    assert "no space left on device writing {}".format(out / "tiny_fp32.onnx") in line
    assert re.search(r"\.onnx: it needs 0\.\d MB, \S+ has [\d.]+ MB free \(the disk is full: free space there or "
                     r"choose another --out\)$", line), line
    assert sorted(os.listdir(str(out))) == []  # nothing partial left behind


def test_full_disk_writing_the_engine(tmp_path, capsys, full_disk_for):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engine")
    full_disk_for(r"_fp32\.bin\.partial-\d+\.partial-\d+$")
    code, lines, out = _build_cli(tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "no space left on device writing {}".format(out / "tiny_fp32.bin") in lines[0]
    assert sorted(os.listdir(str(out))) == []  # the engine ONNX staged before it is gone too


def test_other_os_errors_keep_their_one_line(tmp_path, capsys, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", "/root/x")

    monkeypatch.setattr("trtedge.engines.pipeline.build", refuse)
    assert cli.main(["build", "shapes_yolo"]) == 2
    assert capsys.readouterr().err.strip() == "trtedge: error: Permission denied (/root/x)"


def test_host_memory(capsys, monkeypatch):
    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr("trtedge.engines.pipeline.build", oom)
    assert cli.main(["build", "shapes_yolo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trtedge: error: out of host memory (the machine ran out of host memory: close other")
    assert "--batch" in err and "add swap" in err and "\n" not in err
