"""The CUDA layer's interface: device memory, pinned host memory, streams,
events, CUDA graphs, and :class:`FrameSlots` for overlapping frames.

Nothing here imports a CUDA binding. :mod:`.cuda_python` (NVIDIA's
cuda-python, the default) and :mod:`.pycuda_impl` (PyCUDA, found on some
Jetson images) implement :class:`CudaApi`; :func:`trtedge.runtime.cuda.get_cuda`
picks one. Units everywhere: sizes in bytes, times in milliseconds, pointers
and stream handles as plain ``int``.

Every failed CUDA call raises :class:`CudaError` naming the call and the CUDA
error; a missing binding, driver or GPU raises :class:`CudaUnavailable`.
"""

import contextlib
import ctypes
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from trtedge.errors import TrtedgeError

#: a shape: one int or a sequence of ints
ShapeLike = Union[int, Sequence[int]]
#: named buffers: name -> (shape, dtype)
BufferSpecs = Mapping[str, Tuple[ShapeLike, Any]]


class CudaUnavailable(TrtedgeError):
    """No CUDA binding, driver or GPU: the message says what is missing and what to install."""

    exit_code = 3


class CudaError(TrtedgeError):
    """A CUDA call returned an error.

    ``call`` is the API function (``cudaMemcpyAsync``), ``error_name`` the
    CUDA error (``cudaErrorInvalidValue``; PyCUDA gives its description
    instead), ``code`` the numeric code where known.
    """

    exit_code = 3

    def __init__(self, call: str, error_name: str, code: Optional[int] = None, detail: Optional[str] = None) -> None:
        self.call = call
        self.error_name = error_name
        self.code = code
        text = "CUDA call {} failed: {}".format(call, error_name)
        if code is not None:
            text += " ({})".format(code)
        if detail:
            text += ": {}".format(detail)
        super().__init__(text, _HINTS.get(error_name))


_HINTS = {
    "cudaErrorMemoryAllocation": "the GPU is out of memory: free buffers, or use a smaller batch or input size",
    "cudaErrorInsufficientDriver": "the NVIDIA driver is older than this CUDA binding: update the driver "
                                   "or install a cuda-python matching the driver's CUDA version (nvidia-smi shows it)",
    "cudaErrorNoDevice": "no NVIDIA GPU is visible to this process (check CUDA_VISIBLE_DEVICES)",
    "cudaErrorStreamCaptureUnsupported": "that call is not allowed while a stream is being captured into a CUDA graph",
    "cudaErrorStreamCaptureInvalidated": "the capture was invalidated by an operation not allowed during capture",
}


def shape_tuple(shape: ShapeLike) -> Tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints."""
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError("negative dimension in shape {}".format(dims))
    return dims


def nbytes_of(shape: ShapeLike, dtype: Any) -> int:
    """Bytes that an array of ``shape`` and ``dtype`` takes."""
    count = 1
    for d in shape_tuple(shape):
        count *= d
    return count * int(np.dtype(dtype).itemsize)


# --------------------------------------------------------------------------- handles


class DeviceBuffer:
    """``nbytes`` bytes of device memory at address ``ptr``.

    ``free()`` releases it (twice is harmless); it is also freed when the
    object is collected, and at the end of a ``with`` block. ``int(buf)`` is
    ``buf.ptr``, so a buffer goes wherever a device pointer does (TensorRT's
    ``set_tensor_address``).
    """

    def __init__(self, ptr: int, nbytes: int) -> None:
        self.ptr = int(ptr)
        self.nbytes = int(nbytes)
        self._freed = False

    def _release(self) -> None:
        raise NotImplementedError

    def free(self) -> None:
        if not self._freed:
            self._freed = True
            self._release()

    @property
    def freed(self) -> bool:
        return self._freed

    def __int__(self) -> int:
        return self.ptr

    def __index__(self) -> int:
        return self.ptr

    def __enter__(self) -> "DeviceBuffer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.free()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: the CUDA runtime may be gone already
            pass

    def __repr__(self) -> str:
        return "<{} ptr=0x{:x} nbytes={}{}>".format(
            type(self).__name__, self.ptr, self.nbytes, " freed" if self._freed else "")


class Stream:
    """A CUDA stream. ``handle`` is the ``cudaStream_t`` as an int: pass it to
    TensorRT's ``execute_async_v3(stream_handle)``.

    Streams made by :meth:`CudaApi.stream` are non-blocking (they never wait
    for the legacy default stream), as TensorRT recommends.
    """

    handle = 0

    def synchronize(self) -> None:
        """Block the host until everything queued on the stream has finished."""
        raise NotImplementedError

    def wait_event(self, event: "Event") -> None:
        """Make later work on this stream wait for ``event`` (no host block)."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Release the stream (after its queued work; twice is harmless)."""
        raise NotImplementedError

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return "<{} handle=0x{:x}>".format(type(self).__name__, int(self.handle))


