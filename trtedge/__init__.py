"""trtedge: TensorRT engines for detectors on edge devices, and the runtime that runs them.

``trtedge.build(...)`` turns a spec (or a model file) into an engine, its
engine ONNX and a manifest. Importing this package is cheap: TensorRT, CUDA,
OpenCV, TensorFlow and PyTorch are imported only when a function needs them.
"""

from typing import Any

from .version import __version__

__all__ = ["build", "Detector", "Detections", "__version__"]


def build(*args: Any, **kwargs: Any) -> Any:
    """Build an engine; see :func:`trtedge.engines.pipeline.build`."""
    from .engines.pipeline import build as _build

    return _build(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """``trtedge.Detector`` and ``trtedge.Detections``, imported on first use."""
    if name == "Detector":
        from .runtime.detector import Detector

        return Detector
    if name == "Detections":
        from .runtime.detections import Detections

        return Detections
    if name in ("errors", "specs", "engines", "runtime", "jetson", "datasets", "manifest", "config"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'trtedge' has no attribute '{}'".format(name))
