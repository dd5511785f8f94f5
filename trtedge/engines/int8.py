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
from typing import Any, Callable, Optional, Tuple

from ..errors import BuildError
from ..manifest import Int8Info, get_onnx_metadata
from . import calibration as cal

log = logging.getLogger("trtedge")

#: the engine ONNX's metadata key of the INT8 record (outside "trtedge.", which the pipeline rewrites)
RECORD_KEY = "trtedge_int8"
METHOD = "entropy"


def resolve_road(config: Any, caps: Any) -> str:
    """"qdq" or "calibrator" for an INT8 build; refuses a calibrator the TensorRT does not have."""
    has_calibrator = caps is not None and bool(caps.int8_flag) and not caps.strongly_typed_only
    if config.int8_road == "qdq":
        return "qdq"
    if config.int8_road == "calibrator":
        if caps is not None and not has_calibrator and not config.onnx_only:
            raise BuildError("{} {} has no INT8 calibrator (it builds strongly typed networks only: INT8 comes "
                             "from Q/DQ in the ONNX)".format(caps.module, caps.version), hint="use --int8-road qdq")
        return "calibrator"
    return "calibrator" if has_calibrator else "qdq"


def road_of(config: Any, caps: Any) -> str:
    """The manifest's ``precision_road`` of an INT8 build: ``builder_flag`` (calibrator) or ``onnx_types`` (Q/DQ)."""
    return "builder_flag" if resolve_road(config, caps) == "calibrator" else "onnx_types"


class Int8Plan(object):
    """What an INT8 build needs besides the engine ONNX: shared by :func:`apply` and the TensorRT build.

    ``float_layers`` (engine ONNX node names) is filled by :func:`apply`; the calibrator road keeps them in
    float with precision constraints. Frames are read once, on first use."""

    def __init__(self, road: str, calib: Optional[str], count: int, max_map_drop: float, fit: cal.InputFit,
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
    if not spec.is_detector:
        raise BuildError("--precision int8 needs a detector: its accuracy gate measures mAP, and {} is a plain "
                         "model (family '{}')".format(spec.name, spec.family), hint="build it with fp16")
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
