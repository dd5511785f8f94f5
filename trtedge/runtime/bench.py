"""``trtedge bench``: how fast is the engine, and how much faster than its source?

Three rows, each timed over ``iterations`` after ``warmup`` runs:

* ``engine`` — the backend alone on a ready input batch (TensorRT: upload,
  execute, download; ONNX Runtime: ``session.run``);
* ``whole frame`` — what a user's loop pays per batch of 1280x720 BGR frames:
  letterbox into the input buffer, the engine, host NMS (``host`` form), boxes
  back to frame pixels (detector engines only);
* ``source model`` — the unoptimised source ONNX in ONNX Runtime on the CPU,
  fed float input the way older demos prepared it (the baseline), when the
  manifest's source is an ONNX file that is still there.

Latencies are per batch in milliseconds (p50/p90/p99); throughput is images
per second at the median. ``--json`` prints the same as JSON.
"""


import os
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import manifest as mf
from ..errors import TrtedgeError


def _timed(fn: Callable[[], Any], iterations: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def stats_row(name: str, samples_ms: List[float], batch: int) -> Dict[str, Any]:
    a = np.asarray(samples_ms, np.float64)
    p50 = float(np.percentile(a, 50))
    return {
        "name": name,
        "batch": batch,
        "iterations": len(samples_ms),
        "p50_ms": round(p50, 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "throughput": round(batch * 1000.0 / p50, 1) if p50 > 0 else None,
    }


def _feed_for(inputs: Any, batch: int, rng: Any) -> Dict[str, np.ndarray]:
    feed = {}
    for info in inputs:
        shape = []
        for k, d in enumerate(info.shape):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif k == 0:
                shape.append(batch)
            else:
                raise TrtedgeError("input '{}' has a dynamic dimension {} ({}); bench needs fixed sizes".format(
                    info.name, k, list(info.shape)))
        dtype = np.dtype(info.dtype)
        if dtype.kind in "ui":
            feed[info.name] = rng.integers(0, 255, size=shape).astype(dtype)
        else:
            feed[info.name] = rng.random(size=shape, dtype=np.float32).astype(dtype)
    return feed


def run(engine: str, backend: str = "auto", batch: int = 1, iterations: int = 100, warmup: int = 10,
        baseline: bool = True, say: Optional[Callable[[str], None]] = None, cuda: str = "cuda-python",
        cuda_graph: bool = False) -> Dict[str, Any]:
    """Benchmark ``engine``; returns ``{"engine", "backend", "rows": [...], "speedup"}``."""
    from .backends import open_backend
    from .compat import check_engine, ensure_usable
    from .detector import Detector

    if batch < 1 or iterations < 1 or warmup < 0:
        raise TrtedgeError("--batch and --iterations must be at least 1, --warmup at least 0")
    result = check_engine(engine)
    ensure_usable(engine, result, backend)
    data = mf.read(mf.manifest_path(engine))
    max_batch = data.max_batch
    if batch > max_batch:
        raise TrtedgeError("--batch {} is larger than the engine's max batch {}; rebuild with --batch {}".format(
            batch, max_batch, batch))
    rng = np.random.default_rng(0)
    rows = []
    detector = data.is_detector
    if detector:
        det = Detector(engine, backend=backend, say=say, cuda=cuda, cuda_graph=cuda_graph, checked=result)
        be = det.backend
        frames = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(batch)]
        buf = be.input_buffer(det.input_name, batch if det.backend_is_dynamic() else det.max_batch)
        buf[...] = rng.integers(0, 255, buf.shape, dtype=np.uint8)
        feed = {det.input_name: buf}
        rows.append(stats_row("engine ({})".format(be.name), _timed(lambda: be.infer(feed), iterations, warmup), batch))
        rows.append(stats_row("whole frame (1280x720)", _timed(lambda: det.detect(frames), iterations, warmup), batch))
        det.close()
    else:
        be = open_backend(engine, data, backend, cuda=cuda, cuda_graph=cuda_graph, say=say)
        feed = _feed_for(be.inputs, batch, rng)
        rows.append(stats_row("engine ({})".format(be.name), _timed(lambda: be.infer(feed), iterations, warmup), batch))
        be.close()
    note = None
    if baseline:
        base, note = _baseline(data, batch, iterations, warmup, rng)
        if base is not None:
            rows.append(base)
    out = {"engine": engine, "backend": rows[0]["name"], "batch": batch, "rows": rows, "note": note,
           "speedup": None}  # type: Dict[str, Any]
    if baseline and len(rows) >= 2 and rows[-1]["name"].startswith("source model"):
        out["speedup"] = round(rows[-1]["p50_ms"] / rows[0]["p50_ms"], 2) if rows[0]["p50_ms"] > 0 else None
    return out


def _baseline(data: mf.Manifest, batch: int, iterations: int, warmup: int, rng: Any) -> Any:
    path = data.source.path
    if not path or data.source.format != "onnx":
        return None, "no baseline: the source model is not an ONNX file"
    if not os.path.isfile(path):
        return None, "no baseline: source model {} is not here".format(path)
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "no baseline: ONNX Runtime is not installed"
    from .onnxrt_backend import _ort_dtype

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return None, "no baseline: ONNX Runtime cannot load {}: {}".format(path, str(exc).splitlines()[0][:200])
    infos = [type("I", (), {"name": i.name, "dtype": _ort_dtype(i.type), "shape": tuple(i.shape)})
             for i in sess.get_inputs()]
    try:
        feed = _feed_for(infos, batch, rng)
    except TrtedgeError as exc:
        return None, "no baseline: {}".format(exc)
    inp = data.input
    frames = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(batch)]

    def older_demo() -> None:
        # the host path older demos ran around the model: resize, float NCHW, normalise
        if data.is_detector and inp.width and inp.height:
            from .postprocess import _resize

            for k, f in enumerate(frames):
                x = _resize(f, inp.width, inp.height, None)[..., ::-1].astype(np.float32)
                x = x * np.asarray(inp.scale, np.float32) + np.asarray(inp.offset, np.float32)
                name = infos[0].name
                if feed[name].ndim == 4 and feed[name].shape[1] == 3:
                    feed[name][k] = x.transpose(2, 0, 1)
        sess.run(None, feed)

    return stats_row("source model (onnxrt CPU, unoptimised)", _timed(older_demo, iterations, warmup), batch), None


def format_table(result: Dict[str, Any]) -> str:
    head = "{:<44} {:>9} {:>9} {:>9} {:>12}".format("", "p50 ms", "p90 ms", "p99 ms", "images/s")
    lines = ["{} (batch {})".format(result["engine"], result["batch"]), head]
    for r in result["rows"]:
        lines.append("{:<44} {:>9.3f} {:>9.3f} {:>9.3f} {:>12}".format(
            r["name"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["throughput"]))
    if result.get("speedup"):
        lines.append("speed-up of the engine over the source model: {:.2f}x".format(result["speedup"]))
    if result.get("note"):
        lines.append(result["note"])
    return "\n".join(lines)