class Event:
    """A CUDA event; ``timing=False`` events are cheaper but cannot be timed."""

    timing = True

    def record(self, stream: Optional[Stream] = None) -> None:
        """Mark the point reached by ``stream`` (None: the legacy default stream)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Block the host until the recorded point is reached."""
        raise NotImplementedError

    def query(self) -> bool:
        """True when the recorded point has been reached (or nothing was recorded)."""
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError


class GraphExec:
    """An instantiated CUDA graph: ``launch(stream)`` replays it."""

    def launch(self, stream: Optional[Stream]) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError


class Graph:
    """A captured CUDA graph: ``instantiate()`` makes a launchable :class:`GraphExec`."""

    def instantiate(self) -> GraphExec:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError


class Capture:
    """What :meth:`CudaApi.capture` yields; ``graph`` is set when the block ends."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.graph = None  # type: Optional[Graph]


DevicePtr = Union[DeviceBuffer, int]


def native_handle(obj: Any, cls: type, binding: str) -> Any:
    """The binding's own object behind a :class:`Stream`/:class:`Event` of that binding."""
    if not isinstance(obj, cls):
        raise TypeError("expected an object made by the {} backend, got {!r}".format(binding, obj))
    return getattr(obj, "native")


def device_ptr(value: DevicePtr) -> int:
    """The device address of a :class:`DeviceBuffer` or an int."""
    if isinstance(value, DeviceBuffer):
        if value.freed:
            raise ValueError("{!r} was freed".format(value))
        return value.ptr
    return int(value)


def _host_bytes(array: np.ndarray, nbytes: Optional[int], what: str, writable: bool = False) -> np.ndarray:
    """A flat uint8 view of ``array``'s first ``nbytes`` bytes (C-contiguous only)."""
    if not isinstance(array, np.ndarray):
        raise TypeError("{} must be a numpy array, not {}".format(what, type(array).__name__))
    if not array.flags.c_contiguous:
        raise ValueError("{} must be C-contiguous (use np.ascontiguousarray)".format(what))
    if writable and not array.flags.writeable:
        raise ValueError("{} is read-only".format(what))
    total = int(array.nbytes)
    count = total if nbytes is None else int(nbytes)
    if count < 0 or count > total:
        raise ValueError("{} holds {} bytes, {} asked".format(what, total, count))
    view = array.reshape(-1).view(np.uint8)[:count]  # type: np.ndarray
    return view


def _check_room(dst: DevicePtr, nbytes: int, what: str) -> None:
    if isinstance(dst, DeviceBuffer) and nbytes > dst.nbytes:
        raise ValueError("{} {!r} is smaller than the {} bytes to copy".format(what, dst, nbytes))


# --------------------------------------------------------------------------- pinned memory


class PinnedMemory:
    """Owner of one page-locked host block; arrays from
    :meth:`CudaApi.pinned_empty` keep it alive through their ``.base`` chain.

    ``free()`` releases the block at once (any array over it then points to
    freed memory: drop them first); otherwise it goes when the last array
    over it is collected.
    """

    def __init__(self, ptr: int, nbytes: int, release: Callable[[int], None]) -> None:
        self.ptr = int(ptr)
        self.nbytes = int(nbytes)
        self._release = release  # type: Optional[Callable[[int], None]]

    def free(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self.ptr)

    @property
    def freed(self) -> bool:
        return self._release is None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


