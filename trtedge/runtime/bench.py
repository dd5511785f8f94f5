"""``trtedge bench``: how fast is the engine, what does a whole run keep of it, and
how much faster than its source is it?

Rows:

* ``engine`` — the backend alone on a ready input batch (TensorRT: upload,
  execute, download; ONNX Runtime: ``session.run``);
* ``whole frame`` — one call of the Python API per batch of 1280x720 BGR
  frames (an engine built with ``--frame-size``: frames of that size),
  nothing overlapped: letterbox into the input buffer, the engine, host NMS
  (``host`` form), boxes back to frame pixels (detector engines only);
* ``pipeline`` (``--video FILE``) — the loop ``trtedge detect`` runs, over
  that video: decode and letterbox in a reader thread, the engine, host work
  and a JSON-lines sink (serialised, not stored) in the writer thread;
* ``source alone`` (``--video FILE``) — the reader's work on its own: decode a
  frame of that video and letterbox it, on the cores the reader runs on. The
  pipeline cannot outrun the slower of this row and the engine; when the two
  are close (a small engine on the CPU beside a 720p software decoder), the
  pipeline is bound by its source, not by the loop;
* ``source model`` — the unoptimised source ONNX in ONNX Runtime on the CPU,
  fed float input the way older demos prepared it (the baseline), when the
  manifest's source is an ONNX file that is still there.

The rows are timed **interleaved**: each iteration runs every row for one
block of ``block`` batches, in an order that rotates from one iteration to
the next, so that a machine that gets busier or quieter during the run
(thermal limits, other jobs) shifts every row alike and ratios between rows
mean something. Latencies are per batch in milliseconds (p50/p90/p99; for
the pipeline, the mean per frame of each block); throughput is images per
second over all timed blocks. The result carries the pipeline's throughput
as a fraction of the engine's (``pipeline_ratio``) and the engine's speed-up
over the source model. ``--json`` prints the same as JSON.
"""


import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import manifest as mf
from ..errors import TrtedgeError

#: what --video should reach: the whole pipeline against the engine alone
PIPELINE_TARGET = 0.95
#: below this many times the engine's throughput, the source alone (decode + letterbox) is named as
#: the pipeline's limit when the target is not met: beside a busy engine core the reader's own core
#: slows down (on the 2-core CI machine by 15-30%), and the reader then barely keeps ahead
SOURCE_MARGIN = 1.5
_DEPTH = 4  # the pipeline row's reader queue (run_loop's default)
#: frames the pipeline row runs past its timed ones: the reader's queue, the frame it is preparing
#: and the one the engine runs, so that the reader is still at work when the last timed result comes
_LEAD = _DEPTH + 2


class _Row(object):
    """One benchmark row: ``unit()`` runs one batch of ``images`` images (or, for a
    block-wise row, ``block(n, timed)`` runs n of them and returns their seconds)."""

    def __init__(self, name: str, images: int, unit: Optional[Callable[[], Any]] = None,
                 block: Optional[Callable[[int, bool], float]] = None) -> None:
        self.name = name
        self.images = images
        self.unit = unit
        self.block_fn = block
        self.samples = []  # type: List[float]
        self.seconds = 0.0
        self.count = 0

    def run(self, n: int, record: bool) -> None:
        if self.block_fn is not None:
            seconds = self.block_fn(n, record)
            if record:
                self.samples.append(seconds * 1000.0 / n)
                self.seconds += seconds
                self.count += n
            return
        assert self.unit is not None
        for _ in range(n):
            t0 = time.perf_counter()
            self.unit()
            dt = time.perf_counter() - t0
            if record:
                self.samples.append(dt * 1000.0)
                self.seconds += dt
                self.count += 1

    def stats(self) -> Dict[str, Any]:
        row = stats_row(self.name, self.samples, self.images)
        row["iterations"] = self.count
        row["throughput"] = round(self.count * self.images / self.seconds, 1) if self.seconds > 0 else None
        wall = getattr(self, "wall", None)
        if wall and wall[0] > 0:
            row["wall_throughput"] = round(wall[1] / wall[0], 1)  # blocks' start-up included
        return row


def interleaved(rows: List[_Row], iterations: int, warmup: int, block: int) -> None:
    """Time ``rows`` interleaved: ``ceil(iterations / block)`` rounds (after ``warmup``
    untimed batches each), each running every row for one block, the order
    rotating by one row per round."""
    block = max(1, min(block, iterations))
    if warmup:
        for row in rows:
            row.run(warmup, record=False)
    rounds = int(math.ceil(iterations / float(block)))
    left = iterations
    for k in range(rounds):
        n = min(block, left)
        left -= n
        shift = k % len(rows)
        for row in rows[shift:] + rows[:shift]:
            row.run(n, record=True)


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


