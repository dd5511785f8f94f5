"""``trtedge profile ENGINE``: per-layer times as a Chrome trace, and a bar chart of the slowest layers.

    trtedge profile build/m/m_int8.bin --backend onnxrt --trace trace.json --png layers.png

* ``--backend trt``: TensorRT's :class:`IProfiler` on the engine's execution
  context (``IExecutionContext.profiler``; with ``enqueue_emits_profile``,
  TensorRT's default, each enqueue reports every layer's time once the
  layer has run). Layer names are TensorRT's (fused layers carry the names
  of the nodes they joined). Needs full TensorRT (or TensorRT for RTX) and
  a GPU; CUDA graphs are off while profiling.
* ``--backend onnxrt``: ONNX Runtime's profiler on the engine ONNX, with
  graph optimisations off so that every node of the engine ONNX is timed
  under its own name (the numbers are then those of the unfused graph).

The trace (``--trace``, JSON in the Trace Event Format that chrome://tracing
and Perfetto open) holds one complete event per layer per timed run, on one
timeline, with the run's events around them. ``--png`` (matplotlib, Agg
backend, imported only then) draws the ``--top`` slowest layers by mean
time. Importing this module loads neither numpy nor onnx.
"""

import argparse
import importlib
import json
import os
import tempfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import TrtedgeError
from .utils.files import write_atomic
from .utils.console import say as _say




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file built by trtedge (for onnxrt also an engine ONNX or ONNX model)")
    p.add_argument("--backend", default="trt", choices=("trt", "onnxrt"), help="whose profiler (default trt)")
    p.add_argument("--trace", metavar="PATH", required=True, help="write the Chrome trace (JSON) here")
    p.add_argument("--png", metavar="PATH", help="write a bar chart of the slowest layers (needs matplotlib)")
    p.add_argument("--iterations", type=int, default=20, metavar="N", help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed runs first (default 3)")
    p.add_argument("--top", type=int, default=20, metavar="N", help="layers in the table and chart (default 20)")
    p.add_argument("--batch", type=int, default=1, metavar="N")
    p.add_argument("--cuda", default="cuda-python", choices=("cuda-python", "pycuda"))


class Profile(NamedTuple):
    """Per-layer times of ``runs`` timed runs. ``events``: Trace Event Format dicts (times in microseconds)."""

    backend: str
    runs: int
    layers: Dict[str, List[float]]  # layer -> milliseconds per run (one entry per run it ran in)
    ops: Dict[str, str]  # layer -> op type, where known
    events: List[Dict[str, Any]]

    def mean_ms(self) -> List[Tuple[str, float]]:
        """(layer, mean ms per run), slowest first."""
        rows = [(name, sum(t) / max(self.runs, 1)) for name, t in self.layers.items()]
        return sorted(rows, key=lambda r: -r[1])


# --------------------------------------------------------------------------- inputs


def sample_feed(inputs: Sequence[Tuple[str, Any, Tuple[Any, ...]]], batch: int = 1) -> Dict[str, Any]:
    """Inputs for profiling: generated shapes frames for a uint8 [B, H, W, 3] image input, seeded noise otherwise."""
    import numpy as np

    rng = np.random.default_rng(0)
    feed = {}
    for name, dtype, shape in inputs:
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        if not (isinstance(shape[0], int) and shape[0] > 0):
            dims[0] = batch
        if np.dtype(dtype) == np.uint8 and len(dims) == 4 and dims[3] == 3:
            from .datasets.shapes import generate
            from .runtime.postprocess import fit_into

            arr = np.zeros(dims, np.uint8)
            for k in range(dims[0]):
                fit_into(generate(77, k, (max(dims[1], 48), max(dims[2], 48))).image, arr[k])
        else:
            arr = rng.random(dims).astype(dtype)
        feed[name] = arr
    return feed


# --------------------------------------------------------------------------- ONNX Runtime


def profile_onnxrt(onnx_path: str, iterations: int = 20, warmup: int = 3, batch: int = 1) -> Profile:
    """ONNX Runtime's profiler on ``onnx_path`` (graph optimisations off: one event per node and run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TrtedgeError("profile --backend onnxrt needs ONNX Runtime: pip install \"trtedge[ort]\"")
    from .runtime.onnxrt_backend import _ort_dtype

    with tempfile.TemporaryDirectory(prefix="trtedge-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise TrtedgeError("ONNX Runtime cannot load {}: {}".format(onnx_path, " ".join(str(exc).split())[:200]))
        feed = sample_feed([(i.name, _ort_dtype(i.type), tuple(i.shape)) for i in sess.get_inputs()], batch)
        names = [o.name for o in sess.get_outputs()]
        for _ in range(warmup + iterations):
            sess.run(names, feed)
        path = sess.end_profiling()
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    return _from_ort_events(raw, warmup, iterations)


def _from_ort_events(raw: Sequence[Dict[str, Any]], warmup: int, iterations: int) -> Profile:
    runs = sorted((e for e in raw if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: int(e["ts"]))
    timed = runs[warmup:warmup + iterations]
    windows = [(int(r["ts"]), int(r["ts"]) + int(r["dur"])) for r in timed]
    layers = {}  # type: Dict[str, List[float]]
    ops = {}  # type: Dict[str, str]
    events = []  # type: List[Dict[str, Any]]
    for k, (r, (lo, hi)) in enumerate(zip(timed, windows)):
        events.append({"name": "run {}".format(k + 1), "cat": "run", "ph": "X", "ts": lo, "dur": hi - lo,
                       "pid": 1, "tid": 1, "args": {}})
    for e in raw:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        ts, dur = int(e["ts"]), int(e.get("dur", 0))
        if not any(lo <= ts <= hi for lo, hi in windows):
            continue
        layer = name[:-len("_kernel_time")]
        args = e.get("args") or {}
        layers.setdefault(layer, []).append(dur / 1000.0)
        ops[layer] = str(args.get("op_name", ""))
        events.append({"name": layer, "cat": "layer", "ph": "X", "ts": ts, "dur": dur, "pid": 1, "tid": 2,
                       "args": {"op": ops[layer], "provider": args.get("provider", "")}})
    return Profile("onnxrt (CPU, unoptimised graph)", len(timed), layers, ops, events)


# --------------------------------------------------------------------------- TensorRT


def make_profiler(mod: Any) -> Any:
    """An ``IProfiler`` of ``mod`` that records (layer name, ms) per report, in order."""
    base = mod.IProfiler

    class LayerTimes(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.records = []  # type: List[Tuple[str, float]]

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            try:
                self.records.append((str(layer_name), float(ms)))
            except Exception:  # never raise into TensorRT
                pass

    return LayerTimes()


def profile_trt(backend: Any, feed: Dict[str, Any], iterations: int = 20, warmup: int = 3) -> Profile:
    """Per-layer times of a :class:`~trtedge.runtime.trt_backend.TensorRTBackend` (or a stand-in with ``trt``,
    ``context`` and ``infer``) through TensorRT's profiler."""
    for _ in range(warmup):
        backend.infer(feed)
    profiler = make_profiler(backend.trt)
    context = backend.context
    if hasattr(context, "enqueue_emits_profile"):
        context.enqueue_emits_profile = True
    context.profiler = profiler
    layers = {}  # type: Dict[str, List[float]]
    events = []  # type: List[Dict[str, Any]]
    clock = 0.0  # microseconds on the trace's timeline: the layers of a run laid end to end
    try:
        for k in range(iterations):
            start = len(profiler.records)
            backend.infer(feed)
            if hasattr(context, "report_to_profiler") and len(profiler.records) == start:
                context.report_to_profiler()
            run = profiler.records[start:]
            begin = clock
            for name, ms in run:
                layers.setdefault(name, []).append(ms)
                events.append({"name": name, "cat": "layer", "ph": "X", "ts": round(clock, 3),
                               "dur": round(ms * 1000.0, 3), "pid": 1, "tid": 2, "args": {}})
                clock += ms * 1000.0
            events.append({"name": "run {}".format(k + 1), "cat": "run", "ph": "X", "ts": round(begin, 3),
                           "dur": round(clock - begin, 3), "pid": 1, "tid": 1, "args": {}})
            clock += 10.0
    finally:
        try:
            context.profiler = None
        except Exception:
            pass
    name = "trt ({} {})".format(getattr(backend.trt, "__name__", "tensorrt"), getattr(backend.trt, "__version__", "?"))
    return Profile(name, iterations, layers, {}, events)


# --------------------------------------------------------------------------- output


def write_trace(path: str, prof: Profile, meta: Optional[Dict[str, Any]] = None) -> None:
    names = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": prof.backend}},
             {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "runs"}},
             {"name": "thread_name", "ph": "M", "pid": 1, "tid": 2, "args": {"name": "layers"}}]
    data = {"traceEvents": names + prof.events, "displayTimeUnit": "ms",
            "otherData": dict(meta or {}, backend=prof.backend, runs=prof.runs)}
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise TrtedgeError("cannot write {}: {} is not a directory".format(path, directory))
    write_atomic(path, json.dumps(data))


