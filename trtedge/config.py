"""``BuildConfig``: everything a build depends on besides its inputs, validated once.

The CLI turns flags into one (:meth:`BuildConfig.from_args`), the Python API
turns keyword arguments into one (:meth:`BuildConfig.create`), the manifest
stores it (``build_options``), and the rebuild command that ``check`` and
``detect`` print is generated from it (:meth:`to_cli_args`), so a rebuild
reproduces the same options. Nothing here imports numpy, onnx or TensorRT.
"""

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional, Tuple

from .errors import TrtedgeError

PRECISIONS = ("fp32", "fp16", "int8")
#: how an INT8 build reaches TensorRT: auto (calibrator where the TensorRT has one, else Q/DQ), qdq, calibrator
INT8_ROADS = ("auto", "qdq", "calibrator")
CALIB_COUNT = 500
MAX_MAP_DROP = 0.01
NMS_CHOICES = ("auto", "plugin", "onnx", "host")
NMS_FORMS = NMS_CHOICES[1:]
ENGINE_EXTS = ("bin", "engine", "plan")
HARDWARE_COMPAT = ("none", "ampere_plus", "same_compute_capability")
TRT_MODULES = ("tensorrt", "tensorrt_rtx")

_SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(I?B)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: Any) -> int:
    """Bytes from "4G", "512M", "64K", "1073741824" (K/M/G/T are powers of 1024; B/iB allowed)."""
    match = _SIZE_RE.match(str(text).strip())
    if not match:
        raise TrtedgeError(
            "Bad size {!r}: use a number of bytes or a number with K, M or G (e.g. 4G, 512M, 64K)".format(text)
        )
    number, unit = match.group(1), match.group(2).upper()
    if unit == "" and match.group(3) is not None and match.group(3).upper() == "IB":
        raise TrtedgeError("Bad size {!r}: use e.g. 4G, 4GiB, 512M or a number of bytes".format(text))
    return int(float(number) * _SIZE_UNITS[unit]) if "." in number else int(number) * _SIZE_UNITS[unit]


