"""``--precision int8``: which road, the calibration plan, the gated quantisation, and its record.

Two roads (``--int8-road``; ``auto`` takes the calibrator where the installed
TensorRT has one, Q/DQ elsewhere):

* ``qdq`` (strongly typed: TensorRT 11, TensorRT for RTX, and any TensorRT on
  request): the engine ONNX itself becomes a Q/DQ graph, quantised on the CPU
  from the calibration frames (:mod:`.quantize`), gated (:mod:`.gate`);
  the manifest's ``precision_road`` is ``onnx_types``.
* ``calibrator`` (weakly typed: TensorRT 8.5-10): the engine ONNX stays FP32
  and TensorRT calibrates it with an entropy calibrator
  (:mod:`.calibrator`, cache beside the engine, keyed by the engine ONNX's
  sha256); ``precision_road`` is ``builder_flag``. The gate runs on the CPU
  simulation of the same frames (ModelOpt's Q/DQ, when installed) and the
  layers it keeps in float get precision constraints in TensorRT.

A plain model (family ``none``: ``optimize_model.py --int8``) takes the Q/DQ
road only, calibrated on a ``.npy`` batch of its own input
(:func:`plain_rows`): the whole graph is quantised and there is no mAP gate;
the largest absolute output difference INT8 vs FP32 on held-out rows
(:func:`max_abs_diff`) is recorded instead (``Int8Info.max_abs_diff``).

The pipeline calls :func:`road_of` (the manifest's precision road),
:func:`plan` (what the TensorRT build needs), :func:`apply` (once, on the
engine ONNX) and :func:`record_of` (the manifest's ``int8``). What was
measured travels in the engine ONNX's metadata (key ``trtedge_int8``), so a
rebuild from the engine ONNX (``trtedge build X_int8.onnx`` on the device)
keeps the same layers in float without measuring again.
"""

import json
import logging
import os
from typing import Any, Callable, NamedTuple, Optional, Tuple

from ..errors import BuildError
from ..manifest import Int8Info, get_onnx_metadata
from . import calibration as cal

log = logging.getLogger("trtedge")

#: the engine ONNX's metadata key of the INT8 record (outside "trtedge.", which the pipeline rewrites)
RECORD_KEY = "trtedge_int8"
METHOD = "entropy"
#: a plain model's batch holds fewer rows than this: it calibrates and measures on the whole batch
PLAIN_HOLD_OUT_MIN = 8
PLAIN_CALIB = ("--calib {} is not a .npy batch: {} is a plain model (family none), calibrated on a .npy batch "
               "of its own input (numpy.save), not on images or video")


def resolve_road(config: Any, caps: Any, spec: Any = None) -> str:
    """"qdq" or "calibrator" for an INT8 build; refuses a calibrator the TensorRT does not have. A plain model
    (``spec`` not a detector) takes the Q/DQ road only."""
    has_calibrator = caps is not None and bool(caps.int8_flag) and not caps.strongly_typed_only
    if spec is not None and not spec.is_detector:
        if config.int8_road == "calibrator":
            raise BuildError("INT8 for a plain model (family '{}') is Q/DQ only: the calibrator road feeds "
                             "camera frames".format(spec.family), hint="use --int8-road qdq or auto")
        return "qdq"
    if config.int8_road == "qdq":
        return "qdq"
    if config.int8_road == "calibrator":
        if caps is not None and not has_calibrator and not config.onnx_only:
            raise BuildError("{} {} has no INT8 calibrator (it builds strongly typed networks only: INT8 comes "
                             "from Q/DQ in the ONNX)".format(caps.module, caps.version), hint="use --int8-road qdq")
        return "calibrator"
    return "calibrator" if has_calibrator else "qdq"


def road_of(config: Any, caps: Any, spec: Any = None) -> str:
    """The manifest's ``precision_road`` of an INT8 build: ``builder_flag`` (calibrator) or ``onnx_types`` (Q/DQ)."""
    return "builder_flag" if resolve_road(config, caps, spec) == "calibrator" else "onnx_types"


