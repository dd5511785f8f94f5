"""``build``: spec (or model file) -> engine ONNX -> TensorRT engine + manifest.

Stages, data flowing forward only:

1. :func:`resolve_target` — a spec name, a spec YAML, an engine ONNX (which
   carries its resolved spec) or a plain model file -> ``Target``;
2. ``sources`` — locate and load the source model as ONNX;
3. ``surgery.transform`` — preprocessing, decode and NMS inside the graph;
4. ``precision`` — FP16 by ONNX types where the builder has no FP16 flag;
5. ``tensorrt_build.build_engine`` — the serialized engine;
6. ``manifest`` — the JSON beside it.

Files (``DIR`` defaults to ``build/<name>``): ``DIR/<name>_<P>.onnx``, then
``DIR/<name>_<P>.bin``, then ``DIR/<name>_<P>.json``, each written atomically;
the old manifest is removed first, so a manifest on disk always describes the
engine beside it. A second build with the same inputs (same engine ONNX,
options and TensorRT) reuses the engine and says so; ``force`` rebuilds.
"""

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, NamedTuple, Optional

from ..errors import BuildError, ModelError, SpecError, TrtedgeError
from . import manifest as mf
from . import sources
from ..utils.files import sha256_path
from .nms import FORMS as NMS_FORMS

log = logging.getLogger("trtedge")

NMS_CHOICES = ("auto",) + NMS_FORMS
ENGINE_EXTS = ("bin", "engine", "plan")


class Target(NamedTuple):
    spec: Any
    #: the source model's path as given (None for an engine ONNX)
    source_path: Optional[str]
    #: an already-made engine ONNX (``trtedge build x.onnx`` with metadata)
    engine_onnx: Any
    #: metadata of that engine ONNX (source, nms form, precision)
    meta: Dict[str, Any]


class Artifact(NamedTuple):
    """What a build wrote. ``engine`` is None with ``onnx_only``."""

    engine: Optional[str]
    onnx: str
    manifest: str
    data: Dict[str, Any]
    reused: bool


def resolve_target(target: str, model: Optional[str] = None) -> Target:
    from ..specs import is_spec_reference, load_spec

    if is_spec_reference(target) and not os.path.isdir(target):
        spec = load_spec(target)
        return Target(spec, sources.locate(spec, model), None, {})
    if not os.path.exists(target):
        if sources.is_model_path(target):
            raise ModelError("model file {} does not exist".format(target))
        from ..specs import list_specs

        raise SpecError("'{}' is not a built-in spec, a spec .yaml or a model file; built-in specs: {}".format(
            target, ", ".join(list_specs())))
    if os.path.isdir(target) and sources.detect_format(target) != "savedmodel":
        raise ModelError("{} is a directory, not a model".format(target))
    if model:
        raise SpecError("--model goes with a spec; {} is already a model file".format(target))
    from ..specs.schema import InputSpec, ModelSpec
    from .surgery import get_metadata

    if sources.detect_format(target) == "onnx":
        loaded = sources.load_onnx(target)
        meta = get_metadata(loaded)
        if meta.get("spec"):
            try:
                spec = ModelSpec.from_dict(meta["spec"], origin="{} (metadata)".format(target))
            except SpecError as exc:
                raise ModelError("{} carries a trtedge spec this version cannot read: {}".format(target, exc))
            return Target(spec, None, loaded, meta)
    name = os.path.splitext(os.path.basename(os.path.normpath(target)))[0] or "model"
    spec = ModelSpec(name=name.replace(" ", "_"), family="none", input=InputSpec(height=0, width=0),
                     labels=(), origin="")
    return Target(spec, target, None, {})


def _decide_nms(requested: str, caps: Any, onnx_only: bool, fixed: Optional[str]) -> Optional[str]:
    if requested not in NMS_CHOICES:
        raise TrtedgeError("unknown NMS form '{}'; allowed: {}".format(requested, ", ".join(NMS_CHOICES)))
    if fixed is not None:  # an engine ONNX: its form is part of the graph
        if requested not in ("auto", fixed):
            raise BuildError("this engine ONNX ends in the '{}' NMS form; --nms {} needs a build from the "
                             "spec or source model".format(fixed, requested))
        form = fixed
    elif requested != "auto":
        form = requested
    elif caps is None:
        form = "onnx"  # portable: full TensorRT >= 8.5 and ONNX Runtime both run it
    elif caps.efficient_nms_plugin:
        form = "plugin"
    elif caps.nms_layer:
        form = "onnx"
    else:
        form = "host"
    if caps is not None and not onnx_only:
        if form == "plugin" and not caps.efficient_nms_plugin:
            raise BuildError("{} {} has no EfficientNMS_TRT plugin, so it cannot build the 'plugin' NMS form; "
                             "use --nms host (or --onnx-only to make the ONNX for another machine)".format(
                                 caps.module, caps.version))
        if form == "onnx" and not caps.nms_layer:
            raise BuildError("{} {} cannot build ONNX NonMaxSuppression, so it cannot build the 'onnx' NMS "
                             "form; use --nms host (or --onnx-only)".format(caps.module, caps.version))
    return form


