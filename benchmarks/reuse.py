#!/usr/bin/env python3
"""How fast is "nothing to do"? Reusing a built engine, against `trtedge --help`.

Builds shapes_yolo and shapes_ssd once into a temporary directory, then times,
interleaved (each round runs every row once, in rotating order):

* ``trtedge --help`` (a fresh process: the floor of any command);
* ``trtedge build shapes_yolo`` on the built engine (a fresh process);
* ``trtedge build shapes_ssd`` on the built engine (a fresh process; a
  SavedModel, which must not be converted again);
* ``trtedge.build("shapes_yolo")`` in-process on the built engine.

Targets: in-process reuse <= 0.2 s; the CLI reuse of shapes_yolo <= 2x the
wall time of ``trtedge --help``; shapes_ssd reuses. Commands run with
bytecode caching on (as an installed package does), after one warm-up each.

    python benchmarks/reuse.py [--rounds 7] [--json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # as an installed package runs: with its .pyc files (this workplace sets PYTHONDONTWRITEBYTECODE,
    # which makes every command recompile trtedge's modules)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trtedge"] + list(args), capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit("trtedge {} failed: {}".format(" ".join(args), proc.stderr.strip()[-400:]))
    return elapsed, proc.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import trtedge

    out = tempfile.mkdtemp(prefix="trtedge-reuse-")
    yolo, ssd = os.path.join(out, "yolo"), os.path.join(out, "ssd")
    _cli("build", "shapes_yolo", "--out", yolo)
    _cli("build", "shapes_ssd", "--out", ssd)

    def in_process():
        t0 = time.perf_counter()
        art = trtedge.build("shapes_yolo", out=yolo)
        assert art.reused
        return time.perf_counter() - t0, ""

    rows = {
        "trtedge --help": lambda: _cli("--help"),
        "trtedge build shapes_yolo (reused)": lambda: _cli("build", "shapes_yolo", "--out", yolo),
        "trtedge build shapes_ssd (reused)": lambda: _cli("build", "shapes_ssd", "--out", ssd),
        "trtedge.build('shapes_yolo') in-process (reused)": in_process,
    }
    in_process()  # the first in-process call pays the imports once, as any long-lived program does
    for fn in rows.values():  # one warm-up each: .pyc files written, file caches warm
        fn()
    samples = {k: [] for k in rows}
    names = list(rows)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            seconds, stderr = rows[k]()
            if "build" in k and "Up to date: reusing" not in stderr and "in-process" not in k:
                raise SystemExit("{} did not reuse: {}".format(k, stderr.strip()[-300:]))
            samples[k].append(seconds)
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    help_s = med["trtedge --help"]
    targets = {
        "in-process reuse <= 0.2 s": med["trtedge.build('shapes_yolo') in-process (reused)"] <= 0.2,
        "CLI reuse of shapes_yolo <= 2x --help": med["trtedge build shapes_yolo (reused)"] <= 2 * help_s,
        "shapes_ssd reuses": True,  # checked above on every round
    }
    if args.json:
        print(json.dumps({"median_s": med, "targets": targets}, indent=2))
        return 0 if all(targets.values()) else 1
    print("{:<52} {:>10} {:>10}".format("", "median s", "x --help"))
    for k in names:
        print("{:<52} {:>10.3f} {:>10.2f}".format(k, med[k], med[k] / help_s))
    for t, ok in targets.items():
        print("target {}: {}".format(t, "met" if ok else "MISSED"))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
