"""Unit tests of the TensorRT backend's enqueue logic through a seam.

Neither TensorRT's runtime nor a GPU exists here, so these tests replace both:
a fake ``tensorrt`` module whose execution context records every call and
computes outputs from the bytes it finds at the bound device addresses, and a
CUDA layer whose "device memory" is host memory. They check what the backend
asks of TensorRT and CUDA (order, addresses, shapes, streams, graph capture),
not TensorRT itself. They are unit tests, not end-to-end tests.
"""

import enum
import types

import numpy as np
import pytest

from trtedge.errors import EngineError
from trtedge.runtime.cuda import base as cb
from trtedge.runtime.trt_backend import TensorRTBackend

# ------------------------------------------------------------------ fake CUDA

MEMORY = {}  # ptr -> bytearray


class HostBuffer(cb.DeviceBuffer):
    def _release(self):
        MEMORY.pop(self.ptr, None)


class FakeStream(cb.Stream):
    def __init__(self, log, handle):
        self.log, self.handle = log, handle

    def synchronize(self):
        self.log.append(("sync", self.handle))

    def wait_event(self, event):
        self.log.append(("wait_event", self.handle, event.name))

    def destroy(self):
        pass


class FakeEvent(cb.Event):
    def __init__(self, log, name):
        self.log, self.name = log, name

    def record(self, stream=None):
        self.log.append(("record", self.name, stream.handle if stream else 0))

    def synchronize(self):
        self.log.append(("event_sync", self.name))

    def query(self):
        return True

    def destroy(self):
        pass


class FakeGraphExec(cb.GraphExec):
    def __init__(self, api, calls):
        self.api, self.calls = api, calls

    def launch(self, stream):
        self.api.log.append(("graph_launch", stream.handle))
        for fn in self.calls:
            fn()

    def destroy(self):
        pass


class FakeGraph(cb.Graph):
    def __init__(self, api, calls):
        self.api, self.calls = api, calls

    def instantiate(self):
        return FakeGraphExec(self.api, self.calls)

    def destroy(self):
        pass


class HostCuda(cb.CudaApi):
    """The CUDA layer's interface over host memory; logs every call."""

    name = "fake"
    supports_graphs = True

    def __init__(self):
        super().__init__(0)
        self.log = []
        self.next_ptr = 0x1000
        self.capturing = None
        self.events = 0

    def device_info(self):
        return {"name": "fake", "compute_capability": "0.0", "total_memory": 0}

    def malloc(self, nbytes):
        ptr = self.next_ptr
        self.next_ptr += max(int(nbytes), 1) + 0x100
        MEMORY[ptr] = bytearray(int(nbytes))
        return HostBuffer(ptr, nbytes)

    def pinned_empty(self, shape, dtype=np.uint8):
        return np.zeros(shape, dtype)

    def stream(self):
        self.next_ptr += 1
        return FakeStream(self.log, self.next_ptr)

    def event(self, timing=True):
        self.events += 1
        return FakeEvent(self.log, "ev{}".format(self.events))

    def elapsed_ms(self, start, end):
        return 1.0

    def synchronize(self):
        pass

    def _htod(self, dst, src, stream):
        MEMORY[dst][: src.nbytes] = src.tobytes()
        self.log.append(("htod", dst, src.nbytes, stream.handle))

    def _dtoh(self, dst, src, stream):
        dst[...] = np.frombuffer(bytes(MEMORY[src][: dst.nbytes]), np.uint8)
        self.log.append(("dtoh", src, dst.nbytes, stream.handle))

    def _begin_capture(self, stream, mode):
        self.capturing = []
        self.log.append(("begin_capture", stream.handle))

    def _end_capture(self, stream):
        calls, self.capturing = self.capturing, None
        self.log.append(("end_capture", stream.handle))
        return FakeGraph(self, calls)


# ------------------------------------------------------------------ fake TensorRT

class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


H, W, K = 8, 8, 4
IO = [
    ("images", TensorIOMode.INPUT, DataType.UINT8, (-1, H, W, 3)),
    ("num_detections", TensorIOMode.OUTPUT, DataType.INT32, (-1, 1)),
    ("detection_boxes", TensorIOMode.OUTPUT, DataType.FLOAT, (-1, K, 4)),
    ("detection_scores", TensorIOMode.OUTPUT, DataType.FLOAT, (-1, K)),
    ("detection_classes", TensorIOMode.OUTPUT, DataType.INT32, (-1, K)),
]
NP = {DataType.UINT8: np.uint8, DataType.INT32: np.int32, DataType.FLOAT: np.float32}


