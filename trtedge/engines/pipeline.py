"""``build``: spec (or model file) -> engine ONNX -> TensorRT engine + manifest.

Stages, data flowing forward only:

0. the :class:`~trtedge.config.BuildConfig`, validated once, and the
   installed TensorRT's identity (read from package metadata, no import);
1. :func:`resolve_target` — a spec name, a spec YAML, an engine ONNX (which
   carries its resolved spec) or a plain model file -> ``Target`` (cheap:
   YAML and file hashes only);
2. **the reuse decision**: a key from the source's sha256, the resolved spec,
   the BuildConfig, the TensorRT module and version and trtedge's version,
   compared with the manifest already in the output directory *before* onnx,
   TensorFlow, TensorRT or the model are touched;
3. ``tensorrt_build.preflight`` — options this TensorRT cannot honour are
   refused before anything is loaded or written;
4. ``sources`` / ``surgery`` / ``precision`` — the engine ONNX;
5. ``tensorrt_build.build_engine`` — the serialized engine;
6. the :class:`~trtedge.manifest.Manifest`.

Files (``DIR`` defaults to ``build/<name>``; ``_b<N>`` follows ``<P>`` for a
max batch N above 1): ``<name>_<P>.onnx``, ``.bin``
(``--engine-ext``), ``.json``, and for the ``plugin`` NMS form
``<name>_<P>.ort.onnx`` (the same graph with the plugin node swapped for
standard ops, which ONNX Runtime runs). Everything is written to
``.partial-PID`` names first; only after the whole build succeeded do the new
files replace the old ones (the manifest last). A failed or interrupted build
leaves the previous engine, ONNX and manifest exactly as they were.
"""

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from ..config import ENGINE_EXTS, NMS_CHOICES, BuildConfig, parse_hw
from ..errors import BuildError, Interrupted, ModelError, SpecError, TrtedgeError
from ..manifest import (FileInfo, GpuInfo, InputInfo, Manifest, NmsInfo, Plugins, SourceInfo, TensorDesc,
                        TensorRTInfo, manifest_path, now_text)
from ..manifest import read as read_manifest
from ..trt_module import import_trt, installed_version
from ..utils.files import remove_quietly, sha256_file, sha256_path, write_atomic
from ..version import __version__
from . import calibration, int8, sources

log = logging.getLogger("trtedge")

__all__ = ["build", "Artifact", "resolve_target", "NMS_CHOICES", "ENGINE_EXTS"]

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


class Target(NamedTuple):
    """What to build from. ``kind``: "spec", "onnx" (an ONNX file: an engine
    ONNX made by trtedge or a plain model), "model" (a plain TF/Keras model)
    or "darknet" (a .cfg with its .weights; the spec comes from the cfg)."""

    kind: str
    spec: Any
    source_path: Optional[str]
    weights: Optional[str] = None


class Artifact(NamedTuple):
    """What a build wrote. ``engine`` is None with ``onnx_only``; ``data`` is
    the manifest as JSON data, ``info`` the typed :class:`Manifest`."""

    engine: Optional[str]
    onnx: str
    manifest: str
    data: Dict[str, Any]
    reused: bool
    info: Optional[Manifest] = None


class _Inputs(NamedTuple):
    """The resolved target: what the key is computed from."""

    spec: Any
    source: SourceInfo
    #: the engine ONNX given as the target (None when building from a spec or model)
    engine_onnx: Optional[str]
    #: the loaded ModelProto, when it had to be loaded to learn the above
    model: Any
    #: notes carried in an engine ONNX's metadata
    notes: Tuple[str, ...]
    #: darknet: the .weights beside the cfg
    weights: Optional[str] = None


def _plain_spec(path: str) -> Any:
    from ..specs.schema import InputSpec, ModelSpec

    name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "model"
    safe = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name).strip(".") or "model"
    return ModelSpec(name=safe, family="none", input=InputSpec(height=0, width=0), labels=(), origin="")


