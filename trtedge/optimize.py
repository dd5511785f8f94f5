"""``optimize_model.py``'s work: a plain model (family ``none``) -> engine, checked on a sample batch.

The build is :func:`trtedge.build` — the same code path as ``trtedge build
MODEL``. What this adds:

* TensorFlow's GPU memory (growth, or a limit in MB) is set before anything
  else touches TensorFlow (:func:`trtedge.engines.tf_source.configure_memory`);
* a ``.npy`` batch fixes the input shape: the model is converted to ONNX
  (:func:`trtedge.engines.sources.load`, what a build does), its input's
  non-batch dimensions are set from the array (:func:`fix_input_shape`), and
  that fixed-shape ONNX (``OUT/source/<name>.onnx``) is what gets built, with a
  batch profile of 1..N for the array's N rows when the batch is dynamic;
* the engine ONNX then runs on the batch in ONNX Runtime beside the source
  model (ONNX Runtime for an ONNX, TensorFlow for the TensorFlow formats) and
  the largest absolute difference of each output is reported.
"""

import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from .errors import ModelError, TrtedgeError

TF_FORMATS = ("savedmodel", "frozen_graph", "keras")

INT8_NO_CALIB = ("--int8 needs calibration data: --calib BATCH.npy or -i BATCH.npy (a batch of the model's input, "
                 "saved with numpy.save)")
INT8_NOT_NPY = ("--calib {}: a plain model calibrates on a .npy batch of its own input (numpy.save); images or "
                "video make no sense for an arbitrary model")
INT8_CHECK_NOTE = ("INT8: this compares the INT8 engine ONNX with the source, so the difference includes the "
                   "quantisation error; no FP32 tolerance is applied")


class Check(NamedTuple):
    """The engine ONNX beside the source model on one batch."""

    reference: str  # "ONNX Runtime" | "TensorFlow"
    #: output name -> max |engine ONNX - source|
    max_abs_diff: Dict[str, float]
    #: the batch's shape
    shape: Tuple[int, ...] = ()
    notes: Tuple[str, ...] = ()
    precision: str = "fp32"


class Result(NamedTuple):
    artifact: Any  # trtedge.engines.pipeline.Artifact
    check: Optional[Check]


def _name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "model"
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in stem).strip(".") or "model"


def load_batch(path: str) -> Any:
    """The ``.npy`` array; a :class:`TrtedgeError` when it is not one."""
    import numpy as np

    if not os.path.isfile(path):
        raise TrtedgeError("input file {} does not exist".format(path), hint="give a .npy batch saved with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrtedgeError("{} is not a .npy array: {}".format(path, " ".join(str(exc).split())[:160]),
                           hint="save the batch with numpy.save(path, array)")
    if not isinstance(array, np.ndarray) or array.ndim < 1 or array.size == 0:
        raise TrtedgeError("{} holds no batch (shape {}); give an array whose first axis is the batch".format(
            path, getattr(array, "shape", "?")))
    return array