class FakeContext:
    def __init__(self, engine, api):
        self.engine, self.api = engine, api
        self.shapes, self.addresses, self.calls = {}, {}, []

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name, ptr))
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        self.calls.append(("execute_async_v3", stream_handle))
        addresses = dict(self.addresses)
        batch = self.shapes["images"][0]

        def run():  # "the network": num_detections = mean of each image's bytes mod K
            n = batch * H * W * 3
            img = np.frombuffer(bytes(MEMORY[addresses["images"]][:n]), np.uint8).reshape(batch, H, W, 3)
            num = (img.reshape(batch, -1).astype(np.int64).sum(1) % K).astype(np.int32)
            MEMORY[addresses["num_detections"]][: num.nbytes] = num.tobytes()
            scores = np.tile(np.linspace(0.9, 0.6, K, dtype=np.float32), (batch, 1))
            MEMORY[addresses["detection_scores"]][: scores.nbytes] = scores.tobytes()

        if self.api.capturing is not None:
            self.api.capturing.append(run)
        else:
            run()
        return True


class FakeEngine:
    num_io_tensors = len(IO)

    def __init__(self, api, max_batch):
        self.api, self.max_batch = api, max_batch

    def get_tensor_name(self, i):
        return IO[i][0]

    def _row(self, name):
        return [r for r in IO if r[0] == name][0]

    def get_tensor_mode(self, name):
        return self._row(name)[1]

    def get_tensor_dtype(self, name):
        return self._row(name)[2]

    def get_tensor_shape(self, name):
        return self._row(name)[3]

    def get_tensor_profile_shape(self, name, profile):
        return (1, H, W, 3), (self.max_batch, H, W, 3), (self.max_batch, H, W, 3)

    def create_execution_context(self):
        self.context = FakeContext(self, self.api)
        return self.context


def fake_trt(api, max_batch=2, deserialize_ok=True, plugins=("EfficientNMS_TRT",)):
    mod = types.ModuleType("tensorrt")
    mod.__version__ = "10.3.0.26"
    mod.DataType, mod.TensorIOMode = DataType, TensorIOMode
    mod.calls = []

    class ILogger:
        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            mod.calls.append("Runtime")
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            mod.calls.append(("deserialize", len(plan)))
            if not deserialize_ok:
                self.logger.log(1, "Serialization assertion failed: magic tag mismatch")
                return None
            mod.engine = FakeEngine(api, max_batch)
            return mod.engine

    def init_libnvinfer_plugins(logger, namespace):
        mod.calls.append("init_plugins")
        return True

    registry = types.SimpleNamespace(plugin_creator_list=[types.SimpleNamespace(name=p) for p in plugins])
    mod.ILogger, mod.Runtime = ILogger, Runtime
    mod.init_libnvinfer_plugins = init_libnvinfer_plugins
    mod.get_plugin_registry = lambda: registry
    return mod


def manifest(form="plugin"):
    return {
        "tensorrt": {"module": "tensorrt", "version": "10.3.0.26"},
        "plugins": {"required": ["EfficientNMS_TRT"] if form == "plugin" else []},
        "inputs": [{"name": "images", "dtype": "uint8", "shape": ["batch", H, W, 3]}],
        "outputs": [{"name": n, "dtype": {DataType.INT32: "int32", DataType.FLOAT: "float32"}[d],
                     "shape": ["batch"] + list(s[1:])} for n, m, d, s in IO[1:]],
    }


@pytest.fixture
def engine_file(tmp_path):
    p = tmp_path / "e.bin"
    p.write_bytes(b"ftrt" + bytes(100))
    return str(p)


def make(engine_file, **kw):
    api = HostCuda()
    mod = fake_trt(api, **{k: v for k, v in kw.items() if k in ("max_batch", "deserialize_ok", "plugins")})
    be = TensorRTBackend(engine_file, kw.get("manifest", manifest()), trt_module=mod, api=api,
                         cuda_graph=kw.get("cuda_graph", False))
    return be, mod, api


def test_plugins_initialised_before_deserialising(engine_file):
    be, mod, _ = make(engine_file)
    assert mod.calls[:3] == ["init_plugins", "Runtime", ("deserialize", 104)]
    assert [t.name for t in be.inputs] == ["images"] and len(be.outputs) == 4
    assert (be.min_batch, be.max_batch) == (1, 2)


def test_no_plugin_init_without_plugins(engine_file):
    _, mod, _ = make(engine_file, manifest=manifest("onnx"))
    assert "init_plugins" not in mod.calls


def test_missing_plugin_is_one_line(engine_file):
    with pytest.raises(EngineError, match="plugin EfficientNMS_TRT, which is not registered"):
        make(engine_file, plugins=())


def test_deserialize_failure_quotes_tensorrt(engine_file):
    with pytest.raises(EngineError, match="could not deserialize .*magic tag mismatch"):
        make(engine_file, deserialize_ok=False)


def test_manifest_mismatch(engine_file):
    m = manifest()
    m["outputs"][0]["dtype"] = "float32"
    with pytest.raises(EngineError, match="'num_detections' is int32 but the manifest says float32"):
        make(engine_file, manifest=m)
    m = manifest()
    m["outputs"].append({"name": "extra", "dtype": "float32", "shape": [1]})
    with pytest.raises(EngineError, match="no output 'extra'"):
        make(engine_file, manifest=m)


