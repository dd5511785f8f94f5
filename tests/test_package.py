"""The package with its core requirements only, and as a non-editable install."""

import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: what a core install does not have (extras, full TensorRT, GPUs)
OPTIONAL = ["tensorrt", "tensorrt_rtx", "torch", "tensorflow", "tf2onnx", "cv2", "onnxruntime", "cuda",
            "cuda.bindings", "pycuda", "polygraphy", "modelopt"]


def test_every_module_imports_with_core_requirements_only():
    """Import every trtedge module with the optional modules made unimportable."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        for name in {optional!r}:
            sys.modules[name] = None          # "import name" now raises ImportError
        import trtedge
        names = [m.name for m in pkgutil.walk_packages(trtedge.__path__, "trtedge.")]
        for name in names:
            importlib.import_module(name)
        heavy = [m for m in {optional!r} if sys.modules.get(m) is not None]
        assert not heavy, heavy
        print(len(names))
    """).format(optional=OPTIONAL)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) > 25


def test_import_is_cheap():
    code = "import sys, trtedge, trtedge.cli; print(sorted(m for m in ('onnx', 'numpy', 'yaml') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "onnx" not in proc.stdout


def test_missing_optional_module_is_one_line(tmp_path):
    """A build without any TensorRT says what to install, on one line."""
    code = textwrap.dedent("""
        import sys
        sys.modules["tensorrt"] = None
        sys.modules["tensorrt_rtx"] = None
        from trtedge.cli import main
        sys.exit(main(["build", "shapes_yolo", "--out", {out!r}]))
    """).format(out=str(tmp_path / "o"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("trtedge: error:") and "trtedge[rtx]" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_non_editable_install_works_from_any_directory(tmp_path):
    """``pip install .`` (no editable link) ships the specs, labels and models as package data."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                           "--target", str(target), ROOT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = textwrap.dedent("""
        import os, trtedge
        from trtedge.specs import list_specs, load_spec
        from trtedge.engines.sources import locate
        assert os.path.dirname(trtedge.__file__).startswith({target!r}), trtedge.__file__
        names = list_specs()
        for name in names:
            load_spec(name)
        print(len(names), locate(load_spec("shapes_yolo")))
    """).format(target=str(target))
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(elsewhere), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count, model = proc.stdout.split()
    assert int(count) >= 9 and model.startswith(str(target)) and os.path.isfile(model)
