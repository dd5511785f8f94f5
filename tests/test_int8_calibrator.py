"""The weak-typed road's INT8 calibrator (TensorRT 8.5-10) through a seam.

No full TensorRT and no GPU here, so a fake ``tensorrt`` module stands in for
the builder side (flags, calibration profile, layers, the calibrator base
class) and a host-memory CUDA layer for the device: the tests drive the
calibrator the way TensorRT does (read the cache, ask for batches until none
is left, write the cache) and check what reached "device memory", what was
written to disk and that a rebuild of the same engine ONNX reuses it. They
are unit tests of trtedge's side, not of TensorRT.
"""

import enum
import json
import types

import numpy as np
import onnx
import pytest
import yaml

import cli
import int8_models
from trtedge.engines import calibration, calibrator
from trtedge.errors import BuildError

H = W = 16


# ------------------------------------------------------------------ fakes


class Memory(object):
    """A CUDA layer whose device memory is host memory (the part of CudaApi the calibrator uses)."""

    def __init__(self):
        self.blocks = {}
        self.next = 0x1000
        self.copies = 0

    def malloc(self, nbytes):
        ptr = self.next
        self.next += nbytes + 0x100
        self.blocks[ptr] = bytearray(nbytes)
        mem = self

        class Buffer(object):
            def __init__(self):
                self.ptr, self.nbytes, self.freed = ptr, nbytes, False

            def __int__(self):
                return self.ptr

            def free(self):
                self.freed = True
                mem.blocks.pop(self.ptr, None)

        return Buffer()

    def memcpy_htod_async(self, dst, src, stream=None):
        self.blocks[int(dst)][: src.nbytes] = src.tobytes()
        self.copies += 1

    def synchronize(self):
        pass


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    OBEY_PRECISION_CONSTRAINTS = 9


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3


class Tensor(object):
    def __init__(self, name, shape, dtype=DataType.FLOAT):
        self.name, self.shape, self.dtype = name, shape, dtype


class Layer(object):
    def __init__(self, name, dtypes=(DataType.FLOAT,)):
        self.name = name
        self.outputs = [Tensor(name + "_out", (), d) for d in dtypes]
        self.precision = None
        self.output_types = {}

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_output(self, j):
        return self.outputs[j]

    def set_output_type(self, j, dtype):
        self.output_types[j] = dtype


class Network(object):
    def __init__(self, layers, batch=-1):
        self.inputs = [Tensor("images", (batch, H, W, 3))]
        self.layers = layers

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class Profile(object):
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (list(lo), list(opt), list(hi))


class Config(object):
    def __init__(self):
        self.flags = set()
        self.int8_calibrator = None
        self.calibration_profile = None

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile
        return True


class Builder(object):
    def create_optimization_profile(self):
        return Profile()


def fake_trt():
    mod = types.ModuleType("tensorrt")
    mod.__version__ = "10.3.0.26"

    class IInt8EntropyCalibrator2(object):
        def __init__(self):
            pass

    mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    mod.BuilderFlag = BuilderFlag
    mod.float32, mod.float16 = DataType.FLOAT, DataType.HALF
    mod.Dims = lambda dims: tuple(dims)
    return mod


CAPS = types.SimpleNamespace(module="tensorrt", version="10.3.0.26", int8_flag=True, strongly_typed_flag=True,
                             strongly_typed_only=False)


@pytest.fixture
def frames(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (30, 24, 32, 3), dtype=np.uint8)  # 4:3 frames, letterboxed into 16x16
    path = tmp_path / "calib.npy"
    np.save(str(path), data)
    return path


def make_plan(tmp_path, calib, float_layers=()):
    fit = calibration.InputFit(H, W, "letterbox", 114, swap_rb=False)

    class Plan(object):
        road = "calibrator"
        cache_path = str(tmp_path / "m_int8.calib")

        def __init__(self):
            self.calib = None if calib is None else str(calib)
            self.float_layers = tuple(float_layers)
            self.read = 0

        def frames(self):
            self.read += 1
            return calibration.read(self.calib, 24, fit)

    return Plan()


def engine_onnx(tmp_path, content=b"fake engine onnx"):
    path = tmp_path / "m_int8.onnx"
    path.write_bytes(content)
    return str(path)


def run_calibration(cal, names=("images",)):
    """What TensorRT does with a calibrator: cache first, then batches until there are none."""
    cache = cal.read_calibration_cache()
    batches = []
    if cache is None:
        while True:
            ptrs = cal.get_batch(list(names))
            if not ptrs:
                break
            batches.append(list(ptrs))
            assert len(batches) < 100
        cal.write_calibration_cache(memoryview(b"TRT-10030-EntropyCalibration2\nimages: 3c010a14\n"))
    return cache, batches


