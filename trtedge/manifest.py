"""The contract between build and runtime: the manifest beside every engine, as a type.

``engines/`` writes a :class:`Manifest`; ``runtime/`` and ``trtedge check``
read only this (never spec files, never the builder). Reading validates every
field's type and range, so a hand-edited or foreign manifest is one line and
exit 1 (:class:`~trtedge.errors.ManifestError`), never a traceback. File
names in it (``onnx.file``, ``onnxrt.file``, ``engine.file``, plugin
libraries) are plain names inside the engine's directory; anything else is
refused (:meth:`Manifest.path_of`).

Layout on disk (``MANIFEST_VERSION`` 2; JSON, keys sorted): ``format``,
``manifest_version``, ``trtedge_version``, ``created``, ``name``, ``family``,
``labels``, ``input`` (:class:`InputInfo`), ``inputs``/``outputs``
(:class:`TensorDesc` each), ``nms`` (:class:`NmsInfo` or null for plain
models), ``precision``, ``precision_road``, ``plugins``, ``source``,
``onnx``, ``onnxrt`` (the graph ONNX Runtime runs: the engine ONNX itself,
or for the ``plugin`` NMS form a copy with the plugin node swapped for
standard ops, made at build time), ``engine`` (null after ``--onnx-only``),
``tensorrt``, ``gpu``, ``build_options`` (the :class:`~trtedge.config.BuildConfig`),
``build_key``, ``spec`` (the resolved spec, informational), ``notes``,
``int8`` (:class:`Int8Info` for INT8 builds, else null).

Nothing here imports numpy, onnx or TensorRT; :func:`set_onnx_metadata` /
:func:`get_onnx_metadata` work on an ``onnx.ModelProto`` handed in.
"""

import datetime
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Dict, Optional, Tuple, Union

from .config import NMS_FORMS, BuildConfig
from .errors import ManifestError, TrtedgeError
from .utils.files import sha256_file, write_atomic

MANIFEST_VERSION = 2
FORMAT = "trtedge-manifest"
META_PREFIX = "trtedge."
DTYPES = ("float32", "float16", "uint8", "int8", "int32", "int64", "bool")

Dim = Union[int, str]


def _meta(**kw: Any) -> Dict[str, Any]:
    return {"check": kw}


@dataclass(frozen=True)
class TensorDesc:
    name: str = field(metadata=_meta(nonempty=True))
    dtype: str = field(metadata=_meta(choices=DTYPES))
    #: ints for fixed sizes, names for dynamic ones ("batch")
    shape: Tuple[Dim, ...] = ()


@dataclass(frozen=True)
class InputInfo:
    """The engine's image input and how frames are fitted into it."""

    name: str
    dtype: str = field(metadata=_meta(choices=DTYPES))
    shape: Tuple[Dim, ...] = ()
    height: int = field(default=0, metadata=_meta(min=0))
    width: int = field(default=0, metadata=_meta(min=0))
    #: channel order of the uint8 input (what the runtime feeds)
    channels: str = field(default="bgr", metadata=_meta(choices=("bgr", "rgb")))
    resize: str = field(default="letterbox", metadata=_meta(choices=("letterbox", "stretch")))
    pad_value: int = field(default=114, metadata=_meta(min=0, max=255))
    #: where a letterboxed image sits: centred, or at the top-left (padding bottom and right)
    letterbox_align: str = field(default="center", metadata=_meta(choices=("center", "top_left")))
    #: the model's own input layout and normalisation (inside the engine; baselines use them)
    layout: str = field(default="nchw", metadata=_meta(choices=("nchw", "nhwc")))
    scale: Tuple[float, ...] = (1.0 / 255.0,) * 3
    offset: Tuple[float, ...] = (0.0, 0.0, 0.0)
    #: built with ``--frame-size``: the input takes whole frames of this size (its shape says so too)
    #: and the engine letterboxes them into ``height`` x ``width`` itself; 0: the runtime letterboxes
    frame_height: int = field(default=0, metadata=_meta(min=0))
    frame_width: int = field(default=0, metadata=_meta(min=0))

    @property
    def frame_size(self) -> Optional[Tuple[int, int]]:
        """(height, width) of the frames the engine takes as they are, or None."""
        return (self.frame_height, self.frame_width) if self.frame_height and self.frame_width else None


@dataclass(frozen=True)
class NmsInfo:
    form: str = field(metadata=_meta(choices=NMS_FORMS))
    score_threshold: float = field(default=0.25, metadata=_meta(min=0.0, max=1.0))
    iou_threshold: float = field(default=0.45, metadata=_meta(min=0.0, max=1.0))
    max_per_class: int = field(default=100, metadata=_meta(min=1))
    max_detections: int = field(default=100, metadata=_meta(min=1))
    candidates: int = field(default=1000, metadata=_meta(min=1))
    class_agnostic: bool = False