def _darknet_target(cfg: str, weights: Optional[str], labels: Optional[str]) -> Target:
    """A darknet cfg needs no spec: input size, anchors, strides and preprocessing come from it.

    ``weights`` defaults to the ``.weights`` of the same stem beside the cfg;
    ``labels`` to a ``.names`` file of the same stem beside it, else COCO's 80
    names when the cfg predicts 80 classes."""
    from ..specs import LABELS_DIR, spec_from_data
    from . import darknet

    stem = os.path.splitext(cfg)[0]
    weights = weights or stem + ".weights"
    if not os.path.isfile(weights):
        raise ModelError("darknet weights {} not found".format(weights),
                         hint="pass --weights FILE (the .weights trained with {})".format(os.path.basename(cfg)))
    net = darknet.parse_cfg(cfg)
    if labels is None and os.path.isfile(stem + ".names"):
        labels = stem + ".names"
    if labels is not None:
        if not os.path.isfile(labels):
            raise ModelError("label file {} not found".format(labels))
        with open(labels, "rb") as f:
            try:
                names = [n.strip() for n in f.read().decode("utf-8-sig").splitlines() if n.strip()]
            except UnicodeDecodeError:
                raise ModelError("label file {} is not UTF-8 text; one name a line".format(labels))
    elif net.classes == 80:
        with open(os.path.join(LABELS_DIR, "coco.txt"), encoding="utf-8") as f:
            names = [n.strip() for n in f if n.strip()]
    else:
        raise ModelError("{} predicts {} classes and no labels are given".format(cfg, net.classes),
                         hint="pass --labels FILE (a .names file, one name a line)")
    name = _plain_spec(cfg).name
    spec = spec_from_data(darknet.spec_data(net, names, name), "{} (darknet cfg)".format(cfg), base_dir=None)
    return Target("darknet", spec, cfg, weights)


def _find_pipeline_config(model_path: str) -> Optional[str]:
    """The TF OD API ``pipeline.config`` beside a model, as the zoo tarballs have it:
    next to the ``.pb``, inside the SavedModel folder, or next to ``saved_model/``."""
    path = os.path.abspath(model_path)
    near = [os.path.dirname(path)]
    if os.path.isdir(path):
        near.insert(0, path)
    for d in near:
        candidate = os.path.join(d, "pipeline.config")
        if os.path.isfile(candidate):
            return candidate
    return None


def _config_target(model_path: str, fmt: str, config: str, labels: Optional[str]) -> Target:
    """A TF OD API SSD with its own pipeline.config needs no spec file."""
    from ..specs.pipeline_config import read_pipeline_config

    name = os.path.basename(os.path.dirname(os.path.abspath(config))) or "model"
    safe = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name).strip(".") or "model"
    data = read_pipeline_config(config, labels=labels, name=safe,
                                source={"format": fmt, "file": os.path.abspath(model_path)})
    return Target("spec", data.model_spec(), model_path)


def _download(spec: Any, say: Callable[[str], None]) -> None:
    """Fetch the spec's ``source.url`` into the working directory and unpack it (``--download``)."""
    from ..utils.download import fetch, unpack

    if not spec.source.url:
        raise ModelError("spec '{}' has no source.url to download from".format(spec.name),
                         hint="pass the model with --model PATH")
    dest = os.getcwd()
    say("Downloading {} into {}".format(spec.source.url, dest))
    archive = fetch(spec.source.url, dest, sha256=spec.source.archive_sha256, progress=say)
    if archive.lower().endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")):
        say("Unpacking {}".format(archive))
        try:
            unpack(archive, dest)
        finally:
            from ..utils.files import remove_quietly

            remove_quietly(archive)


def _hints(family: Optional[str], head: Optional[str], num_classes: Optional[int], input_size: Any) -> Any:
    from . import families
    from .families import ModelHints

    if family is not None and family not in families.names():
        raise SpecError("unknown family '{}'; known: {}".format(family, ", ".join(families.names())))
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise TrtedgeError("--num-classes must be a whole number of at least 1, not {!r}".format(num_classes))
    size = None if input_size is None else parse_hw(input_size, "--input-size", "640x640", one_number=True)
    return ModelHints(family=family, head=head, num_classes=num_classes, input_size=size)


def _read_names(path: str) -> Tuple[str, ...]:
    try:
        with open(path, "rb") as f:
            names = [n.strip() for n in f.read().decode("utf-8-sig").splitlines() if n.strip()]
    except OSError as exc:
        raise ModelError("cannot read label file {}: {}".format(path, exc.strerror or exc))
    except UnicodeDecodeError:
        raise ModelError("label file {} is not UTF-8 text; one name a line".format(path))
    if not names:
        raise ModelError("label file {} is empty".format(path))
    return tuple(names)


