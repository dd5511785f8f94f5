""":class:`CudaApi` over NVIDIA's cuda-python runtime bindings (the default).

Works with both layouts: ``cuda.bindings.runtime`` (cuda-python >= 12.6,
13.x) and the older ``cuda.cudart``. cuda-python has no complete type stubs,
so the binding is ``Any`` here. Every call goes through :func:`check`, which
turns a non-zero status into :class:`CudaError`. The runtime API uses the
device's primary context, the one TensorRT uses too.
"""

import importlib
from typing import Any, Dict, Optional

import numpy as np

from .base import (
    CudaApi,
    CudaError,
    CudaUnavailable,
    DeviceBuffer,
    Event,
    Graph,
    GraphExec,
    PinnedMemory,
    ShapeLike,
    Stream,
    array_over,
    nbytes_of,
    native_handle,
)

INSTALL_HINT = "pip install cuda-python (13.x needs an NVIDIA driver >= 580; use 12.x or 11.x to match an older driver or JetPack)"

# statuses that mean "no GPU or no driver", not a bug
_NOT_READY = 600  # cudaErrorNotReady


def load_runtime() -> Any:
    """The runtime bindings module, in whichever layout is installed."""
    errors = []
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken install raising anything
            errors.append("{}: {}".format(name, exc))
    raise CudaUnavailable("cuda-python is not importable ({})".format("; ".join(errors)), INSTALL_HINT)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value).strip()


def error_name(err: Any, runtime: Any = None) -> str:
    """``cudaErrorInvalidValue`` for a status enum or int (via cudaGetErrorName where needed)."""
    name = getattr(err, "name", None)
    if isinstance(name, str) and name:
        return name
    if runtime is not None:
        try:
            res = runtime.cudaGetErrorName(err)
            if int(res[0]) == 0:
                return _text(res[1])
        except Exception:
            pass
    try:
        return "cudaError {}".format(int(err))
    except Exception:
        return repr(err)


def check(result: Any, call: str, runtime: Any = None) -> Any:
    """Unpack cuda-python's ``(status, value...)``; raise :class:`CudaError` unless status is 0.

    Returns None for ``(status,)``, the value for ``(status, value)``, and
    the tuple of values for more.
    """
    if not isinstance(result, tuple):
        result = (result,)
    if not result:
        raise CudaError(call, "no status returned")
    err = result[0]
    try:
        code = int(err)
    except Exception:
        raise CudaError(call, "unexpected status {!r}".format(err))
    if code != 0:
        raise CudaError(call, error_name(err, runtime), code)
    values = result[1:]
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return values


class _Buffer(DeviceBuffer):
    def __init__(self, rt: Any, ptr: int, nbytes: int) -> None:
        super().__init__(ptr, nbytes)
        self._rt = rt

    def _release(self) -> None:
        check(self._rt.cudaFree(self.ptr), "cudaFree", self._rt)


class _Native(object):
    """A cuda-python object destroyed once: by ``destroy()`` or when collected.

    Subclasses set ``_destroy_call`` (the runtime function that frees ``native``).
    """

    _destroy_call = ""

    def __init__(self, rt: Any, native: Any) -> None:
        self._rt = rt
        self.native = native
        self._alive = True

    def destroy(self) -> None:
        if self._alive:
            self._alive = False
            check(getattr(self._rt, self._destroy_call)(self.native), self._destroy_call, self._rt)

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:
            pass


class _Stream(_Native, Stream):
    _destroy_call = "cudaStreamDestroy"

    def __init__(self, rt: Any, native: Any) -> None:
        _Native.__init__(self, rt, native)
        self.handle = int(native)

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self.native), "cudaStreamSynchronize", self._rt)

    def wait_event(self, event: Event) -> None:
        check(self._rt.cudaStreamWaitEvent(self.native, _native_event(event), 0), "cudaStreamWaitEvent", self._rt)


class _Event(_Native, Event):
    _destroy_call = "cudaEventDestroy"

    def __init__(self, rt: Any, native: Any, timing: bool) -> None:
        _Native.__init__(self, rt, native)
        self.timing = timing

    def record(self, stream: Optional[Stream] = None) -> None:
        check(self._rt.cudaEventRecord(self.native, _native_stream(self._rt, stream)), "cudaEventRecord", self._rt)

    def synchronize(self) -> None:
        check(self._rt.cudaEventSynchronize(self.native), "cudaEventSynchronize", self._rt)

    def query(self) -> bool:
        res = self._rt.cudaEventQuery(self.native)
        err = res[0] if isinstance(res, tuple) else res
        if int(err) == _NOT_READY:
            return False
        check(res, "cudaEventQuery", self._rt)
        return True


class _GraphExec(_Native, GraphExec):
    _destroy_call = "cudaGraphExecDestroy"

    def launch(self, stream: Optional[Stream]) -> None:
        check(self._rt.cudaGraphLaunch(self.native, _native_stream(self._rt, stream)), "cudaGraphLaunch", self._rt)


class _Graph(_Native, Graph):
    _destroy_call = "cudaGraphDestroy"

    def instantiate(self) -> GraphExec:
        rt = self._rt
        if hasattr(rt, "cudaGraphInstantiateWithFlags"):  # CUDA >= 11.4; one signature everywhere
            native = check(rt.cudaGraphInstantiateWithFlags(self.native, 0), "cudaGraphInstantiateWithFlags", rt)
        else:
            native = check(rt.cudaGraphInstantiate(self.native, 0), "cudaGraphInstantiate", rt)
        return _GraphExec(rt, native)


