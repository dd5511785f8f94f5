"""Build a serialized TensorRT engine from an ONNX file, with whichever TensorRT is installed.

Supported: full TensorRT 8.5/8.6 (JetPack 5), 10.x, 11.x (strongly typed only:
no FP16/INT8 builder flags, no calibrator) and TensorRT for RTX
(``tensorrt_rtx``, builds ahead of time, also on a machine without a GPU).

What a module can do is decided by asking it (``hasattr``, enum members, the
plugin registry), never by its version string. Three answers depend on the
module's kind because the module cannot tell them:

* ``nms_layer``: TensorRT for RTX has ``INetworkDefinition.add_nms`` and its
  parser imports NonMaxSuppression, but the build then fails with "... has no
  runners that implement it"; full TensorRT >= 8.5 builds it.
* ``timing_cache``: TensorRT for RTX keeps the ``ITimingCache`` API, but it was
  deprecated in TensorRT-RTX 1.2: "Timing cache operations are no-ops" (the
  NVIDIA docs also say it forces a GPU query during ahead-of-time builds).
* ``hardware_compat``: TensorRT for RTX has ``HardwareCompatibilityLevel`` but
  logs "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX" and
  ignores it, so it is reported as not supported there.

TensorRT is imported lazily (inside functions), so importing this module costs
nothing and works where no TensorRT is installed. Which module is used is
decided by :mod:`trtedge.trt_module`, shared with the runtime.
"""

import dataclasses
import importlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from trtedge.config import parse_size
from trtedge.engines.diagnose import TENSORRT, diagnose, diagnose_build, final_path
from trtedge.engines import calibrator
from trtedge.errors import BuildError, TrtedgeError
from trtedge.trt_module import INSTALL_HINT, MODULE_NAMES, import_trt
from trtedge.trt_module import one_line as _one_line
from trtedge.utils.files import write_atomic

if TYPE_CHECKING:  # annotations only: full TensorRT 10 signatures from tensorrt-stubs
    import tensorrt as trt

__all__ = [
    "MODULE_NAMES",
    "import_trt",
    "Capabilities",
    "capabilities",
    "BuildOptions",
    "parse_size",
    "BuildResult",
    "build_engine",
    "preflight",
    "ParserError",
    "ParseReport",
    "parse_onnx",
    "parser_errors",
]

LOG = logging.getLogger("trtedge")

PRECISIONS = ("fp32", "fp16", "int8")
HARDWARE_COMPAT_LEVELS = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}

ProgressCallback = Callable[[str], None]

# TensorRT's logger severities (stable since TensorRT 5): lower is more severe.
_INTERNAL_ERROR, _ERROR, _WARNING, _INFO, _VERBOSE = 0, 1, 2, 3, 4

_TICK_SECONDS = 5.0  # elapsed-time reports where there is no IProgressMonitor
_STEP_REPORT_SECONDS = 2.0  # at most one step report per this many seconds

_BUILD_LOCK = threading.RLock()  # one build per process at a time: the logger is shared
_LOGGERS = {}  # type: Dict[int, Any]


# --------------------------------------------------------------------------- import


def _kind(mod: ModuleType) -> str:
    name = str(getattr(mod, "__name__", "")).lower()
    return "tensorrt_rtx" if "rtx" in name else "tensorrt"


def _short_version(version: str) -> str:
    return ".".join(version.split(".")[:3])


def _label(caps: "Capabilities") -> str:
    return "TensorRT ({} {})".format(caps.module, _short_version(caps.version))


# --------------------------------------------------------------------------- logger


class _Sink(object):
    """Where the shared logger puts one build's messages."""

    def __init__(self, verbose: bool, quiet: bool = False) -> None:
        self.verbose = verbose
        #: keep warnings and errors in the sink only (the caller reports them itself)
        self.quiet = quiet and not verbose
        self.warnings = []  # type: List[str]
        self.errors = []  # type: List[str]


def _make_logger(mod: ModuleType) -> Any:
    base = mod.ILogger

    class TrtedgeLogger(base):  # type: ignore[misc, valid-type]
        """Forwards TensorRT's log to logging "trtedge" and to the current build's sink."""

        def __init__(self) -> None:
            base.__init__(self)
            self.sink = None  # type: Optional[_Sink]

        def log(self, severity: Any, msg: str) -> None:
            try:
                try:
                    level = int(severity)
                except Exception:
                    level = _WARNING
                text = str(msg).rstrip()
                sink = self.sink
                if level <= _WARNING:
                    if sink is not None:
                        sink.warnings.append(text)
                        if level <= _ERROR:
                            sink.errors.append(text)
                    if sink is not None and sink.quiet:
                        pass
                    elif level <= _ERROR:
                        LOG.error("TensorRT: %s", text)
                    else:
                        LOG.warning("TensorRT: %s", text)
                elif sink is not None and sink.verbose:
                    LOG.log(logging.INFO if level == _INFO else logging.DEBUG, "TensorRT: %s", text)
            except Exception:  # never let an exception cross into TensorRT
                pass

    return TrtedgeLogger()


