"""--download support: fetch over HTTP (a loopback server in this process) and safe unpacking.

Every network target here is 127.0.0.1: an http.server in a thread, a socket
that listens and never answers, and a bound socket that does not listen."""

import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time
import zipfile

import pytest

from trtedge.errors import ModelError
from trtedge.specs.pipeline_config import read_pipeline_config
from trtedge.utils.download import fetch, unpack

from test_pipeline_config import TF1_MOBILENET_V2

PAYLOAD = bytes(range(256)) * 12000  # ~3 MB: several progress lines
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0: the connection closes when a handler returns."""

    def do_GET(self):
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, announced = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if announced is None else announced))
        self.end_headers()
        self.wfile.write(body)  # shorter than announced: the close truncates it

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.hits = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(300, httpd.shutdown)  # stops by itself even if teardown never runs
    watchdog.daemon = True
    watchdog.start()
    try:
        yield httpd, "http://127.0.0.1:{}".format(httpd.server_address[1])
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go to a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def broken(func, *args, **kwargs):
    with pytest.raises(ModelError) as err:
        func(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def tree(path):
    """Every path under ``path`` (relative), to show that nothing was left."""
    out = []
    for root, dirs, files in os.walk(str(path)):
        out += [os.path.relpath(os.path.join(root, n), str(path)) for n in dirs + files]
    return sorted(out)


# ------------------------------------------------------------------ fetch

def test_good_download_is_hashed_reported_and_kept_once(server, tmp_path):
    httpd, base = server
    httpd.routes["/models/model.bin"] = (PAYLOAD, None)
    dest = tmp_path / "cache" / "models"  # neither folder exists yet
    lines = []
    path = fetch(base + "/models/model.bin", str(dest), sha256=PAYLOAD_SHA.upper(), progress=lines.append)
    assert path == str(dest / "model.bin")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert tree(dest) == ["model.bin"]  # no temporary file left
    assert len(lines) >= 5 and all("MB/s" in line and "bytes" in line for line in lines)
    assert "{} of {} bytes (100%".format(len(PAYLOAD), len(PAYLOAD)) in lines[-1] and "done" in lines[-1]
    hits = len(httpd.hits)
    assert fetch(base + "/models/model.bin", str(dest), sha256=PAYLOAD_SHA) == path
    assert len(httpd.hits) == hits  # the file with that hash was already there


def test_wrong_hash_keeps_nothing(server, tmp_path):
    httpd, base = server
    httpd.routes["/w/model.bin"] = (PAYLOAD, None)
    wrong = "0" * 64
    message = broken(fetch, base + "/w/model.bin", str(tmp_path / "new" / "dl"), sha256=wrong)
    assert base + "/w/model.bin" in message and PAYLOAD_SHA in message and wrong in message
    assert not (tmp_path / "new").exists()  # the folders it made are gone too
    existing = tmp_path / "existing"
    existing.mkdir()
    broken(fetch, base + "/w/model.bin", str(existing), sha256=wrong)
    assert existing.is_dir() and tree(existing) == []


def test_http_error_names_url_and_status(server, tmp_path):
    _, base = server
    message = broken(fetch, base + "/no/such.tar.gz", str(tmp_path / "dl"))
    assert message == "download of {}/no/such.tar.gz failed: HTTP 404 Not Found".format(base)
    assert tree(tmp_path) == []


def test_body_shorter_than_its_content_length(server, tmp_path):
    httpd, base = server
    httpd.routes["/short.bin"] = (b"x" * 100, 1000)
    message = broken(fetch, base + "/short.bin", str(tmp_path / "dl"))
    assert message.startswith("download of {}/short.bin failed: ".format(base))
    assert "100 bytes" in message and "1000" in message
    assert tree(tmp_path) == []


def test_server_that_never_answers_times_out(tmp_path):
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel accepts the connection; nobody ever reads or answers
        url = "http://127.0.0.1:{}/model.tar.gz".format(silent.getsockname()[1])
        start = time.monotonic()
        message = broken(fetch, url, str(tmp_path / "dl"), timeout=1)
        assert time.monotonic() - start < 10
    finally:
        silent.close()
    assert message == "download of {} failed: no answer within 1 s (timed out)".format(url)
    assert tree(tmp_path) == []


def test_connection_refused(tmp_path):
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = "http://127.0.0.1:{}/model.tar.gz".format(closed.getsockname()[1])
        message = broken(fetch, url, str(tmp_path / "dl"), timeout=5)
    finally:
        closed.close()
    assert message == "download of {} failed: connection refused".format(url)
    assert tree(tmp_path) == []


@pytest.mark.parametrize("url, sha, expected", [
    ("ftp://127.0.0.1/model.tar.gz", None, "only http:// and https:// URLs are supported"),
    ("http://127.0.0.1:9/", None, "the URL names no file"),
    ("http://127.0.0.1:9/m.bin", "abc", "sha256 'abc' is not 64 hexadecimal digits"),
])
def test_bad_arguments_fail_before_any_connection(tmp_path, url, sha, expected):
    assert expected in broken(fetch, url, str(tmp_path / "dl"), sha256=sha)
    assert tree(tmp_path) == []


# ------------------------------------------------------------------ unpack

def add(tf, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tar(path, members, mode="w:gz"):
    with tarfile.open(str(path), mode) as tf:
        for member in members:
            add(tf, *member)
    return str(path)


MODEL_MEMBERS = [
    ("ssd_x_coco_2018", b"", tarfile.DIRTYPE),
    ("ssd_x_coco_2018/frozen_inference_graph.pb", b"\x08\x01graph-bytes"),
    ("ssd_x_coco_2018/pipeline.config", TF1_MOBILENET_V2.encode()),
]


@pytest.mark.parametrize("members, expected", [
    ([("../evil.txt", b"x")], "member '../evil.txt' points outside the destination"),
    ([("ssd/ok.txt", b"fine"), ("ssd/../../evil.txt", b"x")], "member 'ssd/../../evil.txt' points outside"),
    ([("/abs/evil.txt", b"x")], "member '/abs/evil.txt' has an absolute path"),
    ([("ssd/ok.txt", b"fine"), ("ssd/link", b"", tarfile.SYMTYPE, "../../outside")],
     "member 'ssd/link' is a symlink to '../../outside', outside the destination"),
    ([("ssd/link", b"", tarfile.SYMTYPE, "/etc/passwd")], "is a symlink to the absolute path '/etc/passwd'"),
    ([("here", b"", tarfile.SYMTYPE, "."), ("up", b"", tarfile.SYMTYPE, "here/..")],
     "member 'up' is a symlink through the symlink 'here'"),
    ([("ssd", b"", tarfile.DIRTYPE), ("l", b"", tarfile.SYMTYPE, "ssd"), ("l/f.txt", b"x")],
     "member 'l/f.txt' lies under the symlink 'l'"),
    ([("ssd/hard", b"", tarfile.LNKTYPE, "../outside")], "member '../outside' points outside the destination"),
    ([("ssd/hard", b"", tarfile.LNKTYPE, "ssd/none")], "is a hard link to 'ssd/none', which is not a file before it"),
    ([("ssd/tty", b"", tarfile.CHRTYPE)], "member 'ssd/tty' is a device file"),
    ([("ssd/pipe", b"", tarfile.FIFOTYPE)], "member 'ssd/pipe' is a FIFO"),
])
def test_hostile_tarballs_are_refused_and_leave_nothing(tmp_path, members, expected):
    archive = make_tar(tmp_path / "bad.tar.gz", members)
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("already here")
    message = broken(unpack, archive, str(out))
    assert message.startswith("refusing to unpack {}: ".format(archive)) and expected in message, message
    assert tree(out) == ["kept.txt"]  # not half-unpacked, no temporary folder
    assert tree(tmp_path) == ["bad.tar.gz", "out", "out/kept.txt"]  # nothing written outside either
    assert broken(unpack, archive, str(tmp_path / "fresh" / "dir")).startswith("refusing")
    assert not (tmp_path / "fresh").exists()


def test_hostile_zip_is_refused(tmp_path):
    archive = str(tmp_path / "bad.zip")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ssd/ok.txt", "fine")
        zf.writestr("../evil.txt", "x")
    assert "member '../evil.txt' points outside the destination" in broken(unpack, archive, str(tmp_path / "o"))
    assert tree(tmp_path) == ["bad.zip"]


def test_corrupt_or_unknown_archives(tmp_path):
    fake = tmp_path / "model.tar.gz"
    fake.write_bytes(b"<html>not found</html>")
    assert "not a readable archive" in broken(unpack, str(fake), str(tmp_path / "o"))
    good = make_tar(tmp_path / "cut.tar", MODEL_MEMBERS, mode="w")
    with open(good, "r+b") as f:
        f.truncate(700)  # inside the second member's header
    assert "the archive is cut off or damaged after 'ssd_x_coco_2018'" in broken(unpack, good, str(tmp_path / "o"))
    good = make_tar(tmp_path / "cut.tar", MODEL_MEMBERS, mode="w")
    with open(good, "r+b") as f:
        f.truncate(1030)  # inside the second member's data
    assert "not a readable archive (unexpected end of data" in broken(unpack, good, str(tmp_path / "o"))
    assert "not a known archive name" in broken(unpack, str(fake) + ".rar", str(tmp_path / "o"))
    assert "the archive is empty" in broken(unpack, make_tar(tmp_path / "e.tgz", []), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_model_zoo_tarball_downloads_and_unpacks(server, tmp_path):
    httpd, base = server
    archive = make_tar(tmp_path / "ssd_x_coco_2018.tar.gz", MODEL_MEMBERS)
    with open(archive, "rb") as f:
        data = f.read()
    httpd.routes["/models/ssd_x_coco_2018.tar.gz"] = (data, None)
    dest = tmp_path / "models"
    path = fetch(base + "/models/ssd_x_coco_2018.tar.gz", str(dest), sha256=hashlib.sha256(data).hexdigest())
    tops = unpack(path, str(dest))
    assert tops == [str(dest / "ssd_x_coco_2018")]
    assert tree(dest) == ["ssd_x_coco_2018", "ssd_x_coco_2018.tar.gz", "ssd_x_coco_2018/frozen_inference_graph.pb",
                          "ssd_x_coco_2018/pipeline.config"]
    assert (dest / "ssd_x_coco_2018" / "frozen_inference_graph.pb").read_bytes() == b"\x08\x01graph-bytes"
    spec = read_pipeline_config(str(dest / "ssd_x_coco_2018" / "pipeline.config")).model_spec()
    assert spec.name == "ssd_x_coco_2018" and spec.num_classes == 90
    # unpacking again replaces what is there, in one rename per top-level entry
    (dest / "ssd_x_coco_2018" / "frozen_inference_graph.pb").write_bytes(b"edited")
    (dest / "ssd_x_coco_2018" / "stray.txt").write_text("old")
    assert unpack(path, str(dest)) == tops
    assert (dest / "ssd_x_coco_2018" / "frozen_inference_graph.pb").read_bytes() == b"\x08\x01graph-bytes"
    assert not (dest / "ssd_x_coco_2018" / "stray.txt").exists()
    assert [n for n in os.listdir(str(dest)) if n.startswith(".")] == []


def test_links_inside_the_archive_and_zip_files_unpack(tmp_path):
    archive = make_tar(tmp_path / "m.tar.bz2", MODEL_MEMBERS + [
        ("ssd_x_coco_2018/latest.pb", b"", tarfile.SYMTYPE, "frozen_inference_graph.pb"),
        ("ssd_x_coco_2018/copy.pb", b"", tarfile.LNKTYPE, "ssd_x_coco_2018/frozen_inference_graph.pb"),
        ("README", b"two top-level entries"),
    ], mode="w:bz2")
    tops = unpack(archive, str(tmp_path / "out"))
    assert tops == [str(tmp_path / "out" / "ssd_x_coco_2018"), str(tmp_path / "out" / "README")]
    model = tmp_path / "out" / "ssd_x_coco_2018"
    assert os.readlink(str(model / "latest.pb")) == "frozen_inference_graph.pb"
    assert (model / "latest.pb").read_bytes() == (model / "copy.pb").read_bytes() == b"\x08\x01graph-bytes"
    zipped = str(tmp_path / "m.zip")
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("saved_model/saved_model.pb", b"pb")
        zf.writestr("saved_model/variables/variables.index", b"idx")
    assert unpack(zipped, str(tmp_path / "z")) == [str(tmp_path / "z" / "saved_model")]
    assert (tmp_path / "z" / "saved_model" / "variables" / "variables.index").read_bytes() == b"idx"