@dataclass(frozen=True)
class Plugins:
    required: Tuple[str, ...] = ()
    #: plugin libraries shipped beside the engine (code that runs on load)
    libraries: Tuple[str, ...] = ()

    @property
    def libraries_embedded(self) -> bool:
        return bool(self.libraries)


@dataclass(frozen=True)
class SourceInfo:
    path: Optional[str] = None
    sha256: Optional[str] = field(default=None, metadata=_meta(hex64=True))
    format: str = "onnx"


@dataclass(frozen=True)
class FileInfo:
    file: str = field(metadata=_meta(nonempty=True))
    sha256: Optional[str] = field(default=None, metadata=_meta(hex64=True))
    bytes: Optional[int] = field(default=None, metadata=_meta(min=0))


@dataclass(frozen=True)
class TensorRTInfo:
    module: str = field(metadata=_meta(choices=("tensorrt", "tensorrt_rtx")))
    version: str = field(metadata=_meta(nonempty=True))
    version_compatible: bool = False
    hardware_compat: str = field(default="none", metadata=_meta(
        choices=("none", "ampere_plus", "same_compute_capability")))
    strongly_typed: bool = False
    build_seconds: float = field(default=0.0, metadata=_meta(min=0.0))


@dataclass(frozen=True)
class GpuInfo:
    name: str = ""
    #: "8.7"; None for an ahead-of-time build (TensorRT for RTX without a GPU)
    compute_capability: Optional[str] = None


@dataclass(frozen=True)
class Int8Info:
    """How an INT8 engine was quantised and what its accuracy gate measured (:mod:`trtedge.engines.int8`)."""

    #: "qdq": a Q/DQ engine ONNX made on the CPU; "calibrator": TensorRT's entropy calibrator
    road: str = field(metadata=_meta(choices=("qdq", "calibrator")))
    calib_sha256: Optional[str] = field(default=None, metadata=_meta(hex64=True))
    #: calibration frames used, and held-out frames the gate measured on
    frames: int = field(default=0, metadata=_meta(min=0))
    held_out: int = field(default=0, metadata=_meta(min=0))
    quantizer: str = ""
    #: what the gate's mAP is measured against: the FP32 engine ONNX's detections or the frames' annotations;
    #: a plain model (family none): "fp32_outputs", the FP32 engine ONNX's own outputs (see ``max_abs_diff``)
    reference: str = field(default="fp32_detections", metadata=_meta(
        choices=("fp32_detections", "annotations", "fp32_outputs", "none")))
    fp32_map: Optional[float] = field(default=None, metadata=_meta(min=0.0, max=1.0))
    int8_map: Optional[float] = field(default=None, metadata=_meta(min=0.0, max=1.0))
    max_map_drop: float = field(default=0.01, metadata=_meta(min=0.0, max=1.0))
    #: layers (engine ONNX node names) kept in float, most sensitive first
    layers_kept: Tuple[str, ...] = ()
    quantized_layers: int = field(default=0, metadata=_meta(min=0))
    rounds: int = field(default=0, metadata=_meta(min=0))
    #: the calibrator road's TensorRT calibration cache beside the engine
    calibration_cache: Optional[str] = None
    #: a plain model: the largest |INT8 - FP32| over every output on the held-out rows (ONNX Runtime, CPU)
    max_abs_diff: Optional[float] = field(default=None, metadata=_meta(min=0.0))


