"""The CUDA layer of the runtime: one small interface, two bindings.

>>> cuda = get_cuda()                      # NVIDIA's cuda-python (default)
>>> buf = cuda.malloc(1 << 20)             # DeviceBuffer: .ptr, .nbytes, .free()
>>> host = cuda.pinned_empty((1024, 1024), "uint8")
>>> s = cuda.stream()                      # s.handle -> execute_async_v3(s.handle)
>>> cuda.memcpy_htod_async(buf, host, s); s.synchronize()

``get_cuda("pycuda")`` gives the same interface through PyCUDA (Jetson
images that ship it). :class:`FrameSlots` overlaps frame k+1's host work and
upload with frame k's execution. Importing this package imports no CUDA
binding; :func:`get_cuda` does, and raises :class:`CudaUnavailable` (exit
code 3) saying what is missing when the binding, the driver or the GPU is.
"""

from typing import Dict, Tuple

from .base import (
    BufferSpecs,
    Capture,
    CudaApi,
    CudaError,
    CudaUnavailable,
    DeviceBuffer,
    Event,
    FrameSlot,
    FrameSlots,
    Graph,
    GraphExec,
    PinnedMemory,
    Stream,
    device_ptr,
    nbytes_of,
)

__all__ = [
    "BACKENDS", "BufferSpecs", "Capture", "CudaApi", "CudaError", "CudaUnavailable", "DeviceBuffer", "Event",
    "FrameSlot", "FrameSlots", "Graph", "GraphExec", "PinnedMemory", "Stream", "device_ptr", "get_cuda",
    "nbytes_of",
]

#: the names get_cuda() takes
BACKENDS = ("cuda-python", "pycuda")

_ALIASES = {"cuda-python": "cuda-python", "cuda_python": "cuda-python", "cudapython": "cuda-python",
            "cuda": "cuda-python", "pycuda": "pycuda"}

_CACHE = {}  # type: Dict[Tuple[str, int], CudaApi]


def get_cuda(name: str = "cuda-python", device: int = 0) -> CudaApi:
    """The :class:`CudaApi` of binding ``name`` ("cuda-python" or "pycuda") on ``device``.

    One object per (binding, device) for the process. Raises
    :class:`CudaUnavailable` when the binding is not installed or no GPU or
    driver is usable, and ``ValueError`` for an unknown name.
    """
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise ValueError("unknown CUDA binding {!r}: choose one of {}".format(name, ", ".join(BACKENDS)))
    cached = _CACHE.get((key, int(device)))
    if cached is not None:
        return cached
    api = _make(key, int(device))
    _CACHE[(key, int(device))] = api
    return api


def _make(key: str, device: int) -> CudaApi:
    if key == "cuda-python":
        from .cuda_python import CudaPythonApi

        return CudaPythonApi(device)
    from .pycuda_impl import PycudaApi

    return PycudaApi(device)
