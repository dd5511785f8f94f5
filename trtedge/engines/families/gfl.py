"""``family: gfl``: GFL / NanoDet heads (class scores + box distributions over bins).

Per cell the head predicts C class scores and, for each of the four sides
(left, top, right, bottom), a distribution over ``reg_max + 1`` bins.
Decode (NanoDet's ``Integral`` and ``distance2bbox``): softmax over the bins
of each side, the expected bin (``sum_i p_i * i``) times the level's stride
is the distance from the cell's point, whose input-pixel position is
``((col, row) + center_offset) * stride``; boxes are
``x1, y1 = point - (left, top)``, ``x2, y2 = point + (right, bottom)``,
clipped to the input as NanoDet clips them. A level's grid is
``ceil(H / stride)`` x ``ceil(W / stride)``, its cells row-major.

Layouts read (``cut.outputs``, else the model's outputs):

* **one tensor** ``[B, N, C + 4*(reg_max+1)]`` — NanoDet's and NanoDet-Plus'
  own ONNX export (``tools/export_onnx.py``): per cell the class scores, then
  the 4 x (reg_max+1) distribution values (side by side, bins inner), the
  cells of every stride one level after the other;
* **two tensors per stride** — the class scores ``[B, HW, C]`` of every
  stride, then the distributions ``[B, HW, 4*(reg_max+1)]`` of every stride
  (older NanoDet exports: ``cls_pred_stride_8 ... dis_pred_stride_8 ...``).
  Within each half, tensors are matched to strides by their cell count, so
  their order does not matter (a note says when it differed).

The ``gfl:`` section: ``strides`` (default NanoDet-Plus' ``[8, 16, 32, 64]``),
``reg_max`` (default 7, NanoDet's), ``score_activation`` (``none``: NanoDet's
exports already apply the sigmoid; ``sigmoid`` for graphs that leave logits),
``center_offset`` (0: NanoDet-Plus places a cell's point at its top-left
corner, ``col * stride``; 0.5: GFL / NanoDet's ``GFLHead`` at its centre).

Output of :meth:`GflFamily.decode`: boxes float32 [B, N, 4] (x1, y1, x2, y2,
input pixels), scores float32 [B, N, C].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

from ...utils.lazy import lazy_import

np = lazy_import("numpy")

from ...errors import ModelError
from ...fields import Section
from ..graph import OpBuilder, static_dim
from .base import Family, HeadInfo

SCORE_ACTIVATIONS = ("none", "sigmoid")
CENTER_OFFSETS = (0.0, 0.5)


@dataclass(frozen=True)
class GflSpec:
    """The spec's ``gfl:`` section."""

    strides: Tuple[int, ...] = (8, 16, 32, 64)
    #: bins per side are 0..reg_max
    reg_max: int = 7
    #: activation still to apply to the class scores
    score_activation: str = "none"
    #: a cell's point is ((col, row) + center_offset) * stride
    center_offset: float = 0.0

    @property
    def bins(self) -> int:
        return self.reg_max + 1


def grids(spec: Any) -> List[Tuple[int, int]]:
    """(rows, cols) of each stride's level, as NanoDet computes them (ceil)."""
    return [(int(math.ceil(spec.input.height / s)), int(math.ceil(spec.input.width / s)))
            for s in spec.gfl.strides]


def expected_cells(spec: Any) -> int:
    return sum(h * w for h, w in grids(spec))


def _classes_hint(spec: Any, got: int) -> str:
    return "the model predicts {} classes but the spec lists {} labels; give the spec a label list with {} " \
           "names".format(got, spec.num_classes, got)


def _three_dims(name: str, shape: Tuple[Any, ...], what: str) -> None:
    if len(shape) != 3:
        raise ModelError("head '{}' has shape {}; a gfl {} is [batch, cells, values] (3 dimensions)".format(
            name, list(shape) or "unknown", what))