def array_over(ptr: int, nbytes: int, shape: ShapeLike, dtype: Any, owner: object) -> np.ndarray:
    """A numpy array over host memory at ``ptr`` that keeps ``owner`` alive."""
    dims = shape_tuple(shape)
    raw = (ctypes.c_uint8 * max(int(nbytes), 1)).from_address(int(ptr))
    setattr(raw, "_trtedge_owner", owner)  # ctypes objects carry a __dict__
    flat = np.frombuffer(raw, dtype=np.uint8)[:nbytes_of(dims, dtype)]
    out = flat.view(np.dtype(dtype)).reshape(dims)  # type: np.ndarray
    return out


def pinned_owner(array: np.ndarray) -> Optional[object]:
    """The owner object behind an array made by :func:`array_over`, or None."""
    base = array  # type: Any
    for _ in range(64):
        owner = getattr(base, "_trtedge_owner", None)  # type: Optional[object]
        if owner is not None:
            return owner
        base = getattr(base, "base", None)
        if base is None:
            return None
    return None


# --------------------------------------------------------------------------- the interface


_CAPTURE_MODES = ("global", "thread_local", "relaxed")


class CudaApi:
    """One CUDA device behind a small, binding-neutral interface.

    Get one with :func:`trtedge.runtime.cuda.get_cuda`. All copies and sets
    are asynchronous with respect to the host and ordered on the stream they
    are given (None: the legacy default stream). Host arrays in copies must be
    C-contiguous; only page-locked arrays (:meth:`pinned_empty`) give truly
    asynchronous copies that overlap with other work — a pageable array makes
    the driver stage the copy, and cannot be used inside graph capture.
    """

    #: "cuda-python" or "pycuda"
    name = ""
    #: whether begin_capture/end_capture work
    supports_graphs = False

    def __init__(self, device: int = 0) -> None:
        self.device = int(device)

    # -- what subclasses implement --------------------------------------

    def device_info(self) -> Dict[str, Any]:
        """``{"name", "compute_capability" ("8.9"), "total_memory" (bytes), ...}``.

        Also ``device`` (index), ``multiprocessors``, ``async_engine_count``
        (copy engines: 2 lets an upload and a download run at once) where
        the binding reports them.
        """
        raise NotImplementedError

    def malloc(self, nbytes: int) -> DeviceBuffer:
        """``nbytes`` bytes of uninitialised device memory (0 is allowed)."""
        raise NotImplementedError

    def pinned_empty(self, shape: ShapeLike, dtype: Any = np.uint8) -> np.ndarray:
        """An uninitialised C-contiguous array in page-locked host memory.

        The memory is released when the array (and every view of it) is
        collected, or at once by :meth:`free_pinned`.
        """
        raise NotImplementedError

    def free_pinned(self, array: np.ndarray) -> None:
        """Release the page-locked block behind ``array`` now; the array must not be used after."""
        owner = pinned_owner(array)
        if not isinstance(owner, PinnedMemory):
            raise ValueError("that array was not made by pinned_empty")
        owner.free()

    def is_pinned(self, array: np.ndarray) -> bool:
        """Whether ``array`` lies in a block made by :meth:`pinned_empty` (and not freed)."""
        owner = pinned_owner(array)
        return isinstance(owner, PinnedMemory) and not owner.freed

    def activate(self) -> None:
        """Make this device current in the calling thread (call once in each new thread)."""

    def stream(self) -> Stream:
        """A new non-blocking stream."""
        raise NotImplementedError

    def event(self, timing: bool = True) -> Event:
        """A new event; ``timing=False`` makes a cheaper one for ordering only."""
        raise NotImplementedError

    def elapsed_ms(self, start: Event, end: Event) -> float:
        """Milliseconds between two recorded, completed timing events."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Block until all work on the device has finished."""
        raise NotImplementedError

    def _htod(self, dst: int, src: np.ndarray, stream: Optional[Stream]) -> None:
        raise NotImplementedError

    def _dtoh(self, dst: np.ndarray, src: int, stream: Optional[Stream]) -> None:
        raise NotImplementedError

    def _dtod(self, dst: int, src: int, nbytes: int, stream: Optional[Stream]) -> None:
        raise NotImplementedError

    def _memset(self, dst: int, value: int, nbytes: int, stream: Optional[Stream]) -> None:
        raise NotImplementedError

    def _begin_capture(self, stream: Stream, mode: str) -> None:
        raise CudaUnavailable(
            "CUDA graph capture is not available through {}".format(self.name or "this binding"),
            "use the cuda-python backend: pip install cuda-python")

    def _end_capture(self, stream: Stream) -> Graph:
        raise CudaUnavailable(
            "CUDA graph capture is not available through {}".format(self.name or "this binding"),
            "use the cuda-python backend: pip install cuda-python")

    # -- shared, validated entry points ---------------------------------

    def memcpy_htod_async(self, dst: DevicePtr, src: np.ndarray, stream: Optional[Stream] = None,
                          nbytes: Optional[int] = None) -> None:
        """Copy ``nbytes`` (default: all) of host array ``src`` to device ``dst``."""
        view = _host_bytes(src, nbytes, "source array")
        _check_room(dst, int(view.nbytes), "destination")
        if view.nbytes:
            self._htod(device_ptr(dst), view, stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: DevicePtr, stream: Optional[Stream] = None,
                          nbytes: Optional[int] = None) -> None:
        """Copy ``nbytes`` (default: the size of ``dst``) from device ``src`` into host array ``dst``."""
        view = _host_bytes(dst, nbytes, "destination array", writable=True)
        _check_room(src, int(view.nbytes), "source")
        if view.nbytes:
            self._dtoh(view, device_ptr(src), stream)

    def memcpy_dtod_async(self, dst: DevicePtr, src: DevicePtr, nbytes: Optional[int] = None,
                          stream: Optional[Stream] = None) -> None:
        """Copy ``nbytes`` (default: the smaller buffer) between device addresses."""
        if nbytes is None:
            sizes = [b.nbytes for b in (dst, src) if isinstance(b, DeviceBuffer)]
            if not sizes:
                raise ValueError("memcpy_dtod_async needs nbytes when both ends are raw pointers")
            nbytes = min(sizes)
        count = int(nbytes)
        if count < 0:
            raise ValueError("negative byte count {}".format(count))
        _check_room(dst, count, "destination")
        _check_room(src, count, "source")
        if count:
            self._dtod(device_ptr(dst), device_ptr(src), count, stream)

    def memset_async(self, dst: DevicePtr, value: int, nbytes: Optional[int] = None,
                     stream: Optional[Stream] = None) -> None:
        """Set ``nbytes`` bytes (default: the whole buffer) at ``dst`` to the byte ``value``."""
        if nbytes is None:
            if not isinstance(dst, DeviceBuffer):
                raise ValueError("memset_async needs nbytes for a raw pointer")
            nbytes = dst.nbytes
        count = int(nbytes)
        if not 0 <= int(value) <= 255:
            raise ValueError("memset value must be a byte (0..255), not {}".format(value))
        if count < 0:
            raise ValueError("negative byte count {}".format(count))
        _check_room(dst, count, "destination")
        if count:
            self._memset(device_ptr(dst), int(value), count, stream)

    # -- CUDA graphs ----------------------------------------------------

    def begin_capture(self, stream: Stream, mode: str = "thread_local") -> None:
        """Start recording the work queued on ``stream`` into a graph instead of running it.

        ``mode``: "global", "thread_local" (default: other threads may keep
        using CUDA freely) or "relaxed". ``stream`` must not be the default
        stream.

        TensorRT: call ``context.execute_async_v3(stream.handle)`` once
        *outside* capture after any input-shape or tensor-address change —
        that first enqueue does allocations and shape work that cannot be
        captured — then capture the next enqueue. A graph replays the exact
        device addresses it saw: capture one graph per set of buffers (per
        :class:`FrameSlot`), and capture again after a shape change.
        """
        if mode not in _CAPTURE_MODES:
            raise ValueError("capture mode must be one of {}, not {!r}".format(", ".join(_CAPTURE_MODES), mode))
        self._begin_capture(stream, mode)

    def end_capture(self, stream: Stream) -> Graph:
        """Stop recording on ``stream``; the recorded work, as a :class:`Graph`."""
        return self._end_capture(stream)

    @contextlib.contextmanager
    def capture(self, stream: Stream, mode: str = "thread_local") -> Iterator[Capture]:
        """``with api.capture(s) as cap: <enqueue on s>`` then ``cap.graph.instantiate()``.

        If the block raises, capture is ended and the partial graph dropped.
        """
        self.begin_capture(stream, mode)
        cap = Capture(stream)
        try:
            yield cap
        except BaseException:
            try:
                self.end_capture(stream).destroy()
            except Exception:
                pass
            raise
        cap.graph = self.end_capture(stream)

    def close(self) -> None:
        """Release what the binding holds for this object (buffers free themselves)."""

    def __repr__(self) -> str:
        return "<{} {} device {}>".format(type(self).__name__, self.name, self.device)


