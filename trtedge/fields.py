"""Reading one mapping of a spec, field by field, with one-line errors.

Used by the spec loader and by every family's section parser
(``trtedge.engines.families``): each reader names the file, the field as a
dotted path and what is allowed; unknown keys are errors (:meth:`Section.done`).
"""

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .errors import SpecError

_MISSING = object()


class Section:
    """One mapping of the spec, read field by field; unknown keys are errors."""

    def __init__(self, data: Any, file: str, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError(
                "{}: '{}' must be a mapping of fields, not {}".format(
                    file, path or "<top level>", kind(data)
                )
            )
        self.data = data
        self.file = file
        self.path = path
        self.used = set()  # type: set

    def where(self, key: str) -> str:
        return "{}.{}".format(self.path, key) if self.path else key

    def fail(self, key: str, message: str) -> "SpecError":
        return SpecError("{}: field '{}' {}".format(self.file, self.where(key), message))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.fail(key, "is required")
            return default
        return self.data[key]

    def str(self, key: str, default: Any = _MISSING, choices: Optional[Sequence[str]] = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.fail(key, "must be a string, not {}".format(kind(value)))
        if choices is not None and value.lower() not in choices:
            raise self.fail(
                key, "is '{}'; allowed: {}".format(value, ", ".join(choices))
            )
        return value.lower() if choices is not None else value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false, not {}".format(kind(value)))
        return value

    def int(self, key: str, default: Any = _MISSING, minimum: Optional[int] = None) -> Any:
        return check_int(self.raw(key, default), minimum, lambda m: self.fail(key, m))

    def float(self, key: str, default: Any = _MISSING, low: Optional[float] = None,
              high: Optional[float] = None) -> Any:
        return check_float(self.raw(key, default), low, high, lambda m: self.fail(key, m))

    def floats(self, key: str, default: Any = _MISSING, length: Optional[int] = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * (length or 1)
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of numbers, not {}".format(kind(value)))
        out = tuple(check_float(v, None, None, lambda m: self.fail(key, m)) for v in value)
        if length is not None and len(out) != length:
            raise self.fail(key, "must have {} values, has {}".format(length, len(out)))
        return out

    def strs(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of tensor names (strings)")
        return tuple(value)

    def section(self, key: str) -> "Section":
        return Section(self.raw(key, {}), self.file, self.where(key))

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            allowed = sorted(self.used | set(self._allowed))
            raise self.fail(
                str(unknown[0]), "is not a known field; allowed here: {}".format(", ".join(allowed))
            )

    _allowed = ()  # type: Sequence[str]


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number ({})".format(value)
    if isinstance(value, str):
        return "a string ('{}')".format(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def check_int(value: Any, minimum: Optional[int], fail: Callable[[str], SpecError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail("must be a whole number, not {}".format(kind(value)))
    if minimum is not None and value < minimum:
        raise fail("must be at least {}, is {}".format(minimum, value))
    return value


def check_float(value: Any, low: Optional[float], high: Optional[float],
                 fail: Callable[[str], SpecError]) -> float:
    if isinstance(value, str):
        value = fraction(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail("must be a number, not {}".format(kind(value)))
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail("must be between {} and {}, is {}".format(low, high, value))
    return float(value)


def fraction(text: str) -> Any:
    """'1/3' -> 0.333..; other strings are returned unchanged (and then refused)."""
    parts = text.split("/")
    try:
        if len(parts) == 2:
            return float(parts[0]) / float(parts[1])
        return float(text)
    except (ValueError, ZeroDivisionError):
        return text


def pairs(sec: Section, key: str) -> List[Tuple[float, float]]:
    value = sec.raw(key, [])
    if not isinstance(value, list):
        raise sec.fail(key, "must be a list of [a, b] pairs")
    out = []
    for item in value:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = [item, item]
        if not (isinstance(item, list) and len(item) == 2):
            raise sec.fail(key, "must be a list of [a, b] pairs")
        out.append(tuple(check_float(v, 0.0, None, lambda m: sec.fail(key, m)) for v in item))
    return out  # type: ignore[return-value]
