"""The runtime's subcommands: ``check``, ``detect``, ``bench``.

They live above both ``engines/`` and ``runtime/``: ``detect --rebuild``
rebuilds a foreign engine through :mod:`trtedge.rebuild` before the runtime
opens it. Each entry of :data:`COMMANDS` is ``name: (add_arguments, run,
help)``; ``trtedge.cli`` registers them. Importing this module loads neither
numpy nor onnx.
"""

import argparse
import json
import os
import signal
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .commands_inspect import add_inspect, run_inspect
from .errors import TrtedgeError
from .utils.console import say as _say




# ---------------------------------------------------------------- check

def add_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file (its manifest beside it)")
    p.add_argument("--trust-plugins", action="store_true", help="accept engines that carry plugin libraries")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _not_an_engine(path: str) -> None:
    """Exit 2 (one line) for a path that is no engine at all: a directory, missing, or a
    file with neither a manifest beside it nor a TensorRT plan header. (A plan
    without its manifest is an engine that cannot be trusted: exit 1.)"""
    from .errors import EngineError
    from .manifest import manifest_path
    from .runtime.compat import read_header

    if os.path.isdir(path):
        raise EngineError("{} is a directory; give the engine file (.bin/.engine/.plan) inside it".format(path))
    if not os.path.isfile(path):
        raise EngineError("engine {} does not exist".format(path), hint="build one with trtedge build")
    if os.path.isfile(manifest_path(path)):
        return
    try:
        header = read_header(path)
    except OSError as exc:
        raise EngineError("cannot read {}: {}".format(path, exc.strerror or exc)) from None
    if header is None:
        raise EngineError("{} is not a trtedge engine: no manifest beside it ({}) and no TensorRT plan "
                          "header".format(path, manifest_path(path)),
                          hint="give the .bin/.engine/.plan that trtedge build wrote")


def run_check(args: argparse.Namespace) -> int:
    from .runtime.compat import COMPATIBLE, INCOMPATIBLE, check_engine

    _not_an_engine(args.engine)
    r = check_engine(args.engine, trust_plugins=args.trust_plugins)
    word = {COMPATIBLE: "compatible", INCOMPATIBLE: "incompatible"}.get(r.status, "cannot tell")
    if args.json:
        print(json.dumps({"status": word, "exit_code": r.status, "reason": r.reason, "rebuild": r.rebuild,
                          "details": list(r.details)}, indent=2))
    else:
        print("{}: {}: {}".format(args.engine, word, r.reason))
        if r.status != COMPATIBLE and r.rebuild:
            print("rebuild with: {}".format(r.rebuild))
    return r.status


# ---------------------------------------------------------------- detect

