"""Picking a backend for an engine: ``auto`` is TensorRT when it can run here,
ONNX Runtime on the engine ONNX otherwise, and says which and why.

The backends are modules of their own (:mod:`.onnxrt_backend`,
:mod:`.trt_backend`) over the interface in :mod:`.backend`; this factory
imports them, they never import it.
"""

import os
from typing import Any, Tuple

from ..errors import EngineError, TrtedgeError
from ..manifest import Manifest, verify_file
from .backend import Backend, TensorInfo, numpy_dtype  # noqa: F401 (re-exported)

BACKENDS = ("auto", "trt", "onnxrt")


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
                 cuda_graph: bool = False, say: Any = None, trust_plugins: bool = False,
                 threads: Any = None) -> Backend:
    """The backend for an engine and its manifest (the engine already checked).
    ``threads``: ONNX Runtime's intra-op threads (None: its default)."""
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
    from .onnxrt_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(verify_file(directory, manifest.onnxrt, "engine ONNX"), threads=threads)
