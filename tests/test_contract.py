"""The build/runtime contract: the typed manifest, a runtime that needs nothing
from ``engines/``, rebuild hints generated from the BuildConfig, reuse before
anything heavy loads, and builds that never destroy the previous good engine."""

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import cv2
import onnx
import pytest
import yaml

import cli
import models
from trtedge.datasets.shapes import generate

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")

ROOT = cli.ROOT
STEM = "tiny_anchor_free_fp32"
#: manifest fields that differ between two builds of the same thing
VOLATILE = ("created",)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    onnx.save(models.make("anchor_free"), str(root / "tiny.onnx"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(models.spec("anchor_free", file="tiny.onnx")))
    proc = cli.run("build", root / "tiny.yaml", "--out", root / "out")
    assert proc.returncode == 0, proc.stderr
    image = root / "x.png"
    cv2.imwrite(str(image), generate(1, 0, size=64).image if _takes_size() else generate(1, 0).image)
    return root


def _takes_size():
    import inspect

    return "size" in inspect.signature(generate).parameters


@pytest.fixture
def engine_dir(built, tmp_path):
    out = tmp_path / "e"
    shutil.copytree(built / "out", out)
    return out


def _manifest(path):
    return json.loads(path.read_text())


def _comparable(m):
    m = dict(m)
    for key in VOLATILE:
        m.pop(key, None)
    m["tensorrt"] = dict(m["tensorrt"] or {}, build_seconds=None) if m.get("tensorrt") else None
    # TensorRT for RTX builds of the same ONNX are not byte-identical (same size, other bytes)
    m["engine"] = dict(m["engine"], sha256=None) if m.get("engine") else None
    return m


# ------------------------------------------------------------ the manifest as a type

BAD_MANIFESTS = [
    ("manifest_version", lambda m: m.update(manifest_version="abc"), "manifest_version"),
    ("height", lambda m: m["input"].update(height="x"), "input.height"),
    ("form", lambda m: m["nms"].update(form="bogus"), "nms.form"),
    ("engine list", lambda m: m.update(engine=[]), "'engine' must be an object"),
    ("pad", lambda m: m["input"].update(pad_value=999), "input.pad_value"),
    ("labels", lambda m: m.update(labels="cat"), "'labels' must be a list"),
    ("build options", lambda m: m["build_options"].update(max_batch="2"), "build_options"),
    ("onnx outside", lambda m: m["onnx"].update(file="../../etc/passwd"), "onnx.file"),
    ("onnxrt absolute", lambda m: m["onnxrt"].update(file="/etc/passwd"), "onnxrt.file"),
    ("plugin library outside", lambda m: m["plugins"].update(libraries=["../evil.so"]), "plugins.libraries"),
    ("not json", None, "not valid JSON"),
]


@pytest.mark.parametrize("case, edit, where", BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_malformed_manifest_is_one_line_exit_1(engine_dir, built, case, edit, where):
    path = engine_dir / (STEM + ".json")
    if edit is None:
        path.write_text("{not json")
    else:
        m = _manifest(path)
        edit(m)
        path.write_text(json.dumps(m))
    engine = engine_dir / (STEM + ".bin")
    check = cli.run("check", engine)
    assert check.returncode == 1 and where in check.stdout and "Traceback" not in check.stdout + check.stderr, \
        (check.stdout, check.stderr)
    assert len(check.stdout.strip().splitlines()) == 1  # nothing to rebuild from: no second line
    for args in (["detect", engine, "--source", built / "x.png"],
                 ["bench", engine, "--iterations", "1", "--warmup", "0"]):
        line = cli.assert_one_line_error(cli.run(*args), 1, where)
        assert "Traceback" not in line


def test_manifest_round_trips_through_the_type(engine_dir):
    from trtedge.config import BuildConfig
    from trtedge.manifest import Manifest, read

    path = engine_dir / (STEM + ".json")
    m = read(str(path))
    assert isinstance(m, Manifest) and isinstance(m.build_options, BuildConfig)
    assert m.nms.form == "host" and m.input.height == 64 and m.engine.file == STEM + ".bin"
    assert m.onnxrt == m.onnx  # the host form runs in ONNX Runtime as it is
    assert m.to_dict() == _manifest(path)
    assert Manifest.from_dict(m.to_dict()) == m


# ------------------------------------------------------------ a runtime without the builder

def test_runtime_runs_with_engines_unimportable(engine_dir, built):
    code = textwrap.dedent("""
        import sys
        sys.modules["trtedge.engines"] = None   # "import trtedge.engines..." raises ImportError
        import trtedge.runtime, trtedge.runtime.detector, trtedge.runtime.backends, trtedge.runtime.bench
        from trtedge.cli import main
        code = main(["detect", {engine!r}, "--source", {image!r}, "--backend", "onnxrt", "--json", {out!r}])
        loaded = sorted(m for m in sys.modules if m.startswith("trtedge.engines") and sys.modules[m] is not None)
        print(code, loaded)
    """).format(engine=str(engine_dir / (STEM + ".bin")), image=str(built / "x.png"),
                out=str(engine_dir / "d.jsonl"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0 []", proc.stdout + proc.stderr
    rows = [json.loads(line) for line in (engine_dir / "d.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and "detections" in rows[0]


def _imports(path, module, modules):
    """Every trtedge module that ``path`` imports, at any depth of the file (lazy imports too).
    ``from pkg import x`` is an edge to the module ``pkg.x`` where it is one, else to ``pkg``."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix + "." + a.name if prefix + "." + a.name in modules else prefix for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "trtedge" or n.startswith("trtedge."))
    return found


def _module_graph():
    modules = {}
    base = os.path.join(ROOT, "trtedge")
    for dirpath, _, files in os.walk(base):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].replace(os.sep, ".")
                modules[rel[:-9] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    graph = {}
    for name, path in modules.items():
        graph[name] = {n for n in _imports(path, name, modules) if n in modules} - {name}
    return graph


def test_no_import_cycles_and_runtime_imports_nothing_from_engines():
    graph = _module_graph()
    assert len(graph) > 40
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles
    for name, deps in graph.items():
        if name.startswith("trtedge.runtime"):
            assert not [d for d in deps if d.startswith("trtedge.engines") or d.startswith("trtedge.specs")], \
                (name, deps)
    # spec parsing and surgery know no family: the loader, schema and surgery import no family module
    for name in ("trtedge.specs.loader", "trtedge.specs.schema", "trtedge.engines.surgery",
                 "trtedge.engines.pipeline"):
        assert not [d for d in graph[name] if d.rsplit(".", 1)[-1] in ("yolo", "ssd")], (name, graph[name])


def test_help_and_check_import_neither_numpy_nor_onnx(engine_dir):
    code = textwrap.dedent("""
        import sys
        from trtedge.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        after_help = sorted(m for m in ("numpy", "onnx") if m in sys.modules)
        code = main(["check", {engine!r}])
        print(after_help, code, sorted(m for m in ("numpy", "onnx") if m in sys.modules))
    """).format(engine=str(engine_dir / (STEM + ".bin")))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[] 3 []", proc.stdout


# ------------------------------------------------------------ rebuild hints from the BuildConfig

def _hint(proc):
    for line in (proc.stdout + proc.stderr).splitlines():
        for marker in ("rebuild with: ", "rebuild: "):
            if marker in line:
                return shlex.split(line.split(marker, 1)[1].rstrip(")"))
    raise AssertionError("no rebuild hint in: " + proc.stdout + proc.stderr)


def _run_hint(args):
    assert args[0] == "trtedge" and args[1] == "build" and args[-1] == "--force", args
    proc = cli.run(*args[1:])
    assert proc.returncode == 0, (args, proc.stderr)
    return proc


def _foreign(engine, version=(1, 6, 0, 30)):
    """Rewrite header and manifest as TensorRT for RTX 1.6 would have written them."""
    import hashlib

    plan = bytearray(engine.read_bytes())
    plan[24:28] = bytes(version)
    engine.write_bytes(bytes(plan))
    path = engine.with_suffix(".json")
    m = _manifest(path)
    m["engine"].update(sha256=hashlib.sha256(plan).hexdigest(), bytes=len(plan))
    m["tensorrt"]["version"] = ".".join(str(v) for v in version)
    path.write_text(json.dumps(m))


def test_every_rebuild_hint_runs_and_reproduces_the_manifest(built, tmp_path):
    spec = built / "tiny.yaml"
    hints = []

    # 1. options off the defaults, then the engine is another TensorRT's (check exit 1)
    opts = ["--min-batch", "1", "--opt-batch", "2", "--max-batch", "3", "--workspace", "64M",
            "--engine-ext", "plan", "--nms", "host", "--timing-cache", str(tmp_path / "t.cache")]
    a = tmp_path / "a"
    assert cli.run("build", spec, "--out", a, *opts).returncode == 0
    original = _manifest(a / (STEM + "_b3.json"))
    engine = a / (STEM + "_b3.plan")
    _foreign(engine)
    check = cli.run("check", engine)
    assert check.returncode == 1 and "1.6.0.30" in check.stdout
    hints.append((_hint(check), a / (STEM + "_b3.json"), original))

    # 2. a truncated engine, refused by detect (exit 1) with the hint in its one line
    b = tmp_path / "b"
    shutil.copytree(built / "out", b)
    original_b = _manifest(b / (STEM + ".json"))
    (b / (STEM + ".bin")).write_bytes((b / (STEM + ".bin")).read_bytes()[:500])
    detect = cli.run("detect", b / (STEM + ".bin"), "--source", built / "x.png")
    cli.assert_one_line_error(detect, 1, "truncated or replaced")
    hints.append((_hint(detect), b / (STEM + ".json"), original_b))

    # 3. an --onnx-only build checked on the machine that builds the engine
    c = tmp_path / "c"
    assert cli.run("build", spec, "--out", c, "--onnx-only", "--batch", "2").returncode == 0
    check = cli.run("check", c / (STEM + "_b2.onnx"))
    assert check.returncode == 1 and "--onnx-only" in check.stdout
    reference = tmp_path / "ref"
    assert cli.run("build", spec, "--out", reference, "--batch", "2").returncode == 0
    hints.append((_hint(check), c / (STEM + "_b2.json"), _manifest(reference / (STEM + "_b2.json"))))

    for args, manifest_path, expected in hints:
        assert "--engine-ext" not in args or args[args.index("--engine-ext") + 1] in ("bin", "engine", "plan")
        _run_hint(args)
        got = _manifest(manifest_path)
        assert _comparable(got) == _comparable(expected), args
        engine_path = manifest_path.with_name(got["engine"]["file"])
        assert cli.run("check", engine_path).returncode == 3  # whole again; only the GPU question is left
    assert "--workspace" in hints[0][0] and "--timing-cache" in hints[0][0] and "plan" in hints[0][0]


# ------------------------------------------------------------ reuse before anything heavy loads

def _build_in_process(args):
    code = textwrap.dedent("""
        import sys
        from trtedge.cli import main
        code = main({args!r})
        print(code, sorted(m for m in ("onnx", "tensorflow", "onnx_graphsurgeon") if m in sys.modules))
    """).format(args=[str(a) for a in args])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1], proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shapes_yolo", "shapes_ssd"])
def test_reuse_touches_neither_onnx_nor_tensorflow(tmp_path, name):
    if name == "shapes_ssd":
        pytest.importorskip("tensorflow", reason="shapes_ssd is a SavedModel (pip install \"trtedge[tf]\")")
    out = tmp_path / name
    first, _ = _build_in_process(["build", name, "--out", out])
    assert first.startswith("0 ") and "onnx" in first
    second, stderr = _build_in_process(["build", name, "--out", out])
    assert second == "0 []" and "Up to date: reusing" in stderr, (second, stderr)


# ------------------------------------------------------------ a failing build destroys nothing

def _snapshot(directory):
    return {f: ((directory / f).read_bytes(), os.stat(directory / f).st_mtime_ns) for f in os.listdir(directory)}


@pytest.mark.parametrize("args, message", [
    (["--version-compatible"], "cannot build version-compatible engines"),
    (["--hardware-compat", "ampere_plus"], "cannot build hardware-compatible engines"),
    (["--workspace", "0"], "workspace must be more than 0"),
    (["--precision", "int8"], "int8 needs calibration"),
])
def test_failed_build_leaves_the_previous_engine_as_it_was(engine_dir, built, args, message):
    before = _snapshot(engine_dir)
    proc = cli.run("build", built / "tiny.yaml", "--out", engine_dir, *args)
    cli.assert_one_line_error(proc, 2, message)
    assert _snapshot(engine_dir) == before


def test_interrupted_build_keeps_the_previous_engine(engine_dir, built, monkeypatch, capsys):
    from trtedge.cli import main
    from trtedge.engines import tensorrt_build as tb

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    before = _snapshot(engine_dir)
    monkeypatch.setattr(tb, "build_engine", interrupted)
    code = main(["build", str(built / "tiny.yaml"), "--out", str(engine_dir), "--force"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert _snapshot(engine_dir) == before


def test_partial_files_of_a_live_build_are_left_alone(tmp_path):
    from trtedge.utils.files import write_atomic

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = tmp_path / "x.bin.partial-{}".format(other.pid)
        theirs.write_bytes(b"half")
        dead = tmp_path / "x.bin.partial-999999999"
        dead.write_bytes(b"stale")
        write_atomic(str(tmp_path / "x.bin"), b"mine")
        assert theirs.read_bytes() == b"half" and not dead.exists()
        assert (tmp_path / "x.bin").read_bytes() == b"mine"
    finally:
        other.kill()
        other.wait()