def add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file built by trtedge (manifest and engine ONNX beside it)")
    p.add_argument("--source", action="append", required=True, metavar="S",
                   help="camera index or /dev/videoN, csi://N?..., rtsp://..., http://..., a GStreamer "
                        "pipeline, a video, an image, a directory or glob of images (repeat for several)")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "onnxrt"))
    p.add_argument("--cuda", default="cuda-python", choices=("cuda-python", "pycuda"),
                   help="CUDA binding of the TensorRT backend")
    p.add_argument("--cuda-graph", action="store_true", help="replay the enqueue as a CUDA graph (TensorRT)")
    p.add_argument("--show", action="store_true", help="show a window with the detections and FPS")
    p.add_argument("--save", metavar="PATH", help="write an annotated video at the source's frame rate (several "
                                                  "sources: one video each, PATH_<source>.mp4)")
    p.add_argument("--save-dir", metavar="DIR", help="write annotated images (image files keep their names)")
    p.add_argument("--json", metavar="PATH", help="write JSON lines, one object per frame ('-' for stdout)")
    p.add_argument("--conf", type=float, metavar="X", help="score threshold (default: the engine's)")
    p.add_argument("--only", nargs="+", metavar="LABEL", help="keep only these labels")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (all sources together)")
    p.add_argument("--loop", action="store_true", help="loop video files and image lists")
    p.add_argument("--stream-timeout", type=float, default=10.0, metavar="S",
                   help="seconds a stream may take to connect, or stay silent, before it is reopened (default 10)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime threads (default: all cores but one, which reads the frames)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the engine when it does not fit this machine")
    p.add_argument("--trust-plugins", action="store_true", help="accept engines that carry plugin libraries")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit 143)."""


class _Signals(object):
    """While ``detect`` runs, SIGTERM raises :class:`_Terminated` in the main thread
    (once: later ones are ignored while the outputs are finalised)."""

    def __init__(self) -> None:
        self._old = None  # type: Any
        self.fired = False

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.fired:
            self.fired = True
            raise _Terminated()

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            self.fired = True
            signal.signal(signal.SIGTERM, self._old)


def _threads(value: Optional[int]) -> int:
    """ONNX Runtime's intra-op threads: ``value``, else every core but one (the reader's)."""
    if value is not None:
        if value < 1:
            raise TrtedgeError("--threads must be at least 1, is {}".format(value))
        return value
    from .utils.cores import usable_cores

    return max(1, usable_cores() - 1)


def _engine_files(engine: str) -> List[Tuple[str, str]]:
    """(what, path) of every file that belongs to the engine: it, its manifest, its ONNX files."""
    from . import manifest as mf

    stem = os.path.splitext(engine)[0]
    files = [("the engine", engine), ("the engine's manifest", mf.manifest_path(engine)),
             ("the engine ONNX", stem + ".onnx"), ("the engine's ONNX Runtime graph", stem + ".ort.onnx")]
    try:
        m = mf.read(mf.manifest_path(engine))
    except (TrtedgeError, OSError, ValueError):
        return files
    directory = os.path.dirname(os.path.abspath(engine))
    for what, rec in (("the engine ONNX", m.onnx), ("the engine's ONNX Runtime graph", m.onnxrt)):
        if rec is not None and getattr(rec, "file", None):
            files.append((what, os.path.join(directory, rec.file)))
    for lib in m.plugins.libraries:
        files.append(("a plugin library of the engine", os.path.join(directory, lib)))
    return files


def _is_image(path: str) -> bool:
    from .runtime.sources import IMAGE_EXTENSIONS

    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _outputs(args: argparse.Namespace, plans: List[Any]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(flag, path) of everything ``detect`` will write, and the video names (one per source)."""
    from .runtime.sinks import check_writable, image_names, video_paths

    outputs = []  # type: List[Tuple[str, str]]
    videos = []  # type: List[str]
    if args.save:
        videos = video_paths(args.save, [p.name for p in plans])
        for v in videos:
            check_writable(v, "the video")
            outputs.append(("--save", v))
    if args.json and args.json != "-":
        check_writable(args.json, "JSON lines")
        outputs.append(("--json", args.json))
    if args.save_dir:
        check_writable(args.save_dir, "images", is_dir=True)
        outputs.append(("--save-dir", args.save_dir))
        images = [f for p in plans for f in p.paths if _is_image(f)]
        for name in image_names(images).values():
            outputs.append(("--save-dir", os.path.join(args.save_dir, name)))
    return outputs, videos


def run_detect(args: argparse.Namespace) -> int:
    with _Signals():
        try:
            return _detect(args)
        except KeyboardInterrupt as exc:  # before the loop started: nothing to summarise
            term = isinstance(exc, _Terminated)
            _say("trtedge: {}".format("terminated" if term else "interrupted"))
            return 143 if term else 130


def _detect(args: argparse.Namespace) -> int:
    from .rebuild import checked_or_rebuilt
    from .runtime.detector import Detector
    from .runtime.pipeline_loop import run_loop
    from .runtime.sinks import Progress, RunStats, check_outputs, format_summary, open_sinks, written
    from .runtime.sources import decode_threads, open_source, plan_source, stop_grab_threads

    if args.conf is not None and not 0.0 <= args.conf <= 1.0:
        raise TrtedgeError("--conf must be between 0 and 1, is {}".format(args.conf))
    if args.max_frames is not None and args.max_frames < 1:
        raise TrtedgeError("--max-frames must be at least 1")
    if not args.stream_timeout > 0:
        raise TrtedgeError("--stream-timeout must be more than 0 seconds, is {}".format(args.stream_timeout))
    threads = _threads(args.threads)
    _not_an_engine(args.engine)
    plans = [plan_source(s) for s in args.source]
    # every output against every input and every other output, before anything is opened
    outputs, videos = _outputs(args, plans)
    inputs = _engine_files(args.engine)
    for plan in plans:
        inputs += [("the source", f) for f in plan.paths]
        if plan.directory:
            inputs.append(("the source directory", plan.directory))
    check_outputs(outputs, inputs)

    checked = checked_or_rebuilt(args.engine, trust_plugins=args.trust_plugins, rebuild_if_needed=args.rebuild,
                                 say=_say)
    det = Detector(args.engine, backend=args.backend, conf=args.conf, only=args.only,
                   trust_plugins=args.trust_plugins, cuda=args.cuda, cuda_graph=args.cuda_graph, say=_say,
                   checked=checked, threads=threads)
    sources = []  # type: List[Any]
    sinks = []  # type: List[Any]
    stats = RunStats()
    started = False
    stopped = ""  # who ended the run early: "the user" (Ctrl-C, ESC), "SIGTERM"
    error = None  # type: Any
    try:
        decoders = decode_threads(det.host_threads, sum(1 for p in plans if p.kind == "file"))
        for plan in plans:
            sources.append(open_source(plan, loop=args.loop, open_timeout=args.stream_timeout,
                                       decode_threads=decoders))
        images = [f for p in plans for f in p.paths if _is_image(f)]
        sinks = open_sinks(show=args.show, save=args.save, save_dir=args.save_dir, json_path=args.json,
                           sources=sources, image_files=images)
        _say("Running {} on {} with {} (NMS form '{}')".format(
            args.engine, ", ".join(s.name for s in sources), det.backend_name, det.form))
        if len(videos) > 1:
            _say("Saving one video per source: {}".format(", ".join(videos)))
        started = True
        if not run_loop(det, sources, sinks, stats, args.max_frames, progress=Progress()):
            stopped = "the user"
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: finalise what was written, then exit 130 / 143
        if not started:
            raise
        stopped = "SIGTERM" if isinstance(exc, _Terminated) else "the user"
        error = exc
    except (TrtedgeError, OSError) as exc:
        if not started:
            raise
        error = exc
    finally:
        close_error = _close_all(sinks, sources, det, stop_grab_threads)
    # here the loop has started (an error before it was raised above, after the clean-up)
    if close_error is not None:
        if error is None or isinstance(error, KeyboardInterrupt):
            error = close_error  # an output that could not be finished outweighs the interruption
        else:
            _say("trtedge: warning: {}".format(close_error))
    summary = stats.summary(sum(getattr(s, "dropped", 0) for s in sources))
    summary["backend"] = det.backend_name
    summary["written"] = written(sinks)
    _say(format_summary(summary))
    if stopped:
        _say("stopped by {}".format(stopped))
    if isinstance(error, KeyboardInterrupt):
        return 143 if isinstance(error, _Terminated) else 130
    if error is not None:
        raise error
    return 0


