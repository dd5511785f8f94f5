""":class:`CudaApi` over PyCUDA, for Jetson images that ship it.

PyCUDA speaks the driver API and needs a current context in each thread.
This backend retains the device's *primary* context (the one the CUDA
runtime and TensorRT use) and pushes it on the creating thread; other threads
call :meth:`PycudaApi.activate` once. It is popped again at interpreter
exit or by :meth:`PycudaApi.close`. PyCUDA exceptions become
:class:`CudaError` (PyCUDA reports the error description, e.g. "out of
memory", not the enum name). CUDA graph capture is not available here
(PyCUDA has no stream-capture API): use the cuda-python backend for it.
"""

import atexit
import importlib
import re
import threading
from typing import Any, Callable, Dict, Optional, TypeVar

import numpy as np

from .base import (CudaApi, CudaError, CudaUnavailable, DeviceBuffer, Event, ShapeLike, Stream, native_handle,
                   shape_tuple)

INSTALL_HINT = "pip install pycuda (it compiles against the CUDA toolkit: nvcc and cuda.h must be found), " \
               "or use the default cuda-python backend"

T = TypeVar("T")

_CU_STREAM_NON_BLOCKING = 1
_MESSAGE = re.compile(r"^\s*(\w+) failed: (.*)$", re.S)


def load_driver() -> Any:
    """``pycuda.driver``, or :class:`CudaUnavailable`."""
    try:
        return importlib.import_module("pycuda.driver")
    except Exception as exc:  # ImportError, or a build that cannot load libcuda
        raise CudaUnavailable("pycuda is not importable ({})".format(exc), INSTALL_HINT)


def from_pycuda_error(call: str, exc: BaseException) -> CudaError:
    """A :class:`CudaError` from a PyCUDA exception ("cuMemAlloc failed: out of memory")."""
    text = " ".join(str(exc).split())
    m = _MESSAGE.match(text)
    if m:
        return CudaError(m.group(1), m.group(2) or type(exc).__name__,
                         detail=None if call == m.group(1) else "in {}".format(call))
    return CudaError(call, "{}: {}".format(type(exc).__name__, text) if text else type(exc).__name__)


class _Buffer(DeviceBuffer):
    def __init__(self, api: "PycudaApi", alloc: Any, nbytes: int) -> None:
        super().__init__(int(alloc), nbytes)
        self._api = api
        self._alloc = alloc

    def _release(self) -> None:
        alloc, self._alloc = self._alloc, None
        if alloc is not None:
            self._api._call("mem_free", alloc.free)


class _Stream(Stream):
    def __init__(self, api: "PycudaApi", native: Any) -> None:
        self._api = api
        self.native = native  # type: Optional[Any]
        self.handle = int(native.handle)

    def synchronize(self) -> None:
        self._api._call("Stream.synchronize", self._live().synchronize)

    def wait_event(self, event: Event) -> None:
        self._api._call("Stream.wait_for_event", self._live().wait_for_event, _native_event(event))

    def _live(self) -> Any:
        if self.native is None:
            raise ValueError("stream was destroyed")
        return self.native

    def destroy(self) -> None:
        self.native = None  # PyCUDA destroys the stream when its object goes


class _Event(Event):
    def __init__(self, api: "PycudaApi", native: Any, timing: bool) -> None:
        self._api = api
        self.native = native
        self.timing = timing

    def record(self, stream: Optional[Stream] = None) -> None:
        self._api._call("Event.record", self.native.record, _native_stream(stream))

    def synchronize(self) -> None:
        self._api._call("Event.synchronize", self.native.synchronize)

    def query(self) -> bool:
        return bool(self._api._call("Event.query", self.native.query))

    def destroy(self) -> None:
        pass  # PyCUDA destroys the event when its object goes


def _native_stream(stream: Optional[Stream]) -> Any:
    if stream is None:
        return None
    if isinstance(stream, _Stream):
        return stream._live()
    raise TypeError("expected a stream made by the pycuda backend, got {!r}".format(stream))


def _native_event(event: Event) -> Any:
    return native_handle(event, _Event, "pycuda")


