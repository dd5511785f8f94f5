"""What went wrong when a build ran out of something, and what to change.

One table (:data:`RULES`) maps the messages TensorRT, CUDA, cuBLAS/cuDNN and
TensorFlow print when memory, workspace or disk run out to a cause and the
flag or action that fixes it. The builder's failure paths
(:mod:`trtedge.engines.tensorrt_build`), the TensorFlow conversion
(:mod:`trtedge.engines.tf_source`) and the CLI's ``OSError`` / ``MemoryError``
handlers all ask this module, so the advice is written once.

Nothing here imports numpy, onnx, TensorRT or TensorFlow.
"""

import errno
import os
import re
import shutil
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Pattern, Sequence

__all__ = ["Rule", "Diagnosis", "RULES", "diagnose", "diagnose_build", "exception_texts", "disk_full",
           "is_disk_full", "host_memory", "final_path", "describe_os_error"]

TENSORRT = "tensorrt"
TENSORFLOW = "tensorflow"

_GPU_MEMORY_ADVICE = ("close other GPU programs (nvidia-smi, or tegrastats on a Jetson, shows them), build with a "
                      "smaller --batch or --workspace (e.g. --workspace 512M); on a Jetson, add swap")
_TF_MEMORY_ADVICE = ("let TensorFlow take GPU memory as it needs it (optimize_model.py -g) or cap it "
                     "(optimize_model.py -l 2048, in MB); for trtedge build set TF_FORCE_GPU_ALLOW_GROWTH=true; "
                     "close other GPU programs")


class Rule(NamedTuple):
    """``pattern`` (searched, case-insensitive) -> ``cause``: ``advice``.

    ``where``: the tools whose messages the rule reads (a TensorRT "out of
    memory" is the GPU's, a TensorFlow one is TensorFlow's reservation).
    ``advice`` may name ``{workspace}`` (the workspace asked for, or
    "TensorRT's default") and ``{workspace_flag}`` (``--workspace 2G``)."""

    name: str
    pattern: Pattern[str]
    cause: str
    advice: str
    where: Sequence[str] = (TENSORRT, TENSORFLOW)


def _re(*alternatives: str) -> Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


#: first match wins: specific causes before the general ones they also match
RULES = [
    Rule("disk_full", _re(r"No space left on device", r"\bENOSPC\b", r"Disk quota exceeded"),
         "the disk is full", "free space where the files are written, or choose another --out"),
    Rule("tf_gpu_memory",
         _re(r"ResourceExhaustedError", r"OOM when allocating", r"failed to allocate [\d.]+\w* \(\d+ bytes\) from device",
             r"CUDA_ERROR_OUT_OF_MEMORY"),
         "TensorFlow could not get the GPU memory it asked for (by default it reserves nearly all of it)",
         _TF_MEMORY_ADVICE, where=(TENSORFLOW,)),
    Rule("cuda_libraries",
         _re(r"CUBLAS_STATUS_NOT_INITIALIZED", r"CUBLAS_STATUS_ALLOC_FAILED", r"CUDNN_STATUS_NOT_INITIALIZED",
             r"CUDNN_STATUS_ALLOC_FAILED", r"Could not create cudnn handle", r"Failed to get convolution algorithm",
             r"cuDNN failed to initialize", r"Blas GEMM launch failed", r"without BLAS support",
             r"cublas\w* (?:handle )?(?:creation|initiali[sz]ation) failed"),
         "cuBLAS/cuDNN could not initialise: there was no GPU memory left for their handles (often because "
         "TensorFlow in the same process reserved it), or their versions do not match the driver",
         "let TensorFlow grow its memory (optimize_model.py -g or -l MB; TF_FORCE_GPU_ALLOW_GROWTH=true for "
         "trtedge build), close other GPU programs; check that CUDA, cuBLAS, cuDNN and the driver are the versions "
         "this TensorRT/TensorFlow was built for"),
    Rule("workspace",
         _re(r"insufficient workspace", r"not have sufficient workspace", r"workspace (?:size )?(?:is )?too small",
             r"Skipping tactic .* insufficient memory"),
         "the builder workspace ({workspace}) is too small for the tactics this model needs",
         "give it more with {workspace_flag} (or leave --workspace out: TensorRT may then use the GPU's free "
         "memory), and close other GPU programs", where=(TENSORRT,)),
    Rule("gpu_memory",
         _re(r"out of memory", r"cudaErrorMemoryAllocation", r"\bOutOfMemory\b", r"CUDA_ERROR_OUT_OF_MEMORY",
             r"GPU memory .* could not be allocated", r"CUDA initialization failure with error:? 2\b",
             r"Device memory is insufficient", r"NvMapMemAlloc\w*: \d+ error 12", r"NvRmMemAlloc\w* failed"),
         "the GPU ran out of memory", _GPU_MEMORY_ADVICE),
    Rule("host_memory", _re(r"std::bad_alloc", r"\bMemoryError\b", r"Cannot allocate memory"),
         "the machine ran out of host memory",
         "close other programs, build with a smaller --batch or --workspace; on a Jetson (CPU and GPU share "
         "its memory), add swap"),
]  # type: List[Rule]