def _shared_logger(mod: ModuleType) -> Any:
    """One logger per TensorRT module: TensorRT keeps the first one as its global logger."""
    with _BUILD_LOCK:
        logger = _LOGGERS.get(id(mod))
        if logger is None:
            logger = _make_logger(mod)
            _LOGGERS[id(mod)] = logger
        return logger


# --------------------------------------------------------------------------- capabilities


@dataclass(frozen=True)
class Capabilities:
    """What the installed TensorRT module can do, found by asking it."""

    module: str  # "tensorrt" | "tensorrt_rtx"
    version: str  # trt.__version__
    strongly_typed_only: bool  # no BuilderFlag.FP16: precision must come from the ONNX types
    fp16_flag: bool
    int8_flag: bool
    explicit_batch_flag: bool  # EXPLICIT_BATCH exists and is needed (8.x)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists
    memory_pools: bool  # IBuilderConfig.set_memory_pool_limit (else max_workspace_size)
    progress_monitor: bool  # trt.IProgressMonitor exists
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE exists
    hardware_compat: bool  # HardwareCompatibilityLevel exists and is honoured (not tensorrt_rtx)
    plugins: Tuple[str, ...]  # plugin creator names in the registry
    efficient_nms_plugin: bool  # "EfficientNMS_TRT" in plugins
    nms_layer: bool  # builds ONNX NonMaxSuppression (full TensorRT with add_nms; never tensorrt_rtx)
    timing_cache: bool  # IBuilderConfig timing cache that does something (not tensorrt_rtx)

    def as_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["plugins"] = list(self.plugins)
        return data


def _members(enum_cls: Any) -> Tuple[str, ...]:
    members = getattr(enum_cls, "__members__", None)
    if not members:
        return ()
    try:
        return tuple(str(key) for key in members)
    except Exception:
        return ()


def _plugin_names(mod: ModuleType) -> Tuple[str, ...]:
    init = getattr(mod, "init_libnvinfer_plugins", None)
    if init is not None:
        try:
            init(_shared_logger(mod), "")
        except Exception as exc:
            LOG.debug("init_libnvinfer_plugins failed: %s", exc)
    get_registry = getattr(mod, "get_plugin_registry", None)
    if get_registry is None:
        return ()
    try:
        registry = get_registry()
        creators = getattr(registry, "all_creators", None)  # 10.x (V2 and V3 creators)
        if creators is None:
            creators = getattr(registry, "plugin_creator_list", None)  # 8.x
        names = set()
        for creator in creators or ():
            name = getattr(creator, "name", None)
            if name:
                names.add(str(name))
        return tuple(sorted(names))
    except Exception as exc:
        LOG.debug("cannot list TensorRT plugins: %s", exc)
        return ()


