"""TensorFlow source models -> ``onnx.ModelProto`` through tf2onnx (opset 17).

Three formats, one road. Each loader turns its file into a *frozen* TF
``GraphDef`` plus input and output tensor names, and the names tf2onnx gives
them in the ONNX (``rename``):

* ``savedmodel`` — a directory with ``saved_model.pb``; the ``serve`` tag and
  the ``serving_default`` signature (else the only/first one). As the tf2onnx
  command line does, the ONNX inputs and outputs take the signature's names
  (``image``, ``box_encodings``, ...); every other tensor keeps its TF name
  with ``:0``.
* ``frozen_graph`` — a ``.pb`` GraphDef (TF1 model zoo ``frozen_inference_graph.pb``).
  Inputs: ``source.input`` (``image_tensor:0``) or the graph's Placeholders;
  outputs: the graph's sink nodes. All names are TF's, with ``:0``.
* ``keras`` — ``.keras`` / ``.h5``, loaded with ``load_model(compile=False)``
  and traced as ``from_keras`` does; the ONNX outputs take the Keras output
  names.

Then, for every format (:func:`_prepare`):

* outputs: the spec's ``cut.outputs`` when given (signature/Keras output names
  or TF tensor names), so TF's postprocessor, which tf2onnx converts badly
  (loops, NMS, TopK), is never converted; a TF tensor named in ``cut.outputs``
  keeps that name in the ONNX;
* input: the spec's ``cut.input`` when given becomes a Placeholder of the same
  name (TF's preprocessor — a while loop of uint8 resizes in the TF object
  detection API — is left out too: surgery replaces it anyway); else
  ``source.input`` or the signature's / graph's inputs;
* shapes: an image input with unknown height/width gets the spec's
  ``input.size`` (``nhwc`` or ``nchw`` by ``input.layout``); the batch stays
  dynamic. Nothing is transposed: the layout is surgery's business.

The result is checked for ops tf2onnx left unconverted (a
:class:`~trtedge.errors.ModelError` names them), and gets IR version <= 8.

TensorFlow and tf2onnx are imported only here, inside the functions.
TensorFlow's C++ log is silenced with ``TF_CPP_MIN_LOG_LEVEL=3`` unless the
environment sets it. tf2onnx's and TensorFlow's Python logs are hidden unless
``verbose``; then they go through the ``trtedge`` logger at INFO.
"""

import contextlib
import logging
import os
import warnings
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import ModelError, TrtedgeError

log = logging.getLogger("trtedge")

OPSET = 17
MAX_IR_VERSION = 8
SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
FORMATS = ("savedmodel", "frozen_graph", "keras")
INSTALL_HINT = 'pip install "trtedge[tf]"'
#: node types that are never a model output when looking for a graph's sinks
_NOT_OUTPUTS = ("NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert", "SaveV2", "RestoreV2",
                "VarHandleOp", "VariableV2", "Variable", "AssignVariableOp", "Assign", "Print", "PrintV2")


class TfGraph(NamedTuple):
    """A frozen TF graph and how tf2onnx should read it."""

    graph_def: Any
    inputs: List[str]
    outputs: List[str]
    #: TF tensor name -> ONNX name (signature / Keras names); others keep their TF name
    rename: Dict[str, str]
    #: what the cut of a TF OD API graph left out (None for other graphs)
    cut: Optional["CutRecord"] = None


def convert(path: str, fmt: str, spec: Any, verbose: bool = False) -> Any:
    """Convert a SavedModel directory, frozen ``.pb`` or Keras file to ONNX (opset 17).

    ``spec`` (may be None) supplies ``source.input``, ``cut.input``,
    ``cut.outputs`` and the input size. Raises :class:`TrtedgeError` when
    TensorFlow/tf2onnx are missing and :class:`ModelError` when the file is
    not such a model or tf2onnx cannot convert it.
    """
    tf, tf2onnx = _open(path, fmt)
    with _tf_logs(verbose) as errors:
        try:
            if fmt == "savedmodel":
                loaded = _load_saved_model(tf, path)
            elif fmt == "frozen_graph":
                loaded = _load_frozen_graph(tf, path, spec)
            else:
                loaded = _load_keras(tf, path)
            prepared = _prepare(tf, loaded, spec, path)
            model = _to_onnx(tf2onnx, prepared, path, errors)
        except Exception as exc:
            explained = _resource_error(exc, errors, "converting {}".format(path))
            if explained is None:
                raise
            raise explained
    return model