def write_png(path: str, prof: Profile, top: int = 20, title: str = "") -> None:
    try:  # imported by name: only here, and never followed by the type checker
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise TrtedgeError("--png needs matplotlib: pip install \"trtedge[plot]\"")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    rows = prof.mean_ms()[:max(1, top)]
    total = sum(ms for _, ms in prof.mean_ms())
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.6), dpi=100)
    try:
        labels = [(n if len(n) <= 60 else "..." + n[-57:]) + (" ({})".format(prof.ops[n]) if prof.ops.get(n) else "")
                  for n, _ in rows]
        values = [ms for _, ms in rows]
        ax.barh(range(len(rows)), values, color="#4c72b0")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mean time per run (ms)")
        ax.set_title("{}: {} slowest of {} layers, {:.3f} ms per run in all ({})".format(
            title or "layers", len(rows), len(prof.layers), total, prof.backend), fontsize=9)
        for k, v in enumerate(values):
            ax.text(v, k, " {:.3f} ms ({:.0f} %)".format(v, 100.0 * v / total if total else 0.0), va="center",
                    fontsize=7)
        fig.tight_layout()
        tmp = "{}.partial-{}.png".format(path, os.getpid())
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)


def format_table(prof: Profile, top: int) -> str:
    rows = prof.mean_ms()
    total = sum(ms for _, ms in rows) or 1.0
    shown = rows[:max(1, top)]
    width = min(70, max([len("layer")] + [len(n) for n, _ in shown]))
    lines = ["{} layers, {} timed runs ({}); {:.3f} ms per run in all".format(
        len(rows), prof.runs, prof.backend, sum(ms for _, ms in rows)),
        "{}  {:>10}  {:>6}  {}".format("layer".ljust(width), "mean ms", "share", "op")]
    for name, ms in shown:
        lines.append("{}  {:>10.4f}  {:>5.1f}%  {}".format(name[-width:].ljust(width), ms, 100.0 * ms / total,
                                                           prof.ops.get(name, "")))
    return "\n".join(lines)


