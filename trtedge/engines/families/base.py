"""What a detector family is: one object that knows its spec section, its heads and its decode.

A family module defines a :class:`Family` subclass and an instance named
``FAMILY``; :mod:`trtedge.engines.families` registers it. Nothing outside
the family module knows anything about its heads: the spec loader hands it
its section, graph surgery hands it the cut graph.
"""

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ...fields import Section


class HeadInfo(NamedTuple):
    """What :meth:`Family.check_heads` learned about the heads, for :meth:`Family.decode`."""

    tensors: Tuple[str, ...]
    shapes: Tuple[Tuple[Any, ...], ...]
    notes: Tuple[str, ...]
    #: single-tensor heads: the axis holding the per-box values (1 or 2)
    attr_axis: int = 2


class ModelHints(NamedTuple):
    """What the user said about a model that comes without a spec (``trtedge build
    model.onnx --family yolo --head anchor_free --num-classes 3 --input-size 640x640
    --labels names.txt``); None where nothing was said."""

    family: Optional[str] = None
    head: Optional[str] = None
    num_classes: Optional[int] = None
    #: (height, width)
    input_size: Optional[Tuple[int, int]] = None
    labels: Optional[Tuple[str, ...]] = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in self)


class Family(object):
    """One detector family. Subclasses set :attr:`name` and :attr:`section`
    and implement what they need; the defaults describe a family with no
    section and no detection head (``none``)."""

    #: the spec's ``family:`` value
    name = ""
    #: the spec key of the family's own section (``yolo:``), or None
    section = None  # type: Optional[str]
    #: False for plain models: no surgery, the model keeps its own I/O
    detector = True
    #: class columns the head predicts beyond the labels (SSD's background);
    #: the legacy ``num_classes`` field is checked against labels + this
    extra_classes = 0

    def parse(self, sec: Section, top: Section, cut: Any, notes: List[str]) -> Tuple[Any, Any]:
        """The section's typed (frozen dataclass) form and the cut, possibly changed
        by legacy top-level fields the family owns (read them from ``top``)."""
        sec.done()
        return None, cut

    def check_spec(self, top: Section, section: Any, cut: Any) -> None:
        """Cross-field checks once the whole spec is read (e.g. the number of cut outputs)."""

    def describe(self, section: Any) -> str:
        """A word for the head (``trtedge specs``, build progress)."""
        return self.name

    def spec_from_model(self, model: Any, metadata: Dict[str, str], hints: ModelHints,
                        name: str) -> Optional[Dict[str, Any]]:
        """Spec data (the YAML form) for an ONNX model that came without a spec,
        from its metadata, its graph and the user's hints; None when this family
        does not recognise it. Raise :class:`ModelError` when it recognises the
        model but something must be given (say which flag)."""
        return None

    def check_heads(self, spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                    graph: Any = None) -> HeadInfo:
        """Check the head tensors against the spec before anything is cut; :class:`ModelError` if they do not fit."""
        raise NotImplementedError

    def decode(self, graph: Any, spec: Any, heads: HeadInfo, outs: Sequence[Any]) -> Tuple[Any, Any, int]:
        """Append the decode: boxes float32 [B, N, 4] (x1, y1, x2, y2 in input pixels),
        scores float32 [B, N, C] (probabilities, no background), and N."""
        raise NotImplementedError
