"""A TF Object Detection API ``pipeline.config`` -> trtedge's spec form.

The model zoo tarballs carry the model's settings as a ``pipeline.config``:
a protobuf message written in protobuf's *text* format. This module reads it
without TensorFlow, the ``object_detection`` package or its ``.proto``
schemas, in two steps:

* :func:`parse_text_proto` reads the text format into plain data. Without a
  schema it cannot know which fields are repeated, so **every field maps to a
  list of values**, in file order (``{"num_classes": [90]}``); a nested message
  is a :class:`TextMessage` (a ``dict`` of the same form), an enum value is an
  :class:`Identifier` (a ``str``), ``true``/``false`` are ``bool``.
* :func:`ssd_spec_data` maps ``model.ssd`` onto the dict that
  :func:`trtedge.specs.loader.spec_from_data` accepts (family ``ssd``), filling
  every value from the config or from the ``.proto`` default TF itself would
  use, so that no trtedge default slips in silently.

:func:`read_pipeline_config` does both for a file. Anything the mapping cannot
represent is a one-line :class:`~trtedge.errors.SpecError` naming the config
path (``model.ssd.anchor_generator``) and what is supported.
"""

import dataclasses
import math
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import SpecError
from . import schema as S
from .loader import LABELS_DIR, spec_from_data

__all__ = [
    "Identifier",
    "TextMessage",
    "PipelineSpecData",
    "parse_text_proto",
    "ssd_spec_data",
    "read_pipeline_config",
    "labels_from_label_map",
]

_MISSING = object()


# --------------------------------------------------------------------------
# protobuf text format


class Identifier(str):
    """A bare identifier value (an enum value such as ``SIGMOID``)."""

    __slots__ = ()


class TextMessage(dict):  # type: ignore[type-arg]
    """One message: field name -> list of values (one per occurrence).

    ``line``/``column`` say where the message starts (1-based); ``places``
    holds, per field, the ``(line, column)`` of each value, for messages.
    """

    def __init__(self, line: int = 1, column: int = 1) -> None:
        super().__init__()
        self.line = line
        self.column = column
        self.places = {}  # type: Dict[str, List[Tuple[int, int]]]

    def add(self, name: str, value: Any, line: int, column: int) -> None:
        self.setdefault(name, []).append(value)
        self.places.setdefault(name, []).append((line, column))


class _Token:
    __slots__ = ("kind", "text", "value", "line", "column")

    def __init__(self, kind: str, text: str, value: Any, line: int, column: int) -> None:
        self.kind = kind  # "ident", "number", "string", "punct" or "eof"
        self.text = text
        self.value = value
        self.line = line
        self.column = column

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.kind == "string":
            text = self.value if len(self.value) <= 40 else self.value[:37] + "..."
            return "the string {!r}".format(text)
        return "'{}'".format(self.text)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?")
_WORDISH = re.compile(r"[A-Za-z0-9_.+-]*")
_PUNCT = "{}<>[]:,;-./"
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"', "?": "?"}
_MAX_DEPTH = 100