# --------------------------------------------------------------------------- frame slots


class FrameSlot:
    """One frame's worth of buffers, plus the events that order its work.

    ``host_inputs``/``host_outputs``: name -> page-locked array;
    ``device_inputs``/``device_outputs``: name -> :class:`DeviceBuffer`.
    Events: ``started`` (upload begins), ``uploaded`` (inputs are on the
    device), ``done`` (outputs are back on the host). ``frame`` is the
    sequence number given by :meth:`FrameSlots.acquire`; ``tag`` is free for
    the caller (letterbox scale, the source image, ...).
    """

    def __init__(self, index: int, api: CudaApi, inputs: BufferSpecs, outputs: BufferSpecs,
                 upload_stream: Stream, compute_stream: Stream, timing: bool = False) -> None:
        self.index = index
        self.api = api
        self.upload_stream = upload_stream
        self.compute_stream = compute_stream
        self.host_inputs = {}  # type: Dict[str, np.ndarray]
        self.device_inputs = {}  # type: Dict[str, DeviceBuffer]
        self.host_outputs = {}  # type: Dict[str, np.ndarray]
        self.device_outputs = {}  # type: Dict[str, DeviceBuffer]
        self.frame = -1
        self.tag = None  # type: Any
        self._last = None  # type: Optional[Event]
        try:
            for specs, host, dev in ((inputs, self.host_inputs, self.device_inputs),
                                     (outputs, self.host_outputs, self.device_outputs)):
                for name, (shape, dtype) in specs.items():
                    host[name] = api.pinned_empty(shape, dtype)
                    dev[name] = api.malloc(nbytes_of(shape, dtype))
            self.started = api.event(timing)
            self.uploaded = api.event(timing)
            self.done = api.event(timing)
        except BaseException:
            self.free()
            raise

    @property
    def pending(self) -> bool:
        """Work recorded on this slot that the host has not waited for."""
        return self._last is not None

    def addresses(self) -> Dict[str, int]:
        """name -> device address of every input and output (for ``set_tensor_address``)."""
        out = {n: b.ptr for n, b in self.device_inputs.items()}
        out.update((n, b.ptr) for n, b in self.device_outputs.items())
        return out

    def upload(self, stream: Optional[Stream] = None, rows: Optional[int] = None) -> None:
        """Queue the H2D copies of every host input on ``stream`` (default: the
        upload stream), between the ``started`` and ``uploaded`` events.
        ``rows``: copy only the first rows (a batch smaller than the buffers)."""
        s = stream if stream is not None else self.upload_stream
        self.started.record(s)
        for name, host in self.host_inputs.items():
            self.api.memcpy_htod_async(self.device_inputs[name], host if rows is None else host[:rows], s)
        self.uploaded.record(s)
        self._last = self.uploaded

    def wait_uploaded(self, stream: Optional[Stream] = None) -> None:
        """Make ``stream`` (default: the compute stream) wait for this slot's upload."""
        (stream if stream is not None else self.compute_stream).wait_event(self.uploaded)

    def download(self, stream: Optional[Stream] = None, rows: Optional[int] = None) -> None:
        """Queue the D2H copies of every output on ``stream`` (default: the
        compute stream, after the work queued there), then record ``done``.
        ``rows``: copy only the first rows."""
        s = stream if stream is not None else self.compute_stream
        for name, host in self.host_outputs.items():
            self.api.memcpy_dtoh_async(host if rows is None else host[:rows], self.device_outputs[name], s)
        self.done.record(s)
        self._last = self.done

    def wait(self) -> Dict[str, np.ndarray]:
        """Block until this slot's last queued step (normally ``done``) is reached; the host outputs."""
        last, self._last = self._last, None
        if last is not None:
            last.synchronize()
        return self.host_outputs

    def elapsed_ms(self) -> float:
        """Upload start to ``done``, in ms (needs ``timing=True`` and a finished frame)."""
        return self.api.elapsed_ms(self.started, self.done)

    def free(self) -> None:
        """Release this slot's buffers and events (after :meth:`wait`)."""
        for bufs in (self.device_inputs, self.device_outputs):
            for buf in bufs.values():
                buf.free()
            bufs.clear()
        for arrays in (self.host_inputs, self.host_outputs):
            for arr in arrays.values():
                try:
                    self.api.free_pinned(arr)
                except Exception:
                    pass
            arrays.clear()
        for attr in ("started", "uploaded", "done"):
            ev = self.__dict__.pop(attr, None)
            if ev is not None:
                ev.destroy()

    def __repr__(self) -> str:
        return "<FrameSlot {} frame={}{}>".format(self.index, self.frame, " pending" if self.pending else "")


