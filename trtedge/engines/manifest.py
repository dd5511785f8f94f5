"""The manifest: the JSON beside every engine that makes it self-describing.

The runtime and ``trtedge check`` read it before they deserialise anything.
Fields (``MANIFEST_VERSION`` 1):

``name``, ``family``, ``labels``; ``input`` (tensor name, dtype, shape,
height, width, channel order of the uint8 input, resize mode, pad value);
``outputs`` (name, dtype, shape each); ``nms`` (form and thresholds);
``precision`` and ``precision_road``; ``tensorrt`` (module, version,
version-compatible and hardware-compatibility flags); ``gpu`` (name and
compute capability, or "none (ahead of time)"); ``plugins`` (plugin ops the
engine needs, and whether it embeds plugin libraries); ``source`` (path as
given, sha256, format); ``engine`` / ``onnx`` (file name, sha256, bytes);
``build_options``; ``build_key`` (what decides whether a rebuild is needed);
``spec`` (the resolved spec); ``notes``; ``trtedge_version``; ``created``.
"""

import datetime
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

from ..errors import EngineError
from ..utils.files import sha256_file, write_atomic  # noqa: F401 (sha256_file is part of this API)

MANIFEST_VERSION = 1
FORMAT = "trtedge-manifest"

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path(engine_or_onnx: str) -> str:
    return os.path.splitext(engine_or_onnx)[0] + ".json"


def io_of(model: Any) -> Dict[str, List[Dict[str, Any]]]:
    """Names, dtypes and shapes of an ONNX model's inputs and outputs."""

    def one(vi: Any) -> Dict[str, Any]:
        t = vi.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim] if t.HasField("shape") else []
        return {"name": vi.name, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims}

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [one(v) for v in model.graph.input if v.name not in inits],
        "outputs": [one(v) for v in model.graph.output],
    }


def make(
    spec: Any,
    model: Any,
    nms_form: Optional[str],
    precision: str,
    precision_road: str,
    source: Dict[str, Any],
    build_options: Dict[str, Any],
    build_key: str,
    onnx_file: str,
    onnx_sha256: str,
    notes: List[str],
) -> Dict[str, Any]:
    """A manifest without its TensorRT part (``--onnx-only`` writes this)."""
    from .. import __version__

    io = io_of(model)
    first = io["inputs"][0] if io["inputs"] else {"name": "", "dtype": "", "shape": []}
    inp = spec.input
    data = {
        "format": FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "trtedge_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "name": spec.name,
        "family": spec.family,
        "labels": list(spec.labels),
        "input": {
            "name": first["name"],
            "dtype": first["dtype"],
            "shape": first["shape"],
            "height": inp.height,
            "width": inp.width,
            "channels": inp.engine_channels,
            "resize": inp.resize,
            "pad_value": inp.pad_value,
        },
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "nms": None if nms_form is None else dict(spec.nms.__dict__, form=nms_form),
        "precision": precision,
        "precision_road": precision_road,
        "plugins": {
            "required": ["EfficientNMS_TRT"] if nms_form == "plugin" else [],
            "libraries_embedded": False,
        },
        "source": source,
        "onnx": {"file": onnx_file, "sha256": onnx_sha256},
        "engine": None,
        "tensorrt": None,
        "gpu": None,
        "build_options": build_options,
        "build_key": build_key,
        "spec": spec.to_dict() if spec.family != "none" else None,
        "notes": notes,
    }
    return data


def add_engine(data: Dict[str, Any], engine_file: str, plan: bytes, result: Any) -> Dict[str, Any]:
    """Record the built engine and the TensorRT that built it."""
    caps = result.capabilities
    flags = dict(result.flags)
    data = dict(data)
    data["engine"] = {"file": engine_file, "sha256": sha256_bytes(plan), "bytes": len(plan)}
    data["tensorrt"] = {
        "module": caps.module,
        "version": caps.version,
        "version_compatible": bool(flags.get("version_compatible", False)),
        "hardware_compat": flags.get("hardware_compat") or "none",
        "strongly_typed": bool(flags.get("strongly_typed", False)),
        "build_seconds": round(result.seconds, 3),
    }
    data["gpu"] = dict(result.gpu)
    data["precision_road"] = flags.get("precision_road", data.get("precision_road"))
    return data


def write(path: str, data: Dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read(path: str) -> Dict[str, Any]:
    """Read and sanity-check a manifest; :class:`EngineError` when unusable."""
    if not os.path.isfile(path):
        raise EngineError("no manifest at {}".format(path),
                          hint="engines built by trtedge have one beside them; rebuild with trtedge build")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise EngineError("manifest {} is not valid JSON ({})".format(path, exc),
                          hint="rebuild the engine with trtedge build --force")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EngineError("{} is not a trtedge manifest".format(path))
    if int(data.get("manifest_version", 0)) > MANIFEST_VERSION:
        raise EngineError("manifest {} has version {}, newer than this trtedge reads ({})".format(
            path, data.get("manifest_version"), MANIFEST_VERSION), hint="upgrade trtedge")
    return data
