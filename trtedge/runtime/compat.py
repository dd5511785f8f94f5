"""Is this engine for this machine? Decided before anything is deserialised.

Reads the manifest beside the engine and the plan file's header, and
compares them with the installed TensorRT module and the visible GPU.

The plan header (checked against NVIDIA's ``trtexec --getPlanVersionOnly``):
bytes 0-3 a tag, ``ftrt`` for full TensorRT and ``vtrt`` for TensorRT for RTX;
bytes 4-7 the serialization version (0); bytes 24-27 the TensorRT version
as major, minor, patch, build (one byte each).

Results: ``COMPATIBLE`` (0), ``INCOMPATIBLE`` (1, with the reason and the
exact rebuild command), ``UNKNOWN`` (3: only a question that needs a GPU is
left, e.g. the compute capability when no GPU is visible). What can be
decided without a GPU is decided: another TensorRT module or version, a
corrupt or truncated engine (sha256), a missing or foreign manifest, an
engine that carries its own plugin libraries (code: refused unless trusted).
"""

import os
import shlex
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .. import manifest as mf
from ..errors import EngineError, IncompatibleEngine, TrtedgeError
from ..manifest import Manifest
from ..utils.files import sha256_file

COMPATIBLE, INCOMPATIBLE, UNKNOWN = 0, 1, 3
TAGS = {b"ftrt": "tensorrt", b"vtrt": "tensorrt_rtx"}
HEADER_BYTES = 28

__all__ = ["COMPATIBLE", "INCOMPATIBLE", "UNKNOWN", "CheckResult", "IncompatibleEngine", "check_engine",
           "ensure_usable", "rebuild_target", "rebuild_args", "rebuild_command", "read_header"]


class PlanHeader(NamedTuple):
    module: str
    version: Tuple[int, int, int, int]
    serialization: int

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


class CheckResult(NamedTuple):
    status: int
    reason: str
    rebuild: str = ""
    details: Tuple[str, ...] = ()
    #: "files" when the engine files themselves are bad (missing manifest,
    #: corrupt, mismatched, untrusted plugins); "platform" when only this
    #: machine's TensorRT or GPU is wrong for it (its engine ONNX still runs)
    scope: str = "platform"

    @property
    def ok(self) -> bool:
        return self.status == COMPATIBLE


