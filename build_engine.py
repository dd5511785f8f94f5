#!/usr/bin/env python3
"""Build a TensorRT engine from a clone, the way the old scripts did.

    python build_engine.py shapes_yolo [--precision fp16] [--out DIR] ...

Same arguments as ``trtedge build`` (see ``python build_engine.py --help``).
"""

import sys

from trtedge.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    flags = [a for a in argv if a in ("-v", "--verbose")]
    sys.exit(main(flags + ["build"] + [a for a in argv if a not in ("-v", "--verbose")]))