def _close_all(sinks: List[Any], sources: List[Any], det: Any, stop_threads: Callable[..., bool]) -> Any:
    """Finalise the sinks, then release the sources (joining their grab threads) and the
    detector. Returns the first error a sink raised while finishing its file (a
    full disk), else None."""
    first = None  # type: Any
    for sink in sinks:
        try:
            sink.close()
        except (TrtedgeError, OSError) as exc:
            first = first or exc
        except Exception as exc:  # finalising one sink must not lose the others
            _say("trtedge: warning: closing {}: {}".format(type(sink).__name__, exc))
    for src in sources:
        src.close()
    stop_threads(say=_say)
    det.close()
    return first


COMMANDS = {
    "check": (add_check, run_check, "is this engine for this machine? (0 yes, 1 no, 3 cannot tell)"),
    "detect": (add_detect, run_detect, "run an engine on cameras, streams, videos or images"),
}  # type: Dict[str, Tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]]


def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file built by trtedge")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "onnxrt"))
    p.add_argument("--batch", type=int, default=1, metavar="N")
    p.add_argument("--iterations", type=int, default=100, metavar="N", help="timed batches per row")
    p.add_argument("--warmup", type=int, default=10, metavar="N")
    p.add_argument("--block", type=int, default=10, metavar="N",
                   help="batches each row runs per turn; rows take turns in a rotating order (default 10)")
    p.add_argument("--video", metavar="FILE", help="add a row for the detect loop over this video (python -m "
                                                   "trtedge.datasets video FILE --size 720x1280 makes one)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime threads (default: all cores but one, as detect uses)")
    p.add_argument("--no-baseline", action="store_true", help="skip the source-model baseline")
    p.add_argument("--cuda", default="cuda-python", choices=("cuda-python", "pycuda"))
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run_bench(args: argparse.Namespace) -> int:
    from .runtime.bench import format_table, run

    _not_an_engine(args.engine)
    say = (lambda m: None) if args.json else _say
    result = run(args.engine, backend=args.backend, batch=args.batch, iterations=args.iterations,
                 warmup=args.warmup, baseline=not args.no_baseline, say=say, cuda=args.cuda,
                 cuda_graph=args.cuda_graph, video=args.video, threads=_threads(args.threads), block=args.block)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


COMMANDS["bench"] = (add_bench, run_bench, "latency and throughput of an engine, beside its source model")


COMMANDS["inspect"] = (add_inspect, run_inspect, "what TensorRT's parser rejects in the engine ONNX of a spec or "
                                                 "model (0 nothing, 1 something); an engine's manifest and I/O")

from . import compare, evalcmd, profiling  # noqa: E402  (they load neither numpy nor onnx)

COMMANDS["eval"] = evalcmd.COMMAND
COMMANDS["compare"] = compare.COMMAND
COMMANDS["profile"] = profiling.COMMAND
