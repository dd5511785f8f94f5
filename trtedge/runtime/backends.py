"""Backends: something that runs an engine's graph on a batch.

Interface (:class:`Backend`): ``inputs`` / ``outputs`` (name, dtype, shape),
``input_buffer(name, batch)`` — the host array to fill in place (pinned
memory for TensorRT, so the upload needs no extra copy), ``infer(feed) ->
{name: array}``, ``close()``. Two implementations: ONNX Runtime here (runs
the engine ONNX beside an engine: CUDA provider when present, else CPU) and
TensorRT in :mod:`trtedge.runtime.trt_backend`.

:func:`open_backend` picks one: ``auto`` is TensorRT when it can run here,
ONNX Runtime otherwise, and says which and why.
"""

import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import EngineError, TrtedgeError
from ..manifest import Manifest, verify_file

BACKENDS = ("auto", "trt", "onnxrt")
_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int32": np.int32,
           "int64": np.int64, "int8": np.int8, "bool": np.bool_}


class TensorInfo(NamedTuple):
    name: str
    dtype: Any
    shape: Tuple[Any, ...]


class Backend(object):
    name = "backend"
    inputs = []  # type: List[TensorInfo]
    outputs = []  # type: List[TensorInfo]

    def input_buffer(self, name: str, batch: int) -> np.ndarray:
        """A host array for input ``name`` with ``batch`` rows, reused across calls."""
        raise NotImplementedError

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def submit(self, feed: Dict[str, np.ndarray]) -> Any:
        """Start a batch; :meth:`collect` gives its outputs. Backends that run
        asynchronously (TensorRT) return at once, so the caller can prepare
        the next batch while this one runs; the default runs it now."""
        return self.infer(feed)

    def collect(self, ticket: Any) -> Dict[str, np.ndarray]:
        return ticket

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def numpy_dtype(text: str) -> Any:
    return _DTYPES.get(str(text), np.float32)


class OnnxRuntimeBackend(Backend):
    """The engine's graph in ONNX Runtime: the engine ONNX, or for the ``plugin``
    NMS form the copy with standard ops that the build wrote beside it
    (the manifest's ``onnxrt`` file)."""

    def __init__(self, onnx_path: str, providers: Optional[List[str]] = None, threads: Optional[int] = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise TrtedgeError("ONNX Runtime is not installed: pip install \"trtedge[ort]\" (or onnxruntime-gpu)")
        if not os.path.isfile(onnx_path):
            raise EngineError("engine ONNX {} is missing; the ONNX Runtime backend runs it".format(onnx_path),
                              hint="rebuild with trtedge build")
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(onnx_path, opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError("ONNX Runtime cannot load {}: {}".format(onnx_path, " ".join(str(exc).split())[:200]),
                              hint="rebuild with trtedge build --force")
        self.provider = self.session.get_providers()[0]
        self.name = "onnxrt ({})".format(self.provider.replace("ExecutionProvider", ""))
        self.inputs = [TensorInfo(i.name, _ort_dtype(i.type), tuple(i.shape)) for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, _ort_dtype(o.type), tuple(o.shape)) for o in self.session.get_outputs()]
        self._names = [o.name for o in self.outputs]
        self._buffers = {}  # type: Dict[str, np.ndarray]

    def input_buffer(self, name: str, batch: int) -> np.ndarray:
        info = [i for i in self.inputs if i.name == name][0]
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < batch:
            shape = (batch,) + tuple(d if isinstance(d, int) else 1 for d in info.shape[1:])
            buf = self._buffers[name] = np.zeros(shape, info.dtype)
        return buf[:batch]

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return dict(zip(self._names, self.session.run(self._names, feed)))

    def close(self) -> None:
        self.session = None


def _ort_dtype(text: str) -> Any:
    inner = text[text.find("(") + 1:text.find(")")] if "(" in text else text
    return {"float": np.float32, "float16": np.float16, "uint8": np.uint8, "int32": np.int32,
            "int64": np.int64, "bool": np.bool_, "int8": np.int8}.get(inner, np.float32)


def trt_runtime_available(module: str) -> Tuple[bool, str]:
    """(can the TensorRT backend run here, why not)."""
    from ..gpu import visible_gpu
    from ..trt_module import import_trt

    try:
        import_trt(module)
    except TrtedgeError:
        return False, "{} is not installed".format(module)
    if visible_gpu() is None:
        return False, "no NVIDIA GPU visible (or cuda-python missing)"
    return True, ""


def open_backend(engine_path: str, manifest: Manifest, kind: str = "auto", cuda: str = "cuda-python",
                 cuda_graph: bool = False, say: Any = None, trust_plugins: bool = False) -> Backend:
    """The backend for an engine and its manifest (the engine already checked)."""
    if kind not in BACKENDS:
        raise TrtedgeError("unknown backend '{}'; allowed: {}".format(kind, ", ".join(BACKENDS)))
    module = manifest.tensorrt.module if manifest.tensorrt else "tensorrt"
    if kind in ("auto", "trt"):
        ok, why = trt_runtime_available(module)
        if ok:
            from .trt_backend import TensorRTBackend

            return TensorRTBackend(engine_path, manifest, cuda=cuda, cuda_graph=cuda_graph,
                                   trust_plugins=trust_plugins)
        if kind == "trt":
            raise EngineError("the TensorRT backend cannot run here: {}".format(why),
                              hint="use --backend onnxrt, or run on a machine with {} and a GPU".format(module))
        if say:
            say("Backend: ONNX Runtime on the engine ONNX (TensorRT cannot run here: {})".format(why))
    directory = os.path.dirname(os.path.abspath(engine_path))
    return OnnxRuntimeBackend(verify_file(directory, manifest.onnxrt, "engine ONNX"))
