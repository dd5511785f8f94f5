"""The runtime's subcommands: ``check``, ``detect``, ``bench``.

They live above both ``engines/`` and ``runtime/``: ``detect --rebuild``
rebuilds a foreign engine through :mod:`trtedge.rebuild` before the runtime
opens it. Each entry of :data:`COMMANDS` is ``name: (add_arguments, run,
help)``; ``trtedge.cli`` registers them. Importing this module loads neither
numpy nor onnx.
"""

import argparse
import json
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

from .errors import TrtedgeError

#: how long one pass of the loop waits on a live source before serving the others
LIVE_WAIT_S = 0.5


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- check

def add_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file (its manifest beside it)")
    p.add_argument("--trust-plugins", action="store_true", help="accept engines that carry plugin libraries")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run_check(args: argparse.Namespace) -> int:
    from .runtime.compat import COMPATIBLE, INCOMPATIBLE, check_engine

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
    p.add_argument("--save", metavar="PATH", help="write an annotated video")
    p.add_argument("--save-dir", metavar="DIR", help="write annotated images")
    p.add_argument("--json", metavar="PATH", help="write JSON lines, one object per frame ('-' for stdout)")
    p.add_argument("--conf", type=float, metavar="X", help="score threshold (default: the engine's)")
    p.add_argument("--only", nargs="+", metavar="LABEL", help="keep only these labels")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (all sources together)")
    p.add_argument("--loop", action="store_true", help="loop video files and image lists")
    p.add_argument("--rebuild", action="store_true", help="rebuild the engine when it does not fit this machine")
    p.add_argument("--trust-plugins", action="store_true", help="accept engines that carry plugin libraries")


def run_detect(args: argparse.Namespace) -> int:
    from .rebuild import checked_or_rebuilt
    from .runtime.detector import Detector
    from .runtime.sinks import RunStats, format_summary, open_sinks
    from .runtime.sources import open_source

    if args.conf is not None and not 0.0 <= args.conf <= 1.0:
        raise TrtedgeError("--conf must be between 0 and 1, is {}".format(args.conf))
    if args.max_frames is not None and args.max_frames < 1:
        raise TrtedgeError("--max-frames must be at least 1")
    checked = checked_or_rebuilt(args.engine, trust_plugins=args.trust_plugins, rebuild_if_needed=args.rebuild,
                                 say=_say)
    det = Detector(args.engine, backend=args.backend, conf=args.conf, only=args.only,
                   trust_plugins=args.trust_plugins, cuda=args.cuda, cuda_graph=args.cuda_graph, say=_say,
                   checked=checked)
    sources = []  # type: List[Any]
    sinks = []  # type: List[Any]
    stats = RunStats()
    interrupted = quit_by_user = False
    try:
        sources = [open_source(s, loop=args.loop) for s in args.source]
        sinks = open_sinks(show=args.show, save=args.save, save_dir=args.save_dir, json_path=args.json)
        _say("Running {} on {} with {} (NMS form '{}')".format(
            args.engine, ", ".join(s.name for s in sources), det.backend_name, det.form))
        quit_by_user = not _loop(det, sources, sinks, stats, args.max_frames)
    except KeyboardInterrupt:  # Ctrl-C: finalise what was written, then exit 130
        interrupted = True
    finally:
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # finalising one sink must not lose the others
                _say("trtedge: warning: closing {}: {}".format(type(sink).__name__, exc))
        dropped = sum(getattr(s, "dropped", 0) for s in sources)
        for src in sources:
            src.close()
        det.close()
    summary = stats.summary(dropped)
    summary["backend"] = det.backend_name
    _say(format_summary(summary))
    if interrupted or quit_by_user:
        _say("stopped by the user")
    return 130 if interrupted else 0


def _loop(det: Any, sources: List[Any], sinks: List[Any], stats: Any, max_frames: Any) -> bool:
    """Run until every source ends, a sink asks to stop, or max_frames. False when stopped early.

    One batch is kept in flight: batch k+1 is read, fitted and submitted
    before batch k's results are collected, so with the TensorRT backend the
    host work of one frame overlaps the engine's work on the previous one.
    """
    active = list(sources)
    done = 0
    pending = None  # type: Any

    def finish(item: Any) -> bool:
        frames, ticket = item
        results = det.collect(ticket)
        now = time.time()
        for frame, result in zip(frames, results):
            stats.record(frame.time, now)
            for sink in sinks:
                if sink.write(frame, result) is False:
                    return False
        return True

    while active and (max_frames is None or done < max_frames):
        frames = []
        for src in list(active):
            # a live source that is reconnecting must not hold up the others
            frame = src.read(timeout=LIVE_WAIT_S if getattr(src, "live", False) else None)
            if frame is not None:
                frames.append(frame)
            elif getattr(src, "ended", True):
                active.remove(src)
        if max_frames is not None:
            frames = frames[: max_frames - done]
        if not frames:
            continue
        for start in range(0, len(frames), det.max_batch):
            chunk = frames[start:start + det.max_batch]
            ticket = det.submit([f.image for f in chunk])
            if pending is not None and not finish(pending):
                return False
            pending = (chunk, ticket)
        done += len(frames)
    return pending is None or finish(pending)


COMMANDS = {
    "check": (add_check, run_check, "is this engine for this machine? (0 yes, 1 no, 3 cannot tell)"),
    "detect": (add_detect, run_detect, "run an engine on cameras, streams, videos or images"),
}  # type: Dict[str, Tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]]


def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file built by trtedge")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "onnxrt"))
    p.add_argument("--batch", type=int, default=1, metavar="N")
    p.add_argument("--iterations", type=int, default=100, metavar="N")
    p.add_argument("--warmup", type=int, default=10, metavar="N")
    p.add_argument("--no-baseline", action="store_true", help="skip the source-model baseline")
    p.add_argument("--cuda", default="cuda-python", choices=("cuda-python", "pycuda"))
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run_bench(args: argparse.Namespace) -> int:
    from .runtime.bench import format_table, run

    say = (lambda m: None) if args.json else _say
    result = run(args.engine, backend=args.backend, batch=args.batch, iterations=args.iterations,
                 warmup=args.warmup, baseline=not args.no_baseline, say=say, cuda=args.cuda,
                 cuda_graph=args.cuda_graph)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


COMMANDS["bench"] = (add_bench, run_bench, "latency and throughput of an engine, beside its source model")

from . import compare, evalcmd, profiling  # noqa: E402  (they load neither numpy nor onnx)

COMMANDS["eval"] = evalcmd.COMMAND
COMMANDS["compare"] = compare.COMMAND
COMMANDS["profile"] = profiling.COMMAND