class Int8Plan(object):
    """What an INT8 build needs besides the engine ONNX: shared by :func:`apply` and the TensorRT build.

    ``float_layers`` (engine ONNX node names) is filled by :func:`apply`; the calibrator road keeps them in
    float with precision constraints. Frames are read once, on first use."""

    def __init__(self, road: str, calib: Optional[str], count: int, max_map_drop: float, fit: Optional[cal.InputFit],
                 labels: Tuple[str, ...], nms: Any, cache_path: str, verbose: bool = False) -> None:
        self.road = road
        self.calib = calib
        self.count = count
        self.max_map_drop = float(max_map_drop)
        self.fit = fit
        self.labels = labels
        self.nms = dict(nms)
        self.cache_path = cache_path
        self.verbose = verbose
        self.float_layers = ()  # type: Tuple[str, ...]
        self._frames = None  # type: Optional[cal.Frames]
        #: a plain model (family none): calibrated on a .npy batch of its own input, no mAP gate
        self.plain = fit is None

    def frames(self) -> cal.Frames:
        if self._frames is None:
            self._frames = cal.read(self.calib, self.count, self.fit, self.labels)
        return self._frames

    def __repr__(self) -> str:
        return "Int8Plan(road={!r}, calib={!r}, count={})".format(self.road, self.calib, self.count)


def cache_path_for(engine_path: str) -> str:
    """The calibrator road's cache file beside the engine: ``<name>_int8.calib``."""
    return os.path.splitext(engine_path)[0] + ".calib"


def plan(config: Any, spec: Any, engine_path: str, caps: Any = None, verbose: bool = False) -> Optional[Int8Plan]:
    """The :class:`Int8Plan` of an INT8 build (None for other precisions); nothing is read yet."""
    if config.precision != "int8":
        return None
    if not spec.is_detector:  # a plain model: Q/DQ of the whole graph from a .npy batch of its input
        if config.calib is not None and not config.calib.lower().endswith(".npy"):
            raise cal.CalibrationError(PLAIN_CALIB.format(config.calib, spec.name))
        return Int8Plan(resolve_road(config, caps, spec), config.calib, config.calib_count, config.max_map_drop,
                        None, (), {}, cache_path_for(engine_path), verbose)
    nms = spec.nms
    cfg = {"score_threshold": nms.score_threshold, "iou_threshold": nms.iou_threshold,
           "max_per_class": nms.max_per_class, "max_detections": nms.max_detections,
           "class_agnostic": nms.class_agnostic}
    return Int8Plan(resolve_road(config, caps), config.calib, config.calib_count, config.max_map_drop,
                    cal.InputFit.of_spec(spec), tuple(spec.labels), cfg, cache_path_for(engine_path), verbose)


def record_of(model: Any) -> Optional[Int8Info]:
    """The INT8 record an engine ONNX carries (None for other precisions)."""
    for prop in model.metadata_props:
        if prop.key == RECORD_KEY:
            try:
                data = json.loads(prop.value)
                data["layers_kept"] = tuple(data.get("layers_kept") or ())
                return Int8Info(**data)
            except (ValueError, TypeError) as exc:
                raise BuildError("the engine ONNX's INT8 record cannot be read: {}".format(exc),
                                 hint="rebuild the engine ONNX from the spec with --precision int8")
    return None


