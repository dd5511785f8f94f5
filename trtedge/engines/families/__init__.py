"""The family registry: ``family: NAME`` in a spec picks one :class:`Family`.

Built-in families (``yolo``, ``ssd``, ``none``, ``gfl``) are imported on first use.
A new family is one module with a :class:`Family` subclass, registered with
:func:`register` — from trtedge or from any other code, with no edit to
trtedge's modules::

    from trtedge.engines.families import Family, register
    register(MyFamily())
"""

import importlib
from typing import Dict, Tuple

from ...errors import SpecError
from .base import Family, HeadInfo, ModelHints

__all__ = ["Family", "HeadInfo", "ModelHints", "register", "get", "names", "section_keys"]

_BUILTIN = {"yolo": "yolo", "ssd": "ssd", "none": "none", "gfl": "gfl"}
_REGISTRY = {}  # type: Dict[str, Family]


def _load_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _REGISTRY:
            _REGISTRY[name] = importlib.import_module("{}.{}".format(__name__, module)).FAMILY


def register(family: Family, replace: bool = False) -> Family:
    """Add ``family`` to the registry (``replace`` to swap one of the same name)."""
    if not isinstance(family, Family) or not family.name:
        raise TypeError("register takes a Family instance with a name")
    _load_builtins()
    if family.name in _REGISTRY and not replace and _REGISTRY[family.name] is not family:
        raise ValueError("a family named '{}' is registered already".format(family.name))
    taken = {f.section: f.name for f in _REGISTRY.values() if f.section and f.name != family.name}
    if family.section and family.section in taken:
        raise ValueError("spec section '{}' belongs to family '{}'".format(family.section, taken[family.section]))
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    if name in _BUILTIN:
        raise ValueError("built-in family '{}' cannot be removed".format(name))
    _REGISTRY.pop(name, None)


def names() -> Tuple[str, ...]:
    _load_builtins()
    return tuple(_REGISTRY)  # built-ins first, then in the order registered


def get(name: str) -> Family:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError("unknown family '{}'; known: {}".format(name, ", ".join(names())))


def section_keys() -> Dict[str, str]:
    """Spec section key -> family name, for every registered family with a section."""
    _load_builtins()
    return {f.section: f.name for f in _REGISTRY.values() if f.section}
