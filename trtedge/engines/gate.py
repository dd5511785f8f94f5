"""The INT8 accuracy gate: mAP of the INT8 engine ONNX against the FP32 one, and the layers to keep in float.

Both engine ONNX run in ONNX Runtime (CPU) on held-out calibration-like
frames; their outputs become detections exactly as the runtime makes them
(:func:`trtedge.runtime.postprocess.detections_from_outputs`, the host NMS
for the ``host`` form). The reference is the frames' annotations when the
calibration source has them, otherwise the FP32 engine's own detections
(then FP32 scores mAP 1.0 by definition). mAP@0.5 is
:func:`trtedge.evaluation.average_precision` (COCO-style, 101 points).

When INT8 loses more than ``max_map_drop``, the quantised layers are ranked
by the output error each adds against FP32
(:func:`trtedge.engines.quantize.layer_errors`), the worst are kept in float
(1, then 2, 4, ... more per round) and the model is quantised again, until
the drop is small enough or more than half the quantised layers would have
to stay in float — then the build stops with one line
(:class:`~trtedge.errors.AccuracyError`, exit 1).
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import AccuracyError, BuildError
from ..utils.lazy import lazy_import
from . import quantize as qz

np = lazy_import("numpy")

#: rounds of "keep more layers in float" before the gate gives up
MAX_ROUNDS = 8
#: held-out frames the per-layer error ranking runs on
RANK_FRAMES = 8


class GateResult(NamedTuple):
    model: Any  # the accepted Q/DQ engine ONNX
    fp32_map: float
    int8_map: float
    reference: str  # "annotations" | "fp32_detections"
    layers_kept: Tuple[str, ...]
    quantized_layers: int  # layers running in INT8 in the accepted model
    rounds: int


def runnable(model: Any) -> Any:
    """The graph ONNX Runtime can run: the ``plugin`` NMS form with the plugin swapped for standard ops."""
    from .nms import has_plugin, swap_plugin_for_onnx

    return swap_plugin_for_onnx(model) if has_plugin(model) else model


def _session(model: Any) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def detections(model: Any, frames: Any, form: str, nms_cfg: Dict[str, Any]) -> List[Tuple[Any, Any, Any]]:
    """(boxes in input pixels, scores, classes) per frame, from ``model`` (runnable) in ONNX Runtime."""
    from ..runtime.postprocess import detections_from_outputs

    sess = _session(model)
    inp = sess.get_inputs()[0]
    names = [o.name for o in sess.get_outputs()]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = fixed or 8
    out = []  # type: List[Tuple[Any, Any, Any]]
    for start in range(0, len(frames), step):
        chunk = frames[start:start + step]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        outputs = dict(zip(names, sess.run(names, {inp.name: np.ascontiguousarray(chunk)})))
        for k in range(n):
            out.append(detections_from_outputs(outputs, form, k, nms_cfg, None))
    return out


def mean_ap(dets: Sequence[Tuple[Any, Any, Any]], truth: Sequence[Tuple[Any, Any]], num_classes: int) -> float:
    from ..evaluation import average_precision

    value, _ = average_precision(dets, truth, num_classes, 0.5)
    return float(value)


def _reference(fp32_dets: Sequence[Tuple[Any, Any, Any]], truth: Optional[Sequence[Tuple[Any, Any]]],
               num_classes: int) -> Tuple[List[Tuple[Any, Any]], float, str]:
    if truth is not None and sum(len(b) for b, _ in truth):
        ref = list(truth)
        return ref, mean_ap(fp32_dets, ref, num_classes), "annotations"
    ref = [(b, c) for b, _, c in fp32_dets]
    if not sum(len(b) for b, _ in ref):
        raise BuildError("the FP32 engine detects nothing on the {} held-out calibration frames, so INT8 accuracy "
                         "cannot be measured".format(len(fp32_dets)),
                         hint="calibrate on frames like those the camera sees (objects the model knows)")
    return ref, 1.0, "fp32_detections"


def run(model: Any, calib: Any, held_out: Any, truth: Optional[Sequence[Tuple[Any, Any]]], num_classes: int,
        nms_cfg: Dict[str, Any], max_map_drop: float, say: Callable[[str], None], method: str = "entropy",
        exclude: Sequence[str] = (), verbose: bool = False) -> GateResult:
    """Quantise ``model`` (an FP32 engine ONNX) and keep layers in float until INT8 is within ``max_map_drop``."""
    from .surgery import nms_form_of

    form = nms_form_of(model) or "host"
    eval_form = "onnx" if form == "plugin" else form
    fp32 = runnable(model)
    ref, fp32_map, reference = _reference(detections(fp32, held_out, eval_form, nms_cfg), truth, num_classes)
    kept = list(exclude)
    order = qz.body_nodes(fp32)
    total = None  # type: Optional[int]
    step = 1
    for rounds in range(1, MAX_ROUNDS + 1):
        qmodel = qz.quantize(fp32, calib, exclude=kept, method=method, verbose=verbose)
        layers = qz.quantized_layers(qmodel)
        total = len(layers) + len(kept) if total is None else total
        int8_map = mean_ap(detections(qmodel, held_out, eval_form, nms_cfg), ref, num_classes)
        drop = fp32_map - int8_map
        say("INT8 accuracy gate, round {}: mAP@0.5 {:.4f} (FP32 {:.4f}, drop {:.4f}, allowed {:.4f}) on {} held-out "
            "frames; {} of {} layers in float".format(rounds, int8_map, fp32_map, drop, max_map_drop, len(held_out),
                                                      len(kept), total))
        if drop <= max_map_drop + 1e-9:
            result = qz.transplant(model, qmodel) if form == "plugin" else qmodel
            return GateResult(result, fp32_map, int8_map, reference, tuple(kept), len(layers), rounds)
        limit = max(1, total // 2)
        if not layers or len(kept) >= limit or rounds == MAX_ROUNDS:
            break
        errors = qz.layer_errors(fp32, qmodel, held_out[:RANK_FRAMES], layers)
        worst = qz.rank(errors, order)[:min(step, limit - len(kept))]
        say("INT8 accuracy gate: keeping in float {} (added output error {})".format(
            ", ".join(worst), ", ".join("{:.3f}".format(errors[n]) for n in worst)))
        kept.extend(worst)
        step *= 2
    raise AccuracyError(
        "INT8 cannot stay within --max-map-drop {} of FP32: mAP@0.5 {:.4f} against {:.4f} with {} of {} layers in "
        "float".format(max_map_drop, int8_map, fp32_map, len(kept), total),
        hint="build with --precision fp16, calibrate on more representative frames, or raise --max-map-drop")
