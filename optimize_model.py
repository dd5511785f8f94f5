#!/usr/bin/env python3
"""Optimize a model into a TensorRT engine, the way the old script did:

    python optimize_model.py -m saved_model/ -o out/ -i input.npy --fp16 -g

The model (ONNX, SavedModel directory, frozen .pb or Keras file) is built as a
plain model (family ``none``: its own inputs and outputs) through
``trtedge.build`` — what ``trtedge build MODEL`` does. ``-i`` fixes the input
shape from a ``.npy`` batch and checks the engine ONNX against the source
model on it. ``--int8`` quantises the whole graph (Q/DQ) on ``--calib
BATCH.npy`` (or the ``-i`` batch) and reports INT8 against FP32. See
``python optimize_model.py --help``.
"""

import argparse
import logging
import sys
from typing import List, Optional

from trtedge.cli import _Parser, _say, guarded


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optimize_model.py",
                description="Build a TensorRT engine from an ONNX, SavedModel, frozen .pb or Keras model "
                            "(a plain model: its own inputs and outputs).")
    p.add_argument("-m", "--model_path", required=True, metavar="PATH",
                   help="ONNX file, SavedModel directory, frozen .pb or Keras .keras/.h5 file")
    p.add_argument("-o", "--output_path", metavar="DIR", help="output directory (default build/<name>)")
    p.add_argument("-i", "--input_file", metavar="NPY",
                   help="a .npy batch: fixes the input shape (its first axis is the batch) and checks the "
                        "engine ONNX against the source model on it")
    p.add_argument("--wsz", metavar="BYTES", help="builder workspace limit in bytes (or e.g. 512M, 2G)")
    memory = p.add_mutually_exclusive_group()
    memory.add_argument("-g", "--memory_growth", action="store_true",
                        help="TensorFlow: take GPU memory as needed during the conversion (memory growth)")
    memory.add_argument("-l", "--memory_limit", type=int, metavar="MB",
                        help="TensorFlow: at most this much GPU memory during the conversion")
    precision = p.add_mutually_exclusive_group()
    for name in ("fp32", "fp16", "int8"):
        precision.add_argument("--" + name, dest="precision", action="store_const", const=name,
                               help="{} engine{}".format(name.upper(), " (default)" if name == "fp32" else
                                                          " (Q/DQ, calibrated on --calib or the -i batch)"
                                                          if name == "int8" else ""))
    p.set_defaults(precision="fp32")
    p.add_argument("--calib", metavar="NPY",
                   help="int8: a .npy batch of the model's input to calibrate on (default: the -i batch, with a "
                        "warning); every fifth row is held out to measure INT8 against FP32 (all of them below 8 "
                        "rows)")
    p.add_argument("--force", action="store_true", help="rebuild even when an up-to-date engine exists")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks and TensorRT's log")
    return p


def _run(args: argparse.Namespace) -> int:
    from trtedge.optimize import format_check, format_int8, optimize

    result = optimize(args.model_path, out=args.output_path, input_file=args.input_file, workspace=args.wsz,
                      precision=args.precision, memory_growth=args.memory_growth, memory_limit=args.memory_limit,
                      force=args.force, verbose=args.verbose, say=_say, calib=args.calib)
    art = result.artifact
    if args.precision == "int8":
        for line in format_int8(art):
            print(line)
    if result.check is not None:
        for line in format_check(result.check, args.input_file):
            print(line)
    print(art.engine or art.onnx)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return guarded(lambda: _run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
