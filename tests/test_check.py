"""``trtedge check``: compatibility decided before loading, from the manifest
and the plan header. Engines are real TensorRT-for-RTX builds; the foreign
ones are those engines with their header and manifest rewritten as another
machine's build would have written them."""

import hashlib
import json
import os
import shutil

import onnx
import pytest
import yaml

import cli
import models
from trtedge.runtime import compat

pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    onnx.save(models.make("anchor_free"), str(root / "tiny.onnx"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(models.spec("anchor_free", file="tiny.onnx")))
    proc = cli.run("build", root / "tiny.yaml", "--out", root / "out")
    assert proc.returncode == 0, proc.stderr
    return root / "out"


@pytest.fixture
def engine(built, tmp_path):
    out = tmp_path / "e"
    shutil.copytree(built, out)
    return out / "tiny_anchor_free_fp32.bin"


def rewrite(engine, tag=None, version=None, **manifest):
    """Rewrite the plan header and the manifest consistently (sha256 and size too)."""
    plan = bytearray(engine.read_bytes())
    if tag:
        plan[0:4] = tag
    if version:
        plan[24:28] = bytes(version)
    engine.write_bytes(bytes(plan))
    path = engine.with_suffix(".json")
    m = json.loads(path.read_text())
    m["engine"].update(sha256=hashlib.sha256(plan).hexdigest(), bytes=len(plan))
    for key, value in manifest.items():
        m[key].update(value)
    path.write_text(json.dumps(m))


def one_line(proc, code, text):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    assert text in lines[0] and "Traceback" not in proc.stderr
    return lines


def test_header_is_read(engine):
    header = compat.read_header(str(engine))
    import tensorrt_rtx

    assert header.module == "tensorrt_rtx"
    assert header.version_text == tensorrt_rtx.__version__


def test_own_engine_needs_a_gpu_to_tell(engine):
    lines = one_line(cli.run("check", engine), 3, "cannot tell: no NVIDIA GPU visible here")


def test_other_gpu(engine):
    rewrite(engine, gpu={"name": "NVIDIA Jetson AGX Orin", "compute_capability": "8.7"})
    one_line(cli.run("check", engine), 3, "built for NVIDIA Jetson AGX Orin (compute capability 8.7)")
    # with a GPU the answer is decided (the GPU seam stands in for the driver here)
    r = compat.check_engine(str(engine), gpu={"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})
    assert r.status == compat.INCOMPATIBLE and "this GPU is NVIDIA GeForce RTX 4090 (8.9)" in r.reason
    r = compat.check_engine(str(engine), gpu={"name": "NVIDIA Jetson AGX Orin", "compute_capability": "8.7"})
    assert r.status == compat.COMPATIBLE


def test_hardware_compatible_engine(engine):
    rewrite(engine, gpu={"name": "NVIDIA A100", "compute_capability": "8.0"}, tensorrt={"hardware_compat": "ampere_plus"})
    assert compat.check_engine(str(engine), gpu={"name": "L4", "compute_capability": "8.9"}).ok
    r = compat.check_engine(str(engine), gpu={"name": "T4", "compute_capability": "7.5"})
    assert r.status == compat.INCOMPATIBLE and "Ampere+" in r.reason


def test_other_tensorrt_version(engine):
    rewrite(engine, version=[1, 6, 0, 30], tensorrt={"version": "1.6.0.30"})
    lines = one_line(cli.run("check", engine), 1, "built by tensorrt_rtx 1.6.0.30 but tensorrt_rtx")
    assert lines[1].startswith("rebuild with: trtedge build ") and "--force" in lines[1]
    r = compat.check_engine(str(engine), trt_version="1.6.0.30", gpu=None)
    assert r.status == compat.UNKNOWN  # same version installed: only the GPU is left to ask


def test_version_compatible_engine_runs_on_newer(engine):
    rewrite(engine, version=[1, 6, 0, 30], tensorrt={"version": "1.6.0.30", "version_compatible": True})
    r = compat.check_engine(str(engine), trt_version="1.7.1.116", gpu=None)
    assert r.status == compat.UNKNOWN and any("version-compatible" in d for d in r.details)
    r = compat.check_engine(str(engine), trt_version="1.5.0.1", gpu=None)
    assert r.status == compat.INCOMPATIBLE


def test_full_tensorrt_engine_on_this_machine(engine):
    rewrite(engine, tag=b"ftrt", version=[10, 3, 0, 26], tensorrt={"module": "tensorrt", "version": "10.3.0.26"})
    one_line(cli.run("check", engine), 1, "built by tensorrt 10.3.0.26, which is not installed here")


def test_header_and_manifest_disagree(engine):
    path = engine.with_suffix(".json")
    m = json.loads(path.read_text())
    m["tensorrt"]["version"] = "1.6.0.30"
    path.write_text(json.dumps(m))
    one_line(cli.run("check", engine), 1, "the files do not belong together")


def test_truncated_engine(engine):
    data = engine.read_bytes()
    engine.write_bytes(data[: len(data) // 2])
    one_line(cli.run("check", engine), 1, "truncated or replaced")


def test_corrupt_engine_same_size(engine):
    data = bytearray(engine.read_bytes())
    data[1000] ^= 0xFF
    engine.write_bytes(bytes(data))
    one_line(cli.run("check", engine), 1, "corrupt or replaced")


def test_missing_manifest(engine):
    os.remove(engine.with_suffix(".json"))
    one_line(cli.run("check", engine), 1, "no manifest beside the engine")


def test_plugin_libraries_need_trust(engine):
    rewrite(engine, plugins={"required": [], "libraries": ["libmyplugins.so"]})
    one_line(cli.run("check", engine), 1, "--trust-plugins")
    assert cli.run("check", engine, "--trust-plugins").returncode == 3


def test_bad_paths(engine, tmp_path):
    cli.assert_one_line_error(cli.run("check", tmp_path), 2, "is a directory")
    cli.assert_one_line_error(cli.run("check", tmp_path / "none.bin"), 2, "does not exist")


def test_json_output(engine):
    proc = cli.run("check", engine, "--json")
    data = json.loads(proc.stdout)
    # nothing is wrong with the engine, only this machine cannot answer: no rebuild command
    assert proc.returncode == 3 and data["status"] == "cannot tell" and data["rebuild"] == ""
