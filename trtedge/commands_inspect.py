"""``trtedge inspect``: what TensorRT's parser will refuse, before any build; an engine's manifest.

For a spec or a model, ``inspect`` makes the engine ONNX a build would make
(``trtedge.build(..., onnx_only=True)`` into a temporary directory) — or with
``--raw`` converts the source model to ONNX as it is, before any cut or
surgery — and runs TensorRT's ONNX parser on it
(:func:`trtedge.engines.tensorrt_build.parse_onnx`). It lists every node the
parser rejects, grouped by op with counts, and the graph's op histogram.
Parsing is all it does: TensorRT for RTX also refuses some ops only when it
builds (NonMaxSuppression "has no runners"), and TensorRT 8.x stops at the
first rejected node.

For an engine file (``.bin``, ``.engine``, ``.plan``) it prints the manifest
beside it and the engine's inputs and outputs.

Exit codes: 0 nothing rejected; 1 the parser rejects something; 2 bad input.
Importing this module loads neither numpy nor onnx.
"""

import argparse
import json
import os
from collections import Counter, OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from .errors import ManifestError, TrtedgeError
from .utils.console import say as _say

ENGINE_EXTS = (".bin", ".engine", ".plan")
#: ops TensorRT for RTX parses but cannot build (what its build then says)
RTX_BUILD_ONLY = {"NonMaxSuppression": "has no runners that implement it"}
TOP_OPS = 12
NODES_SHOWN = 5




def add_inspect(p: argparse.ArgumentParser) -> None:
    from .config import NMS_CHOICES, TRT_MODULES

    p.add_argument("target", help="a built-in spec name, a spec .yaml, a model file (ONNX, SavedModel directory, "
                                  ".pb, Keras, darknet .cfg), or an engine file (.bin/.engine/.plan)")
    p.add_argument("--raw", action="store_true",
                   help="parse the source model converted to ONNX as it is (no cut, no surgery)")
    p.add_argument("--json", action="store_true", help="print the report (or the engine's manifest) as JSON")
    p.add_argument("--model", metavar="PATH", help="the source model (overrides the spec's source.file)")
    p.add_argument("--weights", metavar="FILE", help="darknet: the .weights")
    p.add_argument("--labels", metavar="FILE", help="a label file, as for trtedge build")
    p.add_argument("--pipeline-config", metavar="FILE", help="TF OD API: the model's pipeline.config")
    p.add_argument("--family", metavar="NAME", help="an ONNX without a spec: its family")
    p.add_argument("--head", metavar="KIND", help="an ONNX without a spec: its head")
    p.add_argument("--num-classes", type=int, metavar="N", help="an ONNX without a spec: classes it predicts")
    p.add_argument("--input-size", metavar="HxW", help="an ONNX without a spec (or a dynamic input)")
    p.add_argument("--precision", default="fp32", help="fp32 or fp16: the engine ONNX of that build (default fp32)")
    p.add_argument("--nms", default="auto", choices=NMS_CHOICES, help="the NMS form of the engine ONNX")
    p.add_argument("--trt-module", choices=TRT_MODULES, help="which TensorRT parses")


def run_inspect(args: argparse.Namespace) -> int:
    target = args.target
    if target.lower().endswith(ENGINE_EXTS):
        if args.raw:
            raise TrtedgeError("--raw goes with a spec or a model; {} is an engine".format(target))
        return _inspect_engine(target, args.json)
    report = inspect_model(
        target, raw=args.raw, verbose=args.verbose, model=args.model, weights=args.weights, labels=args.labels,
        pipeline_config=args.pipeline_config, family=args.family, head=args.head, num_classes=args.num_classes,
        input_size=args.input_size, precision=args.precision, nms=args.nms, trt_module=args.trt_module)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in format_report(report):
            print(line)
    return 1 if report["rejected_nodes"] else 0


# ---------------------------------------------------------------- models