def _native_stream(rt: Any, stream: Optional[Stream]) -> Any:
    if stream is None:
        return 0  # the legacy default stream
    if isinstance(stream, _Stream):
        return stream.native
    return rt.cudaStream_t(int(stream.handle))


def _native_event(event: Event) -> Any:
    return native_handle(event, _Event, "cuda-python")


class CudaPythonApi(CudaApi):
    """CUDA through cuda-python's runtime API, on device ``device`` (default 0)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        rt = load_runtime()
        self._rt = rt
        res = rt.cudaGetDeviceCount()
        status = res[0] if isinstance(res, tuple) else res
        if int(status) != 0:
            raise CudaUnavailable(
                "no usable NVIDIA GPU/driver: cudaGetDeviceCount returned {} ({})".format(
                    error_name(status, rt), int(status)),
                "install or update the NVIDIA driver (JetPack on a Jetson), or a cuda-python matching "
                "the driver's CUDA version; nvidia-smi shows both")
        count = int(res[1])
        if count <= self.device:
            raise CudaUnavailable(
                "no usable NVIDIA GPU: {} device(s) visible, device {} asked".format(count, self.device),
                "check CUDA_VISIBLE_DEVICES")
        self._modes = {
            "global": rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal,
            "thread_local": rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal,
            "relaxed": rt.cudaStreamCaptureMode.cudaStreamCaptureModeRelaxed,
        }
        self.activate()

    def _check(self, result: Any, call: str) -> Any:
        return check(result, call, self._rt)

    def activate(self) -> None:
        self._check(self._rt.cudaSetDevice(self.device), "cudaSetDevice")

    def device_info(self) -> Dict[str, Any]:
        rt = self._rt
        props = self._check(rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        info = {
            "name": _text(getattr(props, "name", "")) or "unknown",
            "compute_capability": "{}.{}".format(int(props.major), int(props.minor)),
            "total_memory": int(props.totalGlobalMem),
            "device": self.device,
        }  # type: Dict[str, Any]
        for key, attr in (("multiprocessors", "multiProcessorCount"), ("async_engine_count", "asyncEngineCount"),
                          ("integrated", "integrated")):
            value = getattr(props, attr, None)
            if value is not None:
                info[key] = int(value)
        for key, fn in (("driver_version", "cudaDriverGetVersion"), ("runtime_version", "cudaRuntimeGetVersion")):
            try:
                v = int(self._check(getattr(rt, fn)(), fn))
                info[key] = "{}.{}".format(v // 1000, (v % 1000) // 10)
            except Exception:
                pass
        return info

    def malloc(self, nbytes: int) -> DeviceBuffer:
        n = int(nbytes)
        if n < 0:
            raise ValueError("negative allocation size {}".format(n))
        ptr = self._check(self._rt.cudaMalloc(max(n, 1)), "cudaMalloc")
        return _Buffer(self._rt, int(ptr), n)

    def _free_host(self, ptr: int) -> None:
        self._check(self._rt.cudaFreeHost(ptr), "cudaFreeHost")

    def pinned_empty(self, shape: ShapeLike, dtype: Any = np.uint8) -> np.ndarray:
        n = nbytes_of(shape, dtype)
        ptr = int(self._check(self._rt.cudaMallocHost(max(n, 1)), "cudaMallocHost"))
        try:
            return array_over(ptr, n, shape, dtype, PinnedMemory(ptr, n, self._free_host))
        except BaseException:
            self._free_host(ptr)
            raise

    def stream(self) -> Stream:
        native = self._check(self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking),
                             "cudaStreamCreateWithFlags")
        return _Stream(self._rt, native)

    def event(self, timing: bool = True) -> Event:
        rt = self._rt
        flags = rt.cudaEventDefault if timing else rt.cudaEventDisableTiming
        return _Event(rt, self._check(rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags"), timing)

    def elapsed_ms(self, start: Event, end: Event) -> float:
        return float(self._check(self._rt.cudaEventElapsedTime(_native_event(start), _native_event(end)),
                                 "cudaEventElapsedTime"))

    def synchronize(self) -> None:
        self._check(self._rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def _copy(self, dst: int, src: int, nbytes: int, kind: Any, stream: Optional[Stream]) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, _native_stream(self._rt, stream)),
                    "cudaMemcpyAsync")

    def _htod(self, dst: int, src: np.ndarray, stream: Optional[Stream]) -> None:
        self._copy(dst, int(src.ctypes.data), int(src.nbytes), self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def _dtoh(self, dst: np.ndarray, src: int, stream: Optional[Stream]) -> None:
        self._copy(int(dst.ctypes.data), src, int(dst.nbytes), self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def _dtod(self, dst: int, src: int, nbytes: int, stream: Optional[Stream]) -> None:
        self._copy(dst, src, nbytes, self._rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream)

    def _memset(self, dst: int, value: int, nbytes: int, stream: Optional[Stream]) -> None:
        self._check(self._rt.cudaMemsetAsync(dst, value, nbytes, _native_stream(self._rt, stream)), "cudaMemsetAsync")

    def _begin_capture(self, stream: Stream, mode: str) -> None:
        self._check(self._rt.cudaStreamBeginCapture(_native_stream(self._rt, stream), self._modes[mode]),
                    "cudaStreamBeginCapture")

    def _end_capture(self, stream: Stream) -> Graph:
        native = self._check(self._rt.cudaStreamEndCapture(_native_stream(self._rt, stream)), "cudaStreamEndCapture")
        return _Graph(self._rt, native)