def _check_single(spec: Any, name: str, shape: Tuple[Any, ...]) -> HeadInfo:
    g = spec.gfl
    c = spec.num_classes
    box = 4 * g.bins
    _three_dims(name, shape, "head")
    got_n, got_v = static_dim(shape[1]), static_dim(shape[2])
    if got_v is not None and got_v != c + box:
        hint = _classes_hint(spec, got_v - box) if got_v > box else "too few for the spec's classes"
        if got_v > c and (got_v - c) % 4 == 0 and (got_v - c) // 4 >= 2:
            hint += " (or, with {} classes, gfl.reg_max is {})".format(c, (got_v - c) // 4 - 1)
        raise ModelError("head '{}' has shape {}: {} values per cell, the spec expects {} = {} classes + 4 x "
                         "(reg_max {} + 1); {}".format(name, list(shape), got_v, c + box, c, g.reg_max, hint))
    n = expected_cells(spec)
    if got_n is not None and got_n != n:
        raise ModelError("head '{}' has {} cells but {}; check input.size and gfl.strides".format(
            name, got_n, "input {}x{} with strides {} gives {}".format(
                spec.input.width, spec.input.height, list(g.strides), n)))
    return HeadInfo((name,), (tuple(shape),), ())


def _match(spec: Any, names: Sequence[str], shapes: Sequence[Tuple[Any, ...]], what: str,
           values: int, hint: Any) -> Tuple[List[int], List[str]]:
    """For each stride, the index (into ``names``) of its ``what`` tensor; notes."""
    g = spec.gfl
    by_cells = {}
    for i, (name, shape) in enumerate(zip(names, shapes)):
        _three_dims(name, shape, what)
        got_v = static_dim(shape[2])
        if got_v is not None and got_v != values:
            raise ModelError("{} '{}' has shape {}: {} values per cell, {} expected; {}".format(
                what, name, list(shape), got_v, values, hint(got_v)))
        cells = static_dim(shape[1])
        if cells is None:
            raise ModelError("{} '{}' has no fixed cell count ({}); fix the model's input size".format(
                what, name, list(shape)))
        by_cells.setdefault(cells, i)
    wanted = [h * w for h, w in grids(spec)]
    if len(set(wanted)) != len(wanted):  # strides whose levels have equal cell counts: the order given is it
        by_cells = {}
        for i, cells in enumerate(wanted):
            if static_dim(shapes[i][1]) != cells:
                raise ModelError("{} '{}' has {} cells; stride {} gives {} at input {}x{}".format(
                    what, names[i], shapes[i][1], g.strides[i], cells, spec.input.width, spec.input.height))
        return list(range(len(wanted))), []
    order = []
    for stride, (h, w) in zip(g.strides, grids(spec)):
        if h * w not in by_cells:
            raise ModelError("no {} has the {} cells ({}x{}) that stride {} gives at input {}x{} ({} cells: "
                             "{}); check gfl.strides, input.size and the order of cut.outputs (class outputs, "
                             "then box outputs)".format(
                                 what, h * w, w, h, stride, spec.input.width, spec.input.height, what,
                                 ", ".join(str(k) for k in by_cells)))
        order.append(by_cells[h * w])
    notes = []
    if order != list(range(len(order))):
        notes.append("gfl {}s matched to strides by cell count: {}".format(what, ", ".join(
            "{} -> stride {}".format(names[i], s) for i, s in zip(order, g.strides))))
    return order, notes


def check_heads(spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...]) -> HeadInfo:
    g = spec.gfl
    c = spec.num_classes
    levels = len(g.strides)
    if len(names) == 1:
        return _check_single(spec, names[0], shapes[0])
    if len(names) != 2 * levels:
        raise ModelError("a gfl head is one [B, N, C + 4*(reg_max+1)] tensor or, per stride, one class and one "
                         "box tensor ({} for strides {}); the model/spec gives {} ({})".format(
                             2 * levels, list(g.strides), len(names), ", ".join(names)))
    box = 4 * g.bins

    def cls_hint(got: int) -> str:
        if got == box:
            return "it looks like a box output: list the class outputs first in cut.outputs"
        return _classes_hint(spec, got)

    def box_hint(got: int) -> str:
        if got == c:
            return "it looks like a class output: list the class outputs first in cut.outputs"
        if got % 4 == 0 and got >= 8:
            return "that is reg_max {}; set gfl.reg_max: {}".format(got // 4 - 1, got // 4 - 1)
        return "4 x (reg_max {} + 1) expected".format(g.reg_max)

    cls_order, notes = _match(spec, names[:levels], shapes[:levels], "class output", c, cls_hint)
    box_order, box_notes = _match(spec, names[levels:], shapes[levels:], "box output", box, box_hint)
    idx = cls_order + [levels + i for i in box_order]
    return HeadInfo(tuple(names[i] for i in idx), tuple(tuple(shapes[i]) for i in idx),
                    tuple(notes + box_notes))


def decode(graph: Any, spec: Any, heads: HeadInfo, outs: Sequence[Any]) -> Tuple[Any, Any, int]:
    b = OpBuilder(graph, "decode")
    g = spec.gfl
    c = spec.num_classes
    n = expected_cells(spec)
    if len(outs) == 1:
        cls = b.slice(outs[0], 0, c, 2)
        dist = b.slice(outs[0], c, c + 4 * g.bins, 2)
    else:
        levels = len(g.strides)
        cls = b.op("Concat", list(outs[:levels]), {"axis": 1})
        dist = b.op("Concat", list(outs[levels:]), {"axis": 1})
    scores = b.activation(cls, g.score_activation)
    # Integral: softmax over each side's bins, then the expected bin
    dist = b.op("Reshape", [dist, np.array([0, n, 4, g.bins], np.int64)])
    dist = b.op("Softmax", [dist], {"axis": 3})
    project = np.arange(g.bins, dtype=np.float32).reshape(g.bins, 1)
    dist = b.op("Reshape", [b.op("MatMul", [dist, project]), np.array([0, n, 4], np.int64)])
    points, strides = [], []
    for stride, (h, w) in zip(g.strides, grids(spec)):
        rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        points.append((np.stack([cols.reshape(-1), rows.reshape(-1)], -1) + g.center_offset) * stride)
        strides.append(np.full((h * w, 1), stride, np.float32))
    point = np.concatenate(points, 0)[None].astype(np.float32)  # [1, N, 2] x, y
    # distances in pixels, signed so that box = (x, y, x, y) + d: left and top subtract
    sign = np.array([-1, -1, 1, 1], np.float32)
    d = b.op("Mul", [dist, (np.concatenate(strides, 0) * sign)[None].astype(np.float32)])
    box = b.op("Add", [d, np.concatenate([point, point], 2)])
    box = b.op("Max", [box, np.zeros((1, 1, 4), np.float32)])
    limit = np.array([spec.input.width, spec.input.height] * 2, np.float32).reshape(1, 1, 4)
    box = b.op("Min", [box, limit])
    return box, scores, n


# --------------------------------------------------------------------------- the spec section


def _strides(sec: Section) -> Tuple[int, ...]:
    values = sec.floats("strides", (8.0, 16.0, 32.0, 64.0))
    if not values:
        raise sec.fail("strides", "must list at least one stride")
    shown = [int(x) if x == int(x) else x for x in values]
    if any(v < 1 or v != int(v) for v in values):
        raise sec.fail("strides", "must be whole numbers of pixels, at least 1; got {}".format(shown))
    if len(set(values)) != len(values):
        raise sec.fail("strides", "repeats a stride ({}); a gfl head has one level per stride".format(shown))
    return tuple(int(v) for v in values)


class GflFamily(Family):
    name = "gfl"
    section = "gfl"

    def parse(self, sec: Section, top: Section, cut: Any, notes: List[str]) -> Tuple[Any, Any]:
        strides = _strides(sec)
        reg_max = sec.int("reg_max", 7, minimum=1)
        if reg_max > 64:
            raise sec.fail("reg_max", "must be at most 64, is {} (NanoDet uses 7, GFL 16)".format(reg_max))
        offset = sec.float("center_offset", 0.0)
        if offset not in CENTER_OFFSETS:
            raise sec.fail("center_offset", "must be 0 (NanoDet-Plus: a cell's top-left corner) or 0.5 (GFL, "
                                            "NanoDet's GFLHead: its centre), is {}".format(offset))
        spec = GflSpec(strides=strides, reg_max=reg_max, center_offset=offset,
                       score_activation=sec.str("score_activation", "none", SCORE_ACTIVATIONS))
        sec.done()
        return spec, cut

    def check_spec(self, top: Section, section: Any, cut: Any) -> None:
        if cut.outputs and len(cut.outputs) not in (1, 2 * len(section.strides)):
            raise top.fail("cut.outputs", "lists {} tensors; a gfl head is 1 tensor [B, N, C + 4*(reg_max+1)] or "
                                          "{} (the class outputs of strides {}, then their box outputs)".format(
                                              len(cut.outputs), 2 * len(section.strides), list(section.strides)))

    def describe(self, section: Any) -> str:
        return "gfl"

    def check_heads(self, spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                    graph: Any = None) -> HeadInfo:
        return check_heads(spec, names, shapes)

    def decode(self, graph: Any, spec: Any, heads: HeadInfo, outs: Sequence[Any]) -> Tuple[Any, Any, int]:
        return decode(graph, spec, heads, outs)


FAMILY = GflFamily()