def inspect_model(target: str, raw: bool = False, verbose: bool = False, model: Optional[str] = None,
                  weights: Optional[str] = None, labels: Optional[str] = None, pipeline_config: Optional[str] = None,
                  family: Optional[str] = None, head: Optional[str] = None, num_classes: Optional[int] = None,
                  input_size: Any = None, precision: str = "fp32", nms: str = "auto",
                  trt_module: Optional[str] = None) -> Dict[str, Any]:
    """Parse what a build of ``target`` would give TensorRT (or, ``raw``, its source as ONNX); the report."""
    import tempfile

    from .engines import tensorrt_build as tb
    from .trt_module import import_trt

    trt = import_trt(trt_module)  # which TensorRT parses; BuildError (one line) when there is none
    say = _say if verbose else (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="trtedge-inspect-") as tmp:
        if raw:
            if any(v is not None for v in (family, head, num_classes, input_size)):
                raise TrtedgeError("--family, --head, --num-classes and --input-size describe the engine ONNX; "
                                   "--raw parses the source as it is")
            what = "the source model as ONNX, as it is (--raw)"
            _say("Reading {} as it is (--raw) ...".format(target))
            onnx_path = os.path.join(tmp, "raw.onnx")
            _write_raw(target, onnx_path, model, weights, labels, pipeline_config, verbose, say)
        else:
            from . import build

            what = "the engine ONNX `trtedge build {}` makes".format(target)
            _say("Making the engine ONNX a build of {} would give TensorRT ...".format(target))
            art = build(target, model=model, out=tmp, force=True, verbose=verbose, progress=say, weights=weights,
                        labels=labels, pipeline_config=pipeline_config, family=family, head=head,
                        num_classes=num_classes, input_size=input_size, precision=precision, nms=nms,
                        onnx_only=True, trt_module=trt_module or trt.__name__)
            onnx_path = art.onnx
        ops, nodes, nested = _histogram(onnx_path)
        parsed = tb.parse_onnx(onnx_path, trt=trt, precision=precision, verbose=verbose)
    return _report(target, what, parsed, ops, nodes, nested)


def _write_raw(target: str, path: str, model: Optional[str], weights: Optional[str], labels: Optional[str],
               pipeline_config: Optional[str], verbose: bool, say: Any) -> None:
    from .engines import sources
    from .engines.pipeline import resolve_target
    from .utils.files import write_atomic

    tgt = resolve_target(target, model, weights=weights, labels=labels, pipeline_config=pipeline_config)
    assert tgt.source_path is not None
    if tgt.kind == "darknet":
        from .engines import darknet

        assert tgt.weights is not None
        proto = darknet.convert(tgt.source_path, tgt.weights).onnx
    else:
        fmt = sources.detect_format(tgt.source_path)
        if tgt.spec is not None and tgt.spec.source.format != "auto":
            fmt = tgt.spec.source.format
        if fmt == "onnx":
            proto = sources.load_onnx(tgt.source_path)
        else:
            from .engines import tf_source

            say("Converting the TensorFlow {} to ONNX".format(fmt.replace("_", " ")))
            proto = tf_source.convert(tgt.source_path, fmt, None, verbose=verbose)
    write_atomic(path, proto.SerializeToString())


def _histogram(onnx_path: str) -> Tuple["Counter[str]", int, int]:
    """(op counts of the main graph, its node count, nodes inside Loop/If/Scan bodies)."""
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)

    def nested_count(graph: Any) -> int:
        total = 0
        for node in graph.node:
            for attr in node.attribute:
                subs = ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs)
                for sub in subs:
                    total += len(sub.node) + nested_count(sub)
        return total

    nodes = model.graph.node
    return Counter(str(n.op_type) for n in nodes), len(nodes), nested_count(model.graph)