def resolve_target(target: str, model: Optional[str] = None, weights: Optional[str] = None,
                   labels: Optional[str] = None, pipeline_config: Optional[str] = None,
                   download: bool = False, say: Optional[Callable[[str], None]] = None,
                   hints: Any = None) -> Target:
    from ..specs import is_spec_reference, list_specs, load_spec

    fmt0 = sources.detect_format_or_none(target) if os.path.exists(target) else None
    if weights and fmt0 != "darknet":
        raise SpecError("--weights goes with a darknet .cfg, not {}".format(target))
    if labels and fmt0 not in ("darknet", "savedmodel", "frozen_graph", "onnx"):
        raise SpecError("--labels goes with a model file (darknet .cfg, ONNX, or a TF OD API model read with its "
                        "pipeline.config), not {}".format(target))
    if hints is not None and hints.given and fmt0 != "onnx":
        raise SpecError("--family, --head, --num-classes and --input-size describe an ONNX model that has no "
                        "spec; {} is not one (a spec says all of it)".format(target))
    if pipeline_config and fmt0 not in ("savedmodel", "frozen_graph"):
        raise SpecError("--pipeline-config goes with a TF OD API SavedModel directory or frozen .pb, not {}".format(
            target))
    if download and not is_spec_reference(target):
        raise SpecError("--download goes with a spec that names a source.url, not {}".format(target))
    if is_spec_reference(target) and not os.path.isdir(target):
        spec = load_spec(target)
        try:
            return Target("spec", spec, sources.locate(spec, model))
        except ModelError:
            if not download or model:
                raise
        _download(spec, say or (lambda m: log.info(m)))
        return Target("spec", spec, sources.locate(spec, None))
    if not os.path.exists(target):
        if sources.is_model_path(target):
            raise ModelError("model file {} does not exist".format(target))
        raise SpecError("'{}' is not a built-in spec, a spec .yaml or a model file; built-in specs: {}".format(
            target, ", ".join(list_specs())))
    if os.path.isdir(target) and sources.detect_format(target) != "savedmodel":
        raise ModelError("{} is a directory, not a model".format(target))
    if model:
        raise SpecError("--model goes with a spec; {} is already a model file".format(target))
    fmt = sources.detect_format(target)
    if fmt == "darknet":
        return _darknet_target(target, weights, labels)
    if fmt in ("savedmodel", "frozen_graph"):
        config = pipeline_config or _find_pipeline_config(target)
        if pipeline_config and not os.path.isfile(pipeline_config):
            raise SpecError("pipeline config {} does not exist".format(pipeline_config))
        if config:
            return _config_target(target, fmt, config, labels)
    if fmt == "onnx":
        return Target("onnx", None, target)
    return Target("model", _plain_spec(target), target)


def _source_info(path: str, spec: Any) -> SourceInfo:
    fmt = spec.source.format if spec.source.format not in ("auto", "darknet") else sources.detect_format(path)
    sha = sha256_path(path)
    if spec.source.sha256 and spec.source.sha256.lower() != sha:
        raise ModelError("{} has sha256 {} but the spec expects {}; it is another file or a broken "
                         "download".format(path, sha, spec.source.sha256))
    return SourceInfo(path=path, sha256=sha, format=fmt)


def _auto_spec(model: Any, path: str, hints: Any) -> Any:
    """A spec for an ONNX that came without one: the first family that recognises
    it (from its metadata, its graph and the hints); None for a plain model."""
    from ..manifest import get_onnx_metadata  # noqa: F401 (trtedge metadata is read by the caller)
    from ..specs import spec_from_dict
    from . import families

    metadata = {p.key: p.value for p in model.metadata_props}
    name = _plain_spec(path).name
    candidates = [hints.family] if hints.family else [n for n in families.names()]
    for fam_name in candidates:
        fam = families.get(fam_name)
        if not fam.detector:
            continue
        data = fam.spec_from_model(model, metadata, hints, name)
        if data is not None:
            data.setdefault("source", {})["format"] = "onnx"
            return spec_from_dict(data, "{} (no spec: {})".format(path, "metadata" if not hints.given else "flags"))
    if hints.family:
        raise ModelError("family '{}' cannot describe {} from its graph alone".format(hints.family, path),
                         hint="write a spec for it (trtedge specs --show NAME prints one to start from)")
    return None