# ------------------------------------------------------------------ tests


def test_configure_sets_int8_calibrator_profile_and_float_layers(tmp_path, frames):
    mod, config = fake_trt(), Config()
    layers = [Layer("stem"), Layer("mix"), Layer("head"), Layer("head_1"), Layer("head_shape", (DataType.INT32,)),
              Layer("heads_other")]
    plan = make_plan(tmp_path, frames, float_layers=("head", "gone"))
    road, keep = calibrator.configure(mod, CAPS, Builder(), Network(layers), config, plan, engine_onnx(tmp_path),
                                      strongly=False, max_batch=4, api=Memory())
    assert road == "builder_flag" and keep is config.int8_calibrator
    assert {BuilderFlag.INT8, BuilderFlag.OBEY_PRECISION_CONSTRAINTS} <= config.flags
    assert BuilderFlag.FP16 not in config.flags
    # dynamic batch: calibration runs at min = opt = max = (4, H, W, 3)
    assert config.calibration_profile.shapes["images"] == ([4, H, W, 3],) * 3
    assert keep.get_batch_size() == 4
    pinned = {layer.name: (layer.precision, layer.output_types) for layer in layers if layer.precision is not None}
    assert pinned == {"head": (DataType.FLOAT, {0: DataType.FLOAT}), "head_1": (DataType.FLOAT, {0: DataType.FLOAT})}
    assert plan.read == 0  # nothing is read until TensorRT asks for a batch


def test_batches_reach_the_device_as_the_input_sees_them(tmp_path, frames):
    mem = Memory()
    plan = make_plan(tmp_path, frames)
    config = Config()
    _, cal = calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), config, plan, engine_onnx(tmp_path),
                                  strongly=False, max_batch=8, api=mem)
    expect = calibration.read(str(frames), 24, calibration.InputFit(H, W)).calib
    assert expect.shape == (24, H, W, 3) and np.all(expect[:, :2] == 114)  # letterboxed: pad rows on top
    got = []
    assert cal.read_calibration_cache() is None
    while True:
        ptrs = cal.get_batch(["images"])
        if not ptrs:
            break
        assert len(ptrs) == 1
        got.append(np.frombuffer(bytes(mem.blocks[ptrs[0]]), np.uint8).reshape(8, H, W, 3).copy())
    assert len(got) == 3 and cal.batches_given == 3 and mem.copies == 3
    np.testing.assert_array_equal(np.concatenate(got), expect)
    assert cal.device is None and not mem.blocks  # freed after the last batch


def test_cache_written_keyed_by_the_engine_onnx_and_reused(tmp_path, frames):
    onnx_path = engine_onnx(tmp_path)
    plan = make_plan(tmp_path, frames)
    _, cal = calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), plan, onnx_path,
                                  strongly=False, max_batch=8, api=Memory())
    cache, batches = run_calibration(cal)
    assert cache is None and len(batches) == 3 and cal.cache_written
    data = (tmp_path / "m_int8.calib").read_bytes()
    header, body = data.split(b"\n", 1)
    assert header == calibrator.CACHE_TAG + b" " + calibrator.file_sha256(onnx_path).encode()
    assert body.startswith(b"TRT-10030-EntropyCalibration2")

    # a rebuild of the same engine ONNX: the cache is handed back, no frame is read, no --calib needed
    again = make_plan(tmp_path, None)
    mem = Memory()
    _, cal2 = calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), again, onnx_path,
                                   strongly=False, max_batch=8, api=mem)
    cache2, batches2 = run_calibration(cal2)
    assert cache2 == body and batches2 == [] and cal2.cache_read and again.read == 0 and mem.copies == 0

    # another engine ONNX: the cache does not fit it, calibration runs again and replaces it
    other = engine_onnx(tmp_path, b"another engine onnx")
    plan3 = make_plan(tmp_path, frames)
    _, cal3 = calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), plan3, other,
                                   strongly=False, max_batch=8, api=Memory())
    cache3, batches3 = run_calibration(cal3)
    assert cache3 is None and len(batches3) == 3
    assert (tmp_path / "m_int8.calib").read_bytes().split(b"\n", 1)[0].endswith(
        calibrator.file_sha256(other).encode())

    # and without frames and without a fitting cache, the build is refused before TensorRT starts
    (tmp_path / "m_int8.calib").unlink()
    with pytest.raises(BuildError, match="needs frames: no --calib"):
        calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), make_plan(tmp_path, None), other,
                             strongly=False, max_batch=8, api=Memory())