class _Lexer:
    """Tokens of the protobuf text format, with 1-based line and column."""

    def __init__(self, text: str, origin: str) -> None:
        self.text = text
        self.origin = origin
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self._peeked = None  # type: Optional[_Token]

    def error(self, line: int, column: int, message: str) -> SpecError:
        return SpecError("{}:{}:{}: {}".format(self.origin, line, column, message))

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> _Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def _skip_space(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c == "\n":
                self.pos += 1
                self.line += 1
                self.line_start = self.pos
            elif c in " \t\r\f\v":
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                return

    def _scan(self) -> _Token:
        self._skip_space()
        line, column = self.line, self.pos - self.line_start + 1
        if self.pos >= len(self.text):
            return _Token("eof", "", None, line, column)
        c = self.text[self.pos]
        m = _IDENT.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return _Token("ident", m.group(), m.group(), line, column)
        if c.isdigit() or (c == "." and self.text[self.pos + 1:self.pos + 2].isdigit()):
            return self._number(line, column)
        if c in "\"'":
            return self._string(c, line, column)
        if c in _PUNCT:
            self.pos += 1
            return _Token("punct", c, c, line, column)
        raise self.error(line, column, "unexpected character {!r}".format(c))

    def _number(self, line: int, column: int) -> _Token:
        m = _NUMBER.match(self.text, self.pos)
        word = _WORDISH.match(self.text, self.pos).group()  # type: ignore[union-attr]
        text = m.group() if m else ""
        rest = self.text[self.pos + len(text):self.pos + len(text) + 1]
        if not m or (rest and (rest.isalnum() or rest in "_.")):
            raise self.error(line, column, "malformed number '{}'".format(word))
        self.pos = m.end()
        value = None  # type: Any
        if text[:2] in ("0x", "0X"):
            value = int(text, 16)
        elif any(ch in text for ch in ".eEfF"):
            value = float(text.rstrip("fF"))
        elif len(text) > 1 and text.startswith("0"):
            if any(ch in text for ch in "89"):
                raise self.error(line, column, "malformed number '{}' (a leading 0 means octal)".format(text))
            value = int(text, 8)
        else:
            value = int(text)
        return _Token("number", text, value, line, column)

    def _string(self, quote: str, line: int, column: int) -> _Token:
        text, start, n = self.text, self.pos, len(self.text)
        i = start + 1
        out = bytearray()
        while True:
            if i >= n or text[i] == "\n":
                raise self.error(line, column,
                                 "unterminated string: expected a closing {} on the same line".format(quote))
            c = text[i]
            if c == quote:
                i += 1
                break
            if c != "\\":
                out += c.encode("utf-8")
                i += 1
                continue
            esc = text[i + 1:i + 2]
            where = (line, i - self.line_start + 1)
            if esc in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[esc].encode("utf-8")
                i += 2
            elif esc and esc in "01234567":
                digits = re.match(r"[0-7]{1,3}", text[i + 1:i + 4]).group()  # type: ignore[union-attr]
                out.append(int(digits, 8) & 0xFF)
                i += 1 + len(digits)
            elif esc in ("x", "X"):
                m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:i + 4])
                if not m:
                    raise self.error(where[0], where[1], "bad escape: expected hex digits after \\x")
                out.append(int(m.group(), 16))
                i += 2 + len(m.group())
            elif esc in ("u", "U"):
                width = 4 if esc == "u" else 8
                digits = text[i + 2:i + 2 + width]
                if not re.match(r"[0-9a-fA-F]{%d}$" % width, digits) or int(digits, 16) > 0x10FFFF:
                    raise self.error(where[0], where[1],
                                     "bad escape: expected {} hex digits after \\{}".format(width, esc))
                out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
                i += 2 + width
            else:
                raise self.error(where[0], where[1], "unknown escape {!r} in a string".format("\\" + esc))
        self.pos = i
        return _Token("string", text[start:i], out.decode("utf-8", "replace"), line, column)


class _Parser:
    _CLOSE = {"{": "}", "<": ">"}

    def __init__(self, text: str, origin: str) -> None:
        self.lex = _Lexer(text, origin)

    def fail(self, tok: _Token, expected: str) -> SpecError:
        return self.lex.error(tok.line, tok.column, "expected {}, found {}".format(expected, tok.describe()))

    def message(self, opened: Optional[_Token], depth: int) -> TextMessage:
        if depth > _MAX_DEPTH:
            assert opened is not None
            raise self.lex.error(opened.line, opened.column, "messages nested more than {} deep".format(_MAX_DEPTH))
        msg = TextMessage(opened.line, opened.column) if opened else TextMessage()
        close = self._CLOSE[opened.text] if opened else None
        while True:
            tok = self.lex.peek()
            if tok.kind == "eof":
                if opened is None:
                    return msg
                raise self.lex.error(tok.line, tok.column, "expected '{}' to close the message opened at line {}, "
                                     "column {}, found end of file".format(close, opened.line, opened.column))
            if tok.kind == "punct" and tok.text == close:
                self.lex.next()
                return msg
            if tok.kind == "punct" and tok.text in "}>":
                raise self.lex.error(tok.line, tok.column, "found '{}' but no message is open{}".format(
                    tok.text, "" if opened is None else " with it (this one opened with '{}')".format(opened.text)))
            self.field(msg, depth)
            sep = self.lex.peek()
            if sep.kind == "punct" and sep.text in ",;":
                self.lex.next()

    def field_name(self) -> _Token:
        tok = self.lex.next()
        if tok.kind == "ident":
            return tok
        if tok.kind == "punct" and tok.text == "[":  # extension or Any type URL: [a.b.c] / [x.com/a.B]
            parts = []
            while True:
                part = self.lex.next()
                if part.kind == "punct" and part.text == "]":
                    break
                if not (part.kind == "ident" or (part.kind == "punct" and part.text in "./")):
                    raise self.fail(part, "a name or ']' in the extension name")
                parts.append(part.text)
            if not parts:
                raise self.fail(tok, "an extension name inside '[ ]'")
            return _Token("ident", "[{}]".format("".join(parts)), None, tok.line, tok.column)
        raise self.fail(tok, "a field name")

    def field(self, msg: TextMessage, depth: int) -> None:
        name = self.field_name()
        colon = self.lex.peek()
        has_colon = colon.kind == "punct" and colon.text == ":"
        if has_colon:
            self.lex.next()
        tok = self.lex.peek()
        if tok.kind == "punct" and tok.text in "{<":
            self.lex.next()
            msg.add(name.text, self.message(tok, depth + 1), tok.line, tok.column)
            return
        if not has_colon:
            raise self.fail(tok, "':' or '{{' after the field name '{}'".format(name.text))
        if tok.kind == "punct" and tok.text == "[":
            self.lex.next()
            msg.setdefault(name.text, [])
            msg.places.setdefault(name.text, [])
            if self.lex.peek().kind == "punct" and self.lex.peek().text == "]":
                self.lex.next()
                return
            while True:
                item = self.lex.peek()
                if item.kind == "punct" and item.text in "{<":
                    self.lex.next()
                    msg.add(name.text, self.message(item, depth + 1), item.line, item.column)
                else:
                    msg.add(name.text, self.scalar(), item.line, item.column)
                end = self.lex.next()
                if end.kind == "punct" and end.text == "]":
                    return
                if not (end.kind == "punct" and end.text == ","):
                    raise self.fail(end, "',' or ']' in the list of '{}'".format(name.text))
        msg.add(name.text, self.scalar(), tok.line, tok.column)

    def scalar(self) -> Any:
        tok = self.lex.next()
        if tok.kind == "punct" and tok.text == "-":
            num = self.lex.next()
            if num.kind == "number":
                return -num.value
            if num.kind == "ident" and num.text.lower() in ("inf", "infinity", "nan"):
                return Identifier("-" + num.text)
            raise self.fail(num, "a number after '-'")
        if tok.kind == "number":
            return tok.value
        if tok.kind == "string":
            parts = [tok.value]
            while self.lex.peek().kind == "string":  # "a" "b" is "ab"
                parts.append(self.lex.next().value)
            return "".join(parts)
        if tok.kind == "ident":
            if tok.text in ("true", "True"):
                return True
            if tok.text in ("false", "False"):
                return False
            return Identifier(tok.text)
        raise self.fail(tok, "a value (a number, a string, an identifier, '{' or '[')")