def _resolve_onnx(path: str, hints: Any = None) -> _Inputs:
    """An ONNX target: a trtedge engine ONNX (its metadata holds spec and source) or a plain model.

    Fast path, no onnx import: the manifest beside the file describes exactly
    these bytes (the usual "rebuild from the engine ONNX" case)."""
    from ..specs import spec_from_dict

    sha = sha256_file(path)
    sibling = manifest_path(path)
    if os.path.isfile(sibling):
        try:
            m = read_manifest(sibling)
        except TrtedgeError:
            m = None
        if m is not None and m.onnx.sha256 == sha and os.path.basename(path) == m.onnx.file:
            spec = spec_from_dict(m.spec, "{} (manifest)".format(sibling)) if m.spec else _named_plain(m.name)
            return _Inputs(spec, m.source, path, None, m.notes)
    loaded = sources.load_onnx(path)
    from ..manifest import get_onnx_metadata

    meta = get_onnx_metadata(loaded)
    if "spec" not in meta:  # not made by trtedge: a detector a family recognises, or a plain model
        from .families import ModelHints

        spec = None if hints is not None and hints.family == "none" else _auto_spec(loaded, path,
                                                                                   hints or ModelHints())
        return _Inputs(spec or _plain_spec(path), SourceInfo(path=path, sha256=sha, format="onnx"), None, loaded,
                       ())
    try:
        spec = spec_from_dict(meta["spec"], "{} (metadata)".format(path)) if meta["spec"] else \
            _named_plain(str(meta.get("name") or _plain_spec(path).name))
        src = meta.get("source") or {}
        source = SourceInfo(path=src.get("path"), sha256=src.get("sha256"), format=str(src.get("format", "onnx")))
    except (SpecError, TypeError, ValueError) as exc:
        raise ModelError("{} carries trtedge metadata this version cannot read: {}".format(path, exc))
    return _Inputs(spec, source, path, loaded, tuple(str(n) for n in meta.get("notes") or ()))


def _named_plain(name: str) -> Any:
    return _plain_spec(name + ".onnx")


def _darknet_cfg(spec: Any) -> str:
    """A darknet spec's cfg: beside the spec, else one trtedge ships (models/darknet/)."""
    from .darknet import BUILTIN_DIR

    name = spec.source.cfg
    places = []
    if spec.origin and os.path.exists(spec.origin):
        places.append(os.path.join(os.path.dirname(os.path.abspath(spec.origin)), name))
    places.append(os.path.join(BUILTIN_DIR, os.path.basename(name)))
    for p in places:
        if os.path.isfile(p):
            return p
    raise ModelError("darknet cfg '{}' of spec '{}' not found; looked in: {}".format(name, spec.name,
                                                                                  ", ".join(places)))


def _resolve(tgt: Target, hints: Any = None) -> _Inputs:
    assert tgt.source_path is not None
    if tgt.kind == "onnx":
        return _resolve_onnx(tgt.source_path, hints)
    if (tgt.kind == "spec" and tgt.spec.source.format == "darknet"
            and not tgt.source_path.lower().endswith(".onnx")):  # an ONNX export given with --model is read as is
        tgt = tgt._replace(kind="darknet", source_path=_darknet_cfg(tgt.spec), weights=tgt.source_path)
    if tgt.kind == "darknet":
        assert tgt.weights is not None
        both = "{}+{}".format(sha256_file(tgt.source_path), sha256_file(tgt.weights))
        source = SourceInfo(path=tgt.source_path, sha256=_sha(both.encode()), format="darknet")
        return _Inputs(tgt.spec, source, None, None, (), tgt.weights)
    return _Inputs(tgt.spec, _source_info(tgt.source_path, tgt.spec), None, None, ())