def _batch_options(batch: Optional[int], min_batch: Optional[int], opt_batch: Optional[int],
                   max_batch: Optional[int]) -> Dict[str, int]:
    if batch is not None and any(v is not None for v in (min_batch, opt_batch, max_batch)):
        raise TrtedgeError("give either --batch or --min-batch/--opt-batch/--max-batch, not both")
    if batch is not None:
        lo, opt, hi = 1, batch, batch
    else:
        hi = max_batch or max(opt_batch or 1, min_batch or 1)
        lo = min_batch or 1
        opt = opt_batch or hi
    for label, v in (("batch", lo), ("batch", opt), ("batch", hi)):
        if v < 1:
            raise TrtedgeError("{} sizes must be at least 1".format(label))
    if not lo <= opt <= hi:
        raise TrtedgeError("batch sizes must satisfy min <= opt <= max (got {} <= {} <= {})".format(lo, opt, hi))
    return {"min_batch": lo, "opt_batch": opt, "max_batch": hi}


def _prepare_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise TrtedgeError("cannot create output directory {}: {}".format(path, getattr(exc, "strerror", None) or exc),
                           hint="choose another --out")
    if not os.access(path, os.W_OK):
        raise TrtedgeError("output directory {} is not writable".format(path), hint="choose another --out")