def read_header(path: str) -> Optional[PlanHeader]:
    """The plan header, or None when the file does not start like a TensorRT plan."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:4] not in TAGS:
        return None
    serialization = int.from_bytes(head[4:8], "little")
    return PlanHeader(TAGS[head[:4]], tuple(head[24:28]), serialization)  # type: ignore[arg-type]


def _version_tuple(text: str) -> Tuple[int, ...]:
    out = []
    for part in str(text).split("."):
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def rebuild_target(engine_path: str, m: Manifest) -> Optional[str]:
    """What rebuilds this engine: its engine ONNX beside it, else the recorded source."""
    directory = os.path.dirname(os.path.abspath(engine_path))
    try:
        onnx_file = mf.inside(directory, m.onnx.file, "engine ONNX")
    except TrtedgeError:
        onnx_file = ""
    if onnx_file and os.path.isfile(onnx_file):
        return onnx_file
    return m.source.path


def rebuild_args(engine_path: str, m: Manifest) -> List[str]:
    """``trtedge build`` arguments that rebuild this engine in place with the options it was built with."""
    directory = os.path.dirname(os.path.abspath(engine_path))
    target = rebuild_target(engine_path, m) or "SPEC"
    config = m.build_options.replace(onnx_only=False)  # a rebuild is for an engine to run
    return ["build", target, "--out", directory] + config.to_cli_args() + ["--force"]


def rebuild_command(engine_path: str, m: Manifest) -> str:
    """The command that rebuilds this engine on this machine (generated from its BuildConfig)."""
    return " ".join(shlex.quote(a) for a in ["trtedge"] + rebuild_args(engine_path, m))


def installed_trt(module: str) -> Optional[str]:
    """Version of an installed TensorRT module (read from package metadata where it can be), else None."""
    from ..trt_module import installed_version

    found = installed_version(module)
    return found[1] if found else None


def _cc(text: Any) -> Optional[Tuple[int, int]]:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def check_engine(engine_path: str, trust_plugins: bool = False, gpu: Any = "probe",
                 trt_version: Any = "probe") -> CheckResult:
    """Check ``engine_path`` against this machine. Raises :class:`EngineError`
    (exit 2) for paths that are not engine files at all.

    ``gpu`` and ``trt_version`` are seams for tests: ``"probe"`` asks the
    machine; a dict / None or a version string / None stand in for it.
    """
    if os.path.isdir(engine_path):
        raise EngineError("{} is a directory; give the engine file (.bin/.engine/.plan) inside it".format(engine_path))
    if not os.path.isfile(engine_path):
        raise EngineError("engine {} does not exist".format(engine_path), hint="build one with trtedge build")
    manifest_path = mf.manifest_path(engine_path)
    if not os.path.isfile(manifest_path):
        return CheckResult(INCOMPATIBLE, "no manifest beside the engine ({}): trtedge cannot tell what it is or "
                                         "what built it; rebuild it with trtedge build".format(manifest_path),
                           scope="files")
    try:
        data = mf.read(manifest_path)
    except EngineError as exc:
        return CheckResult(INCOMPATIBLE, str(exc), scope="files")
    rebuild = rebuild_command(engine_path, data)
    engine = data.engine
    if engine is None or data.tensorrt is None:
        return CheckResult(INCOMPATIBLE, "the manifest describes an engine ONNX only (--onnx-only build); build "
                                         "the engine from it", rebuild, scope="files")
    try:
        if os.path.basename(engine_path) != engine.file:
            raise IncompatibleEngine("the manifest describes {}, not {}".format(engine.file,
                                                                              os.path.basename(engine_path)))
        for lib in data.plugins.libraries:
            mf.inside(os.path.dirname(os.path.abspath(engine_path)), lib, "plugin library")
    except EngineError as exc:
        return CheckResult(INCOMPATIBLE, str(exc), rebuild, scope="files")
    size = os.path.getsize(engine_path)
    if engine.bytes is not None and size != engine.bytes:
        return CheckResult(INCOMPATIBLE, "engine is {} bytes but its manifest says {}: truncated or replaced".format(
            size, engine.bytes), rebuild, scope="files")
    if sha256_file(engine_path) != engine.sha256:
        return CheckResult(INCOMPATIBLE, "engine sha256 does not match its manifest: corrupt or replaced", rebuild,
                           scope="files")
    if data.plugins.libraries_embedded and not trust_plugins:
        return CheckResult(INCOMPATIBLE, "the engine carries its own plugin libraries, which is code that runs on "
                                         "load; pass --trust-plugins if you trust where it came from", rebuild,
                           scope="files")
    header = read_header(engine_path)
    built = data.tensorrt
    module, version = built.module, built.version
    details = []  # type: List[str]
    if header is None:
        return CheckResult(INCOMPATIBLE, "the engine file does not start with a TensorRT plan header", rebuild,
                           scope="files")
    if header.module != module or _version_tuple(version)[:4] != header.version[: len(_version_tuple(version)[:4])]:
        return CheckResult(INCOMPATIBLE, "plan header says {} {} but the manifest says {} {}: the files do not "
                                         "belong together".format(header.module, header.version_text, module, version),
                           rebuild, scope="files")
    details.append("built by {} {}".format(module, version))

    have = installed_trt(module) if trt_version == "probe" else trt_version
    if have is None:
        return CheckResult(INCOMPATIBLE, "built by {} {}, which is not installed here".format(module, version), rebuild,
                           tuple(details))
    if _version_tuple(have)[:3] != _version_tuple(version)[:3]:
        vc = built.version_compatible
        newer_same_major = (_version_tuple(have) >= _version_tuple(version)
                            and _version_tuple(have)[:1] == _version_tuple(version)[:1])
        if not (vc and newer_same_major):
            why = " (a version-compatible engine needs the same major version, not older)" if vc else ""
            return CheckResult(INCOMPATIBLE, "built by {} {} but {} {} is installed{}".format(
                module, version, module, have, why), rebuild, tuple(details))
        details.append("version-compatible engine on {} {}".format(module, have))

    visible = _probe_gpu() if gpu == "probe" else gpu
    target = data.gpu or mf.GpuInfo()
    built_cc = _cc(target.compute_capability)
    if visible is None:
        if built_cc is None:
            need = "an ahead-of-time engine, for any GPU {} supports".format(module)
        else:
            need = "built for {} (compute capability {})".format(target.name or "?", target.compute_capability)
        # nothing is wrong with the engine: only this machine cannot answer, so no rebuild line
        return CheckResult(UNKNOWN, "no NVIDIA GPU visible here; the engine is {}".format(need),
                           "", tuple(details))
    have_cc = _cc(visible.get("compute_capability"))
    level = built.hardware_compat
    if built_cc is None:  # ahead-of-time (TensorRT for RTX) or unknown: any supported GPU
        return CheckResult(COMPATIBLE, "ahead-of-time engine; GPU {} (compute capability {})".format(
            visible.get("name"), visible.get("compute_capability")), rebuild, tuple(details))
    if have_cc is None:
        return CheckResult(UNKNOWN, "cannot read this GPU's compute capability", "", tuple(details))
    if level == "ampere_plus":
        if have_cc < (8, 0):
            return CheckResult(INCOMPATIBLE, "hardware-compatible (Ampere+) engine, but this GPU is compute "
                                             "capability {}.{}".format(*have_cc), rebuild, tuple(details))
    elif have_cc != built_cc:
        return CheckResult(INCOMPATIBLE, "built for {} (compute capability {}.{}) but this GPU is {} ({}.{})".format(
            target.name, built_cc[0], built_cc[1], visible.get("name"), have_cc[0], have_cc[1]),
            rebuild, tuple(details))
    elif target.name and visible.get("name") and target.name != visible.get("name"):
        details.append("built on {}, running on {} (same compute capability)".format(target.name,
                                                                                     visible.get("name")))
    return CheckResult(COMPATIBLE, "{} {} on {} (compute capability {})".format(
        module, version, visible.get("name"), visible.get("compute_capability")), rebuild, tuple(details))


def ensure_usable(engine_path: str, result: CheckResult, backend: str) -> None:
    """Refuse what cannot run: bad engine files always, a foreign TensorRT or GPU
    only for the TensorRT backend (ONNX Runtime still runs the engine ONNX)."""
    if result.status == INCOMPATIBLE and (result.scope == "files" or backend == "trt"):
        raise IncompatibleEngine("{}: {}".format(engine_path, result.reason),
                                 hint="rebuild: {}".format(result.rebuild) if result.rebuild else None)


def _probe_gpu() -> Optional[Dict[str, str]]:
    from ..gpu import visible_gpu

    return visible_gpu()