def build_key(source_sha: Optional[str], spec: Any, config: BuildConfig, trt_id: Optional[Tuple[str, str]]) -> str:
    """What decides whether a build can be reused: the same for a build from the
    spec and for the rebuild from its engine ONNX."""
    data = {
        "source": source_sha,
        "spec": spec.to_dict() if spec.is_detector else None,
        "name": spec.name,
        "config": config.key(),
        "calib": calibration.source_sha(config.calib) if config.precision == "int8" else None,
        "tensorrt": list(trt_id) if trt_id else None,
        "trtedge": __version__,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _decide_nms(requested: str, caps: Any, onnx_only: bool, fixed: Optional[str]) -> str:
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


def _prepare_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise TrtedgeError("cannot create output directory {}: {}".format(path, getattr(exc, "strerror", None) or exc),
                           hint="choose another --out")
    if not os.access(path, os.W_OK):
        raise TrtedgeError("output directory {} is not writable".format(path), hint="choose another --out")


class _Paths(NamedTuple):
    onnx: str
    onnxrt: str
    engine: str
    manifest: str


def _paths(out_dir: str, name: str, config: BuildConfig) -> _Paths:
    """``<name>_<precision>[_b<max batch>][_f<H>x<W>]``: engines for other batch or frame sizes never
    overwrite each other."""
    suffix = "_b{}".format(config.max_batch) if config.max_batch != 1 else ""
    if config.frame_size is not None:
        suffix += "_f{}x{}".format(*config.frame_size)
    stem = os.path.join(out_dir, "{}_{}{}".format(name, config.precision, suffix))
    return _Paths(stem + ".onnx", stem + ".ort.onnx", stem + "." + config.engine_ext, stem + ".json")


def _reusable(paths: _Paths, key: str, onnx_only: bool) -> Optional[Manifest]:
    if not os.path.isfile(paths.manifest):
        return None
    try:
        m = read_manifest(paths.manifest)
    except TrtedgeError:
        return None
    if m.build_key != key or (m.engine is None) != onnx_only:
        return None
    records = [(paths.onnx, m.onnx)]
    if m.engine is not None:
        records.append((paths.engine, m.engine))
    for path, rec in records:
        if not os.path.isfile(path) or os.path.basename(path) != rec.file:
            return None
        if rec.bytes is not None and os.path.getsize(path) != rec.bytes:
            return None
        if sha256_file(path) != rec.sha256:
            return None
    return m


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
    config: Optional[BuildConfig] = None,
    weights: Optional[str] = None,
    labels: Optional[str] = None,
    pipeline_config: Optional[str] = None,
    download: bool = False,
    family: Optional[str] = None,
    head: Optional[str] = None,
    num_classes: Optional[int] = None,
    input_size: Any = None,
    frame_size: Any = None,
) -> Artifact:
    """Build ``target`` (spec name, spec YAML, engine ONNX or model file).

    A darknet ``.cfg`` needs no spec (``weights``/``labels`` default to the
    ``.weights``/``.names`` beside it), nor does a TF OD API SavedModel or
    frozen graph with its ``pipeline.config`` (``pipeline_config``, or found
    beside the model). ``download``: fetch a spec's ``source.url`` into the
    working directory when the model is not there (sha256-checked when the
    spec gives ``source.archive_sha256``; archives unpacked safely). The options are those of
    ``trtedge build``; or pass one
    :class:`~trtedge.config.BuildConfig` as ``config``. Returns the paths
    written and the manifest. Raises :class:`TrtedgeError` (one line, what to
    do) on any bad input; nothing is written before the inputs are checked.
    """
    say = progress or (lambda msg: log.info(msg))
    for label, value in (("target", target), ("model", model), ("out", out), ("weights", weights),
                         ("labels", labels), ("pipeline_config", pipeline_config)):
        if value is not None and not isinstance(value, str):
            raise TrtedgeError("build(): {} must be a path or name (a string), not {}".format(
                label, type(value).__name__))
    if not target:
        raise TrtedgeError("build(): give a spec name, a spec .yaml, an engine ONNX or a model file")
    if config is None:
        config = BuildConfig.create(
            precision=precision, workspace=workspace, batch=batch, min_batch=min_batch, opt_batch=opt_batch,
            max_batch=max_batch, nms=nms, onnx_only=bool(onnx_only), timing_cache=timing_cache,
            version_compatible=bool(version_compatible), hardware_compat=hardware_compat, trt_module=trt_module,
            engine_ext=engine_ext, frame_size=frame_size)
    elif not isinstance(config, BuildConfig):
        raise TrtedgeError("build(): config must be a BuildConfig, not {}".format(type(config).__name__))

    trt_id = installed_version(config.trt_module)
    if trt_id is None and (not config.onnx_only or config.trt_module):
        import_trt(config.trt_module)  # raises BuildError with each module's reason
        raise BuildError("no usable TensorRT module")  # pragma: no cover (import_trt raised)

    hints = _hints(family, head, num_classes, input_size)
    tgt = resolve_target(target, model, weights=weights, labels=labels, pipeline_config=pipeline_config,
                         download=download, say=say, hints=hints)
    if tgt.kind == "onnx" and labels:
        hints = hints._replace(labels=_read_names(labels))
    inputs = _resolve(tgt, hints)
    spec = inputs.spec
    key = build_key(inputs.source.sha256, spec, config, trt_id)
    out_dir = out or os.path.join("build", spec.name)
    paths = _paths(out_dir, spec.name, config)
    if not force:
        reused = _reusable(paths, key, config.onnx_only)
        if reused is not None:
            say("Up to date: reusing {} (same source, spec, options and TensorRT; --force rebuilds)".format(
                paths.manifest if config.onnx_only else paths.engine))
            return Artifact(None if config.onnx_only else paths.engine, paths.onnx, paths.manifest,
                            reused.to_dict(), True, reused)
    for p in paths:
        if os.path.isdir(p):
            raise TrtedgeError("{} is a directory; choose another --out".format(p))
    _prepare_dir(out_dir)
    return _build(inputs, config, key, paths, trt_id, verbose, say)


