"""Source models -> ``onnx.ModelProto``.

Finding the file (``locate``) and loading it (``load``) by format. ONNX is
read here; TensorFlow formats (SavedModel, frozen graph, Keras) go through
tf2onnx in :mod:`trtedge.engines.tf_source`.
"""

import os
from typing import Any, List, Optional

from ..errors import ModelError

ONNX_EXTS = (".onnx",)
FROZEN_EXTS = (".pb",)
KERAS_EXTS = (".keras", ".h5", ".hdf5")
DARKNET_EXTS = (".cfg",)
MODEL_EXTS = ONNX_EXTS + FROZEN_EXTS + KERAS_EXTS + DARKNET_EXTS


def detect_format(path: str) -> str:
    """'onnx' | 'savedmodel' | 'frozen_graph' | 'keras' from the path."""
    low = path.lower()
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "savedmodel"
        raise ModelError("{} is a directory without saved_model.pb; give an ONNX file, a SavedModel "
                         "directory, a frozen .pb or a Keras file".format(path))
    if low.endswith(ONNX_EXTS):
        return "onnx"
    if low.endswith(FROZEN_EXTS):
        return "frozen_graph"
    if low.endswith(KERAS_EXTS):
        return "keras"
    if low.endswith(DARKNET_EXTS):
        return "darknet"
    raise ModelError("cannot tell the format of {}; known: .onnx, SavedModel directory, .pb, "
                     ".keras/.h5, darknet .cfg (or set source.format in the spec)".format(path))


def detect_format_or_none(path: str) -> Optional[str]:
    try:
        return detect_format(path)
    except ModelError:
        return None


def is_model_path(text: str) -> bool:
    return text.lower().endswith(MODEL_EXTS) or (
        os.path.isdir(text) and os.path.isfile(os.path.join(text, "saved_model.pb")))


def candidates(spec: Any, override: Optional[str]) -> List[str]:
    """Where the source file is looked for, in order."""
    if override:
        return [override]
    name = spec.source.file
    if not name:
        return []
    if os.path.isabs(name):
        return [name]
    from ..specs import MODELS_DIR

    dirs = []
    if spec.origin and os.path.exists(spec.origin):
        dirs.append(os.path.dirname(os.path.abspath(spec.origin)))
    dirs += [MODELS_DIR, os.getcwd()]
    seen = []  # type: List[str]
    for d in dirs:
        p = os.path.join(d, name)
        if p not in seen:
            seen.append(p)
    return seen


def locate(spec: Any, override: Optional[str] = None) -> str:
    """The source model's path; a :class:`ModelError` saying where it looked."""
    paths = candidates(spec, override)
    for p in paths:
        if os.path.exists(p):
            if os.path.isdir(p) and not os.path.isfile(os.path.join(p, "saved_model.pb")):
                raise ModelError("{} is a directory, not a model file".format(p))
            return p
    if not paths:
        raise ModelError("spec '{}' names no source.file; pass the model with --model PATH".format(spec.name))
    if spec.source.url:
        hint = "download it from {}{}, put it in one of those places or pass --model PATH".format(
            spec.source.url, "; " + spec.source.howto if spec.source.howto else "")
    else:
        hint = "pass it with --model PATH"
    raise ModelError("model file for '{}' not found; looked in: {}".format(spec.name, ", ".join(paths)), hint=hint)


def load(path: str, spec: Any = None, verbose: bool = False, say: Any = None) -> Any:
    """Load any supported source model as an ``onnx.ModelProto``."""
    fmt = spec.source.format if spec is not None and spec.source.format != "auto" else detect_format(path)
    if fmt == "onnx" or path.lower().endswith(".onnx"):  # e.g. a darknet spec given an ONNX export with --model
        return load_onnx(path)
    from . import tf_source

    if say is not None:
        say("Converting the TensorFlow {} to ONNX (loading TensorFlow first; this takes a while, and is "
            "skipped when the engine is reused)".format(fmt.replace("_", " ")))

    return tf_source.convert(path, fmt, spec, verbose=verbose)


def load_onnx(path: str) -> Any:
    import onnx

    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise ModelError("cannot read ONNX model {}: {}".format(path, str(exc).splitlines()[0] if str(exc) else
                                                                   type(exc).__name__),
                         hint="is it a complete .onnx file?")
    if not model.graph.node:
        raise ModelError("{} holds no graph nodes; is it an ONNX model?".format(path))
    return model
