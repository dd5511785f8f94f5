"""The TensorRT backend's GPU side for real: everything but TensorRT itself.

No TensorRT runs on the GPUs these tests can borrow, so the engine is a
stand-in whose ``execute_async_v3`` launches a CUDA kernel (compiled with
CuPy's NVRTC) on the stream it is given, reading the image at the bound input
address and writing ``num_detections``/``detection_scores`` at the bound output
addresses. Real pinned buffers, device buffers, two streams, events, frame
slots, asynchronous copies and CUDA-graph capture and replay of that enqueue
are exercised through :class:`TensorRTBackend` with the cuda-python binding.
Skipped without a GPU (or without CuPy to compile the kernel).
"""

import types

import numpy as np
import pytest

from test_trt_backend_seam import IO, DataType, H, K, TensorIOMode, W, manifest
from trtedge.runtime.trt_backend import TensorRTBackend

KERNEL = r"""
extern "C" __global__ void fake_net(const unsigned char* img, int n_per, int* num, float* scores, int k) {
    int b = blockIdx.x;
    __shared__ unsigned long long acc;
    if (threadIdx.x == 0) acc = 0;
    __syncthreads();
    unsigned long long local = 0;
    for (int i = threadIdx.x; i < n_per; i += blockDim.x) local += img[(long long)b * n_per + i];
    atomicAdd(&acc, local);
    __syncthreads();
    if (threadIdx.x == 0) num[b] = (int)(acc % k);
    if (threadIdx.x < k) scores[b * k + threadIdx.x] = 0.9f - 0.1f * threadIdx.x;
}
"""


@pytest.fixture(scope="module")
def gpu():
    from trtedge.runtime.cuda import CudaUnavailable, get_cuda

    try:
        api = get_cuda("cuda-python")
    except CudaUnavailable as exc:
        pytest.skip(str(exc))
    cupy = pytest.importorskip("cupy", reason="CuPy compiles the stand-in engine's kernel")
    return api, cupy.RawKernel(KERNEL, "fake_net"), cupy


class GpuContext:
    def __init__(self, kernel, cupy):
        self.kernel, self.cupy = kernel, cupy
        self.shapes, self.addresses, self.enqueues = {}, {}, 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle):
        self.enqueues += 1
        batch = self.shapes["images"][0]
        a = self.addresses
        stream = self.cupy.cuda.ExternalStream(int(stream_handle))
        args = (np.uint64(a["images"]), np.int32(H * W * 3), np.uint64(a["num_detections"]),
                np.uint64(a["detection_scores"]), np.int32(K))
        self.kernel((batch,), (128,), args, stream=stream)
        return True


def stand_in_trt(kernel, cupy, max_batch=2):
    mod = types.ModuleType("tensorrt")
    mod.__version__ = "10.3.0.26"
    mod.DataType, mod.TensorIOMode = DataType, TensorIOMode

    class ILogger:
        def __init__(self):
            pass

    class Engine:
        num_io_tensors = len(IO)

        def get_tensor_name(self, i):
            return IO[i][0]

        def get_tensor_mode(self, name):
            return [r for r in IO if r[0] == name][0][1]

        def get_tensor_dtype(self, name):
            return [r for r in IO if r[0] == name][0][2]

        def get_tensor_shape(self, name):
            return [r for r in IO if r[0] == name][0][3]

        def get_tensor_profile_shape(self, name, profile):
            return (1, H, W, 3), (max_batch, H, W, 3), (max_batch, H, W, 3)

        def create_execution_context(self):
            self.context = GpuContext(kernel, cupy)
            return self.context

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            mod.engine = Engine()
            return mod.engine

    mod.ILogger, mod.Runtime = ILogger, Runtime
    return mod


def expected(images):
    return (images.reshape(len(images), -1).astype(np.int64).sum(1) % K).astype(np.int32)


@pytest.fixture
def engine_file(tmp_path):
    p = tmp_path / "e.bin"
    p.write_bytes(b"ftrt" + bytes(100))
    return str(p)


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_frames_through_real_cuda(gpu, engine_file, cuda_graph):
    api, kernel, cupy = gpu
    mod = stand_in_trt(kernel, cupy)
    be = TensorRTBackend(engine_file, manifest("onnx"), trt_module=mod, api=api, cuda_graph=cuda_graph)
    assert be.cuda_graph == cuda_graph
    rng = np.random.default_rng(0)
    try:
        # synchronous frames of batch 1 and 2
        for batch in (1, 2, 2, 1, 2):
            buf = be.input_buffer("images", batch)
            buf[...] = rng.integers(0, 256, buf.shape, dtype=np.uint8)
            want = expected(buf)
            out = be.infer({"images": buf})
            np.testing.assert_array_equal(out["num_detections"][:, 0], want)
            np.testing.assert_allclose(out["detection_scores"][0], 0.9 - 0.1 * np.arange(K), rtol=1e-6)
        # one frame in flight while the next is prepared (as trtedge detect runs)
        tickets, wants = [], []
        for _ in range(12):
            buf = be.input_buffer("images", 1)
            buf[...] = rng.integers(0, 256, buf.shape, dtype=np.uint8)
            wants.append(expected(buf))
            tickets.append(be.submit({"images": buf}))
            if len(tickets) == 2:
                got = be.collect(tickets.pop(0))
                np.testing.assert_array_equal(got["num_detections"][:, 0], wants.pop(0))
        got = be.collect(tickets.pop(0))
        np.testing.assert_array_equal(got["num_detections"][:, 0], wants.pop(0))
        if cuda_graph:
            # each capture costs one plain and one captured enqueue; every other frame replays a graph
            assert mod.engine.context.enqueues == 2 * be.captures
            assert be.captures == 7  # batches 1, 2, 2, 1, 2: a capture each (slots alternate); then 1s: 2 slots
        print("frames 17, enqueues {}, graph captures {}".format(mod.engine.context.enqueues, be.captures))
    finally:
        be.close()