def _choice(name: str, value: Any, allowed: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in allowed:
        raise TrtedgeError("unknown {} {!r}; allowed: {}".format(name, value, ", ".join(allowed)))


def parse_hw(text: Any, flag: str, example: str = "720x1280", one_number: bool = False) -> Tuple[int, int]:
    """``"720x1280"`` (HEIGHTxWIDTH), or a pair of whole numbers -> (height, width);
    ``one_number``: ``"640"`` means 640x640 too."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().replace(" ", "").split("x")
        if one_number and len(parts) == 1:
            parts = parts * 2
    try:
        if len(parts) != 2 or any(isinstance(p, (bool, float)) for p in parts):
            raise ValueError(text)
        h, w = int(parts[0]), int(parts[1])
        if h < 1 or w < 1:
            raise ValueError(text)
    except (TypeError, ValueError):
        raise TrtedgeError("{} is {!r}; give HEIGHTxWIDTH, each at least 1, e.g. {}{}".format(
            flag, text, example, " (or one number)" if one_number else ""))
    return h, w


def _whole(name: str, value: Any, minimum: int = 1, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TrtedgeError("{} must be a whole number of at least {}, not {!r}".format(name, minimum, value))


@dataclass(frozen=True)
class BuildConfig:
    """How to build. ``nms`` is the form asked for (``auto`` lets the
    installed TensorRT decide; the manifest's ``nms.form`` records the result).
    ``timing_cache`` speeds builds up but does not change what is built, so it
    is not part of :meth:`key`."""

    precision: str = "fp32"
    workspace: Optional[int] = None  # bytes
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    nms: str = "auto"
    onnx_only: bool = False
    timing_cache: Optional[str] = None
    version_compatible: bool = False
    hardware_compat: Optional[str] = None
    trt_module: Optional[str] = None
    engine_ext: str = "bin"
    #: INT8: the calibration frames (image directory, video or .npy batch); its content's sha256 is in the key
    calib: Optional[str] = None
    calib_count: int = CALIB_COUNT
    #: INT8: the largest mAP@0.5 drop against FP32 the accuracy gate accepts
    max_map_drop: float = MAX_MAP_DROP
    int8_road: str = "auto"
    #: (height, width) of the frames the engine takes as they are (resize and letterbox inside the
    #: engine); None: the engine takes its input size and the runtime letterboxes on the host
    frame_size: Optional[Tuple[int, int]] = None

    def __post_init__(self) -> None:
        _choice("precision", self.precision, PRECISIONS)
        if self.frame_size is not None:
            object.__setattr__(self, "frame_size", parse_hw(self.frame_size, "--frame-size"))
            if self.precision == "int8":
                raise TrtedgeError("--frame-size does not go with --precision int8 yet (calibration fits frames "
                                   "into the network's input size); build INT8 without --frame-size")
        _whole("workspace", self.workspace, 1, optional=True)
        for name in ("min_batch", "opt_batch", "max_batch"):
            _whole(name.replace("_", " "), getattr(self, name))
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise TrtedgeError("batch sizes must satisfy min <= opt <= max (got {} <= {} <= {})".format(
                self.min_batch, self.opt_batch, self.max_batch))
        _choice("nms", self.nms, NMS_CHOICES)
        _choice("hardware compatibility level", self.hardware_compat, HARDWARE_COMPAT, optional=True)
        _choice("TensorRT module", self.trt_module, TRT_MODULES, optional=True)
        _choice("engine extension", self.engine_ext, ENGINE_EXTS)
        for name in ("onnx_only", "version_compatible"):
            if not isinstance(getattr(self, name), bool):
                raise TrtedgeError("{} must be true or false, not {!r}".format(name, getattr(self, name)))
        if self.timing_cache is not None and (not isinstance(self.timing_cache, str) or not self.timing_cache):
            raise TrtedgeError("the timing cache must be a file path, not {!r}".format(self.timing_cache))
        self._check_int8()

    def _check_int8(self) -> None:
        if self.calib is not None and (not isinstance(self.calib, str) or not self.calib):
            raise TrtedgeError("--calib must be a path (an image directory, a video or a .npy batch), not {!r}".format(
                self.calib))
        if self.calib is not None and self.precision != "int8":
            raise TrtedgeError("--calib goes with --precision int8 (precision is {})".format(self.precision))
        _whole("calib count", self.calib_count, 1)
        drop = self.max_map_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0.0 <= drop <= 1.0:
            raise TrtedgeError("max mAP drop must be a number from 0 to 1 (e.g. 0.01), not {!r}".format(drop))
        _choice("INT8 road", self.int8_road, INT8_ROADS)

    @classmethod
    def create(cls, precision: str = "fp32", workspace: Any = None, batch: Optional[int] = None,
               min_batch: Optional[int] = None, opt_batch: Optional[int] = None, max_batch: Optional[int] = None,
               **rest: Any) -> "BuildConfig":
        """From the API's and CLI's words: ``workspace`` may be "2G"; ``batch=N``
        means a profile of 1..N optimised for N (so fewer frames still run)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(rest) - known)
        if unknown:
            raise TrtedgeError("unknown build option '{}'; known: {}".format(unknown[0], ", ".join(sorted(known))))
        if batch is not None and any(v is not None for v in (min_batch, opt_batch, max_batch)):
            raise TrtedgeError("give either --batch or --min-batch/--opt-batch/--max-batch, not both")
        for name, value in (("batch", batch), ("min batch", min_batch), ("opt batch", opt_batch),
                            ("max batch", max_batch)):
            _whole(name, value, 1, optional=True)
        if batch is not None:
            lo, opt, hi = 1, batch, batch
        else:
            hi = max_batch or max(opt_batch or 1, min_batch or 1)
            lo = min_batch or 1
            opt = opt_batch or hi
        if isinstance(workspace, str):
            try:
                workspace = parse_size(workspace)
            except TrtedgeError as exc:
                raise TrtedgeError("workspace: {}".format(exc))
        if isinstance(precision, str):
            precision = precision.lower()
        if workspace == 0:
            raise TrtedgeError("workspace must be more than 0 bytes (e.g. 512M or 2G), or left out for "
                               "TensorRT's default")
        return cls(precision=precision, workspace=workspace, min_batch=lo, opt_batch=opt, max_batch=hi, **rest)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "BuildConfig":
        """Read back :meth:`to_dict` (the manifest's ``build_options``); unknown keys are refused."""
        if not isinstance(data, dict):
            raise TrtedgeError("build options must be a mapping, not {}".format(type(data).__name__))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrtedgeError("unknown build option '{}'".format(unknown[0]))
        return cls(**data)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def key(self) -> Dict[str, Any]:
        """What decides whether an engine must be rebuilt (all but the timing cache)."""
        data = self.to_dict()
        data.pop("timing_cache")
        data.pop("calib")  # a path; pipeline.build_key adds the calibration data's sha256 instead
        if data["frame_size"] is None:  # engines built before the option existed keep their key (no rebuild)
            data.pop("frame_size")
        return data

    def to_cli_args(self) -> List[str]:
        """The ``trtedge build`` flags that give this config back (defaults left out)."""
        d = BuildConfig()
        args = ["--precision", self.precision]
        if self.workspace is not None:
            args += ["--workspace", str(self.workspace)]
        if (self.min_batch, self.opt_batch, self.max_batch) != (d.min_batch, d.opt_batch, d.max_batch):
            args += ["--min-batch", str(self.min_batch), "--opt-batch", str(self.opt_batch),
                     "--max-batch", str(self.max_batch)]
        if self.nms != d.nms:
            args += ["--nms", self.nms]
        if self.onnx_only:
            args.append("--onnx-only")
        if self.timing_cache:
            args += ["--timing-cache", self.timing_cache]
        if self.version_compatible:
            args.append("--version-compatible")
        if self.hardware_compat:
            args += ["--hardware-compat", self.hardware_compat]
        if self.trt_module:
            args += ["--trt-module", self.trt_module]
        if self.engine_ext != d.engine_ext:
            args += ["--engine-ext", self.engine_ext]
        if self.calib:
            args += ["--calib", self.calib]
        if self.calib_count != d.calib_count:
            args += ["--calib-count", str(self.calib_count)]
        if self.max_map_drop != d.max_map_drop:
            args += ["--max-map-drop", repr(float(self.max_map_drop))]
        if self.int8_road != d.int8_road:
            args += ["--int8-road", self.int8_road]
        if self.frame_size is not None:
            args += ["--frame-size", "{}x{}".format(*self.frame_size)]
        return args

    def replace(self, **changes: Any) -> "BuildConfig":
        data = self.to_dict()
        data.update(changes)
        return BuildConfig(**data)
