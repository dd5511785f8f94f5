"""Graph surgery: source ONNX + spec -> the engine ONNX.

Steps, in order (each a named function):

1. :func:`check_fit` — before anything is cut, check the spec against the
   graph (cut tensors present, input size, head shapes against strides,
   anchors and classes) and stop with a precise :class:`ModelError`.
2. :func:`cut` — drop the model's own pre/postprocessing.
3. :func:`add_preprocessing` — uint8 NHWC ``images`` -> channel swap ->
   float -> normalised model input.
4. the family's decode (``Family.decode``) -> boxes [B, N, 4]
   x1y1x2y2 in input pixels, scores [B, N, C].
5. ``nms.add_nms`` in the chosen form, then :func:`sanitize`.

Family-specific knowledge lives in the family modules
(:mod:`trtedge.engines.families`); this module and everything after it are
family-blind.
"""

from typing import Any, List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from ..manifest import get_onnx_metadata as get_metadata  # noqa: F401 (part of this API)
from ..manifest import set_onnx_metadata as set_metadata  # noqa: F401
from . import families
from . import nms as nms_mod
from .families.base import HeadInfo
from .graph import INPUT_NAME, OPSET, OpBuilder, model_input, nearby, sanitize, static_dim


def family_of(spec: Any) -> families.Family:
    """The spec's family, which must have a detection head."""
    fam = families.get(spec.family)
    if not fam.detector:
        raise ModelError("family '{}' has no detection surgery".format(spec.family))
    return fam


def head_tensors(graph: Any, spec: Any) -> List[str]:
    if spec.cut.outputs:
        return list(spec.cut.outputs)
    return [t.name for t in graph.outputs]


def check_fit(graph: Any, spec: Any) -> HeadInfo:
    """Check the spec against the graph; raise :class:`ModelError` on mismatch."""
    tensors = graph.tensors()
    x = model_input(graph, spec)
    shape = list(x.shape) if x.shape is not None else None
    if shape is not None:
        if len(shape) != 4:
            raise ModelError("the model input '{}' has shape {}; an image input needs 4 dimensions".format(
                x.name, shape))
        c_axis, hw = (1, shape[2:4]) if spec.input.layout == "nchw" else (3, shape[1:3])
        if static_dim(shape[c_axis]) not in (None, 3):
            other = "nhwc" if spec.input.layout == "nchw" else "nchw"
            raise ModelError(
                "the model input '{}' has shape {} with {} channels where the spec's layout '{}' puts "
                "them; set input.layout: {} in the spec".format(
                    x.name, shape, shape[c_axis], spec.input.layout, other))
        want = [spec.input.height, spec.input.width]
        for got, w, what in zip(hw, want, ("height", "width")):
            if static_dim(got) is not None and got != w:
                raise ModelError(
                    "the model input '{}' has {} {} but the spec's input.size says {}; "
                    "set input.size to [{}, {}]".format(x.name, what, got, w, hw[0], hw[1]))
    names = head_tensors(graph, spec)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ModelError("cut tensor '{}' is not in the model{} (its outputs: {})".format(
            missing[0], nearby(missing[0], tensors), ", ".join(t.name for t in graph.outputs)))
    shapes = tuple(tuple(tensors[n].shape) if tensors[n].shape is not None else () for n in names)
    return family_of(spec).check_heads(spec, tuple(names), shapes, graph=graph)


def cut(graph: Any, spec: Any, heads: HeadInfo) -> Tuple[Any, List[Any]]:
    """Keep only what lies between the model input and the head tensors."""
    tensors = graph.tensors()
    x = model_input(graph, spec)
    x.inputs.clear()  # a cut.input loses its producer (the model's own preprocessing)
    outs = [tensors[n] for n in heads.tensors]
    graph.inputs = [x]
    graph.outputs = outs
    return x, outs


def body_to_fp16(graph: Any) -> Any:
    """Convert the cut graph (model body only) to FP16 with FP32 I/O."""
    import onnx_graphsurgeon as gs

    from .precision import to_fp16

    graph.cleanup().toposort()
    return gs.import_onnx(to_fp16(gs.export_onnx(graph)))


def batch_dim(x: Any) -> Any:
    if x.shape is not None and len(x.shape) > 0 and static_dim(x.shape[0]) is not None:
        return x.shape[0]
    return "batch"