def test_enqueue_order_addresses_and_outputs(engine_file):
    be, mod, api = make(engine_file)
    ctx = mod.engine.context
    images = be.input_buffer("images", 2)
    images[...] = np.arange(images.size, dtype=np.uint64).reshape(images.shape).astype(np.uint8)
    out = be.infer({"images": images})
    expected = (images.reshape(2, -1).astype(np.int64).sum(1) % K).astype(np.int32)
    np.testing.assert_array_equal(out["num_detections"][:, 0], expected)
    assert out["detection_scores"].shape == (2, K)
    names = [c[1] for c in ctx.calls if c[0] == "set_tensor_address"]
    assert sorted(names) == sorted(n for n, *_ in IO)
    assert ("set_input_shape", "images", (2, H, W, 3)) in ctx.calls
    kinds = [c[0] for c in api.log]
    # upload (H2D on the upload stream) -> compute stream waits -> execute -> D2H on the compute stream
    assert kinds.index("htod") < kinds.index("wait_event") < kinds.index("dtoh")
    execute = [c for c in ctx.calls if c[0] == "execute_async_v3"][0]
    assert execute[1] == be.stream.handle
    assert all(c[3] == be.stream.handle for c in api.log if c[0] == "dtoh")
    assert all(c[3] == be.slots.upload_stream.handle for c in api.log if c[0] == "htod")


def test_double_buffering_alternates_slots(engine_file):
    be, mod, api = make(engine_file)
    ctx = mod.engine.context
    seen = []
    slots = []
    for k in range(4):
        buf = be.input_buffer("images", 1)
        buf[...] = k
        slots.append(be.submit({"images": buf}))  # queued, not waited for
        seen.append(ctx.addresses["images"])
    assert seen[0] != seen[1] and seen[0] == seen[2] and seen[1] == seen[3]
    # shapes are set once, not per frame
    assert sum(1 for c in ctx.calls if c[0] == "set_input_shape") == 1


def test_only_the_batch_rows_are_copied(engine_file):
    be, mod, api = make(engine_file)  # buffers for batch 2
    buf = be.input_buffer("images", 1)
    be.infer({"images": buf})
    assert [c[2] for c in api.log if c[0] == "htod"] == [H * W * 3]
    assert sorted(c[2] for c in api.log if c[0] == "dtoh") == sorted([4, K * 16, K * 4, K * 4])


def test_caller_array_is_copied_into_pinned_memory(engine_file):
    be, mod, api = make(engine_file)
    mine = np.full((1, H, W, 3), 7, np.uint8)
    out = be.infer({"images": mine})
    assert int(out["num_detections"][0, 0]) == (7 * H * W * 3) % K


def test_batch_outside_profile(engine_file):
    be, _, _ = make(engine_file)
    with pytest.raises(EngineError, match="batch 3 is outside the engine's profile 1..2"):
        be.infer({"images": np.zeros((3, H, W, 3), np.uint8)})


def test_cuda_graph_captured_once_per_slot_then_replayed(engine_file):
    be, mod, api = make(engine_file, cuda_graph=True)
    ctx = mod.engine.context
    results = []
    for k in range(6):
        buf = be.input_buffer("images", 1)
        buf[...] = k + 1
        results.append(int(be.infer({"images": buf})["num_detections"][0, 0]))
    assert results == [((k + 1) * H * W * 3) % K for k in range(6)]
    captures = [c for c in api.log if c[0] == "begin_capture"]
    launches = [c for c in api.log if c[0] == "graph_launch"]
    assert len(captures) == 2 and len(launches) == 4  # slots 0 and 1 captured, then replayed
    assert be.captures == 2
    # first use of each slot: one plain enqueue, then one captured enqueue
    assert sum(1 for c in ctx.calls if c[0] == "execute_async_v3") == 4


def test_batch_change_recaptures(engine_file):
    be, mod, api = make(engine_file, cuda_graph=True)
    for batch in (1, 1, 1, 2, 2, 2, 1):
        be.infer({"images": np.ones((batch, H, W, 3), np.uint8)})
    # 1,1 capture both slots; 1 replays; 2 drops them: 2,2 capture; 2 replays; 1 captures again
    assert be.captures == 5
    assert sum(1 for c in api.log if c[0] == "graph_launch") == 2


def test_close_releases_buffers(engine_file):
    be, _, _ = make(engine_file)
    before = len(MEMORY)
    be.close()
    assert len(MEMORY) < before
    be.close()  # twice is harmless


def test_version_compatible_engine_runs_host_code_only_when_trusted(engine_file):
    """The manifest's word alone never lets an engine run the host code it carries."""
    m = manifest()
    m["tensorrt"]["version_compatible"] = True
    api = HostCuda()
    mod = fake_trt(api)
    mod.Runtime.engine_host_code_allowed = False  # the attribute TensorRT 10's Runtime has
    with pytest.raises(EngineError, match="pass --trust-plugins"):
        TensorRTBackend(engine_file, m, trt_module=mod, api=api)
    be = TensorRTBackend(engine_file, m, trt_module=mod, api=api, trust_plugins=True)
    assert be._runtime.engine_host_code_allowed is True