def _set_record(model: Any, info: Int8Info) -> None:
    from ..manifest import asdict

    keep = [p for p in model.metadata_props if p.key != RECORD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    prop = model.metadata_props.add()
    prop.key = RECORD_KEY
    data = asdict(info)
    data["layers_kept"] = list(info.layers_kept)
    prop.value = json.dumps(data, sort_keys=True)


def apply(model: Any, int8_plan: Optional[Int8Plan], say: Callable[[str], None]) -> Any:
    """The engine ONNX of the build: unchanged unless INT8 (then quantised and gated, or recorded for the
    calibrator). Refuses a Q/DQ engine ONNX for another precision."""
    made = get_onnx_metadata(model).get("precision", "fp32")
    record = record_of(model)
    if int8_plan is None:
        if made == "int8" or record is not None:
            raise BuildError("this is an INT8 engine ONNX; build it with --precision int8 or make another one from "
                             "the spec")
        return model
    p = int8_plan
    if made == "fp16":
        raise BuildError("this is an FP16 engine ONNX; INT8 is made from an FP32 one (trtedge build SPEC "
                         "--precision int8, or the _fp32.onnx)")
    if made == "int8":  # a Q/DQ engine ONNX: its quantisation is final
        if p.road == "calibrator":
            raise BuildError("this engine ONNX is already quantised (Q/DQ); build it with --int8-road qdq")
        say("INT8 from the engine ONNX's own Q/DQ nodes ({} layers kept in float when it was made)".format(
            len(record.layers_kept) if record else 0))
        return model
    if record is not None and record.road == "calibrator" and p.road == "calibrator":
        p.float_layers = tuple(record.layers_kept)
        say("INT8 calibrator road: {} layers kept in float, as measured when this engine ONNX was made".format(
            len(p.float_layers)))
        return model
    if record is not None:
        raise BuildError("this engine ONNX was made for the INT8 {} road; build it with --int8-road {}".format(
            record.road, record.road))
    if p.plain:
        return _apply_plain(model, p, say)
    frames = p.frames()
    say("INT8 calibration: {} frames from {} ({} held out for the accuracy gate{})".format(
        len(frames.calib), frames.source, len(frames.held_out), ", with annotations" if frames.truth else ""))
    from . import gate
    from . import quantize as qz

    if p.road == "calibrator" and qz.quantizer_version() is None:
        say("Note: no accuracy gate ({} is not installed to simulate the calibration on the CPU); TensorRT's "
            "calibrator quantises every layer it can".format(qz.QUANTIZER))
        info = Int8Info(road="calibrator", calib_sha256=frames.sha256, frames=len(frames.calib),
                        held_out=len(frames.held_out), quantizer="tensorrt entropy calibrator 2", reference="none",
                        max_map_drop=p.max_map_drop, calibration_cache=os.path.basename(p.cache_path))
        _set_record(model, info)
        return model
    result = gate.run(model, frames.calib, frames.held_out, frames.truth, len(p.labels), p.nms, p.max_map_drop,
                      say, method=METHOD, verbose=p.verbose)
    info = Int8Info(
        road=p.road, calib_sha256=frames.sha256, frames=len(frames.calib), held_out=len(frames.held_out),
        quantizer=qz.describe(METHOD) if p.road == "qdq" else
        "tensorrt entropy calibrator 2 (gate measured on {})".format(qz.describe(METHOD)),
        reference=result.reference, fp32_map=round(result.fp32_map, 6), int8_map=round(result.int8_map, 6),
        max_map_drop=p.max_map_drop, layers_kept=result.layers_kept, quantized_layers=result.quantized_layers,
        rounds=result.rounds, calibration_cache=os.path.basename(p.cache_path) if p.road == "calibrator" else None)
    if p.road == "calibrator":
        p.float_layers = result.layers_kept
        _set_record(model, info)
        return model
    out = result.model
    _set_record(out, info)
    return out


# --------------------------------------------------------------------------- plain models (family none)


class PlainRows(NamedTuple):
    """A plain model's calibration batch, split (arrays in the model input's type)."""

    calib: Any
    held_out: Any
    input_name: str
    sha256: str
    #: fewer than PLAIN_HOLD_OUT_MIN rows: ``held_out`` is the whole batch (the calibration rows too)
    whole: bool
    #: the model's fixed batch size, or None (dynamic)
    fixed_batch: Optional[int]


def plain_rows(path: Optional[str], model: Any, count: int) -> PlainRows:
    """A plain model's ``.npy`` calibration batch: calibration rows, held-out rows, input name, sha256.

    The batch must match the engine ONNX's only input (rank, fixed dimensions; cast to its type). Every
    fifth row is held out; with fewer than :data:`PLAIN_HOLD_OUT_MIN` rows the whole batch does both."""
    import numpy as np
    from onnx import helper

    from ..utils.files import sha256_path

    if not path:
        raise cal.CalibrationError("INT8 for a plain model needs calibration data: --calib BATCH.npy (a batch of "
                                   "the model's input, saved with numpy.save)")
    if not path.lower().endswith(".npy"):
        raise cal.CalibrationError(PLAIN_CALIB.format(path, "this"))
    if not os.path.isfile(path):
        raise cal.CalibrationError("calibration batch {} does not exist".format(path))
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise cal.CalibrationError("cannot read {} as a NumPy array: {}".format(path, " ".join(str(exc).split())[:160]))
    inits = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise cal.CalibrationError("INT8 calibration from one .npy batch needs a model with one input; this one "
                                   "has {}".format(len(inputs)))
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    if not isinstance(data, np.ndarray) or data.ndim != len(dims) or data.shape[0] < 1 or any(
            d is not None and d != n for d, n in zip(dims[1:], data.shape[1:])):
        raise cal.CalibrationError("calibration batch {} has shape {} but the model input '{}' is [{}]".format(
            path, tuple(getattr(data, "shape", ())), inputs[0].name,
            ", ".join("?" if d is None else str(d) for d in dims)))
    step = dims[0] or 1  # a fixed batch takes whole batches only
    if data.shape[0] < step:
        raise cal.CalibrationError("calibration batch {} has {} rows; the model's fixed batch is {}".format(
            path, data.shape[0], step))
    data = data.astype(helper.tensor_dtype_to_np_dtype(t.elem_type), copy=False)
    chunks = data.shape[0] // step
    whole = chunks * step < PLAIN_HOLD_OUT_MIN or chunks < 5  # (a fixed batch: whole batches held out)
    held = list(range(chunks)) if whole else [k for k in range(chunks) if k % 5 == 4]
    calib = list(range(chunks)) if whole else [k for k in range(chunks) if k % 5 != 4]
    calib = calib[:max(1, count // step)]

    def take(picked: Any) -> Any:
        return np.ascontiguousarray(np.concatenate([data[k * step:(k + 1) * step] for k in picked]))

    return PlainRows(take(calib), take(held), inputs[0].name, sha256_path(path), whole, dims[0])


def max_abs_diff(fp32: Any, qmodel: Any, name: str, rows: Any, step: int) -> float:
    """The largest |``qmodel`` - ``fp32``| over every output on ``rows`` (ONNX Runtime, CPU, ``step`` rows a run)."""
    import numpy as np
    import onnxruntime as ort

    def session(m: Any) -> Any:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 2
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    a, b = session(fp32), session(qmodel)
    worst = 0.0
    for start in range(0, len(rows), step):
        feed = {name: rows[start:start + step]}
        for x, y in zip(a.run(None, feed), b.run(None, feed)):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if x.shape != y.shape:
                raise BuildError("the INT8 model's outputs have other shapes than FP32's ({} / {})".format(
                    y.shape, x.shape))
            if x.size:
                worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def _apply_plain(model: Any, p: Int8Plan, say: Callable[[str], None]) -> Any:
    """A plain model's Q/DQ engine ONNX: the whole graph quantised, measured against FP32 (no gate)."""
    from . import quantize as qz

    rows = plain_rows(p.calib, model, p.count)
    calib, held, name, whole = rows.calib, rows.held_out, rows.input_name, rows.whole
    step = rows.fixed_batch or len(held)
    say("INT8 calibration: {} rows of {} ({})".format(
        len(calib), p.calib, "fewer than {} rows: the whole batch also measures".format(PLAIN_HOLD_OUT_MIN)
        if whole else "{} held out to measure".format(len(held))))
    qmodel = qz.quantize(model, calib, method=METHOD, input_name=name, verbose=p.verbose)
    diff = max_abs_diff(model, qmodel, name, held, step)
    layers = qz.quantized_layers(qmodel)
    say("INT8 vs FP32 (engine ONNX in ONNX Runtime) on {} {} rows: max abs output difference {:.4g}; {} layers "
        "in INT8".format(len(held), "calibration" if whole else "held-out", diff, len(layers)))
    if not layers:
        say("Note: {} quantised no layer (it keeps convolutions under 16 channels and small matrix products in "
            "float, where INT8 is not faster): this engine runs in float".format(qz.QUANTIZER))
    info = Int8Info(road="qdq", calib_sha256=rows.sha256, frames=len(calib), held_out=0 if whole else len(held),
                    quantizer=qz.describe(METHOD), reference="fp32_outputs", max_map_drop=p.max_map_drop,
                    quantized_layers=len(layers), max_abs_diff=round(diff, 9))
    _set_record(qmodel, info)
    return qmodel
