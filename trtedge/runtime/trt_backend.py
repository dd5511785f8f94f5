"""The TensorRT backend: a serialized engine run with the tensor-name API.

Written against TensorRT >= 8.5 (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) and the same API in TensorRT 10/11 and TensorRT for RTX.

* Before deserialising, the plugin library is initialised when the manifest
  says the engine uses a plugin (``EfficientNMS_TRT``); version-compatible
  engines need ``engine_host_code_allowed`` on the runtime.
* The engine's I/O (names, modes, dtypes, non-batch dims) is checked against
  the manifest; a mismatch is an :class:`EngineError`, not a crash later.
* Batch comes from optimisation profile 0 (min..max of the first input).
* Buffers come from the CUDA layer (:mod:`trtedge.runtime.cuda`): per
  :class:`FrameSlot` pinned host and device buffers, an upload stream and the
  execution context's one compute stream. :meth:`submit` queues a batch
  (upload, enqueue, download) and returns at once; :meth:`collect` waits for
  it. With two slots the next frame's preprocessing and upload overlap the
  current execution; :meth:`infer` is submit + collect.
* ``cuda_graph``: the whole enqueue is captured as a CUDA graph per slot
  (after one plain enqueue, as TensorRT requires after a shape or address
  change) and replayed; a change of batch size drops the graphs and the next
  frames capture again.

Nothing here runs without a GPU and full TensorRT; its enqueue logic is
tested through a seam (a fake TensorRT module and CUDA layer) and the module
is type-checked against ``tensorrt-stubs``.
"""

import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import EngineError
from ..manifest import Manifest
from .backend import Backend, TensorInfo, numpy_dtype

if TYPE_CHECKING:  # annotations only: signatures from tensorrt-stubs
    import tensorrt as trt

    from .cuda import CudaApi, FrameSlot, FrameSlots

log = logging.getLogger("trtedge")

#: TensorRT DataType member name -> numpy dtype
TRT_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
              "BOOL": np.bool_, "UINT8": np.uint8}


def _dtype_of(trt_dtype: Any) -> Any:
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_DTYPES:
        raise EngineError("the engine has an I/O tensor of type {} that trtedge does not handle".format(name))
    return TRT_DTYPES[name]


def _dims(dims: Any) -> Tuple[int, ...]:
    """A TensorRT ``Dims`` (or any sequence) as a tuple of ints (-1: dynamic)."""
    return tuple(int(d) for d in dims)


