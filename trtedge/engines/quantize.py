"""INT8 Q/DQ on the CPU: the engine ONNX's model body quantised with NVIDIA ModelOpt.

The strongly typed road to INT8 (TensorRT 11, TensorRT for RTX, and
``--int8-road qdq`` on any TensorRT): TensorRT takes INT8 from the ONNX
itself, as QuantizeLinear/DequantizeLinear pairs, so the quantisation is
done here, from the calibration frames, before TensorRT sees the graph.

Why ModelOpt (``modelopt.onnx.quantization.quantize``, INT8, entropy
calibration on ONNX Runtime's CPU provider) and not ONNX Runtime's
``quantize_static``: ModelOpt places Q/DQ where TensorRT fuses them (the
inputs of convolutions, matrix products, pooling and residual adds, weights
per channel) and leaves the rest in float; ``quantize_static`` puts a pair on
every op it knows, including the head's final Concat, which for a YOLO head
holds box pixels (0..256) and class probabilities (0..1) in one tensor — one
per-tensor INT8 scale rounds every probability to 0 (mAP@0.5 0.0 on
shapes_yolo, against 0.99 with ModelOpt).

Only the model body is quantised: the nodes trtedge added (name prefix
``trtedge/``: preprocessing, decode, NMS) are excluded, and the quantised
body is put back between exactly the FP32 engine ONNX's own pre- and
post-processing nodes (:func:`transplant`), so those stay FP32 node for node.
ModelOpt raises the opset to 19; the result is converted back to the engine
ONNX's opset (17: what TensorRT 8.5/8.6 read) when ONNX's converter can.

:func:`layer_errors` measures, per quantised layer, how much output error
against FP32 the layer adds (its output's relative error minus the largest
relative error arriving at its inputs): the accuracy gate keeps the worst
layers in float.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import BuildError
from ..utils.lazy import lazy_import
from .graph import PREFIX

np = lazy_import("numpy")

log = logging.getLogger("trtedge")

#: the quantiser's pip name and the version the dev extra pins
QUANTIZER = "nvidia-modelopt"
METHODS = ("entropy", "max")
_OURS = PREFIX + "/"
INSTALL_HINT = 'pip install "trtedge[int8]" (NVIDIA ModelOpt 0.47 with the ONNX pieces it needs)'


def quantizer_version() -> Optional[str]:
    """The installed ModelOpt's version, or None (read from package metadata: nothing is imported)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover (Python < 3.8)
        return None
    try:
        return version(QUANTIZER)
    except PackageNotFoundError:
        return None


def describe(method: str = "entropy") -> str:
    return "{} {} ({} calibration, CPU)".format(QUANTIZER, quantizer_version() or "?", method)


def is_ours(name: str) -> bool:
    """A node trtedge added (preprocessing, decode, NMS): never quantised."""
    return name.startswith(_OURS)


def body_nodes(model: Any) -> List[str]:
    """Names of the engine ONNX's model-body nodes (what may be quantised)."""
    return [n.name for n in model.graph.node if not is_ours(n.name)]


def quantized_layers(qmodel: Any) -> List[str]:
    """Body nodes that take an activation through a Q/DQ pair (the layers that run in INT8), in graph order."""
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    inits = {i.name for i in qmodel.graph.initializer}
    out = []
    for node in qmodel.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or is_ours(node.name):
            continue
        for name in node.input:
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits \
                    and (producer.get(q.input[0]) is None or producer[q.input[0]].op_type != "Constant"):
                out.append(node.name)
                break
    return out


