"""Read a spec: YAML (or the resolved dict) -> validated :class:`ModelSpec`.

This module and ``trtedge.specs`` are the only ones that read YAML. Every
error is a :class:`SpecError` naming the file, the field (as a dotted path)
and what is allowed. The loader knows no family: the spec's ``family:``
picks one from :mod:`trtedge.engines.families`, which parses its own section.
"""

import os
from typing import Any, List, Optional, Tuple

from ..engines import families
from ..errors import SpecError
from ..fields import Section, check_int, kind
from . import schema as S

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))
LABELS_DIR = os.path.join(BUILTIN_DIR, "labels")
MODELS_DIR = os.path.join(os.path.dirname(BUILTIN_DIR), "models")

def _size(sec: Section) -> Tuple[int, int]:
    if sec.has("size"):
        value = sec.raw("size")
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, list) and len(value) == 2):
            raise sec.fail("size", "must be [height, width] or one number, not {}".format(kind(value)))
        h, w = (check_int(v, 1, lambda m: sec.fail("size", m)) for v in value)
        return h, w
    return sec.int("height", minimum=1), sec.int("width", minimum=1)


def _normalisation(sec: Section) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    norm = sec.section("normalize")
    if sec.has("scale") or sec.has("offset"):  # resolved form
        return sec.floats("scale", length=3), sec.floats("offset", (0.0, 0.0, 0.0), length=3)
    if norm.has("mean") or norm.has("std"):
        mean = norm.floats("mean", (0.0, 0.0, 0.0), length=3)
        std = norm.floats("std", (1.0, 1.0, 1.0), length=3)
        if any(s == 0 for s in std):
            raise norm.fail("std", "must not contain 0")
        norm.done()
        return tuple(1.0 / s for s in std), tuple(-m / s for m, s in zip(mean, std))
    scale = norm.floats("scale", (1.0 / 255.0,) * 3, length=3)
    offset = norm.floats("offset", (0.0, 0.0, 0.0), length=3)
    norm.done()
    return scale, offset


def _input(sec: Section) -> S.InputSpec:
    h, w = _size(sec)
    scale, offset = _normalisation(sec)
    if any(v == 0 for v in scale):
        raise sec.fail("normalize", "scales every pixel to 0 (scale {}); give a non-zero scale or "
                                    "std".format(list(scale)))
    spec = S.InputSpec(
        height=h,
        width=w,
        channels=sec.str("channels", "rgb", S.CHANNEL_ORDERS),
        layout=sec.str("layout", "nchw", S.LAYOUTS),
        scale=tuple(scale),  # type: ignore[arg-type]
        offset=tuple(offset),  # type: ignore[arg-type]
        resize=sec.str("resize", "letterbox", S.RESIZE_MODES),
        pad_value=sec.int("pad_value", 114, minimum=0),
        letterbox_align=sec.str("letterbox_align", "center", S.LETTERBOX_ALIGNS),
        engine_channels=sec.str("engine_channels", "bgr", S.CHANNEL_ORDERS),
    )
    if spec.letterbox_align != "center" and spec.resize != "letterbox":
        raise sec.fail("letterbox_align", "is '{}' but input.resize is '{}'; it applies to resize: letterbox "
                                          "only".format(spec.letterbox_align, spec.resize))
    if spec.pad_value > 255:
        raise sec.fail("pad_value", "must be between 0 and 255, is {}".format(spec.pad_value))
    sec.done()
    return spec


def _read_label_file(path: str, file: str) -> Tuple[str, ...]:
    try:
        with open(path, "rb") as f:
            raw = f.read(8 << 20)
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError("{}: label file {} is not UTF-8 text (byte {} at offset {}); save it as UTF-8, one "
                        "name a line".format(file, path, hex(raw[exc.start]), exc.start))
    except OSError as exc:
        raise SpecError("{}: cannot read label file {}: {}".format(file, path, exc.strerror or exc))
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SpecError("{}: label file {} is empty".format(file, path))
    return tuple(names)