def capabilities(trt: ModuleType) -> Capabilities:
    """Ask ``trt`` (a tensorrt or tensorrt_rtx module) what it supports."""
    kind = _kind(trt)
    builder_flags = _members(getattr(trt, "BuilderFlag", None))
    network_flags = _members(getattr(trt, "NetworkDefinitionCreationFlag", None))
    config_cls = getattr(trt, "IBuilderConfig", None)
    network_cls = getattr(trt, "INetworkDefinition", None)

    fp16 = "FP16" in builder_flags
    strongly_typed_flag = "STRONGLY_TYPED" in network_flags
    # EXPLICIT_BATCH is needed where implicit batch still exists (8.x, where
    # Builder.max_batch_size exists and STRONGLY_TYPED does not); 10.x keeps the
    # member only as a deprecated no-op.
    implicit_batch_era = hasattr(getattr(trt, "Builder", None), "max_batch_size") or not strongly_typed_flag
    plugins = _plugin_names(trt)
    return Capabilities(
        module=kind,
        version=str(getattr(trt, "__version__", "unknown")),
        strongly_typed_only=not fp16,
        fp16_flag=fp16,
        int8_flag="INT8" in builder_flags,
        explicit_batch_flag="EXPLICIT_BATCH" in network_flags and implicit_batch_era,
        strongly_typed_flag=strongly_typed_flag,
        memory_pools=hasattr(config_cls, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"),
        progress_monitor=hasattr(trt, "IProgressMonitor") and hasattr(config_cls, "progress_monitor"),
        version_compatible="VERSION_COMPATIBLE" in builder_flags,
        hardware_compat=(
            kind == "tensorrt"
            and hasattr(trt, "HardwareCompatibilityLevel")
            and hasattr(config_cls, "hardware_compatibility_level")
        ),
        plugins=plugins,
        efficient_nms_plugin="EfficientNMS_TRT" in plugins,
        nms_layer=kind == "tensorrt" and hasattr(network_cls, "add_nms"),
        timing_cache=kind == "tensorrt" and hasattr(config_cls, "create_timing_cache"),
    )


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"  # "fp32" | "fp16"
    workspace: Optional[int] = None  # bytes
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    timing_cache: Optional[str] = None  # path; read if it exists, written back after the build
    version_compatible: bool = False
    hardware_compat: Optional[str] = None  # None | "none" | "ampere_plus" | "same_compute_capability"
    strongly_typed: Optional[bool] = None  # None: decide (see build_engine)
    verbose: bool = False
    int8: Optional[Any] = None  # precision "int8": an engines.int8.Int8Plan (road, calibration, layers in float)


def _check_options(options: BuildOptions) -> None:
    if options.precision not in PRECISIONS:
        raise TrtedgeError(
            "Unknown precision {!r}: use {}".format(options.precision, " or ".join(PRECISIONS))
        )
    if options.workspace is not None and (not isinstance(options.workspace, int) or options.workspace <= 0):
        raise TrtedgeError("Workspace must be a positive number of bytes, not {!r}".format(options.workspace))
    batches = (options.min_batch, options.opt_batch, options.max_batch)
    if not all(isinstance(b, int) and b >= 1 for b in batches) or not (
        options.min_batch <= options.opt_batch <= options.max_batch
    ):
        raise TrtedgeError(
            "Batch sizes must be whole numbers with 1 <= min <= opt <= max, not min {} opt {} max {}".format(
                *batches
            )
        )
    if options.hardware_compat is not None and options.hardware_compat not in HARDWARE_COMPAT_LEVELS:
        raise TrtedgeError(
            "Unknown hardware_compat {!r}: use {}".format(
                options.hardware_compat, ", ".join(sorted(HARDWARE_COMPAT_LEVELS))
            )
        )


def preflight(caps: Capabilities, options: BuildOptions) -> List[str]:
    """Refuse, before anything is loaded or written, options this TensorRT cannot
    honour; return notes about options it will ignore."""
    _check_options(options)
    label = _label(caps)
    if options.version_compatible and (not caps.version_compatible or caps.module == "tensorrt_rtx"):
        why = ("it fails to load libnvinfer_lean, which TensorRT for RTX does not ship" if caps.module == "tensorrt_rtx"
               else "no BuilderFlag.VERSION_COMPATIBLE")
        raise BuildError("{} cannot build version-compatible engines ({}): build without "
                         "--version-compatible".format(label, why))
    if options.hardware_compat not in (None, "none") and not caps.hardware_compat:
        raise BuildError("{} cannot build hardware-compatible engines (--hardware-compat {}){}: build without "
                         "--hardware-compat".format(
                             label, options.hardware_compat,
                             "; TensorRT for RTX ignores setHardwareCompatibilityLevel" if caps.module == "tensorrt_rtx"
                             else ""))
    notes = []
    if options.timing_cache and not caps.timing_cache:
        notes.append("--timing-cache {} is not used: {}".format(
            options.timing_cache, "timing cache operations are no-ops in TensorRT for RTX"
            if caps.module == "tensorrt_rtx" else "{} has no timing cache".format(label)))
    return notes


# --------------------------------------------------------------------------- progress


class _Emitter(object):
    """Calls the user's progress callback; its exceptions are logged, not raised into TensorRT."""

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback

    def __call__(self, message: str) -> None:
        if self.callback is None:
            return
        try:
            self.callback(message)
        except Exception as exc:
            LOG.debug("progress callback failed: %s", exc)


def _make_progress_monitor(mod: ModuleType, emit: _Emitter) -> Any:
    """An IProgressMonitor reporting "Building engine: phase 3/6 Name" and, throttled, long phases' steps."""
    base = mod.IProgressMonitor

    class TrtedgeProgressMonitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.phases = {}  # type: Dict[str, Tuple[Optional[str], int, int]]  # name -> parent, steps, depth
            self.done = {}  # type: Dict[str, int]  # steps completed per phase
            self.root = ""
            self.last_step_report = 0.0

        def _position(self, parent: Optional[str]) -> str:
            if parent is None or parent not in self.phases:
                return ""
            steps = self.phases[parent][1]
            current = min(self.done.get(parent, 0) + 1, steps)
            return "phase {}/{} ".format(current, steps)

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            try:
                name = str(phase_name)
                parent = None if parent_phase is None else str(parent_phase)
                depth = 0 if parent is None or parent not in self.phases else self.phases[parent][2] + 1
                self.phases[name] = (parent, int(num_steps), depth)
                self.done[name] = 0
                if depth == 0:
                    self.root = name
                    emit("{} ...".format(name))
                elif depth == 1:
                    emit("{}: {}{}".format(self.root, self._position(parent), name))
                elif depth == 2 and parent is not None:
                    grand = self.phases[parent][0]
                    emit("{}: {}{} > {}".format(self.root, self._position(grand), parent, name))
            except Exception:
                pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                name = str(phase_name)
                self.done[name] = int(step) + 1
                info = self.phases.get(name)
                now = time.monotonic()
                if (
                    info is not None
                    and info[2] > 0
                    and info[1] >= 10
                    and now - self.last_step_report >= _STEP_REPORT_SECONDS
                ):
                    self.last_step_report = now
                    emit("{}: {} {}/{}".format(self.root, name, int(step) + 1, info[1]))
            except Exception:
                pass
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            try:
                name = str(phase_name)
                info = self.phases.pop(name, None)
                self.done.pop(name, None)
                if info is not None and info[2] == 0:
                    emit("{}: done".format(name))
            except Exception:
                pass

    return TrtedgeProgressMonitor()


class _Ticker(object):
    """Reports elapsed time every few seconds while a build without IProgressMonitor runs."""

    def __init__(self, emit: _Emitter, interval: float = _TICK_SECONDS) -> None:
        self.emit = emit
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trtedge-build-ticker")
        self.thread.daemon = True
        self.start_time = time.monotonic()

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.emit("Building engine: {:.0f} s elapsed".format(time.monotonic() - self.start_time))

    def __enter__(self) -> "_Ticker":
        self.emit("Building engine ...")
        self.start_time = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=1.0)


