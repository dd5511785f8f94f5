"""The typed, frozen form of a model spec.

A spec is read once (``trtedge.specs.load_spec``) and then passed around as a
:class:`ModelSpec`; no stage re-reads YAML. Every object here turns back into
plain data with ``to_dict()`` (the *resolved* spec: defaults filled in, labels
inline), which is what the manifest and the engine ONNX's metadata carry, and
``ModelSpec.from_dict`` reads that form back without any file beside it.

Conventions (shared by every family):

* sizes are ``(height, width)`` in pixels;
* boxes are ``x1, y1, x2, y2`` in input pixels everywhere after decoding;
* class ids are 0-based indices into ``labels`` (background never appears).
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

FAMILIES = ("yolo", "ssd", "none")
SOURCE_FORMATS = ("auto", "onnx", "savedmodel", "frozen_graph", "keras")
CHANNEL_ORDERS = ("rgb", "bgr")
LAYOUTS = ("nchw", "nhwc")
RESIZE_MODES = ("letterbox", "stretch")
#: YOLO head kinds: ``raw`` = darknet v3/v4 heads ``[B, A*(5+C), H, W]`` per
#: stride (sigmoid, grid and anchors still to apply); ``decoded`` = v5-style
#: ``[B, N, 5+C]`` (cx, cy, w, h in input pixels, objectness, class scores);
#: ``anchor_free`` = v8-style ``[B, 4+C, N]`` (cx, cy, w, h, class scores).
YOLO_HEADS = ("raw", "decoded", "anchor_free")
SCORE_ACTIVATIONS = ("none", "sigmoid", "softmax")
BOX_FORMATS = ("cxcywh", "xyxy")
SSD_BOX_ORDERS = ("yxhw", "xywh")


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
class YoloSpec:
    head: str = "anchor_free"
    strides: Tuple[int, ...] = (8, 16, 32)
    #: per stride, (w, h) anchor pairs in input pixels (``raw`` heads only)
    anchors: Tuple[Tuple[Tuple[float, float], ...], ...] = ()
    #: per stride; 1.0 means plain sigmoid offsets (YOLOv4 uses 1.2/1.1/1.05)
    scale_x_y: Tuple[float, ...] = ()
    #: box format of ``decoded``/``anchor_free`` heads
    box_format: str = "cxcywh"
    #: activation still to apply to class scores (and objectness)
    score_activation: str = "none"
    #: ``decoded`` heads: whether column 4 is an objectness score
    objectness: bool = True


@dataclass(frozen=True)
class AnchorSpec:
    """TF Object Detection API ``ssd_anchor_generator`` settings."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    scales: Tuple[float, ...] = ()
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    base_anchor_size: Tuple[float, float] = (1.0, 1.0)
    strides: Tuple[Tuple[float, float], ...] = ()
    offsets: Tuple[Tuple[float, float], ...] = ()
    #: (height, width) per layer; read from the graph when empty
    feature_map_sizes: Tuple[Tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SsdSpec:
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    #: center-size box coder scales (y, x, h, w)
    box_coder_scales: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    #: order of the four box-encoding values per anchor
    box_order: str = "yxhw"
    score_activation: str = "sigmoid"
    #: whether score column 0 is a background class to drop
    background_class: bool = True


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
    name: str
    family: str
    input: InputSpec
    labels: Tuple[str, ...]
    source: SourceSpec = field(default_factory=SourceSpec)
    description: str = ""
    cut: CutSpec = field(default_factory=CutSpec)
    yolo: Optional[YoloSpec] = None
    ssd: Optional[SsdSpec] = None
    nms: NmsSpec = field(default_factory=NmsSpec)
    #: what legacy (UFF-era) fields were mapped to; informational
    notes: Tuple[str, ...] = ()
    #: the file the spec came from ("" when built from a dict)
    origin: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> Dict[str, Any]:
        """The resolved spec as plain JSON-able data (no ``origin``)."""
        data = asdict(self)
        data.pop("origin")
        return _lists(data)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], origin: str = "") -> "ModelSpec":
        """Read back what :meth:`to_dict` wrote (validated like YAML)."""
        from .loader import spec_from_data

        return spec_from_data(data, origin or "<resolved spec>", base_dir=None)


def _lists(value: Any) -> Any:
    """Tuples to lists, recursively, so the dict is plain JSON data."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