_RULES_BY_NAME = {r.name: r for r in RULES}


class Diagnosis(NamedTuple):
    rule: str
    cause: str
    advice: str
    #: the message line that matched
    line: str

    def hint(self) -> str:
        """``cause: advice`` — what goes in the parentheses of a one-line error."""
        return "{}: {}".format(self.cause, self.advice)


def _context(workspace: Optional[int]) -> Dict[str, str]:
    if workspace:
        return {"workspace": "{} set by --workspace".format(_size(workspace)),
                "workspace_flag": "--workspace {}".format(_bigger(workspace))}
    return {"workspace": "TensorRT's default", "workspace_flag": "--workspace 2G"}


def _size(n: float) -> str:
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div:
            value = n / div
            return "{}{}".format(int(value) if value == int(value) else round(value, 1), unit)
    return "{} bytes".format(int(n))


def _bigger(workspace: int) -> str:
    """A workspace worth trying next: four times as much, at least 1G."""
    return _size(max(4 * workspace, 1 << 30))


def diagnose(texts: Iterable[str], where: str = TENSORRT, workspace: Optional[int] = None) -> Optional[Diagnosis]:
    """The first rule (in :data:`RULES` order) that a line of ``texts`` matches, for ``where``'s messages."""
    lines = [str(t) for t in texts if t]
    ctx = _context(workspace)
    for rule in RULES:
        if where not in rule.where:
            continue
        for line in lines:
            if rule.pattern.search(line):
                return Diagnosis(rule.name, rule.cause.format(**ctx), rule.advice.format(**ctx), line)
    return None


def diagnose_build(errors: Sequence[str], warnings: Sequence[str], workspace: Optional[int] = None,
                   exc: Optional[BaseException] = None) -> Optional[Diagnosis]:
    """A failed TensorRT build: its error lines (and exception) first; then its warnings, which is where
    TensorRT says a tactic was skipped for lack of workspace or memory before "Could not find any
    implementation" ends the build."""
    first = list(errors) + (exception_texts(exc) if exc is not None else [])
    found = diagnose(first, TENSORRT, workspace)
    if found is None:
        found = diagnose(warnings, TENSORRT, workspace)
    return found


def exception_texts(exc: BaseException) -> List[str]:
    """``Type: message`` of an exception and of what caused it (``raise ... from``, or raised while
    handling), the root cause first: that is the message to quote."""
    out = []  # type: List[str]
    seen = set()  # type: set
    current = exc  # type: Optional[BaseException]
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append("{}: {}".format(type(current).__name__, current))
        current = current.__cause__ or current.__context__
    return out[::-1]


# ---------------------------------------------------------------- the disk and host memory

_PARTIAL_RE = re.compile(r"(?:\.partial-\d+)+$")


def final_path(path: str) -> str:
    """The file a ``.partial-PID`` staging name stands for."""
    return _PARTIAL_RE.sub("", path)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _free_bytes(directory: str) -> Optional[int]:
    probe = directory or "."
    while probe and not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        return int(shutil.disk_usage(probe or ".").free)
    except OSError:
        return None


def disk_full(path: Optional[str], needed: Optional[int] = None) -> str:
    """The one line for a write that failed with ENOSPC: which file, how much room, what to do."""
    rule = _RULES_BY_NAME["disk_full"]
    if not path:
        return "no space left on device ({}: {})".format(rule.cause, rule.advice)
    target = final_path(str(path))
    directory = os.path.dirname(os.path.abspath(target))
    free = _free_bytes(directory)
    room = []  # type: List[str]
    if needed:
        room.append("it needs {:.1f} MB".format(needed / 1e6))
    if free is not None:
        room.append("{} has {:.1f} MB free".format(directory, free / 1e6))
    if needed and free is not None and needed > free:
        todo = "free at least {:.0f} MB there".format(max(1.0, (needed - free) / 1e6 + 1))
    elif free is not None:
        todo = "free space there"
    else:
        todo = "free space in {}".format(directory)
    return "no space left on device writing {}{} ({}: {} or choose another --out)".format(
        target, ": {}".format(", ".join(room)) if room else "", rule.cause, todo)


def host_memory() -> str:
    """The one line for a :class:`MemoryError`."""
    rule = _RULES_BY_NAME["host_memory"]
    return "out of host memory ({}: {})".format(rule.cause, rule.advice)


def describe_os_error(exc: Any) -> Optional[str]:
    """The one line for an ``OSError`` this table knows (a full disk), else None."""
    if is_disk_full(exc):
        return disk_full(getattr(exc, "filename", None), getattr(exc, "bytes_to_write", None))
    return None