def build(
    target: str,
    model: Optional[str] = None,
    out: Optional[str] = None,
    precision: str = "fp32",
    workspace: Any = None,
    batch: Optional[int] = None,
    min_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
    nms: str = "auto",
    onnx_only: bool = False,
    timing_cache: Optional[str] = None,
    force: bool = False,
    version_compatible: bool = False,
    hardware_compat: Optional[str] = None,
    trt_module: Optional[str] = None,
    engine_ext: str = "bin",
    verbose: bool = False,
    progress: Optional[Callable[[str], None]] = None,
) -> Artifact:
    """Build ``target`` (spec name, spec YAML, engine ONNX or model file).

    Returns the paths written and the manifest. Raises :class:`TrtedgeError`
    (one line, what to do) on any bad input.
    """
    from . import tensorrt_build as tb
    from .precision import PRECISIONS

    say = progress or (lambda msg: log.info(msg))
    if precision not in PRECISIONS:
        raise TrtedgeError("unknown precision '{}'; allowed: {} (int8 comes with calibration in a later "
                           "version)".format(precision, ", ".join(PRECISIONS)))
    if engine_ext not in ENGINE_EXTS:
        raise TrtedgeError("unknown engine extension '{}'; allowed: {}".format(engine_ext, ", ".join(ENGINE_EXTS)))
    if isinstance(workspace, str):
        try:
            workspace = tb.parse_size(workspace)
        except TrtedgeError as exc:
            raise TrtedgeError("workspace: {}".format(exc))
    batches = _batch_options(batch, min_batch, opt_batch, max_batch)
    caps = None
    trt = None
    if not onnx_only or trt_module:  # before the (possibly slow) source: fail fast without TensorRT
        trt = tb.import_trt(trt_module)
        caps = tb.capabilities(trt)
    else:
        try:
            trt = tb.import_trt(None)
            caps = tb.capabilities(trt)
        except BuildError:
            caps = None
    tgt = resolve_target(target, model)
    spec = tgt.spec
    from .surgery import nms_form_of

    fixed_form = nms_form_of(tgt.engine_onnx) if tgt.engine_onnx is not None else None
    form = _decide_nms(nms, caps, onnx_only, fixed_form) if spec.family != "none" else None
    road = "onnx_types"
    if precision == "fp16" and caps is not None and caps.fp16_flag and not caps.strongly_typed_only:
        road = "builder_flag"
    if precision == "fp32":
        road = "none"

    # --- the engine ONNX
    notes = []  # type: list
    if tgt.engine_onnx is not None:
        model_proto = tgt.engine_onnx
        source = tgt.meta.get("source", {"path": None, "sha256": None, "format": "onnx"})
        notes.append("built from engine ONNX {} (no spec file needed)".format(target))
        made = tgt.meta.get("precision", "fp32")
        if made == "fp16" and precision == "fp32":
            raise BuildError("{} is an FP16 engine ONNX; build it with --precision fp16 or rebuild the ONNX "
                             "from the spec".format(target))
        if precision == "fp16" and made != "fp16" and road == "onnx_types":
            raise BuildError("{} is an FP32 engine ONNX and {} takes FP16 only from the ONNX types; make an FP16 "
                             "one from the spec (trtedge build SPEC --precision fp16 --onnx-only)".format(
                                 target, caps.module if caps else "this TensorRT"))
    else:
        assert tgt.source_path is not None
        say("Loading {}".format(tgt.source_path))
        source = {
            "path": tgt.source_path,
            "sha256": sha256_path(tgt.source_path),
            "format": spec.source.format if spec.source.format != "auto" else sources.detect_format(tgt.source_path),
        }
        if spec.source.sha256 and spec.source.sha256.lower() != source["sha256"]:
            raise ModelError("{} has sha256 {} but the spec expects {}; it is another file or a broken "
                             "download".format(tgt.source_path, source["sha256"], spec.source.sha256))
        model_proto = sources.load(tgt.source_path, spec, verbose=verbose)
        if spec.family != "none":
            from .surgery import transform

            say("Graph surgery: {} head, NMS form '{}'".format(
                spec.yolo.head if spec.yolo else spec.family, form))
            fp16 = precision == "fp16" and road == "onnx_types"
            if fp16:
                say("FP16 by ONNX types: the model body in FP16; preprocessing, decode and NMS in FP32")
            model_proto, more = transform(model_proto, spec, form or "host", fp16=fp16)
            notes.extend(more)
        elif precision == "fp16" and road == "onnx_types":
            from .precision import to_fp16

            model_proto = to_fp16(model_proto)

    from .surgery import set_metadata

    # the precision the ONNX itself carries (the builder-flag road keeps it FP32)
    set_metadata(model_proto, {
        "spec": spec.to_dict() if spec.family != "none" else None,
        "nms": form,
        "source": source,
        "precision": precision if road != "builder_flag" else "fp32",
        "version": _version(),
    })
    onnx_bytes = model_proto.SerializeToString()
    onnx_sha = mf.sha256_bytes(onnx_bytes)

    out_dir = out or os.path.join("build", spec.name)
    _prepare_dir(out_dir)
    stem = os.path.join(out_dir, "{}_{}".format(spec.name, precision))
    onnx_path, engine_path, manifest_path = stem + ".onnx", stem + "." + engine_ext, stem + ".json"
    if os.path.isdir(engine_path) or os.path.isdir(onnx_path) or os.path.isdir(manifest_path):
        raise TrtedgeError("{} is a directory; choose another --out".format(stem + ".*"))

    options = tb.BuildOptions(
        precision=precision,
        workspace=workspace,
        timing_cache=timing_cache,
        version_compatible=version_compatible,
        hardware_compat=hardware_compat,
        verbose=verbose,
        **batches
    )
    build_options = {
        "precision": precision, "workspace": workspace, "nms": form, "onnx_only": onnx_only,
        "version_compatible": version_compatible, "hardware_compat": hardware_compat,
        "timing_cache": timing_cache, "engine_ext": engine_ext, **batches,
    }
    key_data = {k: v for k, v in build_options.items() if k != "timing_cache"}
    key_data.update(onnx=onnx_sha, module=caps.module if caps else None, module_version=caps.version if caps else None)
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()

    reused = _reusable(manifest_path, engine_path, key, onnx_only) if not force else None
    if reused is not None:
        say("Up to date: reusing {} (same engine ONNX, options and TensorRT; --force rebuilds)".format(
            manifest_path if onnx_only else engine_path))
        return Artifact(None if onnx_only else engine_path, onnx_path, manifest_path, reused, True)

    data = mf.make(spec, model_proto, form, precision, road, source, build_options, key,
                   os.path.basename(onnx_path), onnx_sha, notes)
    for n in notes:
        say("Note: " + n)
    if os.path.exists(manifest_path):
        os.unlink(manifest_path)  # a manifest on disk always matches the files beside it
    _write_onnx(onnx_path, onnx_bytes)
    if onnx_only:
        mf.write(manifest_path, data)
        say("Wrote {} and {} (--onnx-only)".format(onnx_path, manifest_path))
        return Artifact(None, onnx_path, manifest_path, data, False)

    assert trt is not None
    say("Building with {} {} ({}, NMS '{}')".format(caps.module, caps.version, precision, form))
    result = tb.build_engine(onnx_path, options, trt=trt, progress=say)
    from ..utils.files import write_atomic

    write_atomic(engine_path, result.plan)
    data = mf.add_engine(data, os.path.basename(engine_path), result.plan, result)
    mf.write(manifest_path, data)
    say("Wrote {} ({:.1f} MB, built in {:.1f} s), {} and {}".format(
        engine_path, len(result.plan) / 1e6, result.seconds, onnx_path, manifest_path))
    return Artifact(engine_path, onnx_path, manifest_path, data, False)


def _version() -> str:
    from .. import __version__

    return __version__


def _write_onnx(path: str, data: bytes) -> None:
    from ..utils.files import write_atomic

    if len(data) > 2_000_000_000:
        raise BuildError("the engine ONNX is over 2 GB; external-data ONNX is not supported yet")
    write_atomic(path, data)


def _reusable(manifest_path: str, engine_path: str, key: str, onnx_only: bool) -> Optional[Dict[str, Any]]:
    if not os.path.isfile(manifest_path):
        return None
    try:
        data = mf.read(manifest_path)
    except TrtedgeError:
        return None
    if data.get("build_key") != key:
        return None
    if onnx_only:
        return data
    engine = data.get("engine") or {}
    if not os.path.isfile(engine_path) or engine.get("sha256") != mf.sha256_file(engine_path):
        return None
    return data