# --------------------------------------------------------------------------- result


@dataclass
class BuildResult:
    plan: bytes
    capabilities: Capabilities
    seconds: float
    gpu: Dict[str, str]
    flags: Dict[str, object]
    warnings: List[str]


# --------------------------------------------------------------------------- helpers


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape) or "scalar"


def _onnx_nodes(onnx_path: str) -> List[Tuple[str, str]]:
    """(name, op_type) of the graph's nodes, to name a node TensorRT 8.x reports by index."""
    try:
        onnx = importlib.import_module("onnx")
        model = onnx.load(onnx_path, load_external_data=False)
        return [(str(n.name), str(n.op_type)) for n in model.graph.node]
    except Exception:
        return []


def _error_node(error: Any, onnx_path: str, nodes_cache: List[List[Tuple[str, str]]]) -> Tuple[str, str]:
    name = op = ""
    for attr in ("node_name", "node_operator"):
        getter = getattr(error, attr, None)  # TensorRT 10+
        if getter is None:
            continue
        try:
            value = str(getter() or "")
        except Exception:
            value = ""
        if attr == "node_name":
            name = value
        else:
            op = value
    index = -1
    try:
        index = int(error.node())  # 8.x: only the index of the node in the graph
    except Exception:
        pass
    if (not name or not op) and index >= 0:
        if not nodes_cache:
            nodes_cache.append(_onnx_nodes(onnx_path))
        nodes = nodes_cache[0]
        if index < len(nodes):
            name = name or nodes[index][0]
            op = op or nodes[index][1]
    if not name and index >= 0:
        name = "#{}".format(index)
    return name, op


_ASSERTION_RE = re.compile(r'^[\w.\->()\[\]]+ && "(.+)"$')


def _clean_desc(desc: str) -> str:
    # onnx-tensorrt reports failed checks as `cond && "message"`: keep the message
    match = _ASSERTION_RE.match(desc)
    return match.group(1) if match else desc


@dataclass(frozen=True)
class ParserError:
    """One error of TensorRT's ONNX parser, with the node it names (empty when it names none)."""

    node: str
    op: str
    desc: str
    code: str
    #: the node's index in the ONNX graph (-1 when the parser gave none)
    index: int = -1

    @property
    def unsupported(self) -> bool:
        """The op itself is refused (no importer, no plugin), not one use of it."""
        return "UNSUPPORTED" in self.code or "Plugin not found" in self.desc or "No importer registered" in self.desc


def parser_errors(parser: Any, onnx_path: str) -> List[ParserError]:
    """Every error ``parser`` (a TensorRT OnnxParser that parsed ``onnx_path``) reports."""
    out = []  # type: List[ParserError]
    nodes_cache = []  # type: List[List[Tuple[str, str]]]
    count = 0
    try:
        count = int(parser.num_errors)
    except Exception:
        pass
    for i in range(count):
        try:
            error = parser.get_error(i)
            desc = _clean_desc(_one_line(error.desc(), 240))
            code = str(getattr(error, "code", lambda: "")())
        except Exception as exc:
            out.append(ParserError("", "", _one_line(exc, 240), ""))
            continue
        name, op = _error_node(error, onnx_path, nodes_cache)
        index = -1
        try:
            index = int(error.node())
        except Exception:
            pass
        out.append(ParserError(name, op, desc, code, index))
    return out


def _display_name(onnx_path: str) -> str:
    """The file name a user knows: a staged ``x.onnx.partial-PID`` is ``x.onnx``."""
    return os.path.basename(final_path(onnx_path))