@dataclass(frozen=True)
class Manifest:
    name: str = field(metadata=_meta(nonempty=True))
    family: str = field(metadata=_meta(nonempty=True))
    labels: Tuple[str, ...]
    input: InputInfo
    inputs: Tuple[TensorDesc, ...]
    outputs: Tuple[TensorDesc, ...]
    nms: Optional[NmsInfo]
    precision: str = field(metadata=_meta(choices=("fp32", "fp16", "int8")))
    precision_road: str = field(metadata=_meta(choices=("none", "builder_flag", "onnx_types")))
    plugins: Plugins
    source: SourceInfo
    onnx: FileInfo
    onnxrt: FileInfo
    engine: Optional[FileInfo]
    tensorrt: Optional[TensorRTInfo]
    gpu: Optional[GpuInfo]
    build_options: BuildConfig
    build_key: str = field(metadata=_meta(hex64=True))
    spec: Optional[Dict[str, Any]] = None
    notes: Tuple[str, ...] = ()
    int8: Optional[Int8Info] = None
    trtedge_version: str = ""
    created: str = ""
    format: str = FORMAT
    manifest_version: int = MANIFEST_VERSION

    # ------------------------------------------------------------ derived

    @property
    def is_detector(self) -> bool:
        return self.nms is not None

    @property
    def max_batch(self) -> int:
        return self.build_options.max_batch

    @property
    def config(self) -> BuildConfig:
        return self.build_options

    def path_of(self, engine_dir: str, name: str, what: str = "file") -> str:
        """``name`` (a file the manifest names) inside ``engine_dir``; refused if it leaves it."""
        return inside(engine_dir, name, what)

    # ------------------------------------------------------------ (de)serialising

    def to_dict(self) -> Dict[str, Any]:
        data = _plain(self)  # type: Dict[str, Any]
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, path: str) -> None:
        write_atomic(path, self.dumps())

    @classmethod
    def from_dict(cls, data: Any, origin: str = "manifest") -> "Manifest":
        if not isinstance(data, dict):
            raise ManifestError("{} is not a trtedge manifest (not a JSON object)".format(origin))
        if data.get("format") != FORMAT:
            raise ManifestError("{} is not a trtedge manifest (no \"format\": \"{}\")".format(origin, FORMAT))
        version = data.get("manifest_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ManifestError("{}: field 'manifest_version' must be a whole number, not {}".format(
                origin, _kind(version)), hint="rebuild the engine with trtedge build --force")
        if version > MANIFEST_VERSION:
            raise ManifestError("{} has manifest version {}, newer than this trtedge reads ({})".format(
                origin, version, MANIFEST_VERSION), hint="upgrade trtedge")
        if version < MANIFEST_VERSION:
            raise ManifestError("{} has manifest version {}, written by an older trtedge ({}); this one reads "
                                "version {}".format(origin, version, data.get("trtedge_version", "?"),
                                                    MANIFEST_VERSION),
                                hint="rebuild the engine with trtedge build --force")
        m = _read(cls, data, origin, "")  # type: Manifest
        named = [("onnx.file", m.onnx.file), ("onnxrt.file", m.onnxrt.file)]
        named += [("engine.file", m.engine.file)] if m.engine else []
        named += [("plugins.libraries", lib) for lib in m.plugins.libraries]
        for where, name in named:
            if not _plain_name(name):
                raise _fail(origin, where, "is {!r}, not a plain file name beside the engine; trtedge refuses "
                                           "paths that leave the engine's directory".format(name))
        return m

    def with_changes(self, **changes: Any) -> "Manifest":
        return replace(self, **changes)


def _plain_name(name: str) -> bool:
    return bool(name) and not os.path.isabs(name) and name == os.path.basename(name) and \
        name not in (".", "..") and "\\" not in name and "\0" not in name


def inside(engine_dir: str, name: str, what: str = "file") -> str:
    """``name`` (a file a manifest names) inside ``engine_dir``; refused if it leaves it."""
    if not _plain_name(name):
        raise ManifestError("the manifest names {} {!r}, which is not a plain file name beside the "
                            "engine; trtedge refuses paths that leave the engine's directory".format(what, name),
                            hint="rebuild the engine with trtedge build")
    return os.path.join(os.path.abspath(engine_dir), name)


# ---------------------------------------------------------------- reading with checks

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number ({})".format(value)
    if isinstance(value, str):
        return "a string ({!r})".format(value[:40])
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fail(origin: str, where: str, message: str) -> ManifestError:
    return ManifestError("{}: field '{}' {}".format(origin, where, message),
                         hint="the manifest was altered or is not trtedge's; rebuild the engine with trtedge build")