def _resource_error(exc: BaseException, logged: Sequence[str], doing: str) -> Optional[TrtedgeError]:
    """TensorFlow out of GPU memory, cuDNN/cuBLAS that cannot start, a full disk: one line with the cause
    and the flag to change (:mod:`trtedge.engines.diagnose`); None for anything else."""
    from .diagnose import TENSORFLOW, diagnose, exception_texts

    found = diagnose(exception_texts(exc) + list(logged), TENSORFLOW)
    if found is None:
        return None
    line = next((ln.strip() for ln in found.line.splitlines() if ln.strip()), found.line)[:240]
    return TrtedgeError("TensorFlow failed {}: {}".format(doing, line), hint=found.hint())


# --------------------------------------------------------------------------- imports and logs


def _open(path: str, fmt: str) -> Tuple[Any, Any]:
    """Check the format and the path, then import TensorFlow and tf2onnx: (tf, tf2onnx)."""
    if fmt not in FORMATS:
        raise ModelError("unknown TensorFlow model format '{}'; known: {}".format(fmt, ", ".join(FORMATS)))
    _check_path(path, fmt)
    return _import_tf(fmt)


def _import_tf(fmt: str) -> Tuple[Any, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tensorflow as tf
            import tf2onnx
            import tf2onnx.convert  # noqa: F401
            import tf2onnx.tf_loader  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "tensorflow"
        raise TrtedgeError("converting a {} needs TensorFlow and tf2onnx ({} is not installed)".format(
            _FORMAT_NAMES[fmt], missing.split(".")[0]), hint=INSTALL_HINT)
    return tf, tf2onnx


_FORMAT_NAMES = {"savedmodel": "SavedModel", "frozen_graph": "frozen graph (.pb)", "keras": "Keras model"}


class _Forward(logging.Handler):
    """Re-emits TF/tf2onnx log records through the ``trtedge`` logger at INFO."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record of a third-party library
            msg = str(record.msg)
        log.info("%s: %s", record.name, msg)


class _Collect(logging.Handler):
    """Keeps error messages (tf2onnx logs a failed node conversion and goes on)."""

    def __init__(self, store: List[str]) -> None:
        super().__init__(logging.ERROR)
        self.store = store

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.store.append(record.getMessage())
        except Exception:
            self.store.append(str(record.msg))


@contextlib.contextmanager
def _tf_logs(verbose: bool) -> Iterator[List[str]]:
    """Route the ``tf2onnx`` and ``tensorflow`` loggers; yield the error messages seen."""
    errors = []  # type: List[str]
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow")]
    saved = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    collect = _Collect(errors)
    forward = _Forward(logging.INFO)
    for lg in loggers:
        lg.handlers = [collect, forward] if verbose else [collect]
        lg.propagate = False
        lg.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            yield errors
    finally:
        for lg, (level, propagate, handlers) in zip(loggers, saved):
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers = handlers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


# --------------------------------------------------------------------------- loaders


def _check_path(path: str, fmt: str) -> None:
    if fmt == "savedmodel":
        if not os.path.isdir(path):
            raise ModelError("{} is not a SavedModel directory (source.format is savedmodel)".format(path))
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ModelError("{} is a directory without saved_model.pb, so not a SavedModel".format(path),
                             hint="give the directory that holds saved_model.pb and variables/")
    elif not os.path.isfile(path):
        raise ModelError("{} is not a file; a {} is one file".format(path, _FORMAT_NAMES[fmt]))


def _read_saved_model_proto(path: str) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as exc:  # DecodeError, OSError
        raise ModelError("cannot read {}/saved_model.pb: {}".format(path, _first_line(exc)),
                         hint="is the SavedModel complete?")
    if not proto.meta_graphs:
        raise ModelError("{}/saved_model.pb holds no graph; is it a SavedModel?".format(path))
    return proto


def _pick_signature(proto: Any, path: str) -> Tuple[List[str], str]:
    """(tags, signature key) of the serving graph."""
    metas = list(proto.meta_graphs)
    meta = next((m for m in metas if SERVE_TAG in m.meta_info_def.tags), metas[0])
    tags = list(meta.meta_info_def.tags)
    keys = [k for k in meta.signature_def if not k.startswith("_") and k != "__saved_model_init_op"]
    if DEFAULT_SIGNATURE in keys:
        return tags, DEFAULT_SIGNATURE
    if not keys:
        raise ModelError("SavedModel {} has no serving signature; export it with "
                         "tf.saved_model.save(obj, dir, signatures=...)".format(path))
    if len(keys) > 1:
        log.info("SavedModel %s has no '%s' signature; using '%s' of %s", path, DEFAULT_SIGNATURE,
                 sorted(keys)[0], ", ".join(sorted(keys)))
    return tags, sorted(keys)[0]


def _load_saved_model(tf: Any, path: str) -> TfGraph:
    from tf2onnx import tf_loader

    tags, signature = _pick_signature(_read_saved_model_proto(path), path)
    try:
        graph_def, inputs, outputs, rename = tf_loader.from_saved_model(
            path, None, None, tag=tags, signatures=[signature], return_tensors_to_rename=True)
    except Exception as exc:
        raise ModelError("cannot load SavedModel {} (signature '{}'): {}".format(path, signature, _first_line(exc)))
    return TfGraph(graph_def, list(inputs), list(outputs), dict(rename or {}))


def _parse_graph_def(tf: Any, path: str) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    with open(path, "rb") as f:
        data = f.read()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
        ok = len(graph_def.node) > 0 and all(n.name and n.op for n in graph_def.node)
    except Exception:
        ok = False
    if ok:
        return graph_def
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(data)
        is_saved = any(len(m.graph_def.node) for m in saved.meta_graphs)
    except Exception:
        is_saved = False
    if is_saved:
        raise ModelError("{} is a SavedModel's saved_model.pb, not a frozen graph".format(path),
                         hint="give its directory (source.format: savedmodel)")
    raise ModelError("{} is not a TensorFlow GraphDef (frozen graph)".format(path),
                     hint="is it a complete frozen_inference_graph.pb?")


def _import_graph(tf: Any, graph_def: Any, path: str) -> Any:
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except Exception as exc:
            raise ModelError("TensorFlow cannot load the graph in {}: {}".format(path, _first_line(exc)))
    return graph


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def _load_frozen_graph(tf: Any, path: str, spec: Any) -> TfGraph:
    graph_def = _parse_graph_def(tf, path)
    graph = _import_graph(tf, graph_def, path)
    ops = graph.get_operations()
    consumed = set()
    for op in ops:
        for t in op.inputs:
            consumed.add(t.op.name)
        for c in op.control_inputs:
            consumed.add(c.name)
    inputs = [op.outputs[0].name for op in ops if op.type == "Placeholder" and op.outputs]
    outputs = [t.name for op in ops
               if op.name not in consumed and op.type not in _NOT_OUTPUTS and op.inputs and op.outputs
               for t in op.outputs]
    if not outputs and not (spec is not None and spec.cut.outputs):
        raise ModelError("{} has no output nodes (every node feeds another); name the outputs in the "
                         "spec's cut.outputs".format(path))
    return TfGraph(graph_def, inputs, outputs, {})


def _load_keras(tf: Any, path: str) -> TfGraph:
    from tf2onnx import tf_loader

    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError("cannot load Keras model {}: {}".format(path, _first_line(exc)),
                         hint="a .keras or .h5 file saved by model.save(); custom layers must be importable")
    try:
        keras_inputs = list(model.inputs)
        names = list(getattr(model, "output_names", None) or [])
    except Exception as exc:
        raise ModelError("Keras model {} has no defined inputs ({}); build it on an Input first".format(
            path, _first_line(exc)))
    specs = [tf.TensorSpec(tuple(t.shape), t.dtype, name=_keras_name(t, i)) for i, t in enumerate(keras_inputs)]

    @tf.function(input_signature=specs)
    def serve(*args: Any) -> Any:
        out = model(list(args) if len(args) > 1 else args[0], training=False)
        flat = tf.nest.flatten(out)
        keys = names if len(names) == len(flat) else ["output_{}".format(i) for i in range(len(flat))]
        return dict(zip(keys, [tf.identity(t) for t in flat]))

    try:
        func = serve.get_concrete_function()
    except Exception as exc:
        raise ModelError("cannot trace Keras model {}: {}".format(path, _first_line(exc)))
    inputs = [t.name for t in func.inputs[:len(specs)]]
    rename = {t: s.name for t, s in zip(inputs, specs)}
    structured = func.structured_outputs
    keys = names if names and set(names) == set(structured) else sorted(structured)
    outputs = [structured[k].name for k in keys]
    rename.update({structured[k].name: k for k in keys})
    try:
        graph_def, _ = tf_loader.from_trackable(model, func, inputs, outputs, False)
    except Exception as exc:
        raise ModelError("cannot freeze Keras model {}: {}".format(path, _first_line(exc)))
    return TfGraph(graph_def, inputs, outputs, rename)


def _keras_name(t: Any, i: int) -> str:
    name = str(getattr(t, "name", "") or "").split(":")[0].split("/")[0]
    return name or "input_{}".format(i)


# --------------------------------------------------------------------------- cut and shapes


def _prepare(tf: Any, g: TfGraph, spec: Any, path: str) -> TfGraph:
    """Apply ``cut.outputs`` / ``cut.input`` / ``source.input`` and the input size."""
    graph = _import_graph(tf, g.graph_def, path)
    rename = dict(g.rename)
    public = {v: k for k, v in rename.items()}  # ONNX name -> TF name
    graph_def = g.graph_def

    def resolve(name: str, field: str) -> str:
        if name in public:
            return public[name]
        if _has_tensor(graph, name):
            rename.pop(name, None)  # the spec names the TF tensor: keep that name in the ONNX
            return name
        raise ModelError("{} '{}' is not a tensor of the TensorFlow graph in {}{}".format(
            field, name, path, _suggest(graph, name, list(public))))

    # a TF OD API graph cut for a detector spec: where the spec's cut says, else where odapi_cut finds
    auto = odapi_cut(g.graph_def) if spec is not None and spec.is_detector else None
    outputs = list(g.outputs)
    cut_outputs = list(spec.cut.outputs) if spec is not None else []
    if not cut_outputs and auto is not None:
        cut_outputs = list(auto.outputs)
    if cut_outputs:
        outputs = [resolve(n, "cut.outputs") for n in cut_outputs]
    inputs = list(g.inputs)
    cut_input = spec.cut.input if spec is not None else None
    moved = None  # type: Optional[str]
    if auto is not None and cut_input != auto.input and (not cut_input or _is_preprocessor(_node_of(cut_input))):
        # no cut.input, or one inside TF's Preprocessor (the zoo's 2018 graphs end it with
        # Preprocessor/sub:0; later exports normalise first and resize after): the model body's input
        moved, cut_input = cut_input, auto.input
    given = spec.source.input if spec is not None else None
    fed = None  # type: Optional[str]
    if cut_input:
        name = resolve(cut_input, "cut.input")
        if name in inputs:
            inputs = [name]
        else:
            graph_def = _to_placeholder(tf, graph, graph_def, name)
            if graph_def is not g.graph_def:
                for old in inputs:
                    rename.pop(old, None)
                inputs, fed = [name], name
                log.info("cut.input %s: TF's preprocessing before it is not converted", cut_input)
            elif given:
                inputs = [resolve(given, "source.input")]
    elif given:
        inputs = [resolve(given, "source.input")]
    for name in inputs:
        kind = graph.get_tensor_by_name(name).op.type
        if name != fed and not kind.startswith("Placeholder"):
            raise ModelError("input '{}' of {} is computed by a '{}' node, not fed; name a Placeholder in "
                             "source.input (or the tensor to feed in cut.input)".format(name, path, kind))
    if not inputs:
        raise ModelError("{} has no Placeholder input; name the image input in the spec's source.input".format(path))
    if not outputs:
        raise ModelError("{} has no outputs to convert; name them in the spec's cut.outputs".format(path))
    image = _image_input(inputs, spec, cut_input, given, public)
    if image is not None:
        graph_def = _fix_input_shape(tf, graph_def, image, spec)
    # the engine's own input is called "images": keep TF's name for a model input of that name
    from .graph import INPUT_NAME

    for name in inputs:
        if rename.get(name) == INPUT_NAME:
            rename.pop(name)
    record = None
    if auto is not None:
        record = _count_cut(tf, g.graph_def, graph_def, inputs, outputs, moved)
        if record.kept_pre_post:
            given_cut = [f for f, v in (("cut.input", spec.cut.input), ("cut.outputs", spec.cut.outputs)) if v]
            raise ModelError(
                "the spec's {} leave{} {} nodes of the TF Object Detection API graph's own Preprocessor/"
                "Postprocessor in {}; its model body reads '{}' and ends at '{}' and '{}': set cut.input and "
                "cut.outputs to those, or leave cut out and trtedge finds them".format(
                    " and ".join(given_cut) or "cut", "" if len(given_cut) > 1 else "s", record.kept_pre_post,
                    path, auto.input, auto.outputs[0], auto.outputs[1]))
        if moved:
            log.info("cut.input %s lies inside TF's Preprocessor, which goes on to %s in this graph: cut there",
                     moved, cut_input)
    return TfGraph(graph_def, inputs, outputs, rename, record)


def _has_tensor(graph: Any, name: str) -> bool:
    try:
        graph.get_tensor_by_name(name)
        return True
    except (KeyError, ValueError, TypeError):
        return False


def _suggest(graph: Any, name: str, extra: Sequence[str]) -> str:
    import difflib

    names = list(extra)
    for op in graph.get_operations():
        names.extend(t.name for t in op.outputs)
    if ":" not in name and _has_tensor(graph, name + ":0"):
        return "; TF tensor names end in the output index: {}:0".format(name)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return "; did you mean {}?".format(" or ".join(close)) if close else ""


def _to_placeholder(tf: Any, graph: Any, graph_def: Any, name: str) -> Any:
    """``graph_def`` with the node making ``name`` (its only output) replaced by a Placeholder."""
    tensor = graph.get_tensor_by_name(name)
    op = tensor.op
    if len(op.outputs) != 1 or tensor.value_index != 0:
        log.info("cut.input %s is not the only output of its node: converting from the model input", name)
        return graph_def
    new = tf.compat.v1.GraphDef()
    new.CopyFrom(graph_def)
    for node in new.node:
        if node.name == op.name:
            node.op = "Placeholder"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tensor.dtype.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(tensor.shape.as_proto())
            break
    return new


def _image_input(inputs: List[str], spec: Any, cut_input: Optional[str], given: Optional[str],
                 public: Dict[str, str]) -> Optional[str]:
    if spec is None or not spec.input.height or not spec.input.width:
        return None
    for name in (cut_input, given):
        if name:
            name = public.get(name, name)
            if name in inputs:
                return name
    return inputs[0] if len(inputs) == 1 else None


def _fix_input_shape(tf: Any, graph_def: Any, name: str, spec: Any) -> Any:
    """Unknown height/width of the image Placeholder -> the spec's size (batch stays dynamic)."""
    node_name = name.split(":")[0]
    node = next((n for n in graph_def.node if n.name == node_name), None)
    if node is None or "shape" not in node.attr:
        return graph_def
    shape = tf.TensorShape(node.attr["shape"].shape)
    if shape.rank is None:
        dims = [None, None, None, None]
    elif shape.rank == 4:
        dims = shape.as_list()
    else:
        return graph_def
    hw = (1, 2) if spec.input.layout == "nhwc" else (2, 3)
    c = 3 if spec.input.layout == "nhwc" else 1
    want = list(dims)
    for axis, size in zip(hw, (spec.input.height, spec.input.width)):
        if want[axis] is None:
            want[axis] = int(size)
    if want[c] is None:
        want[c] = 3
    if want == dims and shape.rank is not None:
        return graph_def
    new = tf.compat.v1.GraphDef()
    new.CopyFrom(graph_def)
    for n in new.node:
        if n.name == node_name:
            n.attr["shape"].shape.CopyFrom(tf.TensorShape(want).as_proto())
        if "_output_shapes" in n.attr:
            del n.attr["_output_shapes"]  # stale after the change; TF infers them again
    log.info("input %s: shape %s -> %s (the spec's input.size)", name, dims, want)
    return new


# --------------------------------------------------------------------------- TF Object Detection API graphs


class OdapiCut(NamedTuple):
    """Where a TF Object Detection API SSD graph is cut (:func:`odapi_cut`).

    ``input``: the feature extractor's image input, after TF's own resize and
    normalisation; ``outputs``: (box encodings, class predictions), the box
    predictor's two concats; ``layout``: ``"tf1"`` (``Preprocessor/`` scope,
    ``FeatureExtractor/``) or ``"tf2"`` (the exporter's ``map/`` over the
    batch, Keras layers). Names are those of the graph as trtedge loads it
    (for a SavedModel: after tf2onnx inlines its functions), which is what
    ``cut.input`` and ``cut.outputs`` take.
    """

    input: str
    outputs: Tuple[str, str]
    layout: str


#: op types passed through between a box predictor's concat and the Postprocessor
_ODAPI_PASS_OPS = ("Identity", "Squeeze", "Reshape", "ExpandDims")
#: what a graph must hold to be read as a TF OD API SSD
_ODAPI_MARKERS = ("Postprocessor", "BoxPredictor")


def _scopes(name: str) -> List[str]:
    parts = name.split("/")
    return parts[1:] if parts and parts[0] == "StatefulPartitionedCall" else parts


def _is_preprocessor(name: str) -> bool:
    """TF1: the ``Preprocessor`` scope; TF2: also the exporter's ``map`` over the batch."""
    parts = _scopes(name)
    return "Preprocessor" in parts[:-1] or (len(parts) > 1 and parts[0] == "map")


def _is_postprocessor(name: str) -> bool:
    return "Postprocessor" in _scopes(name)[:-1]


def _node_of(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _as_graph_def(graph: Any) -> Any:
    if isinstance(graph, str):
        tf, _ = _import_tf("savedmodel" if os.path.isdir(graph) else "frozen_graph")
        fmt = "savedmodel" if os.path.isdir(graph) else "frozen_graph"
        _check_path(graph, fmt)
        with _tf_logs(False):
            if fmt == "savedmodel":
                return _load_saved_model(tf, graph).graph_def
            return _parse_graph_def(tf, graph)
    if hasattr(graph, "as_graph_def"):
        return graph.as_graph_def()
    return graph


def odapi_cut(graph: Any) -> Optional[OdapiCut]:
    """Where to cut a TF Object Detection API SSD graph, or None if it is not one.

    ``graph``: a ``GraphDef`` (or ``tf.Graph``) as trtedge loads it, or the
    path of a frozen ``.pb`` / SavedModel directory. Read from the graph's
    structure, never from its file name:

    * **outputs**: the two ``ConcatV2`` nodes outside ``Postprocessor/`` that
      join the per-layer ``BoxPredictor`` outputs — TF1 ``concat:0``
      ``[B, N, 1, 4]`` and ``concat_1:0`` ``[B, N, C+1]``; TF2 SavedModels
      ``StatefulPartitionedCall/concat:0`` and ``.../concat_1:0``. The one fed
      by a ``ClassPredictor`` / class head is the class predictions. Decoding,
      score conversion, the anchor generator and
      ``BatchMultiClassNonMaxSuppression`` all lie after them.
    * **input**: the one tensor made by the preprocessing that the model body
      (the ancestors of those concats) reads. That is ``Preprocessor/sub:0``
      in the zoo's 2018 TF1 graphs (resize, then ``x * 2/255 - 1``), but
      ``Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0`` in TF1
      graphs exported by newer API versions, which normalise *before* the
      resize loop, and ``StatefulPartitionedCall/map/TensorArrayV2Stack/TensorListStack:0``
      in TF2 SavedModels, whose ``map`` over the batch resizes and normalises
      inside a while loop. Cutting there leaves none of TF's preprocessing in
      the graph; trtedge's own (from the spec) replaces it.
    """
    graph_def = _as_graph_def(graph)
    nodes = {n.name: n for n in graph_def.node}
    names = " ".join(nodes)
    if not all(m in names for m in _ODAPI_MARKERS):
        return None
    heads = []
    for n in graph_def.node:
        if n.op not in ("ConcatV2", "Concat") or _is_postprocessor(n.name) or _is_preprocessor(n.name):
            continue
        data = [_node_of(i) for i in n.input if not i.startswith("^")]
        data = [d for d in data if d in nodes and nodes[d].op != "Const"]
        if data and all("BoxPredictor" in d for d in data):
            heads.append(n)
    if len(heads) != 2:
        return None

    def near(node: Any, depth: int = 4) -> List[str]:
        seen, frontier = [], [node.name]
        for _ in range(depth):
            nxt = []
            for name in frontier:
                for i in nodes[name].input if name in nodes else ():
                    d = _node_of(i)
                    if d in nodes and d not in seen:
                        seen.append(d)
                        nxt.append(d)
            frontier = nxt
        return seen

    is_class = [any("ClassPredictor" in d or "ClassHead" in d for d in near(h)) for h in heads]
    if is_class[0] == is_class[1]:
        return None
    box, cls = (heads[1], heads[0]) if is_class[0] else (heads[0], heads[1])

    # the model body: every ancestor of the heads, up to (not into) the preprocessing
    body, stack, reads = set(), [box.name, cls.name], []
    while stack:
        name = stack.pop()
        if name in body or name not in nodes:
            continue
        body.add(name)
        for i in nodes[name].input:
            if i.startswith("^"):
                continue
            src = _node_of(i)
            if src in nodes and _is_preprocessor(src):
                tensor = i if ":" in i else i + ":0"
                if tensor not in reads:
                    reads.append(tensor)
            else:
                stack.append(src)
    if len(reads) != 1:
        return None
    layout = "tf2" if box.name.startswith("StatefulPartitionedCall/") else "tf1"
    return OdapiCut(reads[0], (box.name + ":0", cls.name + ":0"), layout)


class CutRecord(NamedTuple):
    """How a TF OD API graph was cut, counted in TF nodes (of the frozen graph trtedge loads)."""

    source_nodes: int
    cut_nodes: int
    kept_nodes: int
    #: of the cut nodes: in the model's Preprocessor (and TF2's map), in its Postprocessor
    preprocessor: int
    postprocessor: int
    #: of the kept nodes: how many are in the Preprocessor or Postprocessor (0 for a right cut)
    kept_pre_post: int
    input: str
    outputs: Tuple[str, ...]
    #: the spec's cut.input when it lay inside the Preprocessor and the cut moved to its end
    moved_from: Optional[str] = None


_CUT_KEY = "trtedge.source_cut"


def _count_cut(tf: Any, before: Any, after: Any, inputs: Sequence[str], outputs: Sequence[str],
               moved: Optional[str]) -> CutRecord:
    """Nodes of ``before`` not in the part of ``after`` that computes ``outputs``; the fed
    ``inputs`` (Placeholders now) count as kept but not as Preprocessor nodes."""
    kept = tf.compat.v1.graph_util.extract_sub_graph(after, sorted({_node_of(o) for o in outputs}))
    kept_names = {n.name for n in kept.node}
    fed = {_node_of(i) for i in inputs}
    cut = [n.name for n in before.node if n.name not in kept_names]
    return CutRecord(
        source_nodes=len(before.node), cut_nodes=len(cut), kept_nodes=len(kept.node),
        preprocessor=sum(1 for n in cut if _is_preprocessor(n)),
        postprocessor=sum(1 for n in cut if _is_postprocessor(n)),
        kept_pre_post=sum(1 for n in kept_names - fed if _is_preprocessor(n) or _is_postprocessor(n)),
        input=",".join(inputs), outputs=tuple(outputs), moved_from=moved)


def cut_record(model: Any) -> Optional[CutRecord]:
    """The :class:`CutRecord` a converted ONNX model carries (None when it was not cut in TF)."""
    import json

    for prop in model.metadata_props:
        if prop.key == _CUT_KEY:
            try:
                data = json.loads(prop.value)
                data["outputs"] = tuple(data.get("outputs") or ())
                return CutRecord(**data)
            except (TypeError, ValueError, AttributeError):
                return None
    return None


def cut_note(source: Any, engine: Any = None) -> Optional[str]:
    """``cut N of M source nodes (Preprocessor/Postprocessor); K nodes reach TensorRT``.

    ``source``: the ONNX model :func:`convert` returned; ``engine``: the
    engine ONNX made from it (K counts its nodes, trtedge's preprocessing,
    decode and NMS included); without it, K counts the converted model's.
    None when the source was not cut in TF.
    """
    rec = cut_record(source)
    if rec is None:
        return None
    k = len((engine if engine is not None else source).graph.node)
    return ("cut {} of {} source nodes ({} Preprocessor, {} Postprocessor, {} other); {} nodes reach "
            "TensorRT".format(rec.cut_nodes, rec.source_nodes, rec.preprocessor, rec.postprocessor,
                              rec.cut_nodes - rec.preprocessor - rec.postprocessor, k))


# --------------------------------------------------------------------------- tf2onnx


def _to_onnx(tf2onnx: Any, g: TfGraph, path: str, errors: List[str]) -> Any:
    name = os.path.basename(os.path.normpath(path))
    try:
        model, _ = tf2onnx.convert.from_graph_def(
            g.graph_def, name=name, input_names=g.inputs, output_names=g.outputs, opset=OPSET,
            tensors_to_rename=g.rename or None)
    except Exception as exc:
        bad = _unsupported_from_log(errors)
        if bad:
            raise ModelError("tf2onnx could not convert TF op {} in {}".format(bad, path))
        raise ModelError("tf2onnx could not convert {}: {}".format(path, _first_line(exc)))
    bad_nodes = _unconverted(model)
    if bad_nodes:
        ops = sorted(set(op for op, _ in bad_nodes))
        raise ModelError("tf2onnx could not convert TF op{} {} (node {}) in {}; cut the graph before it "
                         "(cut.outputs) or replace it in the model".format(
                             "s" if len(ops) > 1 else "", ", ".join(ops), bad_nodes[0][1], path))
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    if g.cut is not None and g.cut.moved_from:
        # the ONNX input takes the spec's cut.input name: surgery feeds the tensor cut.input names
        _rename_tensor(model, g.cut.input, g.cut.moved_from)
    if g.cut is not None:
        import json

        prop = model.metadata_props.add()
        prop.key, prop.value = _CUT_KEY, json.dumps(g.cut._asdict(), sort_keys=True)
        log.info("TF Object Detection API graph cut at %s and %s: %s", g.cut.input, ", ".join(g.cut.outputs),
                 cut_note(model))
    return model


def _rename_tensor(model: Any, old: str, new: str) -> None:
    """Rename a tensor of the main graph: its graph input/output entries and every node's use."""
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name == old:
            vi.name = new
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def _unsupported_from_log(errors: List[str]) -> str:
    for msg in errors:
        low = msg.lower()
        if "unsupported ops" in low or "not supported" in low or "failed to convert" in low:
            return msg.split("\n")[0][:200]
    return ""


def _unconverted(model: Any) -> List[Tuple[str, str]]:
    """(op type, node name) of nodes that are not ONNX ops (what tf2onnx left as TF ops)."""
    import onnx

    out = []  # type: List[Tuple[str, str]]

    def walk(graph: Any) -> None:
        for node in graph.node:
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
                out.append((node.op_type, node.name))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    return out


# --------------------------------------------------------------------------- GPU memory and reference runs


def configure_memory(growth: bool = False, limit_mb: Optional[int] = None, fmt: str = "savedmodel",
                     tf: Any = None) -> List[str]:
    """Set TensorFlow's GPU memory before anything in this process runs a TensorFlow op.

    ``growth``: ``tf.config.experimental.set_memory_growth`` on every GPU (take
    memory as needed instead of nearly all of it at start); ``limit_mb``: one
    logical device with that much memory on every GPU. Returns notes for the
    user. ``tf`` is for tests (a stand-in module).
    """
    if growth and limit_mb is not None:
        raise TrtedgeError("give TensorFlow memory growth or a memory limit, not both")
    if not growth and limit_mb is None:
        return []
    if limit_mb is not None and (isinstance(limit_mb, bool) or not isinstance(limit_mb, int) or limit_mb < 1):
        raise TrtedgeError("the TensorFlow memory limit must be a whole number of MB of at least 1, not {!r}".format(
            limit_mb))
    if tf is None:
        tf, _ = _import_tf(fmt)
    what = "memory growth" if growth else "a {} MB memory limit".format(limit_mb)
    gpus = list(tf.config.list_physical_devices("GPU"))
    if not gpus:
        return ["TensorFlow sees no GPU, so {} changes nothing (the conversion runs on the CPU)".format(what)]
    try:
        for gpu in gpus:
            if growth:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)])
    except (RuntimeError, ValueError) as exc:
        raise TrtedgeError("cannot give TensorFlow {}: {}".format(what, _first_line(exc)),
                           hint="TensorFlow had already started on the GPU; it must be set before TensorFlow "
                                "runs anything")
    return ["TensorFlow: {} on {} GPU{}".format(what, len(gpus), "" if len(gpus) == 1 else "s")]


