"""The ``trtedge`` command. Each subcommand parses flags, calls one function,
prints, and sets the exit code.

Exit codes: 0 success; 2 bad input (spec, model, flags, paths); 1 a check
that ran and failed (``check``: incompatible engine); 3 cannot tell; 130
interrupted. Errors are one line on stderr; ``-v/--verbose`` adds the
traceback and TensorRT's own log.
"""

import argparse
import logging
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional

from .errors import TrtedgeError
from .version import __version__
from .utils.console import say as _say

log = logging.getLogger("trtedge")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        sys.stderr.write("trtedge: error: {} (see {} --help)\n".format(message, self.prog))
        sys.exit(2)




def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``trtedge build`` (shared with ``build_engine.py``)."""
    from .config import CALIB_COUNT, ENGINE_EXTS, HARDWARE_COMPAT, INT8_ROADS, MAX_MAP_DROP, NMS_CHOICES, TRT_MODULES

    p.add_argument("target", help="a built-in spec name (see `trtedge specs`), a spec .yaml, an engine ONNX "
                                  "made by trtedge, or a model file")
    p.add_argument("--model", metavar="PATH", help="the source model (overrides the spec's source.file)")
    p.add_argument("--weights", metavar="FILE", help="darknet: the .weights (default: beside the .cfg, same name)")
    p.add_argument("--labels", metavar="FILE", help="darknet: a .names file (default: beside the .cfg, else COCO "
                                                    "for 80 classes); TF OD API: a label map .pbtxt or names file")
    p.add_argument("--pipeline-config", metavar="FILE",
                   help="TF OD API SavedModel/.pb: read anchors, box coder, classes, input size and NMS from the "
                        "model's pipeline.config (found beside the model without this flag)")
    p.add_argument("--family", metavar="NAME", help="an ONNX without a spec: its family (yolo, ssd, none, ...)")
    p.add_argument("--head", metavar="KIND", help="an ONNX without a spec: its head (anchor_free, decoded, ...)")
    p.add_argument("--num-classes", type=int, metavar="N", help="an ONNX without a spec: classes it predicts")
    p.add_argument("--input-size", metavar="HxW", help="an ONNX without a spec (or a dynamic input): e.g. 640x640")
    p.add_argument("--download", action="store_true",
                   help="fetch the spec's source.url into the working directory when the model is missing")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<name>)")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8 (default fp32; int8 needs --calib)")
    p.add_argument("--calib", metavar="SRC", help="int8: calibration frames (an image directory, a video or a "
                                                 ".npy batch), fitted into the input as the runtime does")
    p.add_argument("--calib-count", type=int, default=CALIB_COUNT, metavar="N",
                   help="int8: calibration frames to use (default {}; a fifth more are held out for the "
                        "accuracy gate)".format(CALIB_COUNT))
    p.add_argument("--max-map-drop", type=float, default=MAX_MAP_DROP, metavar="X",
                   help="int8: largest mAP@0.5 drop against FP32 accepted; more sensitive layers stay in float "
                        "until it holds (default {})".format(MAX_MAP_DROP))
    p.add_argument("--int8-road", default="auto", choices=INT8_ROADS,
                   help="int8: qdq (a Q/DQ engine ONNX quantised on the CPU), calibrator (TensorRT's entropy "
                        "calibrator, TensorRT 8.5-10), auto (calibrator where the TensorRT has one)")
    p.add_argument("--frame-size", metavar="HxW",
                   help="the engine takes frames of this size as they are (e.g. 720x1280) and resizes and "
                        "letterboxes them itself: no resize on the host; other sizes are refused at run time")
    p.add_argument("--workspace", metavar="BYTES", help="builder workspace limit, e.g. 512M or 2G")
    p.add_argument("--batch", type=int, metavar="N", help="largest batch (profile 1..N, optimised for N)")
    p.add_argument("--min-batch", type=int, metavar="N")
    p.add_argument("--opt-batch", type=int, metavar="N")
    p.add_argument("--max-batch", type=int, metavar="N")
    p.add_argument("--nms", default="auto", choices=NMS_CHOICES,
                   help="NMS form; auto picks what the installed TensorRT can build (plugin > onnx > host)")
    p.add_argument("--onnx-only", action="store_true", help="write the engine ONNX and manifest only")
    p.add_argument("--timing-cache", metavar="PATH", help="TensorRT timing cache to read and update")
    p.add_argument("--version-compatible", action="store_true",
                   help="build a version-compatible engine (TensorRT >= 8.6)")
    p.add_argument("--hardware-compat", metavar="LEVEL",
                   choices=HARDWARE_COMPAT,
                   help="hardware compatibility level (TensorRT >= 8.6)")
    p.add_argument("--trt-module", choices=TRT_MODULES,
                   help="which TensorRT Python module builds (default: tensorrt if importable, else tensorrt_rtx)")
    p.add_argument("--engine-ext", default="bin", choices=ENGINE_EXTS, help="engine file extension")
    p.add_argument("--force", action="store_true", help="rebuild even when an up-to-date engine exists")


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`BuildConfig` of ``trtedge build``'s flags (validated; nothing else is read)."""
    from .config import BuildConfig

    return BuildConfig.create(
        precision=args.precision, workspace=args.workspace, batch=args.batch, min_batch=args.min_batch,
        opt_batch=args.opt_batch, max_batch=args.max_batch, nms=args.nms, onnx_only=args.onnx_only,
        timing_cache=args.timing_cache, version_compatible=args.version_compatible,
        hardware_compat=args.hardware_compat, trt_module=args.trt_module, engine_ext=args.engine_ext,
        calib=args.calib, calib_count=args.calib_count, max_map_drop=args.max_map_drop, int8_road=args.int8_road,
        frame_size=args.frame_size)