def _build(inputs: _Inputs, config: BuildConfig, key: str, paths: _Paths, trt_id: Optional[Tuple[str, str]],
           verbose: bool, say: Callable[[str], None]) -> Artifact:
    from . import tensorrt_build as tb

    spec = inputs.spec
    trt = caps = None
    if trt_id is not None:
        try:
            trt = import_trt(trt_id[0])
            caps = tb.capabilities(trt)
        except BuildError:
            if not config.onnx_only:
                raise
    options = tb.BuildOptions(
        precision=config.precision, workspace=config.workspace, min_batch=config.min_batch,
        opt_batch=config.opt_batch, max_batch=config.max_batch, timing_cache=config.timing_cache,
        version_compatible=config.version_compatible, hardware_compat=config.hardware_compat, verbose=verbose,
        int8=int8.plan(config, spec, paths.engine, caps, verbose))
    notes = list(inputs.notes)
    if caps is not None and not config.onnx_only:
        for n in tb.preflight(caps, options):
            say("Note: " + n)
    road = "none"
    if config.precision == "fp16":
        road = "builder_flag" if caps is not None and caps.fp16_flag and not caps.strongly_typed_only else "onnx_types"
    elif config.precision == "int8":
        road = int8.road_of(config, caps, spec)

    model_proto, form = _engine_onnx(inputs, config, caps, road, notes, verbose, say)
    model_proto = int8.apply(model_proto, options.int8, say)  # INT8: quantised and gated (a no-op otherwise)
    from ..manifest import set_onnx_metadata

    set_onnx_metadata(model_proto, {
        "spec": spec.to_dict() if spec.is_detector else None,
        "name": spec.name,
        "nms": form,
        "source": {"path": inputs.source.path, "sha256": inputs.source.sha256, "format": inputs.source.format},
        # the precision the ONNX itself carries (the builder-flag road keeps it FP32)
        "precision": config.precision if road != "builder_flag" else "fp32",
        "notes": notes,
        "version": __version__,
    })
    onnx_bytes = model_proto.SerializeToString()
    if len(onnx_bytes) > 2_000_000_000:
        raise BuildError("the engine ONNX is over 2 GB; external-data ONNX is not supported yet")
    staged = {}  # type: Dict[str, str]
    try:
        staged[paths.onnx] = _stage(paths.onnx, onnx_bytes)
        onnx_rec = FileInfo(os.path.basename(paths.onnx), _sha(onnx_bytes), len(onnx_bytes))
        ort_rec = onnx_rec
        if form == "plugin":
            from .nms import swap_plugin_for_onnx

            ort_bytes = swap_plugin_for_onnx(model_proto).SerializeToString()
            staged[paths.onnxrt] = _stage(paths.onnxrt, ort_bytes)
            ort_rec = FileInfo(os.path.basename(paths.onnxrt), _sha(ort_bytes), len(ort_bytes))
        manifest = _describe(spec, model_proto, form, config, road, inputs.source, key, onnx_rec, ort_rec, notes)
        for n in notes:
            say("Note: " + n)
        if not config.onnx_only:
            assert trt is not None and caps is not None
            say("Building with {} {} ({}, NMS '{}')".format(caps.module, caps.version, config.precision, form))
            result = tb.build_engine(staged[paths.onnx], options, trt=trt, progress=say)
            staged[paths.engine] = _stage(paths.engine, result.plan)
            manifest = _add_engine(manifest, os.path.basename(paths.engine), result)
        # the whole build succeeded: replace the old files together, the manifest last
        remove_quietly(paths.manifest)
        for final, tmp in staged.items():
            os.replace(tmp, final)
        if form != "plugin":
            remove_quietly(paths.onnxrt)  # an older plugin-form build's graph
        if config.onnx_only:
            remove_quietly(paths.engine)  # an engine of another build would no longer match its manifest
        manifest.write(paths.manifest)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; nothing was replaced: {} is as it was".format(
            paths.engine if os.path.exists(paths.engine) else os.path.dirname(paths.manifest) or "."))
    finally:
        for tmp in staged.values():
            remove_quietly(tmp)
    if config.onnx_only:
        say("Wrote {} and {} (--onnx-only)".format(paths.onnx, paths.manifest))
        return Artifact(None, paths.onnx, paths.manifest, manifest.to_dict(), False, manifest)
    assert manifest.engine is not None and manifest.tensorrt is not None
    say("Wrote {} ({:.1f} MB, built in {:.1f} s), {} and {}".format(
        paths.engine, (manifest.engine.bytes or 0) / 1e6, manifest.tensorrt.build_seconds, paths.onnx,
        paths.manifest))
    return Artifact(paths.engine, paths.onnx, paths.manifest, manifest.to_dict(), False, manifest)