def add_preprocessing(graph: Any, spec: Any, x: Any, frame_size: Optional[Tuple[int, int]] = None) -> Any:
    """Feed ``x`` from a new uint8 NHWC ``images`` input; return that input.

    ``frame_size`` (height, width): the input takes whole frames of that size
    and the engine letterboxes them itself, as ``fit_into`` does on the host:
    bilinear resize with half-pixel centres (``cv2.INTER_LINEAR``'s sampling;
    no antialiasing, in float instead of OpenCV's 11-bit fixed point), then
    the padding at the same placement.
    """
    import onnx_graphsurgeon as gs

    inp = spec.input
    batch = batch_dim(x)
    if x.name == INPUT_NAME:  # a model whose own float input is called "images" (Ultralytics' exports)
        x.name = INPUT_NAME + "_normalized"
    size = [inp.height, inp.width] if frame_size is None else list(frame_size)
    images = gs.Variable(INPUT_NAME, dtype=np.uint8, shape=[batch] + size + [3])
    b = OpBuilder(graph, "pre")
    y = b.cast(images, np.float32)
    if inp.engine_channels != inp.channels:
        y = b.op("Gather", [y, np.array([2, 1, 0], np.int64)], {"axis": 3})
    shape = [1, 1, 1, 3]
    if frame_size is not None:
        y = b.op("Transpose", [y], {"perm": [0, 3, 1, 2]})
        y = _letterbox(b, y, spec, frame_size)
        if inp.layout == "nhwc":
            y = b.op("Transpose", [y], {"perm": [0, 2, 3, 1]})
        else:
            shape = [1, 3, 1, 1]
    elif inp.layout == "nchw":
        y = b.op("Transpose", [y], {"perm": [0, 3, 1, 2]})
        shape = [1, 3, 1, 1]
    scale = np.array(inp.scale, np.float32).reshape(shape)
    offset = np.array(inp.offset, np.float32).reshape(shape)
    steps = []
    if not np.all(scale == 1.0):
        steps.append(("Mul", scale))
    if not np.all(offset == 0.0):
        steps.append(("Add", offset))
    if not steps:
        steps.append(("Identity", None))
    for i, (op, value) in enumerate(steps):
        ins = [y] if value is None else [y, value]
        y = b.op(op, ins, out=[x] if i == len(steps) - 1 else None)
    x.dtype = np.float32
    graph.inputs = [images]
    return images


def _letterbox(b: OpBuilder, y: Any, spec: Any, frame_size: Tuple[int, int]) -> Any:
    """Float NCHW frames [B, 3, H, W] -> the network's input [B, 3, h, w], placed as
    :func:`trtedge.runtime.postprocess.fit_into` places them."""
    import onnx_graphsurgeon as gs

    from ..runtime.postprocess import placement

    inp = spec.input
    x0, y0, nw, nh, _ = placement(frame_size[0], frame_size[1], inp.height, inp.width, inp.resize,
                                  inp.letterbox_align)
    # output size by ``sizes`` (scales would be rounded to float and could lose a row); the batch and
    # channel dims come from the tensor itself, so a dynamic batch stays dynamic
    head = b.slice(b.op("Shape", [y]), 0, 2, 0)
    sizes = b.op("Concat", [head, np.array([nh, nw], np.int64)], {"axis": 0})
    no_roi, no_scales = gs.Variable.empty(), gs.Variable.empty()
    y = b.op("Resize", [y, no_roi, no_scales, sizes],
             {"mode": "linear", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "floor"})
    pads = [0, 0, y0, x0, 0, 0, inp.height - nh - y0, inp.width - nw - x0]
    if any(pads):
        y = b.op("Pad", [y, np.array(pads, np.int64), np.array(float(inp.pad_value), np.float32)],
                 {"mode": "constant"})
    return y


def transform(model: Any, spec: Any, nms_form: str, fp16: bool = False,
              frame_size: Optional[Tuple[int, int]] = None) -> Tuple[Any, List[str]]:
    """The whole surgery: source ``onnx.ModelProto`` -> engine ``ModelProto``.

    ``fp16`` converts the model body to FP16 after the cut (the strongly
    typed road); ``frame_size`` makes the input whole frames of that size,
    letterboxed inside (:func:`add_preprocessing`). Returns the engine model
    and notes worth telling the user (head order matched by grid size,
    legacy fields mapped, ...).
    """
    import onnx_graphsurgeon as gs

    graph = _import(model)
    heads = check_fit(graph, spec)
    x, outs = cut(graph, spec, heads)
    if fp16:
        graph = body_to_fp16(graph)
        tensors = graph.tensors()
        x, outs = tensors[x.name], [tensors[o.name] for o in outs]
    add_preprocessing(graph, spec, x, frame_size)
    boxes, scores, num_boxes = family_of(spec).decode(graph, spec, heads, outs)
    nms_mod.add_nms(graph, boxes, scores, nms_form, spec.nms, batch_dim(x), num_boxes,
                    spec.num_classes)
    graph = sanitize(graph)
    out = gs.export_onnx(graph)
    finish_model(out, model)
    return out, list(spec.notes) + list(heads.notes)


def _import(model: Any) -> Any:
    import onnx
    import onnx_graphsurgeon as gs

    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        pass
    return gs.import_onnx(model)


def finish_model(out: Any, source: Any) -> None:
    """Opset and IR version the TensorRT parsers of JetPack 5 still read."""
    import onnx

    opset = max([OPSET] + [o.version for o in source.opset_import if o.domain in ("", "ai.onnx")])
    del out.opset_import[:]
    out.opset_import.extend([onnx.helper.make_opsetid("", opset)])
    for o in source.opset_import:
        if o.domain not in ("", "ai.onnx"):
            out.opset_import.extend([onnx.helper.make_opsetid(o.domain, o.version)])
    out.ir_version = min(out.ir_version or 8, 8)
    out.producer_name = "trtedge"


def nms_form_of(model: Any) -> Optional[str]:
    names = [o.name for o in model.graph.output]
    if nms_mod.has_plugin(model):
        return "plugin"
    if set(nms_mod.CANDIDATE_OUTPUTS) <= set(names):
        return "host"
    if set(nms_mod.DETECTION_OUTPUTS) <= set(names):
        return "onnx"
    return None