def _report(target: str, what: str, parsed: Any, ops: "Counter[str]", nodes: int, nested: int) -> Dict[str, Any]:
    caps = parsed.capabilities
    groups = OrderedDict()  # type: Dict[str, Dict[str, Any]]
    for error in parsed.errors:
        op = error.op or "(no node)"
        group = groups.setdefault(op, {"op": op, "count": 0, "nodes": [], "reasons": []})
        node = error.node or ("#{}".format(error.index) if error.index >= 0 else "")
        if node and node in group["nodes"]:
            if error.desc not in group["reasons"]:
                group["reasons"].append(error.desc)
            continue
        group["count"] += 1
        if node:
            group["nodes"].append(node)
        if error.desc not in group["reasons"]:
            group["reasons"].append(error.desc)
    rejected = sorted(groups.values(), key=lambda g: (-g["count"], g["op"]))
    notes = []  # type: List[str]
    if caps.module == "tensorrt_rtx":
        for op, why in sorted(RTX_BUILD_ONLY.items()):
            if ops.get(op):
                notes.append("{} {} node{} parse, but TensorRT for RTX cannot build {} (\"{}\")".format(
                    ops[op], op, "" if ops[op] == 1 else "s", "it" if ops[op] == 1 else "them", why))
        notes.append("TensorRT for RTX refuses some ops only when it builds; inspect parses, it does not build")
    elif caps.version.split(".")[0] in ("7", "8"):
        notes.append("TensorRT {} stops at the first node it rejects: fix that one and inspect again".format(
            caps.version))
    if not parsed.ok and not rejected:
        rejected = [{"op": "(no node)", "count": 0, "nodes": [], "reasons": ["the parser failed"]}]
    return {
        "target": target,
        "graph": what,
        "tensorrt": {"module": caps.module, "version": caps.version},
        "nodes": nodes,
        "nested_nodes": nested,
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "layers": parsed.layers,
        "parsed": bool(parsed.ok),
        "rejected": rejected,
        "rejected_nodes": sum(g["count"] for g in rejected) or (0 if parsed.ok else 1),
        "notes": notes,
    }


def format_report(r: Dict[str, Any]) -> List[str]:
    trt = "{} {}".format(r["tensorrt"]["module"], r["tensorrt"]["version"])
    ops = list(r["ops"].items())
    nested = " (+{} inside Loop/If/Scan bodies)".format(r["nested_nodes"]) if r["nested_nodes"] else ""
    lines = ["{}: {}".format(r["target"], r["graph"]),
             "nodes: {}{} of {} op types; parsed by {}".format(r["nodes"], nested, len(ops), trt)]
    shown = ", ".join("{} {}".format(op, n) for op, n in ops[:TOP_OPS])
    more = " (+{} more op types)".format(len(ops) - TOP_OPS) if len(ops) > TOP_OPS else ""
    lines.append("ops: {}{}".format(shown or "none", more))
    if r["rejected"]:
        lines.append("rejected by the TensorRT parser ({} node{}, {} op{}):".format(
            r["rejected_nodes"], "" if r["rejected_nodes"] == 1 else "s", len(r["rejected"]),
            "" if len(r["rejected"]) == 1 else "s"))
        width = max(len(g["op"]) for g in r["rejected"])
        for g in r["rejected"]:
            names = ", ".join(g["nodes"][:NODES_SHOWN])
            if len(g["nodes"]) > NODES_SHOWN:
                names += ", ... (+{})".format(len(g["nodes"]) - NODES_SHOWN)
            lines.append("  {}  {:>4}  {}{}".format(g["op"].ljust(width), g["count"], names + ": " if names else "",
                                                    "; ".join(g["reasons"])))
    else:
        lines.append("rejected by the TensorRT parser: none")
    lines += ["note: " + n for n in r["notes"]]
    label = "TensorRT ({})".format(trt)
    if r["rejected_nodes"]:
        lines.append("inspect: {} rejects {} of the {} nodes of {}: {}".format(
            label, r["rejected_nodes"], r["nodes"], r["target"],
            ", ".join("{} {}".format(g["op"], g["count"]) for g in r["rejected"])))
    else:
        lines.append("inspect: {} rejects none of the {} nodes of {}".format(label, r["nodes"], r["target"]))
    return lines


# ---------------------------------------------------------------- engines


def _inspect_engine(path: str, as_json: bool) -> int:
    from .manifest import manifest_path, read

    if not os.path.isfile(path):
        raise TrtedgeError("engine file {} does not exist".format(path))
    mpath = manifest_path(path)
    if not os.path.isfile(mpath):
        raise TrtedgeError("no manifest beside {} (looked for {}); inspect reads what trtedge wrote beside the "
                           "engines it built".format(path, mpath))
    try:
        m = read(mpath)
    except ManifestError as exc:
        raise TrtedgeError(str(exc))
    if as_json:
        print(json.dumps({"engine": path, "manifest": mpath, "file": _file_state(path, m),
                          "data": m.to_dict()}, indent=2, sort_keys=True))
    else:
        for line in format_manifest(path, mpath, m):
            print(line)
    return 0


