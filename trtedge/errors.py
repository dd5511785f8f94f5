"""The one exception family trtedge raises for bad input.

Every error a user can cause (a malformed spec, a missing model, a spec that
does not fit the graph, a corrupt engine, ...) is a :class:`TrtedgeError`.
Its message is one line saying what is wrong and what to do next; the CLI
prints it without a traceback (unless ``--verbose``) and exits with
``exit_code``. Anything else that escapes is a bug and keeps its traceback.

Exit codes: 2 bad input (the default); 1 a check that ran and said no
(:class:`ManifestError`, :class:`IncompatibleEngine`,
:class:`AccuracyError`); 130 interrupted.
"""

from typing import Optional


class TrtedgeError(Exception):
    """A user-facing error: one line, what is wrong and what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        text = " ".join(message.split())
        if hint:
            text = "{} ({})".format(text.rstrip("."), " ".join(hint.split()))
        super().__init__(text)


class SpecError(TrtedgeError):
    """The spec file is malformed or names values that are not allowed."""


class ModelError(TrtedgeError):
    """The source model is missing, unreadable or does not fit the spec."""


class BuildError(TrtedgeError):
    """TensorRT could not parse or build the engine ONNX."""


class AccuracyError(BuildError):
    """An INT8 build could not stay within ``--max-map-drop`` of FP32 (exit 1: the gate ran and said no)."""

    exit_code = 1


class EngineError(TrtedgeError):
    """An engine or its manifest is corrupt, missing or foreign."""


class ManifestError(EngineError):
    """A manifest that cannot be trusted: not JSON, a field of the wrong type
    or out of range, a path that leaves the engine's directory. Exit 1, like
    an incompatible engine: the check ran and the answer is "no"."""

    exit_code = 1


class IncompatibleEngine(EngineError):
    """The engine cannot run on this machine (``trtedge check`` exit 1)."""

    exit_code = 1


class Interrupted(TrtedgeError):
    """Ctrl-C (or SIGTERM) stopped the work; what was there before is kept."""

    exit_code = 130