def _engine_onnx(inputs: _Inputs, config: BuildConfig, caps: Any, road: str, notes: List[str], verbose: bool,
                 say: Callable[[str], None]) -> Tuple[Any, Optional[str]]:
    """The engine ONNX and its NMS form (None for plain models)."""
    from ..manifest import get_onnx_metadata

    spec = inputs.spec
    if inputs.engine_onnx is not None:
        model_proto = inputs.model if inputs.model is not None else sources.load_onnx(inputs.engine_onnx)
        from .surgery import nms_form_of

        fixed = nms_form_of(model_proto)
        form = _decide_nms(config.nms, caps, config.onnx_only, fixed) if spec.is_detector else None
        say("Building from engine ONNX {} (no spec file needed)".format(inputs.engine_onnx))
        made_for = _frame_of(model_proto, spec) if spec.is_detector else config.frame_size
        if made_for != config.frame_size:
            raise BuildError("{} takes {}; build it {}".format(
                inputs.engine_onnx, "frames of {}x{} (built with --frame-size)".format(*made_for) if made_for
                else "the network's input size", "with --frame-size {}x{}".format(*made_for) if made_for
                else "without --frame-size (or build the spec with it)"))
        made = get_onnx_metadata(model_proto).get("precision", "fp32")
        if made == "fp16" and config.precision == "fp32":
            raise BuildError("{} is an FP16 engine ONNX; build it with --precision fp16 or rebuild the ONNX "
                             "from the spec".format(inputs.engine_onnx))
        if config.precision == "fp16" and made != "fp16" and road == "onnx_types":
            raise BuildError("{} is an FP32 engine ONNX and {} takes FP16 only from the ONNX types; make an FP16 "
                             "one from the spec (trtedge build SPEC --precision fp16 --onnx-only)".format(
                                 inputs.engine_onnx, caps.module if caps else "this TensorRT"))
        return model_proto, form
    path = inputs.source.path
    assert path is not None
    form = _decide_nms(config.nms, caps, config.onnx_only, None) if spec.is_detector else None
    say("Loading {}".format(path))
    if inputs.weights is not None:
        from . import darknet

        say("Converting darknet {} + {} to ONNX".format(path, inputs.weights))
        model_proto = darknet.convert(path, inputs.weights).onnx
    elif inputs.model is not None:
        model_proto = inputs.model
    else:
        model_proto = sources.load(path, spec, verbose=verbose, say=say)
    fp16 = config.precision == "fp16" and road == "onnx_types"
    if spec.is_detector:
        from . import families
        from .surgery import transform

        say("Graph surgery: {} head, NMS form '{}'".format(families.get(spec.family).describe(spec.section), form))
        if fp16:
            say("FP16 by ONNX types: the model body in FP16; preprocessing, decode and NMS in FP32")
        source_proto = model_proto
        if config.frame_size is not None and config.frame_size == (spec.input.height, spec.input.width):
            raise BuildError("the network's input is already {}x{}: frames of that size need no resize; build "
                             "without --frame-size".format(*config.frame_size))
        if config.frame_size is not None and spec.input.engine_channels != "bgr":
            raise BuildError("--frame-size takes frames as OpenCV gives them (BGR); this spec's input.engine_channels "
                             "is {}: drop one of the two".format(spec.input.engine_channels))
        model_proto, more = transform(model_proto, spec, form or "host", fp16=fp16, frame_size=config.frame_size)
        notes.extend(more)
        if inputs.source.format in ("savedmodel", "frozen_graph", "keras"):
            from .tf_source import cut_note

            note = cut_note(source_proto, model_proto)
            if note:
                notes.append(note)
    else:  # a plain model (family none): built as it is, only sanitised
        if config.frame_size is not None:
            raise BuildError("--frame-size is for detectors (a plain model has no letterbox); build without it")
        model_proto = _sanitized(model_proto)
        if fp16:
            from .precision import to_fp16

            model_proto = to_fp16(model_proto)
    return model_proto, form