def _parse_failure(caps: Capabilities, parser: Any, onnx_path: str, sink: _Sink) -> BuildError:
    parts = []  # type: List[str]
    errors = parser_errors(parser, onnx_path)
    for error in errors:
        if error.node or error.op:
            parts.append("node '{}' ({}): {}".format(error.node or "?", error.op or "?", error.desc))
        else:
            parts.append(error.desc)
    if not parts:
        parts = [_one_line(e, 240) for e in sink.errors[-2:]] or ["no error was reported"]
    message = "{} could not parse {}: {}".format(_label(caps), _display_name(onnx_path), "; ".join(parts))
    if any(e.unsupported for e in errors):
        message += " (this TensorRT has no importer or plugin for that op: replace or remove it in the model{})".format(
            "; TensorRT for RTX has no plugins" if caps.module == "tensorrt_rtx" else ""
        )
    else:
        found = diagnose([e.desc for e in errors] + list(sink.errors), TENSORRT)
        if found is not None:  # the parser copies the weights: a full memory shows here first
            message += " ({})".format(found.hint())
    return BuildError(message)


_SOURCE_TAIL_RE = re.compile(r"\s+In \w+ at /\S+:\d+")


def _build_failure(
    caps: Capabilities, onnx_path: str, sink: _Sink, options: BuildOptions, exc: Optional[BaseException] = None
) -> BuildError:
    errors = []  # type: List[str]
    for line in sink.errors:
        text = _one_line(_SOURCE_TAIL_RE.sub("", line), 300)
        if "Thread context has not been set" in text:
            continue  # TensorRT for RTX noise, not the cause
        if not errors or errors[-1] != text:
            errors.append(text)
    details = errors[-2:]
    if exc is not None:
        details.insert(0, _one_line(exc, 300))
    detail = "; ".join(details) or "TensorRT returned no engine and logged no error"
    what = "a version-compatible engine for " if options.version_compatible else ""
    message = "{} could not build {}{}: {}".format(_label(caps), what, _display_name(onnx_path), detail)
    lower = detail.lower()
    match = re.search(r"(\S+) has no runners", detail)
    if options.version_compatible and ("lean" in lower or "version compat" in lower):
        message += (
            " (BuilderFlag.VERSION_COMPATIBLE needs TensorRT's lean runtime library, which this {} install lacks:"
            " build without version_compatible)".format(caps.module)
        )
    elif match:
        message += " (layer '{}' has no implementation in {}: take that op out of the model{})".format(
            match.group(1),
            caps.module,
            "; for NonMaxSuppression export without NMS or build with full TensorRT"
            if "nonmaxsuppression" in lower
            else "",
        )
    else:
        # out of workspace, GPU or host memory: the cause and the flag to change
        found = diagnose_build(errors, sink.warnings, options.workspace, exc)
        if found is not None:
            message += " ({})".format(found.hint())
    return BuildError(message)


def _host_bytes(memory: Any) -> bytes:
    return bytes(memoryview(memory))


def _decide_strongly_typed(caps: Capabilities, options: BuildOptions) -> bool:
    want = options.strongly_typed
    if want is None:
        # Strongly typed where the module knows nothing else, or where FP16 must
        # come from the ONNX types because there is no FP16 builder flag.
        want = caps.strongly_typed_only or (options.precision == "fp16" and not caps.fp16_flag) or (
            options.precision == "int8" and calibrator.wants_strong_typing(caps, options.int8))
    if want and not (caps.strongly_typed_flag or caps.strongly_typed_only):
        raise BuildError(
            "{} cannot build strongly typed networks (no NetworkDefinitionCreationFlag.STRONGLY_TYPED):"
            " build with strongly_typed off or use TensorRT 10 or newer".format(_label(caps))
        )
    if not want and caps.strongly_typed_only:
        raise BuildError(
            "{} builds strongly typed networks only (no BuilderFlag.FP16): precision must come from the"
            " ONNX types, so strongly_typed cannot be off".format(_label(caps))
        )
    return bool(want)


def _gpu_info(caps: Capabilities) -> Dict[str, str]:
    from trtedge import gpu as gpu_probe  # lazy: it imports cuda-python lazily too

    status, info = gpu_probe.probe_gpu(0)
    if info is not None:
        return dict(info)
    if caps.module == "tensorrt_rtx" and status == gpu_probe.GPU_NONE:
        return {"name": "none (ahead of time)", "compute_capability": "none"}
    return {"name": "unknown", "compute_capability": "unknown"}


# --------------------------------------------------------------------------- build