def profile(engine: str, backend: str = "trt", iterations: int = 20, warmup: int = 3, batch: int = 1,
            cuda: str = "cuda-python", say: Callable[[str], None] = _say) -> Profile:
    if iterations < 1 or warmup < 0 or batch < 1:
        raise TrtedgeError("--iterations and --batch must be at least 1, --warmup at least 0")
    if not os.path.isfile(engine):
        raise TrtedgeError("{} does not exist".format(engine))
    if backend == "onnxrt":
        path = engine
        if not engine.lower().endswith(".onnx"):
            from . import manifest as mf

            m = mf.read(mf.manifest_path(engine))
            path = mf.verify_file(os.path.dirname(os.path.abspath(engine)), m.onnxrt, "engine ONNX")
        say("Profiling {} in ONNX Runtime ({} runs after {} warm-up)".format(path, iterations, warmup))
        return profile_onnxrt(path, iterations, warmup, batch)
    from . import manifest as mf
    from .runtime import compat
    from .runtime.backends import trt_runtime_available

    m = mf.read(mf.manifest_path(engine))
    compat.ensure_usable(engine, compat.check_engine(engine), "trt")
    module = m.tensorrt.module if m.tensorrt else "tensorrt"
    ok, why = trt_runtime_available(module)
    if not ok:
        raise TrtedgeError("profile --backend trt cannot run here: {}".format(why),
                           hint="use --backend onnxrt, or run on a machine with {} and a GPU".format(module))
    from .runtime.trt_backend import TensorRTBackend

    be = TensorRTBackend(engine, m, cuda=cuda, cuda_graph=False, slots=1)
    try:
        say("Profiling {} with TensorRT's profiler ({} runs after {} warm-up)".format(engine, iterations, warmup))
        feed = sample_feed([(t.name, t.dtype, t.shape) for t in be.inputs], min(batch, be.max_batch))
        return profile_trt(be, feed, iterations, warmup)
    finally:
        be.close()


def run(args: argparse.Namespace) -> int:
    prof = profile(args.engine, backend=args.backend, iterations=args.iterations, warmup=args.warmup,
                   batch=args.batch, cuda=args.cuda)
    write_trace(args.trace, prof, {"engine": args.engine})
    if args.png:
        write_png(args.png, prof, args.top, title=os.path.basename(args.engine))
    print(format_table(prof, args.top))
    _say("Wrote {}{}".format(args.trace, " and {}".format(args.png) if args.png else ""))
    return 0


COMMAND = (add_arguments, run, "per-layer times of an engine (TensorRT's or ONNX Runtime's profiler) as a Chrome "
                               "trace and a PNG chart")