def test_errors_in_a_callback_end_calibration_without_raising(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(str(bad), np.zeros((4, 8, 8), np.float32))
    _, cal = calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), make_plan(tmp_path, bad),
                                  engine_onnx(tmp_path), strongly=False, max_batch=8, api=Memory())
    assert cal.get_batch(["images"]) is None
    assert "a calibration batch is uint8 [N, H, W, 3]" in cal.error
    assert cal.get_batch(["images"]) is None  # stays ended


def test_roads_and_typing(tmp_path, frames):
    qdq = types.SimpleNamespace(road="qdq")
    config = Config()
    assert calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), config, qdq, engine_onnx(tmp_path),
                                strongly=True, max_batch=1) == ("onnx_types", None)
    assert config.flags == set()  # strongly typed: INT8 comes from the Q/DQ nodes
    caps8 = types.SimpleNamespace(**dict(vars(CAPS), strongly_typed_flag=False))
    assert calibrator.configure(fake_trt(), caps8, Builder(), Network([]), config, qdq, engine_onnx(tmp_path),
                                strongly=False, max_batch=1)[0] == "onnx_types"
    assert config.flags == {BuilderFlag.INT8}  # TensorRT 8.5/8.6: explicit quantisation needs the flag
    assert calibrator.wants_strong_typing(CAPS, qdq) and not calibrator.wants_strong_typing(caps8, qdq)
    assert not calibrator.wants_strong_typing(CAPS, make_plan(tmp_path, frames))
    with pytest.raises(BuildError, match="cannot calibrate INT8"):
        calibrator.configure(fake_trt(), CAPS, Builder(), Network([]), Config(), make_plan(tmp_path, frames),
                             engine_onnx(tmp_path), strongly=True, max_batch=1)
    fixed = Network([], batch=2)
    config = Config()
    _, cal = calibrator.configure(fake_trt(), CAPS, Builder(), fixed, config, make_plan(tmp_path, frames),
                                  engine_onnx(tmp_path), strongly=False, max_batch=2, api=Memory())
    assert cal.get_batch_size() == 2 and config.calibration_profile is None  # a fixed batch needs no profile


def test_calibrator_road_engine_onnx_carries_the_layers_to_keep(tmp_path):
    """``--onnx-only --int8-road calibrator`` (make the ONNX on a desktop, build on the Jetson): the engine ONNX
    stays FP32 and its INT8 record names the layers the gate keeps in float; a rebuild plan gets them."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("modelopt.onnx.quantization", reason="the gate simulates INT8 with NVIDIA ModelOpt")
    from trtedge.engines import int8
    from trtedge.runtime.postprocess import fit_into
    from trtedge.datasets.shapes import generate

    onnx.save(int8_models.make(), str(tmp_path / "overflow.onnx"))
    (tmp_path / "overflow.yaml").write_text(yaml.safe_dump(int8_models.spec("overflow.onnx")))
    data = np.zeros((80, 64, 64, 3), np.uint8)
    for i in range(80):
        fit_into(generate(31, i, (64, 64)).image, data[i])
    np.save(str(tmp_path / "calib.npy"), data)
    out = tmp_path / "out"
    proc = cli.run("build", tmp_path / "overflow.yaml", "--precision", "int8", "--calib", tmp_path / "calib.npy",
                   "--calib-count", "64", "--int8-road", "calibrator", "--onnx-only", "--out", out)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "overflow_int8.json").read_text())
    assert m["precision"] == "int8" and m["precision_road"] == "builder_flag"
    info = m["int8"]
    assert info["road"] == "calibrator" and info["layers_kept"] == ["head"]
    assert info["calibration_cache"] == "overflow_int8.calib" and "entropy calibrator" in info["quantizer"]
    model = onnx.load(str(out / "overflow_int8.onnx"))
    assert not [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert int8.record_of(model).layers_kept == ("head",)

    # what the device's rebuild does with it: the plan gets the layers, TensorRT pins them to FP32
    from trtedge.specs import spec_from_dict
    from trtedge.config import BuildConfig

    spec = spec_from_dict(m["spec"])
    plan = int8.plan(BuildConfig.create(precision="int8", int8_road="calibrator"), spec, str(out / "overflow_int8.bin"))
    assert int8.apply(model, plan, lambda msg: None) is model and plan.float_layers == ("head",)
    layers = [Layer("stem"), Layer("mix"), Layer("head")]
    plan.cache_path = str(tmp_path / "none.calib")
    plan.calib = str(tmp_path / "calib.npy")
    calibrator.configure(fake_trt(), CAPS, Builder(), Network(layers), Config(), plan,
                         str(out / "overflow_int8.onnx"), strongly=False, max_batch=1, api=Memory())
    assert [layer.name for layer in layers if layer.precision == DataType.FLOAT] == ["head"]