def build_engine(
    onnx_path: str,
    options: BuildOptions,
    trt: Optional[ModuleType] = None,
    progress: Optional[ProgressCallback] = None,
) -> BuildResult:
    """Parse ``onnx_path`` and build a serialized engine with ``trt`` (default: :func:`import_trt`).

    ``options.strongly_typed`` None means: strongly typed where the module has no
    FP16 builder flag (TensorRT 11, TensorRT for RTX), else weakly typed (the
    classic behaviour; precision "fp16" then sets BuilderFlag.FP16).
    Raises BuildError (one line) when TensorRT cannot parse or build.
    """
    _check_options(options)
    if not os.path.isfile(onnx_path):
        raise BuildError("ONNX file not found: {}".format(onnx_path))
    mod = trt if trt is not None else import_trt()
    caps = capabilities(mod)
    emit = _Emitter(progress)
    with _BUILD_LOCK:
        logger = _shared_logger(mod)
        sink = _Sink(options.verbose)
        logger.sink = sink
        try:
            return _build(mod, caps, logger, sink, onnx_path, options, emit)
        finally:
            logger.sink = None


@dataclass
class ParseReport:
    """What TensorRT's ONNX parser made of a file, without building anything."""

    capabilities: Capabilities
    ok: bool
    errors: List[ParserError]
    #: layers in the network the parser made (of the nodes it took)
    layers: int
    warnings: List[str]


def parse_onnx(
    onnx_path: str, trt: Optional[ModuleType] = None, precision: str = "fp32", verbose: bool = False
) -> ParseReport:
    """Parse ``onnx_path`` the way :func:`build_engine` does, and stop there.

    TensorRT 10 and TensorRT for RTX check every node before they import any
    and report each one they refuse; TensorRT 8.x stops at the first. Some
    ops parse but cannot be built (TensorRT for RTX: NonMaxSuppression "has no
    runners"); parsing cannot tell those. TensorRT's own log stays out of the
    ``trtedge`` logger unless ``verbose``: the errors are in the report.
    """
    if not os.path.isfile(onnx_path):
        raise BuildError("ONNX file not found: {}".format(onnx_path))
    mod = trt if trt is not None else import_trt()
    caps = capabilities(mod)
    options = BuildOptions(precision=precision)
    _check_options(options)
    with _BUILD_LOCK:
        logger = _shared_logger(mod)
        sink = _Sink(verbose, quiet=True)
        logger.sink = sink
        try:
            parsed = _parse(mod, caps, logger, sink, onnx_path, options, _Emitter(None))
            errors = [] if parsed.ok else parser_errors(parsed.parser, onnx_path)
            if not parsed.ok and not errors:
                errors = [ParserError("", "", _one_line(e, 240), "") for e in sink.errors[-2:]] or [
                    ParserError("", "", "the parser failed and reported no error", "")]
            try:
                layers = int(parsed.network.num_layers)
            except Exception:
                layers = 0
        finally:
            logger.sink = None
    return ParseReport(caps, parsed.ok, errors, layers, list(sink.warnings))


class _Parsed(object):
    """A network made from an ONNX file, and whether the parser took all of it."""

    def __init__(self, builder: Any, network: Any, parser: Any, strongly_typed: bool, ok: bool) -> None:
        self.builder = builder
        self.network = network
        self.parser = parser
        self.strongly_typed = strongly_typed
        self.ok = ok