def parse_text_proto(text: str, origin: str) -> TextMessage:
    """Parse protobuf text format into a :class:`TextMessage` (a ``dict``).

    Every field maps to the list of its values in file order: ``a: 1 a: 2``
    and ``a: [1, 2]`` both give ``{"a": [1, 2]}``. Values are ``int``,
    ``float``, ``str`` (quoted, escapes decoded, adjacent strings joined),
    ``bool`` (``true``/``True``/``false``/``False``), :class:`Identifier`
    (other bare words: enum values, ``inf``, ``nan``) or a nested
    :class:`TextMessage` (``name { }``, ``name: { }`` or ``name < >``).
    ``#`` starts a comment; ``,`` or ``;`` may end a field.

    Malformed text raises :class:`SpecError`:
    ``ORIGIN:LINE:COLUMN: expected ..., found ...``.
    """
    return _Parser(text, origin).message(None, 0)


# --------------------------------------------------------------------------
# reading parsed values, with config paths in the errors


class _Node:
    """One parsed message and its config path (``model.ssd``)."""

    def __init__(self, msg: Dict[str, Any], path: str, origin: str) -> None:
        self.msg = msg
        self.path = path
        self.origin = origin

    def where(self, key: str) -> str:
        return "{}.{}".format(self.path, key) if self.path else key

    def fail(self, key: Optional[str], message: str) -> SpecError:
        place = None
        places = getattr(self.msg, "places", {})  # plain dicts have no positions
        if key is not None and places.get(key):
            place = places[key][0]
        elif isinstance(self.msg, TextMessage) and self.path:
            place = (self.msg.line, self.msg.column)
        prefix = "{}:{}:{}".format(self.origin, *place) if place else self.origin
        return SpecError("{}: {} {}".format(prefix, self.where(key) if key else self.path or "the config", message))

    def values(self, key: str) -> List[Any]:
        return list(self.msg.get(key, []))

    def one(self, key: str, default: Any = _MISSING) -> Any:
        vals = self.msg.get(key, [])
        if len(vals) > 1:
            raise self.fail(key, "is given {} times; it is a single field".format(len(vals)))
        if not vals:
            if default is _MISSING:
                raise self.fail(key, "is missing")
            return default
        return vals[0]

    def child(self, key: str, required: bool = True, hint: str = "") -> Optional["_Node"]:
        value = self.one(key, None)
        if value is None:
            if required:
                raise self.fail(None, "has no '{}' {{ ... }}{}".format(key, "; " + hint if hint else ""))
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "must be a message {{ ... }}, not the value {!r}".format(value))
        return _Node(value, self.where(key), self.origin)

    def choice(self, supported: Sequence[str], what: str) -> Tuple[str, "_Node"]:
        """The one sub-message set (a proto ``oneof``); refuses others."""
        names = list(self.msg)
        if not names:
            raise self.fail(None, "is empty; supported: {}".format(", ".join(supported)))
        if len(names) > 1:
            raise self.fail(names[1], "is set beside '{}'; {} takes one of: {}".format(
                names[0], what, ", ".join(supported)))
        name = names[0]
        if name not in supported:
            raise self.fail(name, "is not supported; supported {}: {}".format(what, ", ".join(supported)))
        node = self.child(name)
        assert node is not None
        return name, node

    # typed single values (``default``: the .proto default TF uses)

    def integer(self, key: str, default: Any = _MISSING, minimum: Optional[int] = None) -> Any:
        value = self.one(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be a whole number, not {}".format(_kind(value)))
        if minimum is not None and value < minimum:
            raise self.fail(key, "must be at least {}, is {}".format(minimum, value))
        return value

    def number(self, key: str, default: Any = _MISSING, low: Optional[float] = None,
              high: Optional[float] = None) -> float:
        return self._float(key, self.one(key, default), low, high)

    def _float(self, key: str, value: Any, low: Optional[float], high: Optional[float]) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "must be a finite number, not {}".format(_kind(value)))
        number = float(value)
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = "between {} and {}".format(low, high) if high is not None else "at least {}".format(low)
            raise self.fail(key, "must be {}, is {}".format(bounds, number))
        return number

    def numbers(self, key: str, low: Optional[float] = None) -> List[float]:
        return [self._float(key, v, low, None) for v in self.values(key)]

    def integers(self, key: str, minimum: Optional[int] = None) -> List[int]:
        out = []
        for v in self.values(key):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(key, "must hold whole numbers, not {}".format(_kind(v)))
            if minimum is not None and v < minimum:
                raise self.fail(key, "values must be at least {}, one is {}".format(minimum, v))
            out.append(v)
        return out

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.one(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, Identifier) and value in ("t", "f"):
            return value == "t"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail(key, "must be true or false, not {}".format(_kind(value)))

    def string(self, key: str, default: Any = _MISSING) -> str:
        value = self.one(key, default)
        if not isinstance(value, str) or isinstance(value, Identifier):
            raise self.fail(key, "must be a quoted string, not {}".format(_kind(value)))
        return value

    def enum(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.one(key, Identifier(default))
        if not isinstance(value, Identifier):
            raise self.fail(key, "must be one of {} (unquoted), not {}".format(", ".join(choices), _kind(value)))
        if value not in choices:
            raise self.fail(key, "is {}; supported: {}".format(value, ", ".join(choices)))
        return str(value)

    def ignore_except(self, handled: Iterable[str], notes: List[str]) -> None:
        """A note for every field here the mapping does not read."""
        extra = [k for k in self.msg if k not in set(handled)]
        if extra:
            notes.append("{}: ignored {} (no effect on the engine trtedge builds)".format(
                self.path, ", ".join(extra)))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "'{}'".format(str(value).lower())
    if isinstance(value, dict):
        return "a message { ... }"
    if isinstance(value, Identifier):
        return "the identifier {}".format(value)
    if isinstance(value, str):
        return "the string {!r}".format(value)
    return "{!r}".format(value)


# --------------------------------------------------------------------------
# mapping model.ssd onto a trtedge spec


@dataclasses.dataclass(frozen=True)
class PipelineSpecData:
    """What :func:`ssd_spec_data` makes of a pipeline.config.

    ``spec``: the spec in trtedge's YAML form (for ``spec_from_data``).
    ``multiscale``: the ``multiscale_anchor_generator`` settings (``min_level,
    max_level, anchor_scale, aspect_ratios, scales_per_octave,
    normalize_coordinates``), or ``None`` for an ``ssd_anchor_generator``.
    While trtedge's spec schema has no ``ssd.multiscale_anchors`` these are
    only here, and ``spec``'s ``ssd.anchors`` do NOT describe the model:
    :meth:`model_spec` refuses such a config. ``notes``: what was mapped how
    (also in ``spec["notes"]``).
    """

    spec: Dict[str, Any]
    multiscale: Optional[Dict[str, Any]]
    notes: Tuple[str, ...]
    origin: str

    @property
    def multiscale_supported(self) -> bool:
        return _schema_has_multiscale()

    def model_spec(self) -> S.ModelSpec:
        """The validated :class:`ModelSpec`; refuses anchors trtedge cannot make."""
        if self.multiscale is not None and not _schema_has_multiscale():
            raise SpecError(
                "{}: model.ssd.anchor_generator is a multiscale_anchor_generator (FPN / RetinaNet-style anchors, "
                "levels {}-{}), which trtedge's SSD decode cannot generate yet; supported: ssd_anchor_generator"
                .format(self.origin, self.multiscale["min_level"], self.multiscale["max_level"]))
        return spec_from_data(self.spec, self.origin, base_dir=None)


def _schema_has_multiscale() -> bool:
    """Whether the SSD family's section can carry multiscale anchors (asked, not assumed)."""
    from ..engines.families.ssd import SsdSpec

    return "multiscale_anchors" in {f.name for f in dataclasses.fields(SsdSpec)}


#: feature_extractor.type -> normalisation (y = x * scale + offset on 0..255 RGB),
#: from each TF OD API feature extractor's ``preprocess``; see :func:`_normalisation`
_MINUS_ONE_TO_ONE = ("ssd_mobilenet_v1", "ssd_mobilenet_v2", "embedded_ssd_mobilenet_v1", "ssd_inception_v2")
_RESNET_FPN = re.compile(r"ssd_resnet(50|101|152)_v1_fpn(_keras)?$")
_EFFICIENTDET = re.compile(r"ssd_efficientnet-b[0-7]_bifpn_keras$")
_VGG_MEAN = (123.68, 116.779, 103.939)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalisation(fe: _Node) -> Tuple[Dict[str, List[float]], str]:
    """The input normalisation, decided by ``feature_extractor.type`` alone.

    TF's SSD meta-architecture hands the resized 0..255 RGB image to the
    feature extractor's ``preprocess``, and that method is fixed per extractor
    class, which ``type`` selects (the config has no normalisation field):

    * MobileNet v1/v2 (also FPN, PPN, FPNLite and Keras variants) and Inception
      v2 map pixels to [-1, 1]: ``x * 2/255 - 1`` (scale 2/255, offset -1);
    * ResNet v1 FPN (RetinaNet; 50/101/152, slim and Keras) subtract the VGG
      channel means ``[123.68, 116.779, 103.939]`` and do not scale;
    * EfficientNet BiFPN (EfficientDet) divide by 255, subtract the ImageNet
      means ``[0.485, 0.456, 0.406]`` and divide by ``[0.229, 0.224, 0.225]``.

    Other types are refused rather than guessed.
    """
    kind = fe.string("type")
    if kind.startswith(_MINUS_ONE_TO_ONE):
        return ({"scale": [2.0 / 255.0] * 3, "offset": [-1.0] * 3},
                "{} maps pixels to [-1, 1] (x * 2/255 - 1)".format(kind))
    if _RESNET_FPN.match(kind):
        return ({"mean": list(_VGG_MEAN), "std": [1.0, 1.0, 1.0]},
                "{} subtracts the channel means {}".format(kind, list(_VGG_MEAN)))
    if _EFFICIENTDET.match(kind):
        return ({"mean": [m * 255.0 for m in _IMAGENET_MEAN], "std": [s * 255.0 for s in _IMAGENET_STD]},
                "{} normalises with the ImageNet mean/std".format(kind))
    raise fe.fail("type", "is '{}', whose input normalisation trtedge does not know; supported: {}*, "
                  "ssd_resnet{{50,101,152}}_v1_fpn[_keras], ssd_efficientnet-b0..b7_bifpn_keras (or write a spec "
                  "YAML with input.normalize)".format(kind, "*, ".join(_MINUS_ONE_TO_ONE)))


def _input(ssd: _Node, notes: List[str]) -> Tuple[Dict[str, Any], str]:
    resizer = ssd.child("image_resizer", hint="supported: image_resizer { fixed_shape_resizer { height: H width: W } }")
    assert resizer is not None
    if "keep_aspect_ratio_resizer" in resizer.msg:
        raise resizer.fail("keep_aspect_ratio_resizer",
                           "resizes each image to its own size, but an engine needs a fixed input size: export the "
                           "model with image_resizer { fixed_shape_resizer { height: H width: W } } in its "
                           "pipeline.config, or write a trtedge spec YAML with input.size: [H, W]")
    _, fixed = resizer.choice(("fixed_shape_resizer",), "image resizers")
    height = fixed.integer("height", 300, minimum=1)  # the .proto defaults
    width = fixed.integer("width", 300, minimum=1)
    if fixed.flag("convert_to_grayscale", False):
        raise fixed.fail("convert_to_grayscale", "is true; trtedge feeds 3-channel images (supported: false)")
    method = fixed.enum("resize_method", "BILINEAR", ("BILINEAR", "NEAREST_NEIGHBOR", "BICUBIC", "AREA"))
    if method != "BILINEAR":
        notes.append("{}.resize_method {}: the runtime resizes frames bilinearly".format(fixed.path, method))
    fixed.ignore_except(("height", "width", "convert_to_grayscale", "resize_method"), notes)
    fe = ssd.child("feature_extractor", hint="its type decides the input normalisation")
    assert fe is not None
    normalize, how = _normalisation(fe)
    notes.append("input normalisation from model.ssd.feature_extractor.type: " + how)
    return {
        "size": [height, width],
        "channels": "rgb",  # TF OD API image_tensor
        "layout": "nhwc",
        "normalize": normalize,
        "resize": "stretch",  # fixed_shape_resizer does not keep the aspect ratio
    }, fe.string("type")


def _ssd_anchors(gen: _Node, notes: List[str]) -> Dict[str, Any]:
    num_layers = gen.integer("num_layers", 6, minimum=1)
    scales = gen.numbers("scales", low=0.0)
    if scales and len(scales) != num_layers:
        raise gen.fail("scales", "has {} values but num_layers is {}; give one per layer".format(
            len(scales), num_layers))
    pairs = {}  # type: Dict[str, List[List[float]]]
    for kind in ("stride", "offset"):
        hs, ws = gen.integers("height_" + kind, minimum=0), gen.integers("width_" + kind, minimum=0)
        if len(hs) != len(ws):
            raise gen.fail("height_" + kind, "has {} values but width_{} has {}; give both, one per layer".format(
                len(hs), kind, len(ws)))
        if hs and len(hs) != num_layers:
            raise gen.fail("height_" + kind, "has {} values but num_layers is {}; give one per layer".format(
                len(hs), num_layers))
        pairs[kind] = [[float(h), float(w)] for h, w in zip(hs, ws)]
    anchors = {
        "num_layers": num_layers,
        "min_scale": gen.number("min_scale", 0.2, 0.0, 1.0),
        "max_scale": gen.number("max_scale", 0.95, 0.0, 1.0),
        "scales": scales,
        "aspect_ratios": gen.numbers("aspect_ratios", low=0.0),
        "interpolated_scale_aspect_ratio": gen.number("interpolated_scale_aspect_ratio", 1.0, 0.0),
        "reduce_boxes_in_lowest_layer": gen.flag("reduce_boxes_in_lowest_layer", True),
        "base_anchor_size": [gen.number("base_anchor_height", 1.0, 0.0), gen.number("base_anchor_width", 1.0, 0.0)],
        "strides": pairs["stride"],
        "offsets": pairs["offset"],
    }
    if not anchors["aspect_ratios"]:
        notes.append("{}.aspect_ratios is empty: each location has only the interpolated-scale anchor".format(gen.path))
    gen.ignore_except(("num_layers", "min_scale", "max_scale", "scales", "aspect_ratios",
                       "interpolated_scale_aspect_ratio", "reduce_boxes_in_lowest_layer", "base_anchor_height",
                       "base_anchor_width", "height_stride", "width_stride", "height_offset", "width_offset"), notes)
    return anchors


def _multiscale_anchors(gen: _Node, notes: List[str]) -> Dict[str, Any]:
    out = {
        "min_level": gen.integer("min_level", 3, minimum=1),
        "max_level": gen.integer("max_level", 7, minimum=1),
        "anchor_scale": gen.number("anchor_scale", 4.0, 0.0),
        "aspect_ratios": gen.numbers("aspect_ratios", low=0.0),
        "scales_per_octave": gen.integer("scales_per_octave", 2, minimum=1),
        "normalize_coordinates": gen.flag("normalize_coordinates", True),
    }
    if out["max_level"] < out["min_level"]:
        raise gen.fail("max_level", "is {} but min_level is {}; max_level must not be smaller".format(
            out["max_level"], out["min_level"]))
    if not out["aspect_ratios"]:
        raise gen.fail(None, "has no aspect_ratios; give at least one (aspect_ratios: 1.0)")
    gen.ignore_except(tuple(out), notes)
    return out


def _box_coder(ssd: _Node, notes: List[str]) -> List[float]:
    coder = ssd.child("box_coder", hint="supported: box_coder { faster_rcnn_box_coder { } }")
    assert coder is not None
    _, frc = coder.choice(("faster_rcnn_box_coder",), "box coders")
    scales = [frc.number(k, 10.0 if k in ("y_scale", "x_scale") else 5.0, 0.0)
              for k in ("y_scale", "x_scale", "height_scale", "width_scale")]
    if any(s == 0.0 for s in scales):
        raise frc.fail(None, "has a scale of 0; the box decode divides by each scale")
    frc.ignore_except(("y_scale", "x_scale", "height_scale", "width_scale"), notes)
    return scales


def _post_processing(ssd: _Node, notes: List[str]) -> Tuple[str, Dict[str, Any]]:
    pp = ssd.child("post_processing",
                   hint="supported: post_processing { score_converter: SIGMOID batch_non_max_suppression { } }")
    assert pp is not None
    activation = {"IDENTITY": "none", "SIGMOID": "sigmoid", "SOFTMAX": "softmax"}[
        pp.enum("score_converter", "IDENTITY", ("IDENTITY", "SIGMOID", "SOFTMAX"))]
    logit_scale = pp.number("logit_scale", 1.0)
    if logit_scale != 1.0:
        raise pp.fail("logit_scale", "is {}; trtedge applies the score activation to unscaled logits "
                      "(supported: 1.0)".format(logit_scale))
    pp.ignore_except(("score_converter", "logit_scale", "batch_non_max_suppression"), notes)
    bnms = pp.child("batch_non_max_suppression", hint="the only NMS supported")
    assert bnms is not None
    if bnms.number("soft_nms_sigma", 0.0) != 0.0:
        raise bnms.fail("soft_nms_sigma", "is set; trtedge's NMS is hard NMS (supported: 0)")
    max_total = bnms.integer("max_total_detections", 100, minimum=1)
    if max_total > 3840:
        raise bnms.fail("max_total_detections", "is {}; trtedge keeps at most 3840 (TensorRT's TopK limit)".format(
            max_total))
    nms = {
        "score_threshold": bnms.number("score_threshold", 0.0, 0.0, 1.0),
        "iou_threshold": bnms.number("iou_threshold", 0.6, 0.0, 1.0),
        "max_per_class": bnms.integer("max_detections_per_class", 100, minimum=1),
        "max_detections": max_total,
        "candidates": min(3840, max(S.NmsSpec().candidates, max_total)),
        "class_agnostic": bnms.flag("use_class_agnostic_nms", False),
    }
    if nms["score_threshold"] < 0.01:
        notes.append(
            "nms.score_threshold {:g} is the config's {}.score_threshold, an evaluation setting (it keeps "
            "nearly every box for mAP); on a device raise it to a display threshold such as 0.3".format(
                nms["score_threshold"], bnms.path))
    bnms.ignore_except(("score_threshold", "iou_threshold", "max_detections_per_class", "max_total_detections",
                        "use_class_agnostic_nms", "soft_nms_sigma"), notes)
    return activation, nms


def _read_label_names(labels: str, origin: str) -> List[str]:
    path = labels if os.path.isfile(labels) else os.path.join(LABELS_DIR, labels)
    if not os.path.isfile(path):
        raise SpecError("{}: label file {} does not exist; built-in label files: {}".format(
            origin, labels, ", ".join(sorted(os.listdir(LABELS_DIR)))))
    if path.endswith((".pbtxt", ".pbtext")):
        return labels_from_label_map(path)
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("cannot read label file {}: {}".format(path, exc))


def _labels(labels: Union[None, str, Sequence[str]], num_classes: int, ssd: _Node,
            notes: List[str]) -> List[str]:
    if labels is None:
        if num_classes == 90:
            names = _read_label_names("coco_tf90.txt", ssd.origin)
            notes.append("labels: COCO's 90 TF class ids (coco_tf90.txt), as model.ssd.num_classes is 90")
        else:
            names = ["class{}".format(i + 1) for i in range(num_classes)]
            notes.append("labels: class1..class{} (no label list given)".format(num_classes))
        return names
    if isinstance(labels, str):
        names, source = _read_label_names(labels, ssd.origin), labels
    else:
        names, source = [str(n).strip() for n in labels], "the labels list"
        if not all(names):
            raise SpecError("{}: the labels list has an empty name".format(ssd.origin))
    if len(names) != num_classes:
        raise ssd.fail("num_classes", "is {} but {} has {} names; give one name per class, background "
                       "excluded".format(num_classes, source, len(names)))
    return names


def _default_name(origin: str) -> str:
    base = os.path.basename(os.path.normpath(origin)) or "pipeline"
    if base == "pipeline.config":
        base = os.path.basename(os.path.dirname(os.path.abspath(origin))) or "pipeline"
    else:
        base = os.path.splitext(base)[0] or base
    return re.sub(r"[\s/\\]+", "_", base)


def ssd_spec_data(config: Dict[str, Any], origin: str, labels: Union[None, str, Sequence[str]] = None,
                  name: Optional[str] = None, source: Optional[Dict[str, Any]] = None) -> PipelineSpecData:
    """Map a parsed pipeline.config (:func:`parse_text_proto`) to a trtedge spec.

    ``origin``: the config's file name, for messages and ``spec_from_data``.
    ``labels``: a list of names, a label file (a path or a built-in label
    file name; a ``.pbtxt`` is read as a TF label map), or ``None``: COCO's
    90 TF class ids (``coco_tf90.txt``) when ``num_classes`` is 90, else
    ``class1``, ``class2``, ... ``name``: the spec's name (default: the
    config's folder for ``pipeline.config``, else its file name without
    extension). ``source``: the spec's ``source`` section, passed through.

    Read: ``model.ssd`` num_classes, image_resizer (fixed_shape_resizer),
    feature_extractor.type (normalisation), anchor_generator
    (ssd_anchor_generator or multiscale_anchor_generator), box_coder
    (faster_rcnn_box_coder), post_processing (score_converter,
    batch_non_max_suppression) and add_background_class. train_config,
    eval_config and the input readers are not read. ``cut`` is left empty:
    the tensor names depend on how the model was exported.
    """
    if not isinstance(config, dict):
        raise TypeError("ssd_spec_data needs a dict as parse_text_proto returns it")
    root = _Node(config, "", origin)
    model = root.child("model", hint="this does not look like a TF Object Detection API pipeline.config")
    assert model is not None
    if "ssd" not in model.msg:
        others = ", ".join("model." + k for k in model.msg) or "nothing"
        raise model.fail(None, "holds {}; trtedge reads SSD models only (model.ssd {{ ... }})".format(others))
    ssd = model.child("ssd")
    assert ssd is not None
    notes = []  # type: List[str]
    num_classes = ssd.integer("num_classes", minimum=1)
    background = ssd.flag("add_background_class", True)
    if not background:
        notes.append("model.ssd.add_background_class is false: the class predictions have no background column")
    if ssd.flag("explicit_background_class", False):
        raise ssd.fail("explicit_background_class", "is true; supported: false (with add_background_class "
                       "true or false)")

    inp, fe_type = _input(ssd, notes)
    gen_sec = ssd.child("anchor_generator", hint="supported: ssd_anchor_generator, multiscale_anchor_generator")
    assert gen_sec is not None
    kind, gen = gen_sec.choice(("ssd_anchor_generator", "multiscale_anchor_generator"), "anchor generators")
    ssd_out = {}  # type: Dict[str, Any]
    multiscale = None  # type: Optional[Dict[str, Any]]
    if kind == "ssd_anchor_generator":
        ssd_out["anchors"] = _ssd_anchors(gen, notes)
    else:
        multiscale = _multiscale_anchors(gen, notes)
        if _schema_has_multiscale():
            ssd_out["multiscale_anchors"] = dict(multiscale)
        else:
            notes.append("model.ssd.anchor_generator is a multiscale_anchor_generator, which this spec cannot "
                         "describe yet: its ssd.anchors are NOT the model's anchors")
    ssd_out["box_coder_scales"] = _box_coder(ssd, notes)
    ssd_out["box_order"] = "yxhw"  # TF's box predictors: ty, tx, th, tw
    activation, nms = _post_processing(ssd, notes)
    ssd_out["score_activation"] = activation
    ssd_out["background_class"] = background
    ssd_out["clip_before_nms"] = False  # TF's postprocessor runs NMS on unclipped boxes, then clips
    names = _labels(labels, num_classes, ssd, notes)
    spec = {
        "name": name if name is not None else _default_name(origin),
        "family": "ssd",
        "description": "{} from TF OD API {} ({}x{}, {} classes)".format(
            fe_type, os.path.basename(origin), inp["size"][1], inp["size"][0], num_classes),
        "input": inp,
        "labels": names,
        "ssd": ssd_out,
        "nms": nms,
        "notes": list(notes),
    }  # type: Dict[str, Any]
    if source is not None:
        spec["source"] = dict(source)
    return PipelineSpecData(spec=spec, multiscale=multiscale, notes=tuple(notes), origin=origin)


def read_pipeline_config(path: str, labels: Union[None, str, Sequence[str]] = None, name: Optional[str] = None,
                         source: Optional[Dict[str, Any]] = None) -> PipelineSpecData:
    """Read, parse and map a pipeline.config file (see :func:`ssd_spec_data`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("cannot read pipeline config {}: {}".format(path, exc))
    return ssd_spec_data(parse_text_proto(text, path), path, labels=labels, name=name, source=source)


def labels_from_label_map(path: str) -> List[str]:
    """Names from a TF label map (``item { id: 1 name: "person" }`` ...).

    Index ``i`` holds id ``i + 1`` (``display_name`` if given, else
    ``name``); ids with no item become ``unused_ID``, so the list lines up
    with the class columns after the background.
    """
    try:
        with open(path, encoding="utf-8") as f:
            root = _Node(parse_text_proto(f.read(), path), "", path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("cannot read label map {}: {}".format(path, exc))
    by_id = {}  # type: Dict[int, str]
    for raw in root.values("item"):
        if not isinstance(raw, dict):
            raise root.fail("item", "must be a message { id: N name: \"...\" }")
        item = _Node(raw, "item", path)
        ident = item.integer("id", minimum=1)
        label = item.string("display_name", "") or item.string("name", "")
        if not label.strip():
            raise item.fail("id", "{} has no name or display_name".format(ident))
        if ident in by_id:
            raise item.fail("id", "{} is given twice".format(ident))
        by_id[ident] = label.strip()
    if not by_id:
        raise SpecError("{}: the label map has no item {{ id: N name: \"...\" }}".format(path))
    return [by_id.get(i, "unused_{}".format(i)) for i in range(1, max(by_id) + 1)]