def cmd_build(args: argparse.Namespace) -> int:
    config = build_config(args)
    from .engines.pipeline import build

    art = build(args.target, model=args.model, out=args.out, force=args.force, verbose=args.verbose,
                progress=_say, config=config, weights=args.weights, labels=args.labels,
                pipeline_config=args.pipeline_config, download=args.download, family=args.family,
                head=args.head, num_classes=args.num_classes, input_size=args.input_size)
    print(art.engine or art.onnx)
    return 0


def cmd_specs(args: argparse.Namespace) -> int:
    from .specs import builtin_spec_path, list_specs, load_spec, spec_summary

    if getattr(args, "show", None):
        from .errors import SpecError

        path = builtin_spec_path(args.show) if "/" not in args.show and "\\" not in args.show else None
        if path is None:
            raise SpecError("'{}' is not a built-in spec; built-in specs: {}".format(args.show, ", ".join(list_specs())))
        with open(path, "rb") as f:
            sys.stdout.write(f.read().decode("utf-8"))
        sys.stdout.flush()
        return 0

    rows = [spec_summary(load_spec(name)) for name in list_specs()]
    cols = ("name", "family", "head", "input", "classes", "source")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
    return 0


COMMANDS = {}  # type: Dict[str, Callable[[argparse.Namespace], int]]


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trtedge", description="TensorRT engines for detectors on edge devices.")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks and TensorRT's log")
    parser.add_argument("--version", action="version", version="trtedge " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    b = sub.add_parser("build", help="build an engine from a spec or a model")
    add_build_arguments(b)
    s = sub.add_parser("specs", help="list the built-in specs (--show NAME prints one)")
    s.add_argument("--show", metavar="NAME", help="print the built-in spec NAME's YAML file as it is (to copy)")
    COMMANDS.update(build=cmd_build, specs=cmd_specs)
    _register_more(sub)
    for p in sub.choices.values():  # -v also after the subcommand
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="tracebacks and TensorRT's log")
    return parser


def _register_more(sub: Any) -> None:
    """Subcommands of the runtime (detect, check, bench)."""
    from . import commands

    for name, (setup, run, help_text) in commands.COMMANDS.items():
        setup(sub.add_parser(name, help=help_text))
        COMMANDS[name] = run


def main(argv: Optional[List[str]] = None) -> int:
    try:  # Ctrl-C while the subcommands load: one line, like everywhere else
        parser = make_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        sys.stderr.write("trtedge: interrupted\n")
        return 130
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    return guarded(lambda: COMMANDS[args.command](args), args.verbose)


def guarded(call: Callable[[], int], verbose: bool = False) -> int:
    """Run ``call``; what a user caused becomes one line on stderr and an exit code (``optimize_model.py``
    shares this)."""
    try:
        return call()
    except TrtedgeError as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write("trtedge: error: {}\n".format(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("trtedge: interrupted\n")
        return 130
    except MemoryError:
        from .engines.diagnose import host_memory

        if verbose:
            traceback.print_exc()
        sys.stderr.write("trtedge: error: {}\n".format(host_memory()))
        return 2
    except OSError as exc:  # the file system or a device said no: not a bug, one line
        from .engines.diagnose import describe_os_error

        if verbose:
            traceback.print_exc()
        known = describe_os_error(exc)  # a full disk: which file, how much room, what to do
        if known is None:
            where = " ({})".format(exc.filename) if getattr(exc, "filename", None) else ""
            known = "{}{}".format(exc.strerror or exc, where)
        sys.stderr.write("trtedge: error: {}\n".format(known))
        return 2


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
