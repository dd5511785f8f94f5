"""What a backend is: something that runs an engine's graph on a batch.

Interface (:class:`Backend`): ``inputs`` / ``outputs`` (name, dtype, shape),
``input_buffer(name, batch)`` — the host array to fill in place (pinned
memory for TensorRT, so the upload needs no extra copy), ``infer(feed) ->
{name: array}``, ``close()``. Two implementations, a module each:
:mod:`trtedge.runtime.onnxrt_backend` and :mod:`trtedge.runtime.trt_backend`;
:func:`trtedge.runtime.backends.open_backend` picks one.
"""

from typing import Any, Dict, List, NamedTuple, Tuple

import numpy as np


_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int32": np.int32,
           "int64": np.int64, "int8": np.int8, "bool": np.bool_}


class TensorInfo(NamedTuple):
    name: str
    dtype: Any
    shape: Tuple[Any, ...]


class Backend(object):
    name = "backend"
    #: CPU threads the engine itself keeps busy while it runs (ONNX Runtime on the CPU: its
    #: intra-op threads; TensorRT: none, the GPU runs it); the detect loop leaves those cores
    #: to it and decodes video on the others
    host_threads = 0
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
        the next batch while this one runs; the default runs it now. The
        feed's arrays are the caller's again when ``submit`` returns (a
        backend that needs them later copies them first: TensorRT's go into
        its pinned buffers), so the detect loop refills them with the next
        frames."""
        return self.infer(feed)

    def collect(self, ticket: Any) -> Dict[str, np.ndarray]:
        outputs = ticket  # type: Dict[str, np.ndarray]
        return outputs

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def numpy_dtype(text: str) -> Any:
    return _DTYPES.get(str(text), np.float32)