def _float_input(qmodel: Any, node: Any) -> List[str]:
    """The float tensors a quantised node's activations come from (the inputs of its QuantizeLinear nodes)."""
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    inits = {i.name for i in qmodel.graph.initializer}
    found = []
    for name in node.input:
        dq = producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                found.append(q.input[0])
        elif name and name not in inits and (dq is None or dq.op_type != "Constant"):
            found.append(name)
    return found


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """ModelOpt and ONNX Runtime's calibrator print progress bars and tables to stdout and stderr, and
    ``trtedge build`` prints its result on stdout: show them (on stderr) only with ``-v``."""
    if verbose:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _import_modelopt() -> Any:
    try:
        import modelopt.onnx.trt_utils as trt_utils
    except ImportError as exc:
        raise BuildError("INT8 Q/DQ quantisation needs NVIDIA ModelOpt, which is not installed or incomplete "
                         "({})".format(" ".join(str(exc).split())[:120]), hint=INSTALL_HINT)
    # ModelOpt asks TensorRT about custom layers when `import tensorrt` works. tensorrt-stubs (the type
    # stubs) make that import succeed with an empty namespace package, and ModelOpt then fails on
    # trt.Logger: tell it there is no TensorRT unless the module is the real one.
    trt = getattr(trt_utils, "trt", None)
    if getattr(trt_utils, "TRT_PYTHON_AVAILABLE", False) and not hasattr(trt, "Logger"):
        trt_utils.TRT_PYTHON_AVAILABLE = False
    from modelopt.onnx.quantization import quantize

    return quantize


def quantize(model: Any, frames: Any, exclude: Sequence[str] = (), method: str = "entropy",
             input_name: Optional[str] = None, verbose: bool = False) -> Any:
    """A Q/DQ copy of ``model`` (an engine ONNX ModelProto ONNX Runtime can run) calibrated on ``frames``.

    ``frames``: uint8 ``[N, H, W, 3]`` as the engine input sees them.
    ``exclude``: body node names to keep in float besides trtedge's own nodes.
    """
    import onnx

    if method not in METHODS:
        raise BuildError("unknown calibration method {!r}; allowed: {}".format(method, ", ".join(METHODS)))
    run = _import_modelopt()
    name = input_name or [i.name for i in model.graph.input][0]
    patterns = ["^" + re.escape(_OURS)] + ["^{}$".format(re.escape(n)) for n in exclude]
    with tempfile.TemporaryDirectory(prefix="trtedge-int8-") as tmp:
        src = os.path.join(tmp, "fp32.onnx")
        dst = os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        try:
            with _quiet(verbose):
                run(src, quantize_mode="int8", calibration_data={name: np.ascontiguousarray(frames)},
                    calibration_method=method, calibration_eps=["cpu"], nodes_to_exclude=patterns,
                    high_precision_dtype="fp32", output_path=dst, log_level="INFO" if verbose else "CRITICAL")
        except BuildError:
            raise
        except Exception as exc:  # ModelOpt and ONNX Runtime raise their own types
            raise BuildError("INT8 quantisation with {} failed: {}".format(
                QUANTIZER, " ".join(str(exc).split())[:240]), hint="build with --precision fp16 or fp32")
        if not os.path.isfile(dst):
            raise BuildError("{} wrote no quantised model".format(QUANTIZER))
        qmodel = onnx.load(dst)
    return transplant(model, _to_opset(qmodel, _opset(model)))


def _opset(model: Any) -> int:
    return max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [17])


def _to_opset(qmodel: Any, opset: int) -> Any:
    """Back to the engine ONNX's opset when ONNX's converter can; else as ModelOpt made it."""
    import onnx
    from onnx import version_converter

    if _opset(qmodel) <= opset:
        return qmodel
    try:
        down = version_converter.convert_version(qmodel, opset)
        onnx.checker.check_model(down, full_check=True)
        return down
    except Exception as exc:  # the converter raises several types
        log.info("trtedge: the Q/DQ ONNX keeps opset %d (%s)", _opset(qmodel), " ".join(str(exc).split())[:120])
        return qmodel