def run(path: str, fmt: str, array: Any, verbose: bool = False) -> Dict[str, Any]:
    """The source model's own outputs for ``array`` (its only input), by the names its ONNX gets:
    the signature's output names (SavedModel), the Keras output names (Keras file), TF tensor
    names (frozen graph). What a converted model is checked against."""
    tf, _ = _open(path, fmt)
    with _tf_logs(verbose) as errors:
        try:
            if fmt == "savedmodel":
                return _run_saved_model(tf, path, array)
            if fmt == "keras":
                return _run_keras(tf, path, array)
            return _run_frozen_graph(tf, path, array)
        except TrtedgeError:
            raise
        except Exception as exc:
            explained = _resource_error(exc, errors, "running {}".format(path))
            if explained is not None:
                raise explained
            raise ModelError("TensorFlow could not run {} on the input: {}".format(path, _first_line(exc)))


def _one_input(names: Sequence[str], path: str) -> str:
    if len(names) != 1:
        raise ModelError("{} has {} inputs ({}); one input array can feed only a model with one input".format(
            path, len(names), ", ".join(names)))
    return names[0]


def _run_saved_model(tf: Any, path: str, array: Any) -> Dict[str, Any]:
    tags, key = _pick_signature(_read_saved_model_proto(path), path)
    loaded = tf.saved_model.load(path, tags=tags)
    fn = loaded.signatures[key]
    name = _one_input(sorted(fn.structured_input_signature[1]), path)
    dtype = fn.structured_input_signature[1][name].dtype
    out = fn(**{name: tf.constant(array, dtype=dtype)})
    return {k: v.numpy() for k, v in out.items()}


def _run_keras(tf: Any, path: str, array: Any) -> Dict[str, Any]:
    model = tf.keras.models.load_model(path, compile=False)
    _one_input([str(getattr(t, "name", i)) for i, t in enumerate(model.inputs)], path)
    flat = tf.nest.flatten(model(tf.constant(array, dtype=model.inputs[0].dtype), training=False))
    names = list(getattr(model, "output_names", None) or [])
    keys = names if len(names) == len(flat) else ["output_{}".format(i) for i in range(len(flat))]
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in zip(keys, flat)}


def _run_frozen_graph(tf: Any, path: str, array: Any) -> Dict[str, Any]:
    g = _load_frozen_graph(tf, path, None)
    name = _one_input(g.inputs, path)
    graph = _import_graph(tf, g.graph_def, path)
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(list(g.outputs), feed_dict={name: array})
    return dict(zip(g.outputs, values))