class FrameSlots:
    """N (default 2) :class:`FrameSlot` s used in turn, so that frame k+1's
    host work and upload overlap frame k's execution.

    Generic: it knows named buffers (``{name: (shape, dtype)}``), not
    TensorRT. Inputs go up on ``upload_stream``, work and downloads run on
    ``compute_stream``; with 2 copy engines, an upload also overlaps the
    previous frame's download. A backend drives it like this::

        slots = FrameSlots(api, {"images": ((1, 320, 320, 3), np.uint8)},
                           {"num_detections": ((1, 1), np.int32), ...})
        for frame in frames:
            slot = slots.acquire()          # waits for this slot's previous frame
            slot.host_inputs["images"][...] = preprocess(frame)
            slot.upload()                   # H2D on the upload stream
            slot.wait_uploaded()            # compute stream waits (GPU side)
            enqueue(slot.addresses(), slots.compute_stream.handle)
            slot.download()                 # D2H on the compute stream, records done
            if previous is not None:
                consume(previous.wait())    # frame k's results while k+1 runs
            previous = slot
        consume(previous.wait())

    Results of a slot must be consumed before the slot comes round again:
    :meth:`acquire` waits for it but does not copy its outputs away.
    """

    def __init__(self, api: CudaApi, inputs: BufferSpecs, outputs: BufferSpecs, count: int = 2,
                 timing: bool = False, upload_stream: Optional[Stream] = None,
                 compute_stream: Optional[Stream] = None) -> None:
        if int(count) < 1:
            raise ValueError("FrameSlots needs at least 1 slot, not {}".format(count))
        self.api = api
        self._own_streams = []  # type: List[Stream]
        self.slots = []  # type: List[FrameSlot]
        try:
            if upload_stream is None:
                upload_stream = api.stream()
                self._own_streams.append(upload_stream)
            if compute_stream is None:
                compute_stream = api.stream()
                self._own_streams.append(compute_stream)
            self.upload_stream = upload_stream
            self.compute_stream = compute_stream
            for i in range(int(count)):
                self.slots.append(FrameSlot(i, api, inputs, outputs, upload_stream, compute_stream, timing))
        except BaseException:
            self.close()
            raise
        self._next = 0
        self._frames = 0

    def __len__(self) -> int:
        return len(self.slots)

    def __iter__(self) -> Iterator[FrameSlot]:
        return iter(self.slots)

    @property
    def frames(self) -> int:
        """How many slots :meth:`acquire` has handed out."""
        return self._frames

    def acquire(self) -> FrameSlot:
        """The next slot in turn, once its previous frame has finished (host wait on its ``done``)."""
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        slot.wait()
        slot.frame = self._frames
        slot.tag = None
        self._frames += 1
        return slot

    def pending(self) -> List[FrameSlot]:
        """Slots with work in flight, oldest frame first."""
        return sorted((s for s in self.slots if s.pending), key=lambda s: s.frame)

    def drain(self) -> List[FrameSlot]:
        """Wait for every slot in flight; those slots, oldest frame first."""
        done = self.pending()
        for slot in done:
            slot.wait()
        return done

    def close(self) -> None:
        """Wait for work in flight, then free every buffer, event and owned stream."""
        try:
            self.drain()
        finally:
            for slot in self.slots:
                slot.free()
            self.slots = []
            for s in self._own_streams:
                s.destroy()
            self._own_streams = []

    def __enter__(self) -> "FrameSlots":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