def _check_value(value: Any, tp: Any, origin: str, where: str, meta: Dict[str, Any]) -> Any:
    import typing

    origin_tp = getattr(tp, "__origin__", None)
    args = tuple(getattr(tp, "__args__", ()) or ())  # type: Tuple[Any, ...]
    if origin_tp is Union:
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _check_value(value, rest[0], origin, where, meta)
        if rest == [int, str]:  # a dimension
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise _fail(origin, where, "must be a whole number or a name, not {}".format(_kind(value)))
            return value
        raise AssertionError(tp)
    if origin_tp in (tuple, typing.Tuple):
        if not isinstance(value, list):
            raise _fail(origin, where, "must be a list, not {}".format(_kind(value)))
        inner = args[0]
        return tuple(_check_value(v, inner, origin, "{}[{}]".format(where, i), {}) for i, v in enumerate(value))
    if origin_tp in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise _fail(origin, where, "must be an object, not {}".format(_kind(value)))
        return value
    if tp is Any:
        return value
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(origin, where, "must be an object, not {}".format(_kind(value)))
        if tp is BuildConfig:
            try:
                return BuildConfig.from_dict(value)
            except TrtedgeError as exc:
                raise _fail(origin, where, "is not valid: {}".format(exc))
        return _read(tp, value, origin, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(origin, where, "must be true or false, not {}".format(_kind(value)))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(origin, where, "must be a whole number, not {}".format(_kind(value)))
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            raise _fail(origin, where, "must be a number, not {}".format(_kind(value)))
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise _fail(origin, where, "must be a string, not {}".format(_kind(value)))
    check = meta.get("check", {})
    if "choices" in check and value not in check["choices"]:
        raise _fail(origin, where, "is {!r}; allowed: {}".format(value, ", ".join(check["choices"])))
    if "min" in check and value < check["min"]:
        raise _fail(origin, where, "must be at least {}, is {}".format(check["min"], value))
    if "max" in check and value > check["max"]:
        raise _fail(origin, where, "must be at most {}, is {}".format(check["max"], value))
    if check.get("nonempty") and not value:
        raise _fail(origin, where, "must not be empty")
    if check.get("hex64") and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
        raise _fail(origin, where, "must be a sha256 (64 lowercase hexadecimal digits)")
    return value


def _read(cls: Any, data: Dict[str, Any], origin: str, path: str) -> Any:
    import typing

    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        where = "{}.{}".format(path, f.name) if path else f.name
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise _fail(origin, where, "is missing")
        values[f.name] = _check_value(data[f.name], hints[f.name], origin, where, dict(f.metadata))
    return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, BuildConfig):
        return value.to_dict()
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- files

def manifest_path(engine_or_onnx: str) -> str:
    return os.path.splitext(engine_or_onnx)[0] + ".json"


def read(path: str) -> Manifest:
    """Read and validate a manifest; :class:`ManifestError` (exit 1) when unusable."""
    if not os.path.isfile(path):
        raise ManifestError("no manifest at {}".format(path),
                            hint="engines built by trtedge have one beside them; rebuild with trtedge build")
    try:
        with open(path, "rb") as f:
            raw = f.read(64 << 20)
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ManifestError("manifest {} is not valid JSON ({})".format(path, " ".join(str(exc).split())[:160]),
                            hint="rebuild the engine with trtedge build --force")
    return Manifest.from_dict(data, origin=path)


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def verify_file(engine_dir: str, record: FileInfo, what: str) -> str:
    """The path of ``record`` inside ``engine_dir``; :class:`ManifestError` when missing or altered."""
    from .errors import IncompatibleEngine

    m_path = inside(engine_dir, record.file, what)
    if not os.path.isfile(m_path):
        raise IncompatibleEngine("{} {} named by the manifest is missing".format(what, m_path),
                                 hint="rebuild with trtedge build")
    if record.bytes is not None and os.path.getsize(m_path) != record.bytes:
        raise IncompatibleEngine("{} {} is {} bytes but its manifest says {}: truncated or replaced".format(
            what, m_path, os.path.getsize(m_path), record.bytes), hint="rebuild with trtedge build --force")
    if record.sha256 and sha256_file(m_path) != record.sha256:
        raise IncompatibleEngine("{} {} does not match its manifest (sha256): corrupt or replaced".format(
            what, m_path), hint="rebuild with trtedge build --force")
    return m_path


# ---------------------------------------------------------------- ONNX metadata

def set_onnx_metadata(model: Any, values: Dict[str, Any]) -> None:
    """Write ``trtedge.*`` metadata (JSON-encoded values) into an ``onnx.ModelProto``."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in sorted(values.items()):
        prop = model.metadata_props.add()
        prop.key = META_PREFIX + key
        prop.value = json.dumps(value, sort_keys=True)


def get_onnx_metadata(model: Any) -> Dict[str, Any]:
    out = {}  # type: Dict[str, Any]
    for prop in model.metadata_props:
        if prop.key.startswith(META_PREFIX):
            try:
                out[prop.key[len(META_PREFIX):]] = json.loads(prop.value)
            except ValueError:
                out[prop.key[len(META_PREFIX):]] = prop.value
    return out


__all__ = ["Manifest", "Int8Info", "TensorDesc", "InputInfo", "NmsInfo", "Plugins", "SourceInfo", "FileInfo",
           "TensorRTInfo", "GpuInfo", "MANIFEST_VERSION", "read", "manifest_path", "verify_file",
           "set_onnx_metadata", "get_onnx_metadata", "asdict"]