def _frame_of(model: Any, spec: Any) -> Optional[Tuple[int, int]]:
    """The frame size an engine ONNX's input takes, when it is not the network's input size."""
    ins, _ = _io_of(model)
    if not ins or len(ins[0].shape) != 4:
        return None
    h, w = ins[0].shape[1], ins[0].shape[2]
    if isinstance(h, int) and isinstance(w, int) and (h, w) != (spec.input.height, spec.input.width):
        return h, w
    return None


def _sanitized(model: Any) -> Any:
    """``graph.sanitize`` (fold constants, infer shapes, drop dead nodes) and nothing else: same I/O,
    opset and IR version; the model's own metadata is kept."""
    import onnx_graphsurgeon as gs

    from .graph import sanitize

    out = gs.export_onnx(sanitize(gs.import_onnx(model)))
    out.metadata_props.extend(model.metadata_props)
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stage(final: str, data: bytes) -> str:
    """Write ``data`` beside ``final`` under a ``.partial-PID`` name; return that name."""
    tmp = "{}.partial-{}".format(final, os.getpid())
    try:
        write_atomic(tmp, data)
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def _io_of(model: Any) -> Tuple[List[TensorDesc], List[TensorDesc]]:
    def one(vi: Any) -> TensorDesc:
        t = vi.type.tensor_type
        dims = tuple(d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim) if t.HasField("shape") else ()
        return TensorDesc(vi.name, _ONNX_DTYPES.get(t.elem_type, "float32"), dims)

    inits = {i.name for i in model.graph.initializer}
    return [one(v) for v in model.graph.input if v.name not in inits], [one(v) for v in model.graph.output]


def _describe(spec: Any, model: Any, form: Optional[str], config: BuildConfig, road: str, source: SourceInfo,
              key: str, onnx_rec: FileInfo, ort_rec: FileInfo, notes: List[str]) -> Manifest:
    """The manifest without its engine part (what ``--onnx-only`` writes)."""
    ins, outs = _io_of(model)
    first = ins[0] if ins else TensorDesc("", "uint8", ())
    inp = spec.input
    frame = _frame_of(model, spec) if spec.is_detector else None
    return Manifest(
        name=spec.name,
        family=spec.family,
        labels=tuple(spec.labels),
        input=InputInfo(name=first.name, dtype=first.dtype, shape=first.shape, height=inp.height, width=inp.width,
                        channels=inp.engine_channels, resize=inp.resize, pad_value=inp.pad_value,
                        letterbox_align=inp.letterbox_align,
                        layout=inp.layout, scale=tuple(inp.scale), offset=tuple(inp.offset),
                        frame_height=frame[0] if frame else 0, frame_width=frame[1] if frame else 0),
        inputs=tuple(ins),
        outputs=tuple(outs),
        nms=None if form is None else NmsInfo(form=form, score_threshold=spec.nms.score_threshold,
                                              iou_threshold=spec.nms.iou_threshold,
                                              max_per_class=spec.nms.max_per_class,
                                              max_detections=spec.nms.max_detections,
                                              candidates=spec.nms.candidates,
                                              class_agnostic=spec.nms.class_agnostic),
        precision=config.precision,
        precision_road=road,
        plugins=Plugins(required=("EfficientNMS_TRT",) if form == "plugin" else ()),
        source=source,
        onnx=onnx_rec,
        onnxrt=ort_rec,
        engine=None,
        tensorrt=None,
        gpu=None,
        build_options=config,
        build_key=key,
        spec=spec.to_dict() if spec.is_detector else None,
        notes=tuple(notes),
        int8=int8.record_of(model),
        trtedge_version=__version__,
        created=now_text(),
    )


def _add_engine(m: Manifest, engine_file: str, result: Any) -> Manifest:
    """Record the built engine and the TensorRT that built it."""
    caps = result.capabilities
    flags = dict(result.flags)
    gpu = dict(result.gpu)
    return m.with_changes(
        engine=FileInfo(engine_file, _sha(result.plan), len(result.plan)),
        tensorrt=TensorRTInfo(
            module=caps.module,
            version=caps.version,
            version_compatible=bool(flags.get("version_compatible", False)),
            hardware_compat=flags.get("hardware_compat") or "none",
            strongly_typed=bool(flags.get("strongly_typed", False)),
            build_seconds=round(float(result.seconds), 3),
        ),
        gpu=GpuInfo(name=str(gpu.get("name", "")), compute_capability=gpu.get("compute_capability")),
        precision_road=flags.get("precision_road", m.precision_road),
    )
