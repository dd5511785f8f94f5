"""Rebuilding an engine that does not fit this machine: above both builder and runtime.

The runtime only says *that* an engine must be rebuilt and prints the command
(generated from the manifest's :class:`~trtedge.config.BuildConfig`);
:func:`rebuild` runs that same build in-process (``detect --rebuild``,
``trtedge.rebuild(path)``), so what is printed and what is run cannot drift.
"""

import os
from typing import Callable, Optional

from . import manifest as mf
from .errors import IncompatibleEngine
from .runtime import compat


def rebuild(engine: str, say: Optional[Callable[[str], None]] = None) -> compat.CheckResult:
    """Rebuild ``engine`` in place from its engine ONNX (or recorded source) and
    the options in its manifest; returns the new check result."""
    from .engines.pipeline import build

    m = mf.read(mf.manifest_path(engine))
    target = compat.rebuild_target(engine, m)
    if not target or not os.path.exists(target):
        raise IncompatibleEngine("cannot rebuild {}: neither its engine ONNX nor its source model is here".format(
            engine), hint="copy the engine ONNX beside it, or build from the spec")
    build(target, out=os.path.dirname(os.path.abspath(engine)), config=m.build_options.replace(onnx_only=False),
          force=True, progress=say)
    return compat.check_engine(engine)


def checked_or_rebuilt(engine: str, trust_plugins: bool = False, rebuild_if_needed: bool = False,
                       say: Optional[Callable[[str], None]] = None) -> compat.CheckResult:
    """``trtedge check``'s answer for ``engine``, after rebuilding it when asked and needed."""
    result = compat.check_engine(engine, trust_plugins=trust_plugins)
    if result.status == compat.INCOMPATIBLE and rebuild_if_needed:
        if say:
            say("Engine check failed ({}); rebuilding: {}".format(result.reason, result.rebuild))
        result = rebuild(engine, say=say)
    return result