class _SerialisedJson(object):
    """A JSON-lines sink that serialises every record and keeps none (the pipeline row)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, frame: Any, detections: Any) -> bool:
        record = {"source": frame.source, "frame": int(frame.index), "time": round(float(frame.time), 6),
                  "detections": detections.to_json()}
        self.bytes += len(json.dumps(record, separators=(", ", ": "))) + 1
        return True

    def close(self) -> None:
        pass


def _pipeline_row(det: Any, video: str) -> Any:
    """The ``pipeline`` row over ``video`` and the source it reads (looped, opened once)."""
    from .pipeline_loop import run_loop
    from .sinks import RunStats
    from .sources import decode_threads, open_source

    src = open_source(video, loop=True, decode_threads=decode_threads(det.host_threads))
    if src.live:
        src.close()
        raise TrtedgeError("--video {} is a live source; give a video file".format(video))
    first = src.read()
    if first is None:
        src.close()
        raise TrtedgeError("--video {} has no frames".format(video))
    h, w = first.image.shape[:2]
    sink = _SerialisedJson()

    class Times(RunStats):
        def record(self, capture_time: float, result_time: Optional[float] = None) -> float:
            self.results.append(time.time() if result_time is None else float(result_time))
            return RunStats.record(self, capture_time, result_time)

    def block(n: int, record: bool) -> float:
        # steady state: from the first result of the block to its (n+1)-th, per frame. A block starts the
        # loop afresh (threads, the first frame's decode and letterbox before the engine has work),
        # which a long run pays once; it is left out (wall-clock time of the block is kept as well).
        # The loop runs _LEAD frames past the timed ones: a reader that has read its last frame leaves
        # the engine a core to itself, which a long run never does; those frames are not timed.
        stats = Times()
        stats.results = []  # type: ignore[attr-defined]
        t0 = time.time()  # the clock of the results' times
        run_loop(det, [src], [sink], stats, max_frames=n + 1 + _LEAD, depth=_DEPTH)
        times = stats.results  # type: ignore[attr-defined]
        if len(times) != n + 1 + _LEAD:
            raise TrtedgeError("the pipeline gave {} results for {} frames of {}".format(
                len(times), n + 1 + _LEAD, video))
        if record:
            wall[0] += times[n] - t0
            wall[1] += n + 1
        return max(times[n] - times[0], 1e-9)

    wall = [0.0, 0]
    row = _Row("pipeline ({}x{} video, detect loop)".format(w, h), 1, block=block)
    row.wall = wall  # type: ignore[attr-defined]
    return row, _source_row(det, src), src


def _source_row(det: Any, src: Any) -> _Row:
    """The ``source`` row: what the pipeline's reader does per frame (decode, letterbox
    into a recycled input array), alone, on the cores the reader gets. The
    pipeline cannot be faster than this stage or the engine, whichever is slower."""
    from ..utils.cores import pin_thread, split_cores

    split = split_cores(det.host_threads)
    spare = [None]  # type: List[Any]

    def unit() -> None:
        frame = src.read()
        if frame is None:
            raise TrtedgeError("the --video source stopped giving frames")
        spare[0] = det.prepare(frame.image, spare[0]).input

    def block(n: int, record: bool) -> float:
        before = pin_thread(split[1] if split is not None else None)
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                unit()
            return time.perf_counter() - t0
        finally:
            pin_thread(before)

    return _Row("source alone (decode + letterbox)", 1, block=block)


def run(engine: str, backend: str = "auto", batch: int = 1, iterations: int = 100, warmup: int = 10,
        baseline: bool = True, say: Optional[Callable[[str], None]] = None, cuda: str = "cuda-python",
        cuda_graph: bool = False, video: Optional[str] = None, threads: Optional[int] = None,
        block: int = 10) -> Dict[str, Any]:
    """Benchmark ``engine``; returns ``{"engine", "backend", "batch", "block", "threads", "rows": [...],
    "speedup", "pipeline_ratio", "source_ratio", "note"}`` (``source_ratio``: the source
    row's throughput over the engine's, present with ``video``)."""
    from .backends import open_backend
    from .compat import check_engine, ensure_usable
    from .detector import Detector

    if batch < 1 or iterations < 1 or warmup < 0 or block < 1:
        raise TrtedgeError("--batch, --iterations and --block must be at least 1, --warmup at least 0")
    if video is not None and batch != 1:
        raise TrtedgeError("--video runs the detect loop, which batches one frame per source: use --batch 1")
    if video is not None and not os.path.isfile(video):
        raise TrtedgeError("--video {} is not a file".format(video))
    result = check_engine(engine)
    ensure_usable(engine, result, backend)
    data = mf.read(mf.manifest_path(engine))
    max_batch = data.max_batch
    if batch > max_batch:
        raise TrtedgeError("--batch {} is larger than the engine's max batch {}; rebuild with --batch {}".format(
            batch, max_batch, batch))
    if video is not None and not data.is_detector:
        raise TrtedgeError("--video needs a detector engine; {} is a plain model".format(engine))
    rng = np.random.default_rng(0)
    rows = []  # type: List[_Row]
    closers = []  # type: List[Callable[[], None]]
    note = None
    try:
        if data.is_detector:
            det = Detector(engine, backend=backend, say=say, cuda=cuda, cuda_graph=cuda_graph, checked=result,
                           threads=threads)
            closers.append(det.close)
            be = det.backend
            fh, fw = det.frame_size or (720, 1280)  # an engine built with --frame-size takes only that size
            frames = [rng.integers(0, 255, (fh, fw, 3), dtype=np.uint8) for _ in range(batch)]
            buf = be.input_buffer(det.input_name, batch if det.backend_is_dynamic() else det.max_batch)
            buf[...] = rng.integers(0, 255, buf.shape, dtype=np.uint8)
            feed = {det.input_name: buf}
            rows.append(_Row("engine ({})".format(be.name), batch, unit=lambda: be.infer(feed)))
            rows.append(_Row("whole frame ({}x{})".format(fw, fh), batch, unit=lambda: det.detect(frames)))
            if video is not None:
                row, source_row, src = _pipeline_row(det, video)
                closers.insert(0, src.close)
                rows.extend([row, source_row])
        else:
            be = open_backend(engine, data, backend, cuda=cuda, cuda_graph=cuda_graph, say=say, threads=threads)
            closers.append(be.close)
            feed = _feed_for(be.inputs, batch, rng)
            rows.append(_Row("engine ({})".format(be.name), batch, unit=lambda: be.infer(feed)))
        if baseline:
            base, note = _baseline(data, batch, rng, threads)
            if base is not None:
                rows.append(base)
        interleaved(rows, iterations, warmup, block)
    finally:
        for close in closers:
            close()
    table = [r.stats() for r in rows]
    out = {"engine": engine, "backend": table[0]["name"], "batch": batch, "block": min(block, iterations),
           "threads": threads, "rows": table, "note": note, "speedup": None,
           "pipeline_ratio": None}  # type: Dict[str, Any]
    engine_tp = table[0]["throughput"]
    base = [r for r in table if r["name"].startswith("source model")]
    if base and engine_tp and base[0]["throughput"]:
        out["speedup"] = round(engine_tp / base[0]["throughput"], 2)
    pipe = [r for r in table if r["name"].startswith("pipeline")]
    if pipe and engine_tp and pipe[0]["throughput"]:
        out["pipeline_ratio"] = round(pipe[0]["throughput"] / engine_tp, 3)
    source = [r for r in table if r["name"].startswith("source alone")]
    if source and engine_tp and source[0]["throughput"]:
        out["source_ratio"] = round(source[0]["throughput"] / engine_tp, 3)
    return out


def _baseline(data: mf.Manifest, batch: int, rng: Any, threads: Optional[int]) -> Any:
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
    if threads:
        opts.intra_op_num_threads = threads
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

    return _Row("source model (onnxrt CPU, unoptimised)", batch, unit=older_demo), None


def format_table(result: Dict[str, Any]) -> str:
    head = "{:<44} {:>9} {:>9} {:>9} {:>12}".format("", "p50 ms", "p90 ms", "p99 ms", "images/s")
    threads = ", {} ONNX Runtime thread(s)".format(result["threads"]) if result.get("threads") else ""
    lines = ["{} (batch {}; rows interleaved in blocks of {}{})".format(
        result["engine"], result["batch"], result.get("block", 1), threads), head]
    for r in result["rows"]:
        lines.append("{:<44} {:>9.3f} {:>9.3f} {:>9.3f} {:>12}".format(
            r["name"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["throughput"]))
    if result.get("pipeline_ratio") is not None:
        ratio = result["pipeline_ratio"]
        lines.append("pipeline / engine throughput: {:.3f} (target >= {:.2f}: {})".format(
            ratio, PIPELINE_TARGET, "met" if ratio >= PIPELINE_TARGET else "NOT met"))
        source = result.get("source_ratio")
        if source is not None and ratio < PIPELINE_TARGET and source < SOURCE_MARGIN:
            lines.append("the source alone gives only {:.2f}x the engine's frames, and less while the engine "
                         "runs beside it: the pipeline waits on decoding (decode on the GPU, or a smaller "
                         "video, moves the limit)".format(source))
    if result.get("speedup"):
        lines.append("speed-up of the engine over the source model: {:.2f}x".format(result["speedup"]))
    if result.get("note"):
        lines.append(result["note"])
    return "\n".join(lines)
