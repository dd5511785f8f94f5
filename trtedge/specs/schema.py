"""The typed, frozen form of a model spec.

A spec is read once (``trtedge.specs.load_spec``) and then passed around as a
:class:`ModelSpec`; no stage re-reads YAML. Every object here turns back into
plain data with ``to_dict()`` (the *resolved* spec: defaults filled in, labels
inline), which is what the manifest and the engine ONNX's metadata carry, and
the loader reads that form back without any file beside it.

Conventions (shared by every family):

* sizes are ``(height, width)`` in pixels;
* boxes are ``x1, y1, x2, y2`` in input pixels everywhere after decoding;
* class ids are 0-based indices into ``labels`` (background never appears).

``trtedge.specs.loader.spec_from_data`` reads the resolved form back.
"""

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, Optional, Tuple

SOURCE_FORMATS = ("auto", "onnx", "savedmodel", "frozen_graph", "keras", "darknet")
CHANNEL_ORDERS = ("rgb", "bgr")
LAYOUTS = ("nchw", "nhwc")
RESIZE_MODES = ("letterbox", "stretch")
#: where a letterboxed image sits in the input: centred (most exporters) or at
#: the top-left corner, padding at the bottom and right (YOLOX)
LETTERBOX_ALIGNS = ("center", "top_left")


@dataclass(frozen=True)
class SourceSpec:
    """Where the trained model comes from."""

    format: str = "auto"
    file: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    #: name of the source model's input tensor (default: its only input)
    input: Optional[str] = None
    #: how to get the file when it is missing (shown with the url)
    howto: Optional[str] = None
    #: sha256 of what ``url`` serves (the tarball), checked by ``--download``
    archive_sha256: Optional[str] = None
    #: ``format: darknet``: the .cfg (beside the spec, else one of trtedge's in models/darknet/);
    #: ``file`` is then the .weights
    cfg: Optional[str] = None


@dataclass(frozen=True)
class InputSpec:
    """What the model expects at its input, and how frames are fitted to it.

    Normalisation is ``y = x * scale + offset`` per channel, in the model's
    channel order, on 0..255 pixel values (``mean``/``std`` in YAML become
    ``scale = 1/std`` and ``offset = -mean/std``).
    """

    height: int
    width: int
    channels: str = "rgb"
    layout: str = "nchw"
    scale: Tuple[float, float, float] = (1.0 / 255.0,) * 3
    offset: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    resize: str = "letterbox"
    pad_value: int = 114
    #: ``letterbox`` only: ``center`` or ``top_left`` (pad at the bottom and right)
    letterbox_align: str = "center"
    #: channel order of the engine's uint8 ``images`` input (OpenCV gives BGR)
    engine_channels: str = "bgr"


@dataclass(frozen=True)
class CutSpec:
    """Where the source model's own pre- and postprocessing are cut off.

    ``input``: the tensor the engine's preprocessing feeds (default: the
    model input). ``outputs``: the head tensors the decode reads, in the order
    the family section gives them meaning (YOLO ``raw``: one per stride; SSD:
    box encodings, then class predictions).
    """

    input: Optional[str] = None
    outputs: Tuple[str, ...] = ()


@dataclass(frozen=True)
class NmsSpec:
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_per_class: int = 100
    #: K: rows of the contract's outputs
    max_detections: int = 100
    #: C: candidates kept for the ``host`` form
    candidates: int = 1000
    class_agnostic: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A whole spec. The family's own section (``yolo:``, ``ssd:``, ...) is
    ``section``, a frozen dataclass of the family's making, and also reads as
    ``spec.<section key>`` (``spec.yolo``); this module knows no family."""

    name: str
    family: str
    input: InputSpec
    labels: Tuple[str, ...]
    source: SourceSpec = field(default_factory=SourceSpec)
    description: str = ""
    cut: CutSpec = field(default_factory=CutSpec)
    #: the family's section object, and its key in the spec (None: no section)
    section: Any = None
    section_key: Optional[str] = None
    nms: NmsSpec = field(default_factory=NmsSpec)
    #: what legacy (UFF-era) fields were mapped to; informational
    notes: Tuple[str, ...] = ()
    #: the file the spec came from ("" when built from a dict)
    origin: str = ""

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: spec.yolo -> the yolo section
        if not name.startswith("_") and name == self.__dict__.get("section_key"):
            return self.__dict__["section"]
        raise AttributeError("'ModelSpec' has no attribute '{}' (family '{}')".format(
            name, self.__dict__.get("family")))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def is_detector(self) -> bool:
        return self.family != "none"

    def to_dict(self) -> Dict[str, Any]:
        """The resolved spec as plain JSON-able data (no ``origin``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("origin", "section", "section_key")}
        out = _lists({k: asdict(v) if is_dataclass(v) else v for k, v in data.items()})
        if self.section_key and self.section is not None:
            out[self.section_key] = _lists(asdict(self.section))
        return out


def _lists(value: Any) -> Any:
    """Tuples to lists, recursively, so the dict is plain JSON data."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