def _labels(value: Any, file: str, base_dir: Optional[str]) -> Tuple[str, ...]:
    """A list of names, or a label file beside the spec (or in a folder below it) or built in.

    A label file may not lie outside the spec's folder (``../../etc/passwd``):
    a spec someone sends you must not make trtedge read, and then embed in an
    engine's metadata, files elsewhere on your machine."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise SpecError("{}: field 'labels' must be a non-empty list of names".format(file))
        return tuple(v.strip() for v in value)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            "{}: field 'labels' must be a label file name or a list of names, not {}".format(
                file, kind(value)
            )
        )
    if os.path.isabs(value) or ".." in value.replace("\\", "/").split("/"):
        raise SpecError("{}: field 'labels' is '{}'; a label file must lie beside the spec (or in a folder "
                        "below it) or be built in: copy it there".format(file, value))
    candidates = [os.path.join(d, value) for d in (base_dir, LABELS_DIR) if d]
    for path in candidates:
        if os.path.isfile(path):
            return _read_label_file(path, file)
    raise SpecError(
        "{}: field 'labels' names '{}', which is not in {}; built-in label files: {}".format(
            file, value, " or ".join(candidates), ", ".join(sorted(os.listdir(LABELS_DIR)))
        )
    )


def _nms(sec: Section) -> S.NmsSpec:
    d = S.NmsSpec()
    spec = S.NmsSpec(
        score_threshold=sec.float("score_threshold", d.score_threshold, 0.0, 1.0),
        iou_threshold=sec.float("iou_threshold", d.iou_threshold, 0.0, 1.0),
        max_per_class=sec.int("max_per_class", d.max_per_class, minimum=1),
        max_detections=sec.int("max_detections", d.max_detections, minimum=1),
        candidates=sec.int("candidates", d.candidates, minimum=1),
        class_agnostic=sec.bool("class_agnostic", False),
    )
    if spec.candidates > 3840:
        raise sec.fail("candidates", "must be at most 3840 (TensorRT's TopK limit), is {}".format(spec.candidates))
    if spec.max_detections > spec.candidates:
        raise sec.fail("max_detections", "must not exceed 'candidates' ({})".format(spec.candidates))
    sec.done()
    return spec


def spec_from_data(data: Any, file: str, base_dir: Optional[str]) -> S.ModelSpec:
    """Validate parsed YAML (or a resolved dict) into a :class:`ModelSpec`."""
    top = Section(data, file, "")
    name = top.str("name")
    if (not name.strip() or name.strip(".") == "" or any(c in name for c in "/\\ ")
            or any(not c.isprintable() for c in name)):
        raise top.fail("name", "must be a non-empty name without spaces, slashes or control characters "
                               "(and not '.' or '..'), is {!r}".format(name))
    family_name = top.str("family", choices=families.names())
    family = families.get(family_name)
    notes = list(top.strs("notes", ()))

    src = top.section("source")
    source = S.SourceSpec(
        format=src.str("format", "auto", S.SOURCE_FORMATS),
        file=src.str("file", None),
        url=src.str("url", None),
        sha256=src.str("sha256", None),
        input=src.str("input", None),
        howto=src.str("howto", None),
        archive_sha256=src.str("archive_sha256", None),
        cfg=src.str("cfg", None),
    )
    if source.format == "darknet" and not source.cfg:
        raise src.fail("cfg", "is required with format darknet: the .cfg that goes with the .weights in 'file'")
    for key in ("sha256", "archive_sha256"):
        value = getattr(source, key)
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())):
            raise src.fail(key, "must be 64 hexadecimal digits")
    src.done()

    inp = _input(top.section("input"))
    labels = _labels(top.raw("labels"), file, base_dir)
    if top.has("num_classes"):
        n = top.int("num_classes", minimum=1)
        expected = len(labels) + family.extra_classes
        if n != expected:
            raise top.fail(
                "num_classes",
                "is {} but the labels list {} classes{}; fix one of them".format(
                    n, len(labels), " plus background" if family.extra_classes else ""),
            )
        notes.append("legacy 'num_classes: {}' checked against the {} labels".format(n, len(labels)))

    cut_sec = top.section("cut")
    cut = S.CutSpec(input=cut_sec.str("input", None), outputs=cut_sec.strs("outputs", ()))
    cut_sec.done()

    if family.section:
        section, cut = family.parse(top.section(family.section), top, cut, notes)
    else:
        section = None
    for key, owner in families.section_keys().items():
        if owner != family.name and top.has(key):
            raise top.fail(key, "does not apply to family '{}'".format(family.name))
        top.used.add(key)
    family.check_spec(top, section, cut)

    spec = S.ModelSpec(
        name=name,
        family=family.name,
        description=top.str("description", ""),
        source=source,
        input=inp,
        labels=labels,
        cut=cut,
        section=section,
        section_key=family.section,
        nms=_nms(top.section("nms")),
        notes=tuple(notes),
        origin=file,
    )
    top.done()
    return spec


def spec_from_dict(data: Any, origin: str = "<resolved spec>") -> S.ModelSpec:
    """Read back what :meth:`ModelSpec.to_dict` wrote (validated like YAML)."""
    return spec_from_data(data, origin, base_dir=None)