class _Logger(object):
    """Forwards TensorRT's log to the ``trtedge`` logger (made lazily per module)."""

    @staticmethod
    def make(mod: ModuleType) -> Any:
        base = mod.ILogger

        class TrtLogger(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                base.__init__(self)
                self.errors = []  # type: List[str]

            def log(self, severity: Any, msg: str) -> None:
                level = int(severity)
                if level <= 1:
                    self.errors.append(msg)
                    log.error("TensorRT: %s", msg)
                elif level == 2:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return TrtLogger()


class TensorRTBackend(Backend):
    """Run ``engine_path`` (with its manifest) on the GPU."""

    def __init__(self, engine_path: str, manifest: Any, cuda: str = "cuda-python",
                 cuda_graph: bool = False, slots: int = 2, trt_module: Optional[ModuleType] = None,
                 api: Optional["CudaApi"] = None, trust_plugins: bool = False) -> None:
        from ..trt_module import import_trt
        from .cuda import FrameSlots, get_cuda

        # the manifest as plain data: a Manifest, or (unit tests) the parts of its JSON they need
        manifest = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
        self.trust_plugins = bool(trust_plugins)
        module = (manifest.get("tensorrt") or {}).get("module") or None
        self.trt = trt_module if trt_module is not None else import_trt(module)
        self.api = api if api is not None else get_cuda(cuda)
        self.name = "trt ({} {}, {})".format(getattr(self.trt, "__name__", "tensorrt"),
                                             getattr(self.trt, "__version__", "?"), self.api.name)
        self.cuda_graph = bool(cuda_graph) and bool(getattr(self.api, "supports_graphs", False))
        if cuda_graph and not self.cuda_graph:
            log.warning("trtedge: --cuda-graph ignored: the %s binding cannot capture graphs", self.api.name)
        self.logger = _Logger.make(self.trt)
        self._init_plugins(manifest)
        self.engine = self._deserialize(engine_path, manifest)  # type: trt.ICudaEngine
        self.context = self.engine.create_execution_context()  # type: Any  # trt.IExecutionContext
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context for {} (out of GPU memory?)".format(
                engine_path))
        self.inputs, self.outputs = self._io()
        self._check_manifest(manifest)
        self.min_batch, self.max_batch = self._batch_range()
        specs_in = {t.name: (self._shape(t, self.max_batch), t.dtype) for t in self.inputs}
        specs_out = {t.name: (self._shape(t, self.max_batch), t.dtype) for t in self.outputs}
        self.slots = FrameSlots(self.api, specs_in, specs_out, count=slots)  # type: FrameSlots
        self.stream = self.slots.compute_stream  # the context's one stream
        self._current = None  # type: Optional[FrameSlot]
        self._batch = None  # type: Optional[int]
        self._graphs = {}  # type: Dict[Tuple[int, int], Any]
        #: CUDA graphs captured so far (one per slot and batch size, again after a shape change)
        self.captures = 0
        self._pending = {}  # type: Dict[int, int]

    # ------------------------------------------------------------ loading

    def _init_plugins(self, manifest: Dict[str, Any]) -> None:
        required = (manifest.get("plugins") or {}).get("required") or []
        if not required:
            return
        init = getattr(self.trt, "init_libnvinfer_plugins", None)
        if init is None:
            raise EngineError("the engine needs the plugins {} but this TensorRT module has no plugin library".format(
                ", ".join(required)), hint="rebuild with --nms onnx or --nms host")
        init(self.logger, "")
        registry = self.trt.get_plugin_registry()
        have = {c.name for c in registry.plugin_creator_list}
        missing = [p for p in required if p not in have]
        if missing:
            raise EngineError("the engine needs the TensorRT plugin {}, which is not registered here".format(
                missing[0]), hint="install TensorRT's plugin library (libnvinfer_plugin) or rebuild with --nms onnx")

    def _deserialize(self, engine_path: str, manifest: Dict[str, Any]) -> "trt.ICudaEngine":
        runtime = self.trt.Runtime(self.logger)  # type: trt.Runtime
        # A version-compatible engine carries the lean runtime as host code. That is code that
        # runs on load, so the manifest's word alone never enables it: --trust-plugins must too.
        if (manifest.get("tensorrt") or {}).get("version_compatible") and hasattr(runtime, "engine_host_code_allowed"):
            if not self.trust_plugins:
                raise EngineError("{} is a version-compatible engine, which runs host code it carries when "
                                  "loaded".format(engine_path),
                                  hint="pass --trust-plugins (trust_plugins=True) if you trust where it came from, "
                                       "or rebuild it here without --version-compatible")
            runtime.engine_host_code_allowed = True
        with open(engine_path, "rb") as f:
            plan = f.read()
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            last = self.logger.errors[-1] if self.logger.errors else "no reason given"
            raise EngineError("TensorRT could not deserialize {}: {}".format(engine_path, last),
                              hint="run trtedge check on it; rebuild it on this machine")
        self._runtime = runtime  # keep the runtime alive as long as the engine
        return engine

    def _io(self) -> Tuple[List[TensorInfo], List[TensorInfo]]:
        ins, outs = [], []  # type: List[TensorInfo], List[TensorInfo]
        mode_input = self.trt.TensorIOMode.INPUT
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            info = TensorInfo(name, _dtype_of(self.engine.get_tensor_dtype(name)),
                              _dims(self.engine.get_tensor_shape(name)))
            (ins if self.engine.get_tensor_mode(name) == mode_input else outs).append(info)
        return ins, outs

    def _check_manifest(self, manifest: Dict[str, Any]) -> None:
        want_in = manifest.get("inputs") or ([manifest["input"]] if manifest.get("input") else [])
        want_out = manifest.get("outputs") or []
        for kind, have, want in (("input", self.inputs, want_in), ("output", self.outputs, want_out)):
            got = {t.name: t for t in have}
            for w in want:
                t = got.get(w["name"])
                if t is None:
                    raise EngineError("the engine has no {} '{}' although its manifest lists it; the engine and "
                                      "manifest do not belong together".format(kind, w["name"]))
                if np.dtype(t.dtype) != np.dtype(numpy_dtype(w["dtype"])):
                    raise EngineError("engine {} '{}' is {} but the manifest says {}".format(
                        kind, w["name"], np.dtype(t.dtype).name, w["dtype"]))
                fixed = [d for d in list(w["shape"])[1:]]
                if all(isinstance(d, int) for d in fixed) and list(t.shape[1:]) != fixed:
                    dynamic = any(d < 0 for d in t.shape[1:])
                    if not dynamic:
                        raise EngineError("engine {} '{}' has shape {} but the manifest says {}".format(
                            kind, w["name"], list(t.shape), w["shape"]))

    def _batch_range(self) -> Tuple[int, int]:
        first = self.inputs[0]
        if first.shape[0] >= 0:
            return int(first.shape[0]), int(first.shape[0])
        if hasattr(self.engine, "get_tensor_profile_shape"):
            lo, _, hi = self.engine.get_tensor_profile_shape(first.name, 0)
        else:  # TensorRT 8.4 and older
            lo, _, hi = getattr(self.engine, "get_profile_shape")(0, first.name)
        return int(lo[0]), int(hi[0])

    @staticmethod
    def _shape(t: TensorInfo, batch: int) -> Tuple[int, ...]:
        dims = [batch if (k == 0 and d < 0) else d for k, d in enumerate(t.shape)]
        if any(d < 0 for d in dims):
            raise EngineError("tensor '{}' has a dynamic dimension besides the batch ({}); trtedge engines have "
                              "fixed image sizes".format(t.name, list(t.shape)))
        return tuple(int(d) for d in dims)

    # ------------------------------------------------------------ running

    def input_buffer(self, name: str, batch: int) -> np.ndarray:
        """The next slot's pinned input (fill it, then :meth:`submit`)."""
        if self._current is None:
            self._current = self.slots.acquire()
        return self._current.host_inputs[name][:batch]

    def _set_shapes(self, batch: int) -> None:
        if batch == self._batch:
            return
        if not self.min_batch <= batch <= self.max_batch:
            raise EngineError("batch {} is outside the engine's profile {}..{}".format(
                batch, self.min_batch, self.max_batch))
        for t in self.inputs:
            if t.shape[0] < 0 and not self.context.set_input_shape(t.name, self._shape(t, batch)):
                raise EngineError("TensorRT refused input shape {} for '{}'".format(self._shape(t, batch), t.name))
        self._batch = batch
        self._drop_graphs()  # a shape change may move the context's memory: capture again

    def submit(self, feed: Dict[str, np.ndarray]) -> "FrameSlot":
        """Queue one batch: upload, enqueue, download. Returns the slot to :meth:`collect`."""
        slot = self._current if self._current is not None else self.slots.acquire()
        self._current = None
        batch = int(next(iter(feed.values())).shape[0])
        self._set_shapes(batch)
        for name, array in feed.items():
            host = slot.host_inputs[name]
            if not (array.base is host or array is host or np.shares_memory(array, host)):
                host[:batch] = array  # a caller's own array: one host copy into pinned memory
        for name, ptr in slot.addresses().items():
            self.context.set_tensor_address(name, ptr)
        slot.upload(rows=batch)
        slot.wait_uploaded(self.stream)
        self._enqueue(slot, batch)
        slot.download(self.stream, rows=batch)
        self._pending[slot.index] = batch
        return slot

    def _enqueue(self, slot: "FrameSlot", batch: int) -> None:
        key = (slot.index, batch)
        graph = self._graphs.get(key) if self.cuda_graph else None
        if graph is not None:
            graph.launch(self.stream)
            return
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError("TensorRT failed to enqueue the engine (see the log with -v)")
        if self.cuda_graph:
            # the plain enqueue above did the shape work; capture the next one for replay
            with self.api.capture(self.stream) as cap:
                if not self.context.execute_async_v3(self.stream.handle):
                    raise EngineError("TensorRT failed to enqueue the engine during CUDA graph capture")
            assert cap.graph is not None
            self._graphs[key] = cap.graph.instantiate()
            cap.graph.destroy()
            self.captures += 1

    def _drop_graphs(self) -> None:
        for g in self._graphs.values():
            try:
                g.destroy()
            except Exception:
                pass
        self._graphs = {}

    def collect(self, slot: "FrameSlot") -> Dict[str, np.ndarray]:
        """Wait for a submitted batch; its outputs (copies, batch rows only)."""
        batch = self._pending.pop(slot.index, None)
        host = slot.wait()
        if batch is None:
            raise EngineError("collect() of a slot that was not submitted")
        return {t.name: np.array(host[t.name][:batch]) for t in self.outputs}

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self.collect(self.submit(feed))

    def close(self) -> None:
        slots = getattr(self, "slots", None)
        if slots is not None:
            slots.close()
            self.slots = None  # type: ignore[assignment]
        self._drop_graphs()
        self.context = None
        self.__dict__.pop("engine", None)  # drop TensorRT's engine (and its device memory) now
