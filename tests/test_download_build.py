"""``trtedge build SPEC --download``: the spec's url fetched from a loopback
server, its archive hash checked, unpacked safely, then built; a wrong hash or a
broken download leaves nothing behind. And the flags that go with other inputs."""

import hashlib
import io
import os
import tarfile

import onnx
import pytest
import yaml

import cli
import models
from test_download import no_proxy, server  # noqa: F401 (fixtures)

pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engine")


def _tarball():
    buf = io.BytesIO()
    data = models.make("anchor_free").SerializeToString()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("tinyzoo_2026/tiny.onnx")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _spec(tmp_path, url, archive_sha):
    data = models.spec("anchor_free", file="tinyzoo_2026/tiny.onnx")
    data["source"].update(url=url, archive_sha256=archive_sha)
    specs = tmp_path / "specs"
    specs.mkdir(exist_ok=True)
    path = specs / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_download_then_build(server, tmp_path):  # noqa: F811
    httpd, base = server
    body = _tarball()
    httpd.routes["/tinyzoo.tar.gz"] = (body, None)
    work = tmp_path / "work"
    work.mkdir()
    spec = _spec(tmp_path, base + "/tinyzoo.tar.gz", hashlib.sha256(body).hexdigest())
    missing = cli.run("build", spec, "--out", tmp_path / "out", cwd=work)
    cli.assert_one_line_error(missing, 2, "not found")
    proc = cli.run("build", spec, "--out", tmp_path / "out", "--download", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "Downloading " in proc.stderr and "Unpacking " in proc.stderr
    assert sorted(os.listdir(work)) == ["tinyzoo_2026"]  # the archive itself is not kept
    assert (tmp_path / "out" / "tiny_anchor_free_fp32.bin").read_bytes()[:4] == b"vtrt"


def test_wrong_archive_hash_leaves_nothing(server, tmp_path):  # noqa: F811
    httpd, base = server
    httpd.routes["/bad.tar.gz"] = (_tarball(), None)
    work = tmp_path / "work"
    work.mkdir()
    spec = _spec(tmp_path, base + "/bad.tar.gz", "0" * 64)
    proc = cli.run("build", spec, "--out", tmp_path / "out", "--download", cwd=work)
    cli.assert_one_line_error(proc, 2, "sha256")
    assert os.listdir(work) == [] and not (tmp_path / "out").exists()


def test_broken_download_leaves_nothing(server, tmp_path):  # noqa: F811
    httpd, base = server
    body = _tarball()
    httpd.routes["/cut.tar.gz"] = (body[: len(body) // 2], len(body))
    work = tmp_path / "work"
    work.mkdir()
    spec = _spec(tmp_path, base + "/cut.tar.gz", None)
    proc = cli.run("build", spec, "--out", tmp_path / "out", "--download", cwd=work)
    cli.assert_one_line_error(proc, 2)
    assert os.listdir(work) == []


@pytest.mark.parametrize("args, message", [
    (["--download"], "--download goes with a spec"),
    (["--pipeline-config", "pipeline.config"], "--pipeline-config goes with a TF OD API"),
    (["--family", "yolo", "--labels", "x.names"], "cannot read label file x.names"),
    (["--weights", "x.weights"], "--weights goes with a darknet .cfg"),
])
def test_flags_for_other_inputs_are_refused(tmp_path, args, message):
    path = tmp_path / "plain.onnx"
    onnx.save(models.make("anchor_free"), str(path))
    cli.assert_one_line_error(cli.run("build", path, "--out", tmp_path / "o", *args), 2, message)
    assert not (tmp_path / "o").exists()