def _parse(
    mod: ModuleType,
    caps: Capabilities,
    logger: Any,
    sink: _Sink,
    onnx_path: str,
    options: BuildOptions,
    emit: _Emitter,
) -> _Parsed:
    strongly = _decide_strongly_typed(caps, options)
    creation = 0
    if caps.explicit_batch_flag:
        creation |= 1 << int(mod.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly and caps.strongly_typed_flag and not caps.strongly_typed_only:
        # Strongly-typed-only modules (TensorRT 11, TensorRT for RTX) make every
        # network strongly typed; 11.x ignores the flag, so it is not passed there.
        creation |= 1 << int(mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    try:
        builder = mod.Builder(logger)  # type: trt.Builder
    except Exception as exc:  # no CUDA context: the GPU's memory is full, or no driver
        raise _build_failure(caps, onnx_path, sink, options, exc)
    if builder is None:
        raise _build_failure(caps, onnx_path, sink, options)
    network = builder.create_network(creation)  # type: trt.INetworkDefinition
    if caps.strongly_typed_flag and not caps.strongly_typed_only and hasattr(network, "get_flag"):
        try:
            strongly = bool(network.get_flag(mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        except Exception:
            pass

    parser = mod.OnnxParser(network, logger)  # type: trt.OnnxParser
    wants_portable = options.version_compatible or options.hardware_compat not in (None, "none")
    if wants_portable and "NATIVE_INSTANCENORM" in _members(getattr(mod, "OnnxParserFlag", None)):
        # portable engines cannot carry the InstanceNormalization plugin (8.6; default in 10.x)
        parser.set_flag(mod.OnnxParserFlag.NATIVE_INSTANCENORM)
    emit("Parsing {}".format(_display_name(onnx_path)))
    if hasattr(parser, "parse_from_file"):
        ok = parser.parse_from_file(os.path.abspath(onnx_path))
    else:  # very old bindings: parse bytes, with the path for external data
        with open(onnx_path, "rb") as handle:
            ok = parser.parse(handle.read(), os.path.abspath(onnx_path))
    return _Parsed(builder, network, parser, strongly, bool(ok))


def _build(
    mod: ModuleType,
    caps: Capabilities,
    logger: Any,
    sink: _Sink,
    onnx_path: str,
    options: BuildOptions,
    emit: _Emitter,
) -> BuildResult:
    started = time.monotonic()
    label = _label(caps)
    name = _display_name(onnx_path)
    flags = {"module": caps.module, "precision": options.precision}  # type: Dict[str, object]
    def warn(text: str) -> None:
        sink.warnings.append(text)
        LOG.warning("%s", text)

    parsed = _parse(mod, caps, logger, sink, onnx_path, options, emit)
    if not parsed.ok:
        raise _parse_failure(caps, parsed.parser, onnx_path, sink)
    builder, network, strongly = parsed.builder, parsed.network, parsed.strongly_typed
    flags["explicit_batch"] = caps.explicit_batch_flag
    flags["strongly_typed"] = strongly

    config = builder.create_builder_config()  # type: trt.IBuilderConfig

    # ---- precision
    int8_keep = None  # the INT8 calibrator: alive until the build is done
    if options.precision == "int8":
        flags["precision_road"], int8_keep = calibrator.configure(
            mod, caps, builder, network, config, options.int8, onnx_path, strongly, options.max_batch)
    elif options.precision != "fp16":
        flags["precision_road"] = "none"  # FP32: nothing to choose
    elif caps.fp16_flag and not strongly:
        config.set_flag(mod.BuilderFlag.FP16)
        flags["precision_road"] = "builder_flag"
    else:
        flags["precision_road"] = "onnx_types"  # the caller converted the ONNX to FP16; nothing to set

    # ---- workspace
    flags["workspace"] = options.workspace
    if options.workspace is not None:
        if caps.memory_pools:
            config.set_memory_pool_limit(mod.MemoryPoolType.WORKSPACE, options.workspace)
        elif hasattr(config, "max_workspace_size"):
            setattr(config, "max_workspace_size", options.workspace)  # TensorRT < 8.4
        else:
            warn("trtedge: {} has no workspace limit setting; workspace {} ignored".format(label, options.workspace))
            flags["workspace"] = None

    # ---- optimisation profile
    flags["profile"] = _apply_profile(mod, builder, network, config, caps, options, name)

    # ---- portability
    flags["version_compatible"] = False
    if options.version_compatible:
        if not caps.version_compatible:
            raise BuildError(
                "{} cannot build version-compatible engines (no BuilderFlag.VERSION_COMPATIBLE):"
                " build without version_compatible".format(label)
            )
        config.set_flag(mod.BuilderFlag.VERSION_COMPATIBLE)
        flags["version_compatible"] = True
    flags["hardware_compat"] = _apply_hardware_compat(mod, config, caps, options)

    # ---- timing cache
    cache_path = options.timing_cache
    cache = None  # kept alive until the build is done
    flags["timing_cache"] = None
    if cache_path:
        if not caps.timing_cache:
            reason = (
                "timing cache operations are no-ops in TensorRT for RTX"
                if caps.module == "tensorrt_rtx"
                else "this TensorRT has no timing cache"
            )
            warn("trtedge: timing cache {} not used: {} ({} {})".format(
                cache_path, reason, caps.module, _short_version(caps.version)))
        else:
            cache, loaded = _attach_timing_cache(config, cache_path, sink, warn)
            flags["timing_cache"] = {"path": cache_path, "loaded": loaded, "written": False}

    # ---- build
    monitor = None
    if caps.progress_monitor and emit.callback is not None:
        monitor = _make_progress_monitor(mod, emit)
        config.progress_monitor = monitor
    plan = None
    try:
        if monitor is None and emit.callback is not None:
            with _Ticker(emit):
                plan = builder.build_serialized_network(network, config)
        else:
            plan = builder.build_serialized_network(network, config)
    except Exception as exc:  # bindings raising instead of returning None
        raise _build_failure(caps, onnx_path, sink, options, exc)
    data = _host_bytes(plan) if plan is not None else b""
    calibration_error = getattr(int8_keep, "error", None)
    if not data and calibration_error:
        raise BuildError("{} could not calibrate INT8: {}".format(label, calibration_error))
    if not data:
        raise _build_failure(caps, onnx_path, sink, options)

    # ---- timing cache back to disk
    timing = flags["timing_cache"]
    if cache is not None and cache_path and isinstance(timing, dict):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
            write_atomic(cache_path, _host_bytes(config.get_timing_cache().serialize()))
            timing["written"] = True
        except Exception as exc:
            warn("trtedge: could not write timing cache {}: {}".format(cache_path, _one_line(exc, 200)))

    return BuildResult(
        plan=data,
        capabilities=caps,
        seconds=time.monotonic() - started,
        gpu=_gpu_info(caps),
        flags=flags,
        warnings=list(sink.warnings),
    )


def _apply_profile(
    mod: ModuleType,
    builder: "trt.Builder",
    network: "trt.INetworkDefinition",
    config: "trt.IBuilderConfig",
    caps: Capabilities,
    options: BuildOptions,
    name: str,
) -> Optional[Dict[str, Dict[str, List[int]]]]:
    label = _label(caps)
    dynamic = []  # type: List[Tuple[str, Tuple[int, ...]]]
    fixed = None  # type: Optional[Tuple[str, Tuple[int, ...]]]
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tensor.shape
        shape = tuple(int(dims[j]) for j in range(len(dims)))
        if getattr(tensor, "is_shape_tensor", False):
            raise BuildError(
                "{} cannot build {}: input '{}' is a shape tensor, which trtedge cannot profile;"
                " the spec must fix the input size".format(label, name, tensor.name)
            )
        if not shape:
            continue
        if any(d < 0 for d in shape[1:]):
            raise BuildError(
                "{} cannot build {}: input '{}' has dynamic dimensions besides the batch ({});"
                " the spec must fix the input size (a plain model: optimize_model.py -i INPUT.npy fixes it"
                " from a sample batch)".format(label, name, tensor.name, _shape_text(shape))
            )
        if shape[0] < 0:
            dynamic.append((str(tensor.name), shape[1:]))
        elif fixed is None:
            fixed = (str(tensor.name), shape)
    if not dynamic:
        if fixed is not None and options.max_batch > 1 and options.max_batch != fixed[1][0]:
            raise BuildError(
                "{} cannot build {} for max batch {}: the model has a fixed batch of {} (input '{}' is {});"
                " re-export it with a dynamic batch dimension".format(
                    label, name, options.max_batch, fixed[1][0], fixed[0], _shape_text(fixed[1])
                )
            )
        return None
    profile = builder.create_optimization_profile()
    shapes = {}  # type: Dict[str, Dict[str, List[int]]]
    for input_name, rest in dynamic:
        low = (options.min_batch,) + rest
        mid = (options.opt_batch,) + rest
        high = (options.max_batch,) + rest
        profile.set_shape(input_name, mod.Dims(list(low)), mod.Dims(list(mid)), mod.Dims(list(high)))
        shapes[input_name] = {"min": list(low), "opt": list(mid), "max": list(high)}
    if config.add_optimization_profile(profile) < 0:
        raise BuildError("{} rejected the optimisation profile for {}: {}".format(label, name, shapes))
    return shapes


def _apply_hardware_compat(
    mod: ModuleType, config: "trt.IBuilderConfig", caps: Capabilities, options: BuildOptions
) -> Optional[str]:
    wanted = options.hardware_compat
    if wanted is None or wanted == "none":
        return wanted  # the default: an engine for the building GPU
    label = _label(caps)
    if not caps.hardware_compat:
        raise BuildError(
            "{} cannot build hardware-compatible engines (hardware_compat {}): build with hardware_compat"
            " none{}".format(
                label,
                wanted,
                " (TensorRT for RTX ignores setHardwareCompatibilityLevel)" if caps.module == "tensorrt_rtx" else "",
            )
        )
    member = HARDWARE_COMPAT_LEVELS[wanted]
    level = getattr(mod.HardwareCompatibilityLevel, member, None)
    if level is None:
        raise BuildError(
            "{} has no HardwareCompatibilityLevel.{}: use one of {}".format(
                label, member, ", ".join(_members(mod.HardwareCompatibilityLevel))
            )
        )
    config.hardware_compatibility_level = level
    if config.hardware_compatibility_level != level:
        raise BuildError("{} ignored hardware_compat {}".format(label, wanted))
    return wanted


def _attach_timing_cache(
    config: "trt.IBuilderConfig", path: str, sink: _Sink, warn: Callable[[str], None]
) -> Tuple[Any, bool]:
    """Attach the timing cache in ``path`` (or a new one); True when the file's entries were taken."""
    data = b""
    if os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            warn("trtedge: cannot read timing cache {}: {}; starting a new one".format(path, _one_line(exc, 200)))
    cache = None  # type: Any
    loaded = False
    if data:
        seen = len(sink.warnings)
        try:
            cache = config.create_timing_cache(data)
            loaded = cache is not None and bool(config.set_timing_cache(cache, False))
        except Exception:
            loaded = False
        # TensorRT may hand back an empty cache and only log why ("Failed to
        # deserialize timing cache", or a CUDA error where it needs a GPU).
        logged = sink.warnings[seen:]
        if logged:
            loaded = False
        if not loaded:
            warn("trtedge: timing cache {} was not loaded ({}); starting a new one".format(
                path, _one_line(logged[-1], 200) if logged else "it does not fit this TensorRT/GPU"))
    if not loaded:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache, loaded