def _dims(vi: Any) -> List[Any]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def model_inputs(model: Any) -> List[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def fix_input_shape(model: Any, shape: Tuple[int, ...], where: str = "the input file") -> Tuple[Any, bool, bool]:
    """``model`` (an ``onnx.ModelProto``, changed in place) with its only input's dimensions after the
    batch set to ``shape``'s. Returns (model, changed, dynamic batch). A fixed dimension that differs,
    another rank, or more than one input is a :class:`ModelError`."""
    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise ModelError("the model has {} inputs ({}); one .npy array can fix and feed only a model with one "
                         "input".format(len(inputs), ", ".join(v.name for v in inputs)))
    vi = inputs[0]
    dims = _dims(vi)
    shown = "[{}]".format(", ".join("?" if d is None else str(d) for d in dims))
    if dims and len(dims) != len(shape):
        raise ModelError("{} has shape {} but the model input '{}' is {} ({} dimensions)".format(
            where, tuple(shape), vi.name, shown, len(dims)))
    batch_fixed = bool(dims) and isinstance(dims[0], int) and dims[0] > 0
    if batch_fixed and dims[0] != shape[0]:
        raise ModelError("the model input '{}' has a fixed batch of {} but {} holds {}; give a batch of {} or "
                         "re-export the model with a dynamic batch".format(vi.name, dims[0], where, shape[0], dims[0]))
    for axis in range(1, len(dims)):
        if isinstance(dims[axis], int) and dims[axis] > 0 and dims[axis] != shape[axis]:
            raise ModelError("{} has shape {} but the model input '{}' is {}: axis {} must be {}".format(
                where, tuple(shape), vi.name, shown, axis, dims[axis]))
    wanted = [dims[0] if batch_fixed else None] + list(shape[1:])
    if dims and [d if isinstance(d, int) and d > 0 else None for d in dims] == wanted:
        return model, False, not batch_fixed
    tshape = vi.type.tensor_type.shape
    del tshape.dim[:]
    for axis, size in enumerate(shape):
        d = tshape.dim.add()
        if axis == 0 and not batch_fixed:
            d.dim_param = (dims[0] if dims and isinstance(dims[0], str) else None) or "batch"
        else:
            d.dim_value = int(size)
    del model.graph.value_info[:]  # inferred for the old shape; the build infers them again
    return model, True, not batch_fixed


def _ort_run(model_or_path: Any, feeds: Dict[str, Any]) -> Dict[str, Any]:
    import onnxruntime as ort

    data = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _feed(model: Any, batch: Any, notes: List[str]) -> Tuple[str, Any]:
    import numpy as np
    from onnx import helper

    vi = model_inputs(model)[0]
    want = np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    if batch.dtype != want:
        notes.append("the input file is {}; fed as the model's {}".format(batch.dtype, want))
        batch = batch.astype(want)
    return vi.name, batch


def compare(engine_onnx: str, reference: Dict[str, Any], feed: Tuple[str, Any], source: str,
            notes: List[str]) -> Check:
    """Run ``engine_onnx`` on ``feed`` in ONNX Runtime; the max |difference| to ``reference`` per output."""
    import numpy as np

    got = _ort_run(engine_onnx, {feed[0]: feed[1]})
    pairs = [(n, got[n], reference[n]) for n in got if n in reference]
    if not pairs and len(got) == len(reference):
        notes.append("output names differ ({} / {}); compared in order".format(", ".join(got), ", ".join(reference)))
        pairs = [(n, got[n], r) for n, r in zip(got, reference.values())]
    diffs = {}  # type: Dict[str, float]
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            notes.append("output '{}' is {} in the engine ONNX but {} in the source".format(name, a.shape, b.shape))
            diffs[name] = float("inf")
            continue
        diffs[name] = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    missing = [n for n in got if n not in diffs]
    if missing and pairs:
        notes.append("not in the source's outputs, so not compared: {}".format(", ".join(missing)))
    return Check(source, diffs, tuple(int(d) for d in feed[1].shape), tuple(notes))


def optimize(model_path: str, out: Optional[str] = None, input_file: Optional[str] = None, workspace: Any = None,
             precision: str = "fp32", memory_growth: bool = False, memory_limit: Optional[int] = None,
             force: bool = False, verbose: bool = False, say: Optional[Callable[[str], None]] = None,
             calib: Optional[str] = None) -> Result:
    """Build ``model_path`` (ONNX, SavedModel directory, frozen .pb, Keras file) as a plain model.

    INT8 (``precision="int8"``): Q/DQ of the whole graph calibrated on ``calib``, a ``.npy`` batch of the
    model's input; without ``calib``, ``input_file`` calibrates (with a warning)."""
    from . import build
    from .config import BuildConfig
    from .engines import sources

    say = say or (lambda message: None)
    precision = precision.lower() if isinstance(precision, str) else precision
    if precision == "int8":
        if calib is None and input_file is None:
            raise TrtedgeError(INT8_NO_CALIB)
        if calib is not None and not (isinstance(calib, str) and calib.lower().endswith(".npy")):
            raise TrtedgeError(INT8_NOT_NPY.format(calib))
        if calib is None:
            say("Warning: no --calib: INT8 calibrates on the -i batch {}, so the check below runs on the data it "
                "was calibrated on".format(input_file))
            calib = input_file
        load_batch(calib)  # exists and is a .npy array: refused here, before anything is converted
    elif calib is not None:
        raise TrtedgeError("--calib goes with --int8 (precision is {})".format(precision))
    if not isinstance(model_path, str) or not model_path:
        raise TrtedgeError("give the model with -m PATH (ONNX, SavedModel directory, frozen .pb or Keras file)")
    if not os.path.exists(model_path):
        raise ModelError("model {} does not exist".format(model_path))
    fmt = sources.detect_format(model_path)
    if fmt not in ("onnx",) + TF_FORMATS:
        raise ModelError("{} is a {} model; optimize_model.py takes ONNX, a SavedModel directory, a frozen .pb or "
                         "a Keras file (trtedge build takes the rest)".format(model_path, fmt))
    if fmt in TF_FORMATS:
        # first: TensorFlow reserves the GPU's memory the moment it first touches it
        from .engines import tf_source

        for note in tf_source.configure_memory(memory_growth, memory_limit, fmt=fmt):
            say("Note: " + note)
    elif memory_growth or memory_limit is not None:
        say("Note: -g / -l set TensorFlow's memory; {} is ONNX, which TensorFlow does not touch".format(model_path))
    name = _name(model_path)
    out_dir = out or os.path.join("build", name)
    common = dict(out=out_dir, force=force, verbose=verbose, progress=say)
    options = dict(precision=precision, workspace=workspace, calib=calib)
    if input_file is None:
        hints = {"family": "none"} if fmt == "onnx" else {}  # an ONNX is never turned into a detector here
        return Result(build(model_path, config=BuildConfig.create(**options), **dict(common, **hints)), None)

    batch = load_batch(input_file)
    model = sources.load(model_path, None, verbose=verbose, say=say)
    model, changed, dynamic_batch = fix_input_shape(model, tuple(batch.shape), where=input_file)
    target = model_path
    if changed or fmt != "onnx":
        from .utils.files import write_atomic

        target = os.path.join(out_dir, "source", name + ".onnx")
        data = model.SerializeToString()
        if len(data) > 2_000_000_000:
            raise ModelError("the fixed-shape ONNX of {} is over 2 GB; external-data ONNX is not supported yet".format(
                model_path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        write_atomic(target, data)
        say("Input shape fixed from {} ({}): {}".format(input_file, "x".join(str(d) for d in batch.shape), target))
    config = BuildConfig.create(batch=batch.shape[0] if dynamic_batch else None, **options)
    art = build(target, family="none", config=config, **common)
    notes = [INT8_CHECK_NOTE] if precision == "int8" else []  # type: List[str]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        say("Note: ONNX Runtime is not installed, so the engine ONNX was not checked against the source "
            "(pip install \"trtedge[ort]\")")
        return Result(art, None)
    feed = _feed(model, batch, notes)
    if fmt == "onnx":
        reference, source = _ort_run(model_path, {feed[0]: feed[1]}), "ONNX Runtime"
    else:
        from .engines import tf_source

        reference, source = tf_source.run(model_path, fmt, feed[1], verbose=verbose), "TensorFlow"
    return Result(art, compare(art.onnx, reference, feed, source, notes)._replace(precision=precision))


def format_check(check: Check, input_file: str) -> List[str]:
    lines = ["Check on {} ({}): {}engine ONNX in ONNX Runtime vs the source model in {}".format(
        input_file, "x".join(str(d) for d in check.shape), "INT8 " if check.precision == "int8" else "",
        check.reference)]
    width = max([len(n) for n in check.max_abs_diff] + [6])
    for name, diff in check.max_abs_diff.items():
        lines.append("  {}  max abs difference {:.3g}".format(name.ljust(width), diff))
    lines += ["  note: " + n for n in check.notes]
    return lines


def format_int8(artifact: Any) -> List[str]:
    """The INT8 record of a plain model's build, one line (none when the manifest has no measurement)."""
    info = getattr(getattr(artifact, "info", None), "int8", None)
    if info is None or info.max_abs_diff is None:
        return []
    return ["INT8 vs FP32 engine ONNX on {} {} rows: max abs output difference {:.3g} ({} layers in INT8)".format(
        info.held_out or info.frames, "held-out" if info.held_out else "calibration", info.max_abs_diff,
        info.quantized_layers)]
