"""The ONNX Runtime backend: the engine's graph in ONNX Runtime (CUDA provider when present, else CPU)."""

import os
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import EngineError, TrtedgeError
from ..utils.cores import usable_cores
from .backend import Backend, TensorInfo


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
        if self.provider == "CPUExecutionProvider":
            self.host_threads = threads or usable_cores()  # ONNX Runtime's default: every core
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