class PycudaApi(CudaApi):
    """CUDA through PyCUDA on device ``device`` (default 0), in its primary context."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        drv = load_driver()
        self._drv = drv
        try:
            drv.init()
            count = int(drv.Device.count())
        except Exception as exc:
            raise CudaUnavailable("no usable NVIDIA GPU/driver: {}".format(" ".join(str(exc).split())),
                                  "install or update the NVIDIA driver (JetPack on a Jetson)")
        if count <= self.device:
            raise CudaUnavailable(
                "no usable NVIDIA GPU: {} device(s) visible, device {} asked".format(count, self.device),
                "check CUDA_VISIBLE_DEVICES")
        self._dev = self._call("Device", drv.Device, self.device)
        self._ctx = self._call("retain_primary_context", self._dev.retain_primary_context)
        self._pushed = threading.local()
        self.activate()
        atexit.register(self.close)

    def _call(self, call: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except self._drv.Error as exc:
            raise from_pycuda_error(call, exc)

    def activate(self) -> None:
        if not getattr(self._pushed, "count", 0):
            self._call("Context.push", self._ctx.push)
            self._pushed.count = 1

    def close(self) -> None:
        """Pop the context this thread pushed (at exit too; harmless twice)."""
        if getattr(self._pushed, "count", 0):
            self._pushed.count = 0
            try:
                self._drv.Context.pop()
            except Exception:
                pass

    def device_info(self) -> Dict[str, Any]:
        drv, dev = self._drv, self._dev
        major, minor = self._call("Device.compute_capability", dev.compute_capability)
        info = {
            "name": str(self._call("Device.name", dev.name)),
            "compute_capability": "{}.{}".format(int(major), int(minor)),
            "total_memory": int(self._call("Device.total_memory", dev.total_memory)),
            "device": self.device,
        }  # type: Dict[str, Any]
        attrs = drv.device_attribute
        for key, attr in (("multiprocessors", "MULTIPROCESSOR_COUNT"), ("async_engine_count", "ASYNC_ENGINE_COUNT"),
                          ("integrated", "INTEGRATED")):
            if hasattr(attrs, attr):
                info[key] = int(self._call("Device.get_attribute", dev.get_attribute, getattr(attrs, attr)))
        try:
            v = int(drv.get_driver_version())
            info["driver_version"] = "{}.{}".format(v // 1000, (v % 1000) // 10)
        except Exception:
            pass
        return info

    def malloc(self, nbytes: int) -> DeviceBuffer:
        n = int(nbytes)
        if n < 0:
            raise ValueError("negative allocation size {}".format(n))
        return _Buffer(self, self._call("cuMemAlloc", self._drv.mem_alloc, max(n, 1)), n)

    def pinned_empty(self, shape: ShapeLike, dtype: Any = np.uint8) -> np.ndarray:
        dims = shape_tuple(shape)
        arr = self._call("cuMemHostAlloc", self._drv.pagelocked_empty, dims, np.dtype(dtype))  # type: np.ndarray
        return arr

    def _host_allocation(self, array: np.ndarray) -> Optional[Any]:
        base = array  # type: Any
        for _ in range(64):
            if isinstance(base, self._drv.HostAllocation):
                return base
            base = getattr(base, "base", None)
            if base is None:
                return None
        return None

    def free_pinned(self, array: np.ndarray) -> None:
        alloc = self._host_allocation(array)
        if alloc is None:
            raise ValueError("that array was not made by pinned_empty")
        self._call("cuMemFreeHost", alloc.free)

    def is_pinned(self, array: np.ndarray) -> bool:
        """Whether ``array`` lies in a PyCUDA page-locked block (PyCUDA cannot tell whether it was freed)."""
        return self._host_allocation(array) is not None

    def stream(self) -> Stream:
        return _Stream(self, self._call("cuStreamCreate", self._drv.Stream, _CU_STREAM_NON_BLOCKING))

    def event(self, timing: bool = True) -> Event:
        flags = 0 if timing else int(self._drv.event_flags.DISABLE_TIMING)
        return _Event(self, self._call("cuEventCreate", self._drv.Event, flags), timing)

    def elapsed_ms(self, start: Event, end: Event) -> float:
        return float(self._call("cuEventElapsedTime", _native_event(end).time_since, _native_event(start)))

    def synchronize(self) -> None:
        self._call("cuCtxSynchronize", self._drv.Context.synchronize)

    def _htod(self, dst: int, src: np.ndarray, stream: Optional[Stream]) -> None:
        self._call("cuMemcpyHtoDAsync", self._drv.memcpy_htod_async, dst, src, _native_stream(stream))

    def _dtoh(self, dst: np.ndarray, src: int, stream: Optional[Stream]) -> None:
        self._call("cuMemcpyDtoHAsync", self._drv.memcpy_dtoh_async, dst, src, _native_stream(stream))

    def _dtod(self, dst: int, src: int, nbytes: int, stream: Optional[Stream]) -> None:
        self._call("cuMemcpyDtoDAsync", self._drv.memcpy_dtod_async, dst, src, nbytes, _native_stream(stream))

    def _memset(self, dst: int, value: int, nbytes: int, stream: Optional[Stream]) -> None:
        self._call("cuMemsetD8Async", self._drv.memset_d8_async, dst, value, nbytes, _native_stream(stream))
