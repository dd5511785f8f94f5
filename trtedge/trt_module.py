"""Which TensorRT Python module this process uses: one picker for builder and runtime.

``tensorrt`` (full TensorRT: JetPack, NVIDIA's installers) when it is usable,
else ``tensorrt_rtx`` (TensorRT for RTX); ``name`` chooses. Nothing here
imports TensorRT at module import time.

:func:`installed_version` answers "which version would be used?" without
importing the module where the package metadata says it (the reuse check of
``trtedge build`` and ``trtedge check`` stay fast); it falls back to importing.
"""

import importlib
from types import ModuleType
from typing import List, Optional, Tuple

from .errors import BuildError, TrtedgeError

MODULE_NAMES = ("tensorrt", "tensorrt_rtx")

INSTALL_HINT = (
    'pip install "trtedge[rtx]" for TensorRT for RTX (builds engines ahead of time, '
    "no GPU needed), or install full TensorRT from NVIDIA (on Jetson use the one JetPack ships)"
)

#: distributions that install each module (JetPack's Debian package writes an egg-info named tensorrt)
_DISTRIBUTIONS = {"tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
                  "tensorrt_rtx": ("tensorrt_rtx", "tensorrt-rtx")}


def one_line(value: object, limit: int = 400) -> str:
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def is_usable(mod: ModuleType) -> bool:
    # tensorrt-stubs installs a bare tensorrt/__init__.pyi: "import tensorrt" then
    # yields an empty namespace package, which is not TensorRT.
    return hasattr(mod, "Builder") and hasattr(mod, "OnnxParser")


def _check_name(name: Optional[str]) -> None:
    if name is not None and name not in MODULE_NAMES:
        raise TrtedgeError(
            "Unknown TensorRT module {!r}: use one of {}".format(name, ", ".join(MODULE_NAMES))
        )


def import_trt(name: Optional[str] = None) -> ModuleType:
    """The TensorRT Python module: ``name``, or with None "tensorrt" if usable, else "tensorrt_rtx"."""
    _check_name(name)
    names = (name,) if name is not None else MODULE_NAMES
    reasons = []  # type: List[str]
    for candidate in names:
        try:
            mod = importlib.import_module(candidate)
        except Exception as exc:  # ImportError, or OSError from a missing shared library
            reasons.append("{}: {}".format(candidate, one_line(exc, 160)))
            continue
        if not is_usable(mod):
            reasons.append("{}: not TensorRT (only type stubs or a broken install)".format(candidate))
            continue
        return mod
    raise BuildError(
        "No usable TensorRT Python module ({}): {}".format("; ".join(reasons), INSTALL_HINT)
    )


def _real_package(name: str) -> bool:
    """The module exists as a real package or module on sys.path (not only the stubs' namespace).

    Looked for as files, like the import system does, but without importing
    importlib.util (a few ms at every start-up)."""
    import os
    import sys

    if name in sys.modules:
        mod = sys.modules[name]
        return mod is not None and getattr(mod, "__file__", None) is not None
    for entry in sys.path:
        base = os.path.join(entry or ".", name)
        if os.path.isfile(os.path.join(base, "__init__.py")) or os.path.isfile(base + ".py") or (
                os.path.isdir(base) and any(f.startswith("__init__.") and not f.endswith(".pyi")
                                            for f in os.listdir(base))):
            return True
    return False


def _scan_dist_info(name: str) -> Optional[str]:
    """The version in a ``NAME-VERSION.dist-info`` / ``.egg-info`` folder on sys.path:
    what importlib.metadata would say, without importing it (~10 ms at start-up)."""
    import os
    import sys

    wanted = {d.replace("-", "_").lower() for d in _DISTRIBUTIONS.get(name, (name,))}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for item in names:
            if not item.endswith((".dist-info", ".egg-info")) or "-" not in item:
                continue
            dist, _, rest = item.rpartition(".")[0].partition("-")
            if dist.replace("-", "_").lower() in wanted:
                version = rest.split("-")[0]
                if version and version[0].isdigit():
                    return version
    return None


def _distribution_version(name: str) -> Optional[str]:
    found = _scan_dist_info(name)
    if found is not None:
        return found
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        return None
    for dist in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return metadata.version(dist)
        except Exception:
            continue
    return None


def installed_version(name: Optional[str] = None) -> Optional[Tuple[str, str]]:
    """(module, version) that :func:`import_trt` would give, or None when none is usable.

    Asks the package metadata first (no import); imports the module only
    where no metadata names its version.
    """
    _check_name(name)
    for candidate in ((name,) if name is not None else MODULE_NAMES):
        if not _real_package(candidate):
            continue
        version = _distribution_version(candidate)
        if version is None:
            try:
                mod = import_trt(candidate)
            except TrtedgeError:
                continue
            version = str(getattr(mod, "__version__", "unknown"))
        return candidate, version
    return None
