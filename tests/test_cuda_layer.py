"""trtedge.runtime.cuda: the CUDA layer (device memory, pinned memory, streams,
events, graphs, FrameSlots) over cuda-python and PyCUDA.

Two kinds of tests:

- unit tests through a seam (``test_unit_*``): the error mapping, argument
  checks and FrameSlots bookkeeping, driven by a tiny in-memory ``FakeCuda``
  that stands in for the binding. They need no GPU and run everywhere.
- GPU tests (``gpu`` marker): real CUDA through each binding. Where no GPU,
  driver or binding is usable they are skipped with get_cuda()'s one-line
  reason (e.g. "no usable NVIDIA GPU/driver: cudaGetDeviceCount returned
  cudaErrorInsufficientDriver (35)").
"""

import enum
import gc
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from trtedge.errors import TrtedgeError
from trtedge.runtime import cuda as tcuda
from trtedge.runtime.cuda import base
from trtedge.runtime.cuda import cuda_python as cp_impl
from trtedge.runtime.cuda import pycuda_impl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# =========================================================================== unit tests through a seam


class FakeStatus(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNotReady = 600


def test_unit_check_unpacks_cuda_python_results():
    assert cp_impl.check((FakeStatus.cudaSuccess,), "cudaFree") is None
    assert cp_impl.check((FakeStatus.cudaSuccess, 1234), "cudaMalloc") == 1234
    assert cp_impl.check((FakeStatus.cudaSuccess, "a", "b"), "cudaX") == ("a", "b")
    assert cp_impl.check(FakeStatus.cudaSuccess, "bare status") is None
    assert cp_impl.check((0, 7), "int status") == 7


def test_unit_check_raises_cuda_error_naming_call_and_error():
    with pytest.raises(tcuda.CudaError) as info:
        cp_impl.check((FakeStatus.cudaErrorMemoryAllocation, None), "cudaMalloc")
    err = info.value
    assert isinstance(err, TrtedgeError) and err.exit_code == 3
    assert (err.call, err.error_name, err.code) == ("cudaMalloc", "cudaErrorMemoryAllocation", 2)
    text = str(err)
    assert "cudaMalloc" in text and "cudaErrorMemoryAllocation" in text and "out of memory" in text
    assert "\n" not in text


def test_unit_error_name_asks_the_runtime_for_plain_ints():
    class Runtime:
        @staticmethod
        def cudaGetErrorName(err):
            return (0, b"cudaErrorLaunchFailure\0")

    assert cp_impl.error_name(719, Runtime()) == "cudaErrorLaunchFailure"
    assert cp_impl.error_name(719) == "cudaError 719"
    with pytest.raises(tcuda.CudaError, match="cudaStreamSynchronize failed: cudaErrorLaunchFailure"):
        cp_impl.check((719,), "cudaStreamSynchronize", Runtime())


def test_unit_pycuda_error_mapping():
    err = pycuda_impl.from_pycuda_error("cuMemAlloc", RuntimeError("cuMemAlloc failed: out of memory"))
    assert (err.call, err.error_name) == ("cuMemAlloc", "out of memory")
    err = pycuda_impl.from_pycuda_error("Stream.synchronize", RuntimeError("cuStreamSynchronize failed: an illegal memory access"))
    assert err.call == "cuStreamSynchronize" and "Stream.synchronize" in str(err)
    err = pycuda_impl.from_pycuda_error("Event.query", ValueError("odd"))
    assert err.call == "Event.query" and "ValueError: odd" in str(err)


def test_unit_missing_bindings_are_cuda_unavailable(monkeypatch):
    def no_module(name):
        raise ImportError("No module named {!r}".format(name))

    monkeypatch.setattr(cp_impl.importlib, "import_module", no_module)
    with pytest.raises(tcuda.CudaUnavailable, match="cuda-python is not importable.*pip install cuda-python") as info:
        cp_impl.load_runtime()
    assert info.value.exit_code == 3
    monkeypatch.setattr(pycuda_impl.importlib, "import_module", no_module)
    with pytest.raises(tcuda.CudaUnavailable, match="pycuda is not importable.*pip install pycuda"):
        pycuda_impl.load_driver()


def test_unit_no_driver_is_cuda_unavailable(monkeypatch):
    class NoDriver:
        @staticmethod
        def cudaGetDeviceCount():
            return (FakeStatus.cudaErrorInsufficientDriver, 0)

    monkeypatch.setattr(cp_impl, "load_runtime", lambda: NoDriver())
    with pytest.raises(tcuda.CudaUnavailable,
                       match="no usable NVIDIA GPU/driver: cudaGetDeviceCount returned cudaErrorInsufficientDriver"):
        cp_impl.CudaPythonApi()

    class NoDevice:
        @staticmethod
        def cudaGetDeviceCount():
            return (FakeStatus.cudaSuccess, 0)

    monkeypatch.setattr(cp_impl, "load_runtime", lambda: NoDevice())
    with pytest.raises(tcuda.CudaUnavailable, match="0 device"):
        cp_impl.CudaPythonApi()


def test_unit_get_cuda_rejects_unknown_names():
    with pytest.raises(ValueError, match="cuda-python, pycuda"):
        tcuda.get_cuda("opencl")


def test_unit_importing_the_layer_imports_no_binding():
    code = ("import sys, trtedge.runtime.cuda, trtedge.runtime.cuda.cuda_python, trtedge.runtime.cuda.pycuda_impl; "
            "bad = [m for m in sys.modules if m == 'cuda' or m.startswith(('cuda.', 'pycuda'))]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unit_pinned_memory_owner_lifetime():
    import ctypes

    block = ctypes.create_string_buffer(64)
    released = []
    owner = base.PinnedMemory(ctypes.addressof(block), 64, released.append)
    arr = base.array_over(owner.ptr, 64, (4, 4), np.float32, owner)
    del owner
    assert arr.shape == (4, 4) and arr.dtype == np.float32 and arr.flags.c_contiguous
    arr[:] = 3.5
    view = arr[1:]
    assert isinstance(base.pinned_owner(view), base.PinnedMemory)
    del arr
    gc.collect()
    assert released == []  # the view keeps the block
    del view
    gc.collect()
    assert released == [ctypes.addressof(block)]
    assert base.pinned_owner(np.zeros(3)) is None


# ---------------------------------------------------------------- the fake binding


class _FakeBuffer(base.DeviceBuffer):
    def __init__(self, cuda, ptr, nbytes):
        super().__init__(ptr, nbytes)
        self._cuda = cuda

    def _release(self):
        self._cuda.log.append(("free", self.ptr))
        del self._cuda.memory[self.ptr]


class _FakeStream(base.Stream):
    def __init__(self, cuda, handle):
        self.cuda, self.handle, self.alive = cuda, handle, True

    def synchronize(self):
        self.cuda.log.append(("stream_sync", self.handle))

    def wait_event(self, event):
        self.cuda.log.append(("wait", self.handle, event.id))

    def destroy(self):
        self.alive = False


class _FakeEvent(base.Event):
    def __init__(self, cuda, id, timing):
        self.cuda, self.id, self.timing, self.alive, self.time = cuda, id, timing, True, None

    def record(self, stream=None):
        self.cuda.log.append(("record", self.id, stream.handle if stream else 0))
        self.time = len(self.cuda.log)

    def synchronize(self):
        self.cuda.log.append(("sync", self.id))

    def query(self):
        return True

    def destroy(self):
        self.alive = False


class _FakeGraph(base.Graph):
    def __init__(self):
        self.destroyed = False

    def instantiate(self):
        raise NotImplementedError

    def destroy(self):
        self.destroyed = True


class FakeCuda(base.CudaApi):
    """Runs every operation at once on host memory and logs it; pointers are keys."""

    name = "fake"
    supports_graphs = True

    def __init__(self):
        super().__init__(0)
        self.memory = {}  # ptr -> uint8 array
        self.log = []
        self.events = []
        self.streams = []
        self.pinned = []
        self._next = 0x1000
        self.graphs = []

    def _block(self, ptr, nbytes):
        for start, mem in self.memory.items():
            if start <= ptr and ptr + nbytes <= start + mem.size:
                return mem[ptr - start:ptr - start + nbytes]
        raise AssertionError("bad device range 0x{:x}+{}".format(ptr, nbytes))

    def device_info(self):
        return {"name": "fake", "compute_capability": "0.0", "total_memory": 0}

    def malloc(self, nbytes):
        ptr = self._next
        self._next += max(int(nbytes), 1) + 0x100
        self.memory[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        self.log.append(("malloc", ptr, nbytes))
        return _FakeBuffer(self, ptr, nbytes)

    def pinned_empty(self, shape, dtype=np.uint8):
        import ctypes

        n = base.nbytes_of(shape, dtype)
        block = ctypes.create_string_buffer(max(n, 1))
        released = []
        owner = base.PinnedMemory(ctypes.addressof(block), n, released.append)
        owner.block = block  # keep the fake's host memory alive as long as its owner
        self.pinned.append(owner)
        return base.array_over(owner.ptr, n, shape, dtype, owner)

    def stream(self):
        s = _FakeStream(self, 100 + len(self.streams))
        self.streams.append(s)
        return s

    def event(self, timing=True):
        ev = _FakeEvent(self, len(self.events), timing)
        self.events.append(ev)
        return ev

    def elapsed_ms(self, start, end):
        return float(end.time - start.time)

    def synchronize(self):
        self.log.append(("device_sync",))

    def _htod(self, dst, src, stream):
        self._block(dst, src.nbytes)[:] = src
        self.log.append(("htod", dst, src.nbytes, stream.handle if stream else 0))

    def _dtoh(self, dst, src, stream):
        dst[:] = self._block(src, dst.nbytes)
        self.log.append(("dtoh", src, dst.nbytes, stream.handle if stream else 0))

    def _dtod(self, dst, src, nbytes, stream):
        self._block(dst, nbytes)[:] = self._block(src, nbytes)
        self.log.append(("dtod", dst, src, nbytes, stream.handle if stream else 0))

    def _memset(self, dst, value, nbytes, stream):
        self._block(dst, nbytes)[:] = value
        self.log.append(("memset", dst, value, nbytes, stream.handle if stream else 0))

    def _begin_capture(self, stream, mode):
        self.log.append(("begin_capture", stream.handle, mode))

    def _end_capture(self, stream):
        self.log.append(("end_capture", stream.handle))
        g = _FakeGraph()
        self.graphs.append(g)
        return g


def test_unit_copy_arguments_are_checked():
    cuda = FakeCuda()
    buf = cuda.malloc(16)
    with pytest.raises(ValueError, match="smaller than the 32 bytes"):
        cuda.memcpy_htod_async(buf, np.zeros(32, np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.memcpy_htod_async(buf, np.zeros((4, 8), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros(16, np.uint8)
        ro.flags.writeable = False
        cuda.memcpy_dtoh_async(ro, buf)
    with pytest.raises(ValueError, match="byte"):
        cuda.memset_async(buf, 256)
    with pytest.raises(ValueError, match="nbytes"):
        cuda.memcpy_dtod_async(buf.ptr, buf.ptr + 8)
    with pytest.raises(TypeError):
        cuda.memcpy_htod_async(buf, [1, 2, 3])
    src = np.arange(4, dtype=np.float32)
    cuda.memcpy_htod_async(buf, src)
    cuda.memset_async(buf.ptr + 4, 0, 4)  # raw pointers work too
    out = np.empty(4, np.float32)
    cuda.memcpy_dtoh_async(out, buf)
    assert out.tolist() == [0.0, 0.0, 2.0, 3.0]
    part = np.full(4, -1, np.float32)
    cuda.memcpy_dtoh_async(part, buf, nbytes=8)
    assert part.tolist() == [0.0, 0.0, -1.0, -1.0]
    buf.free()
    buf.free()  # twice is harmless
    with pytest.raises(ValueError, match="freed"):
        cuda.memset_async(buf, 0)


def test_unit_capture_ends_and_drops_the_graph_when_the_block_raises():
    cuda = FakeCuda()
    s = cuda.stream()
    with cuda.capture(s) as cap:
        pass
    assert cap.graph is cuda.graphs[0] and not cap.graph.destroyed
    with pytest.raises(RuntimeError):
        with cuda.capture(s, mode="global"):
            raise RuntimeError("enqueue failed")
    assert cuda.graphs[1].destroyed
    assert [e[0] for e in cuda.log] == ["begin_capture", "end_capture"] * 2
    with pytest.raises(ValueError, match="capture mode"):
        cuda.begin_capture(s, mode="nope")


SPEC_IN = {"images": ((2, 4, 3), np.uint8)}
SPEC_OUT = {"boxes": ((2, 4), np.float32), "count": ((1,), np.int32)}


def _fake_engine(cuda, slot):
    """What an engine would do: boxes = images[..., 0] as float, count = 1 byte pattern."""
    s = slot.compute_stream
    host = np.empty((2, 4, 3), np.uint8)
    cuda.memcpy_dtoh_async(host, slot.device_inputs["images"], s)
    cuda.memcpy_htod_async(slot.device_outputs["boxes"], host[..., 0].astype(np.float32), s)
    cuda.memset_async(slot.device_outputs["count"], slot.frame % 256, stream=s)


def test_unit_frame_slots_bookkeeping():
    cuda = FakeCuda()
    slots = tcuda.FrameSlots(cuda, SPEC_IN, SPEC_OUT, count=3)
    assert len(slots) == 3 and len(cuda.memory) == 9 and len(cuda.events) == 9
    up, comp = slots.upload_stream.handle, slots.compute_stream.handle
    assert up != comp
    addrs = [s.addresses() for s in slots]
    assert sorted(addrs[0]) == ["boxes", "count", "images"]
    assert len({a for d in addrs for a in d.values()}) == 9  # every slot has its own buffers
    assert all(cuda.is_pinned(a) for s in slots for a in list(s.host_inputs.values()) + list(s.host_outputs.values()))

    results = {}
    previous = None
    for k in range(10):
        slot = slots.acquire()
        assert slot.index == k % 3 and slot.frame == k and slot.tag is None
        slot.tag = "frame-{}".format(k)
        mark = len(cuda.log)
        slot.host_inputs["images"][...] = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) + k
        slot.upload()
        slot.wait_uploaded()
        _fake_engine(cuda, slot)
        slot.download()
        ops = cuda.log[mark:]
        # upload between 'started' and 'uploaded' on the upload stream; downloads then 'done' on the compute stream
        assert ops[0] == ("record", slot.started.id, up)
        assert ops[1][0] == "htod" and ops[1][3] == up
        assert ops[2] == ("record", slot.uploaded.id, up)
        assert ops[3] == ("wait", comp, slot.uploaded.id)
        assert ops[-1] == ("record", slot.done.id, comp)
        assert {op[-1] for op in ops if op[0] == "dtoh"} == {comp}
        assert slot.pending and slots.pending()[-1] is slot
        if previous is not None:
            out = previous.wait()
            results[previous.tag] = {n: a.copy() for n, a in out.items()}
        previous = slot
    assert [s.frame for s in slots.pending()] == [9]
    last = slots.drain()
    assert last == [previous] and not previous.pending
    results[previous.tag] = {n: a.copy() for n, a in previous.host_outputs.items()}

    for k in range(10):
        r = results["frame-{}".format(k)]
        expect = (np.arange(24, dtype=np.uint8).reshape(2, 4, 3) + k)[..., 0].astype(np.float32)
        np.testing.assert_array_equal(r["boxes"], expect)
        assert int(r["count"][0]) == int(np.frombuffer(bytes([k]) * 4, np.int32)[0])

    # every frame's "done" was waited for exactly once (consumed frames need no second wait)
    syncs = [e for e in cuda.log if e[0] == "sync"]
    assert len(syncs) == 10
    slots.close()
    assert cuda.memory == {} and not any(ev.alive for ev in cuda.events) and not any(s.alive for s in cuda.streams)
    assert all(p.freed for p in cuda.pinned)


def test_unit_acquire_waits_on_a_slot_still_in_flight():
    cuda = FakeCuda()
    with tcuda.FrameSlots(cuda, SPEC_IN, SPEC_OUT, count=2) as slots:
        a = slots.acquire()
        a.upload()
        a.download()
        b = slots.acquire()
        assert ("sync", a.done.id) not in cuda.log  # slot b was free: no wait
        b.upload()  # never downloaded: acquire must still wait for its upload
        mark = len(cuda.log)
        assert slots.acquire() is a
        assert cuda.log[mark] == ("sync", a.done.id)
        mark = len(cuda.log)
        assert slots.acquire() is b
        assert cuda.log[mark] == ("sync", b.uploaded.id)
    with pytest.raises(ValueError):
        tcuda.FrameSlots(cuda, SPEC_IN, SPEC_OUT, count=0)


def test_unit_frame_slots_free_what_they_made_when_construction_fails():
    cuda = FakeCuda()
    real_malloc = cuda.malloc
    calls = []

    def failing_malloc(n):
        calls.append(n)
        if len(calls) == 5:
            raise tcuda.CudaError("cudaMalloc", "cudaErrorMemoryAllocation", 2)
        return real_malloc(n)

    cuda.malloc = failing_malloc
    with pytest.raises(tcuda.CudaError, match="cudaMalloc"):
        tcuda.FrameSlots(cuda, SPEC_IN, SPEC_OUT, count=2)
    assert cuda.memory == {} and all(p.freed for p in cuda.pinned)
    assert not any(s.alive for s in cuda.streams)


# =========================================================================== GPU tests

BACKENDS = ["cuda-python", "pycuda"]


@pytest.fixture(scope="module")
def gpu_reason():
    """None when the default binding sees a GPU, else get_cuda()'s one-line reason."""
    try:
        tcuda.get_cuda()
    except tcuda.CudaUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(params=BACKENDS)
def cuda(request, gpu_reason):
    if gpu_reason is not None:
        pytest.skip(gpu_reason)
    try:
        return tcuda.get_cuda(request.param)
    except tcuda.CudaUnavailable as exc:
        pytest.skip("{}: {}".format(request.param, exc))


def _rand(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 256, size=shape, dtype=np.uint8).view(dtype).reshape(shape) if np.dtype(dtype).itemsize == 1 \
        else rng.integers(-1000, 1000, size=shape).astype(dtype)


@pytest.mark.gpu
def test_device_info(cuda):
    info = cuda.device_info()
    print("\n[{}] {}".format(cuda.name, info))
    assert info["name"] and info["total_memory"] > 0
    major, minor = info["compute_capability"].split(".")
    assert int(major) >= 3 and minor.isdigit()
    assert tcuda.get_cuda(cuda.name) is cuda


@pytest.mark.gpu
def test_malloc_and_free(cuda):
    buf = cuda.malloc(1 << 20)
    assert buf.ptr != 0 and buf.nbytes == 1 << 20 and int(buf) == buf.ptr
    buf.free()
    buf.free()
    assert buf.freed
    with cuda.malloc(4096) as other:
        assert other.ptr != 0
    assert other.freed
    empty = cuda.malloc(0)
    assert empty.nbytes == 0
    empty.free()
    bufs = [cuda.malloc(64 << 20) for _ in range(8)]
    assert len({b.ptr for b in bufs}) == 8
    for b in bufs:
        b.free()


@pytest.mark.gpu
def test_pinned_copies_round_trip(cuda):
    shape = (512, 1024)
    a = cuda.pinned_empty(shape, np.float32)
    assert a.shape == shape and a.dtype == np.float32 and cuda.is_pinned(a)
    assert not cuda.is_pinned(np.zeros(3))
    a[...] = _rand(shape)
    b = cuda.pinned_empty(shape, np.float32)
    b[...] = 0
    s = cuda.stream()
    d1, d2 = cuda.malloc(a.nbytes), cuda.malloc(a.nbytes)
    cuda.memcpy_htod_async(d1, a, s)
    cuda.memcpy_dtod_async(d2, d1, stream=s)
    cuda.memcpy_dtoh_async(b, d2, s)
    s.synchronize()
    np.testing.assert_array_equal(a, b)

    # pageable arrays work too (staged by the driver), and raw pointers with byte counts
    c = np.arange(1000, dtype=np.int32)
    cuda.memcpy_htod_async(d1.ptr + 4096, c, s)
    back = np.zeros(500, np.int32)
    cuda.memcpy_dtoh_async(back, d1.ptr + 4096 + 2000, s)
    s.synchronize()
    np.testing.assert_array_equal(back, c[500:])

    # half of a pinned array, default stream
    half = cuda.pinned_empty(shape, np.float32)
    half[...] = -1
    cuda.memcpy_dtoh_async(half, d2, None, nbytes=a.nbytes // 2)
    cuda.synchronize()
    np.testing.assert_array_equal(half[:256], a[:256])
    assert (half[256:] == -1).all()

    cuda.free_pinned(half)
    del half
    d1.free()
    d2.free()
    s.destroy()


@pytest.mark.gpu
def test_memset(cuda):
    s = cuda.stream()
    buf = cuda.malloc(1 << 20)
    cuda.memset_async(buf, 0x5A, stream=s)
    cuda.memset_async(buf.ptr + 100, 7, 50, s)
    host = cuda.pinned_empty(1 << 20, np.uint8)
    cuda.memcpy_dtoh_async(host, buf, s)
    s.synchronize()
    assert (host[100:150] == 7).all()
    assert (host[:100] == 0x5A).all() and (host[150:] == 0x5A).all()
    as_int = host[:4].view(np.int32)[0]
    assert as_int == 0x5A5A5A5A
    buf.free()


@pytest.mark.gpu
def test_streams_and_event_timing(cuda):
    n = 64 << 20
    host = cuda.pinned_empty(n, np.uint8)
    host[::4096] = 1
    dev = cuda.malloc(n)
    s = cuda.stream()
    assert isinstance(s.handle, int) and s.handle != 0
    start, end = cuda.event(), cuda.event()
    start.record(s)
    cuda.memcpy_htod_async(dev, host, s)
    end.record(s)
    end.synchronize()
    assert end.query()
    ms = cuda.elapsed_ms(start, end)
    print("\n[{}] H2D {} MiB: {:.3f} ms = {:.1f} GB/s".format(cuda.name, n >> 20, ms, n / ms / 1e6))
    assert ms > 0

    # ordering across streams through an event, with no host wait in between
    s2 = cuda.stream()
    out = cuda.pinned_empty(n, np.uint8)
    out[...] = 0
    ready = cuda.event(timing=False)
    cuda.memset_async(dev, 3, stream=s)
    ready.record(s)
    s2.wait_event(ready)
    cuda.memcpy_dtoh_async(out, dev, s2)
    s2.synchronize()
    assert (out == 3).all()

    with pytest.raises(tcuda.CudaError) as info:  # events without timing cannot be timed
        cuda.elapsed_ms(ready, ready)
    print("[{}] untimed event: {}".format(cuda.name, info.value))
    dev.free()


@pytest.mark.gpu
def test_cuda_errors_name_the_call(cuda):
    with pytest.raises(tcuda.CudaError) as info:
        cuda.malloc(1 << 52)  # 4 PiB
    err = info.value
    print("\n[{}] {}".format(cuda.name, err))
    if cuda.name == "cuda-python":
        assert (err.call, err.error_name) == ("cudaMalloc", "cudaErrorMemoryAllocation")
    else:
        assert err.call == "cuMemAlloc" and "memory" in err.error_name
    ok = cuda.malloc(16)  # the context is still fine
    ok.free()


def _best_of(runs, fn):
    return min(fn() for _ in range(runs))


@pytest.mark.gpu
def test_two_frames_overlap_h2d_with_d2h(cuda):
    """Frame k+1's upload runs while frame k's results come down: copies in
    opposite directions overlap on GPUs with 2 copy engines."""
    engines = cuda.device_info().get("async_engine_count")
    if engines is not None and engines < 2:
        pytest.skip("this GPU has {} copy engine(s): uploads and downloads cannot overlap".format(engines))
    n = 256 << 20
    up_host = cuda.pinned_empty(n, np.uint8)
    down_host = cuda.pinned_empty(n, np.uint8)
    up_host[::4096] = 1
    up_dev, down_dev = cuda.malloc(n), cuda.malloc(n)
    s1, s2 = cuda.stream(), cuda.stream()
    t0, t1, t2 = cuda.event(), cuda.event(), cuda.event()

    def upload_alone():
        t0.record(s1)
        cuda.memcpy_htod_async(up_dev, up_host, s1)
        t1.record(s1)
        t1.synchronize()
        return cuda.elapsed_ms(t0, t1)

    def download_alone():
        t0.record(s2)
        cuda.memcpy_dtoh_async(down_host, down_dev, s2)
        t1.record(s2)
        t1.synchronize()
        return cuda.elapsed_ms(t0, t1)

    wall = []

    def both():
        w = time.perf_counter()
        t0.record(s1)
        s2.wait_event(t0)
        cuda.memcpy_htod_async(up_dev, up_host, s1)
        cuda.memcpy_dtoh_async(down_host, down_dev, s2)
        t1.record(s1)
        t2.record(s2)
        t1.synchronize()
        t2.synchronize()
        wall.append((time.perf_counter() - w) * 1e3)
        return max(cuda.elapsed_ms(t0, t1), cuda.elapsed_ms(t0, t2))

    upload_alone(), download_alone(), both()  # warm up
    h2d = _best_of(3, upload_alone)
    d2h = _best_of(3, download_alone)
    together = _best_of(3, both)
    print("\n[{}] {} MiB each: H2D {:.2f} ms, D2H {:.2f} ms, sum {:.2f} ms; both at once {:.2f} ms "
          "(wall {:.2f} ms) = {:.0%} of the sum".format(cuda.name, n >> 20, h2d, d2h, h2d + d2h, together,
                                                        min(wall), together / (h2d + d2h)))
    assert together < 0.8 * (h2d + d2h)
    for b in (up_dev, down_dev):
        b.free()


@pytest.mark.gpu
def test_frame_slots_cycle_ten_frames(cuda):
    inputs = {"x": ((256, 1024), np.uint8), "scale": ((4,), np.float32)}
    outputs = {"y": ((256, 1024), np.uint8), "n": ((1,), np.int32)}
    frames = [_rand((256, 1024), np.uint8, seed=k) for k in range(10)]
    seen = {}
    with tcuda.FrameSlots(cuda, inputs, outputs, count=2, timing=True) as slots:
        previous = None
        for k, frame in enumerate(frames):
            slot = slots.acquire()
            assert slot.frame == k
            slot.tag = k
            slot.host_inputs["x"][...] = frame
            slot.host_inputs["scale"][...] = k
            slot.upload()
            slot.wait_uploaded()
            # "the engine": y = x, n = frame number as a repeated byte
            cuda.memcpy_dtod_async(slot.device_outputs["y"], slot.device_inputs["x"], stream=slots.compute_stream)
            cuda.memset_async(slot.device_outputs["n"], k, stream=slots.compute_stream)
            slot.download()
            if previous is not None:
                out = previous.wait()
                seen[previous.tag] = (out["y"].copy(), int(out["n"][0]), previous.elapsed_ms())
            previous = slot
        for slot in slots.drain():
            seen[slot.tag] = (slot.host_outputs["y"].copy(), int(slot.host_outputs["n"][0]), slot.elapsed_ms())
    assert sorted(seen) == list(range(10))
    for k, (y, n, ms) in seen.items():
        np.testing.assert_array_equal(y, frames[k])
        assert n == int(np.frombuffer(bytes([k]) * 4, np.int32)[0])
        assert ms > 0
    print("\n[{}] 10 frames through 2 slots, per-frame upload->done ms: {}".format(
        cuda.name, ", ".join("{:.3f}".format(seen[k][2]) for k in range(10))))


@pytest.mark.gpu
def test_graph_capture(cuda):
    s = cuda.stream()
    if not cuda.supports_graphs:
        with pytest.raises(tcuda.CudaUnavailable, match="cuda-python"):
            cuda.begin_capture(s)
        return
    n = 1 << 20
    src = cuda.pinned_empty(n, np.uint8)
    dst = cuda.pinned_empty(n, np.uint8)
    d1, d2 = cuda.malloc(n), cuda.malloc(n)
    with cuda.capture(s) as cap:
        cuda.memcpy_htod_async(d1, src, s)
        cuda.memcpy_dtod_async(d2, d1, stream=s)
        cuda.memset_async(d2, 9, 16, s)
        cuda.memcpy_dtoh_async(dst, d2, s)
    graph = cap.graph
    assert graph is not None
    exe = graph.instantiate()
    graph.destroy()
    for k in range(3):  # each launch replays the copies with the host data of the moment
        src[...] = _rand(n, np.uint8, seed=100 + k)
        exe.launch(s)
        s.synchronize()
        assert (dst[:16] == 9).all()
        np.testing.assert_array_equal(dst[16:], src[16:])
    exe.destroy()

    # begin/end by hand, and a capture left by an error does not poison the stream
    cuda.begin_capture(s, mode="global")
    cuda.memset_async(d1, 1, stream=s)
    g2 = cuda.end_capture(s)
    g2.instantiate().launch(s)
    s.synchronize()
    with pytest.raises(RuntimeError):
        with cuda.capture(s):
            raise RuntimeError("enqueue failed")
    cuda.memcpy_dtoh_async(dst, d1, s)
    s.synchronize()
    assert (dst == 1).all()
    d1.free()
    d2.free()
