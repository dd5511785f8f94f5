"""Static checks the suite runs: Python 3.8 syntax (vermin) for the package,
and mypy on the code that talks to full TensorRT, against ``tensorrt-stubs``."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: modules that call full TensorRT / CUDA; their TensorRT types come from the stubs
TRT_FACING = [
    "trtedge/engines/tensorrt_build.py",
    "trtedge/engines/calibrator.py",
    "trtedge/profiling.py",
    "trtedge/gpu.py",
    "trtedge/runtime/trt_backend.py",
    "trtedge/runtime/cuda",
    # the contract and the TensorRT picker both sides share
    "trtedge/trt_module.py",
    "trtedge/manifest.py",
    "trtedge/config.py",
    "trtedge/runtime/compat.py",
    "trtedge/runtime/backend.py",
    "trtedge/runtime/backends.py",
]


def test_package_runs_on_python_38():
    pytest.importorskip("vermin", reason="vermin checks the minimum Python version (pip install vermin)")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "-t=3.8-", "--no-tips", "--violations", "--eval-annotations",
         "--backport", "dataclasses", "trtedge"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _patched_stubs(dest):
    """Copy the installed tensorrt-stubs where mypy finds them, fixing what does not parse.

    tensorrt-stubs 10.13 ships without a ``py.typed`` marker (so mypy ignores
    it) and with a few lines that are not valid stub syntax: parameters named
    ``in``, ``...`` used as a type, a parameter without default after ones
    with defaults, and a module-level ``bool: DataType`` that shadows the
    builtin in every annotation. The fixes change no signature we use.
    """
    site = sysconfig.get_paths()["purelib"]
    front = os.path.join(site, "tensorrt", "__init__.pyi")
    body = os.path.join(site, "tensorrt_bindings", "tensorrt.pyi")
    if not (os.path.isfile(front) and os.path.isfile(body)):
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps -r requirements-nodeps.txt)")
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(os.path.join(site, pkg), os.path.join(dest, pkg),
                        ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
    path = os.path.join(dest, "tensorrt_bindings", "tensorrt.pyi")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\(self(: \w+)?, in: ", r"(self\1, in_: ", text)
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    text = re.sub(r"(\w): \.\.\.([,)])", r"\1: typing.Any\2", text)
    text = text.replace("-> ...:", "-> typing.Any:")
    text = re.sub(r"^bool: ", "_bool_dtype: ", text, flags=re.M)
    if "import typing" not in text:
        text = "import typing\n" + text
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _mypy(stubs, *args):
    env = dict(os.environ, MYPYPATH=stubs)
    config = os.path.join(stubs, "mypy.ini")
    with open(config, "w") as f:  # the stubs' own lint is not ours to fix
        f.write("[mypy]\n[mypy-tensorrt.*]\nignore_errors = True\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.8", "--strict", "--follow-imports=silent",
         "--ignore-missing-imports", "--no-incremental", "--cache-dir", os.path.join(stubs, ".cache"),
         "--config-file", config] + list(args),
        cwd=ROOT, env=env, capture_output=True, text=True)


def test_tensorrt_facing_code_is_type_clean(tmp_path):
    mypy = pytest.importorskip("mypy.version", reason="mypy type-checks the TensorRT-facing code")
    major, minor = (int(x) for x in mypy.__version__.split(".")[:2])
    if (major, minor) >= (1, 15):
        pytest.skip("mypy {} cannot check for Python 3.8; the dev extra pins mypy 1.14".format(mypy.__version__))
    stubs = str(tmp_path / "stubs")
    _patched_stubs(stubs)
    # the stubs are live: a wrong call is caught
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n\ndef f(b: trt.Builder) -> None:\n    b.build_serialized_network(1)\n")
    proc = _mypy(stubs, str(probe))
    assert proc.returncode == 1 and "build_serialized_network" in proc.stdout, proc.stdout
    files = [f for f in TRT_FACING if os.path.exists(os.path.join(ROOT, f))]
    proc = _mypy(stubs, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