def transplant(fp32: Any, qmodel: Any) -> Any:
    """``fp32`` with its model body replaced by ``qmodel``'s: trtedge's own nodes stay exactly as they were.

    Also used for the ``plugin`` NMS form: ``qmodel`` is quantised from the ONNX Runtime copy (the plugin
    swapped for standard ops) and its body goes back between the engine ONNX's own nodes."""
    import onnx
    import onnx_graphsurgeon as gs

    out = onnx.ModelProto.FromString(fp32.SerializeToString())
    ours = [n for n in fp32.graph.node if is_ours(n.name)]
    body = [n for n in qmodel.graph.node if not is_ours(n.name)]
    inits = {i.name: i for i in fp32.graph.initializer}
    used = {t for n in body for t in n.input}
    for i in qmodel.graph.initializer:
        if i.name in used or i.name not in inits:
            inits[i.name] = i
    del out.graph.node[:]
    out.graph.node.extend(body + ours)
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits.values())
    del out.graph.value_info[:]
    for o in out.opset_import:  # the body's opset; custom domains (the NMS plugin's) as they were
        if o.domain in ("", "ai.onnx"):
            o.version = _opset(qmodel)
    graph = gs.import_onnx(out)
    graph.cleanup().toposort()
    result = gs.export_onnx(graph)
    result.ir_version = fp32.ir_version
    result.producer_name = fp32.producer_name
    del result.metadata_props[:]
    result.metadata_props.extend(fp32.metadata_props)
    return result


# --------------------------------------------------------------------------- per-layer error


def _session(model: Any, extra: Sequence[str]) -> Any:
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in m.graph.output}
    for name in extra:
        if name not in have:
            m.graph.output.extend([onnx.ValueInfoProto(name=name)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def layer_errors(fp32: Any, qmodel: Any, frames: Any, layers: Optional[Sequence[str]] = None,
                 input_name: Optional[str] = None) -> Dict[str, float]:
    """For each quantised layer: the relative output error against FP32 it adds (see the module docstring).

    The relative error of a tensor is ``||int8 - fp32|| / ||fp32||`` over all ``frames`` (run one at a time).
    """
    nodes = {n.name: n for n in qmodel.graph.node}
    layers = list(layers) if layers is not None else quantized_layers(qmodel)
    wanted = {}  # type: Dict[str, Tuple[str, List[str]]]  # layer -> (output, float inputs)
    for name in layers:
        node = nodes.get(name)
        if node is None or not node.output:
            continue
        wanted[name] = (node.output[0], _float_input(qmodel, node))
    tensors = sorted({t for out, ins in wanted.values() for t in [out] + ins})
    name = input_name or [i.name for i in fp32.graph.input][0]
    a, b = _session(fp32, tensors), _session(qmodel, tensors)
    diff = dict.fromkeys(tensors, 0.0)
    norm = dict.fromkeys(tensors, 0.0)
    for k in range(len(frames)):
        feed = {name: np.ascontiguousarray(frames[k:k + 1])}
        ref = dict(zip(tensors, a.run(tensors, feed)))
        got = dict(zip(tensors, b.run(tensors, feed)))
        for t in tensors:
            r = np.asarray(ref[t], np.float64)
            g = np.asarray(got[t], np.float64)
            if r.shape != g.shape:
                continue
            diff[t] += float(np.sum((g - r) ** 2))
            norm[t] += float(np.sum(r ** 2))
    rel = {t: (diff[t] / norm[t]) ** 0.5 if norm[t] > 0 else (0.0 if diff[t] == 0 else 1.0) for t in tensors}
    return {layer: max(0.0, rel[out] - max([rel[i] for i in ins] or [0.0])) for layer, (out, ins) in wanted.items()}


def rank(errors: Dict[str, float], order: Sequence[str]) -> List[str]:
    """Layers by descending added error (graph order breaks ties)."""
    pos = {n: k for k, n in enumerate(order)}
    return sorted(errors, key=lambda n: (-errors[n], pos.get(n, len(pos))))