def _file_state(path: str, m: Any) -> str:
    from .utils.files import sha256_file

    rec = m.engine
    if rec is None:
        return "the manifest describes an --onnx-only build (no engine)"
    if os.path.basename(path) != rec.file:
        return "the manifest describes {}, not this file".format(rec.file)
    if rec.bytes is not None and os.path.getsize(path) != rec.bytes:
        return "{} bytes, but the manifest says {}: truncated or replaced".format(os.path.getsize(path), rec.bytes)
    if rec.sha256 and sha256_file(path) != rec.sha256:
        return "does not match the manifest's sha256: corrupt or replaced"
    return "matches the manifest (size and sha256)"


def _shape(dims: Any) -> str:
    return "[{}]".format(", ".join(str(d) for d in dims))


def _mb(n: Optional[int]) -> str:
    return "?" if n is None else "{:.1f} MB".format(n / 1e6)


def format_manifest(path: str, mpath: str, m: Any) -> List[str]:
    rows = []  # type: List[Tuple[str, str]]
    family = m.family
    if m.nms is not None:
        n = m.nms
        family += " (NMS '{}': top {}, score >= {}, IoU {}{})".format(
            n.form, n.max_detections, n.score_threshold, n.iou_threshold, ", class-agnostic" if n.class_agnostic else "")
    rows.append(("name", m.name))
    rows.append(("family", family))
    if m.labels:
        shown = ", ".join(m.labels[:8]) + (", ..." if len(m.labels) > 8 else "")
        rows.append(("labels", "{}: {}".format(len(m.labels), shown)))
    rows.append(("precision", "{} (road: {})".format(m.precision, m.precision_road)))
    opts = m.build_options
    rows.append(("batch", "{}..{} (optimised for {})".format(opts.min_batch, opts.max_batch, opts.opt_batch)))
    if opts.workspace:
        rows.append(("workspace", "{} bytes".format(opts.workspace)))
    if m.tensorrt is not None:
        t = m.tensorrt
        rows.append(("TensorRT", "{} {}{}{}{}, built in {} s".format(
            t.module, t.version, ", strongly typed" if t.strongly_typed else "",
            ", version-compatible" if t.version_compatible else "",
            ", hardware-compat {}".format(t.hardware_compat) if t.hardware_compat != "none" else "", t.build_seconds)))
    if m.gpu is not None:
        rows.append(("GPU", "{} (compute capability {})".format(m.gpu.name or "?", m.gpu.compute_capability)))
    if m.plugins.required or m.plugins.libraries:
        rows.append(("plugins", ", ".join(m.plugins.required + m.plugins.libraries)))
    if m.engine is not None:
        rows.append(("engine", "{}  {}  sha256 {}".format(m.engine.file, _mb(m.engine.bytes), m.engine.sha256)))
    rows.append(("this file", _file_state(path, m)))
    rows.append(("engine ONNX", "{}  {}".format(m.onnx.file, _mb(m.onnx.bytes))))
    if m.onnxrt.file != m.onnx.file:
        rows.append(("ONNX Runtime", m.onnxrt.file))
    rows.append(("source", "{} ({}, sha256 {})".format(m.source.path or "?", m.source.format, m.source.sha256 or "?")))
    inp = m.input
    if inp.height and inp.width:
        rows.append(("frames", "{}x{} {} {}, pad {}".format(inp.width, inp.height, inp.channels.upper(), inp.resize,
                                                            inp.pad_value)))
    rows.append(("built", "{} by trtedge {}".format(m.created or "?", m.trtedge_version or "?")))
    for note in m.notes:
        rows.append(("note", note))
    width = max(len(k) for k, _ in rows)
    lines = ["{} (manifest {})".format(path, mpath)]
    lines += ["  {}  {}".format(k.ljust(width), v) for k, v in rows]
    io = [("in", t) for t in m.inputs] + [("out", t) for t in m.outputs]
    if io:
        name_w = max(len(t.name) for _, t in io)
        type_w = max(len(t.dtype) for _, t in io)
        lines.append("I/O")
        for kind, t in io:
            lines.append("  {:<3}  {}  {}  {}".format(kind, t.name.ljust(name_w), t.dtype.ljust(type_w),
                                                     _shape(t.shape)))
    return lines
