"""What a hostile user found (issue [8]): each case, first against the threaded detect
loop with stand-in parts (fast, no engine), then against the real ``trtedge``
command with an engine built here by TensorRT for RTX and run by ONNX Runtime.

Network tests use only 127.0.0.1, are bounded in time and stop themselves."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cli
from trtedge.errors import TrtedgeError
from trtedge.runtime import bench, pipeline_loop
from trtedge.runtime.detections import Detections
from trtedge.runtime.sinks import RunStats
from trtedge.runtime.sources import Frame


# --------------------------------------------------------------------------- the loop, with stand-ins


class FakeDet:
    """A detector whose engine takes ``engine_s`` (sleeping, as a GIL-free engine call does)."""

    def __init__(self, max_batch=1, engine_s=0.0, prepare_s=0.0, asynchronous=False):
        self.max_batch, self.engine_s, self.prepare_s, self.asynchronous = max_batch, engine_s, prepare_s, asynchronous
        self.batches = []
        self.prepare_threads = set()
        self.engine_threads = set()

    def prepare(self, image):
        self.prepare_threads.add(threading.current_thread().name)
        time.sleep(self.prepare_s)
        return image

    def submit_prepared(self, items):
        self.engine_threads.add(threading.current_thread().name)
        time.sleep(self.engine_s)
        self.batches.append(len(items))
        return [int(x[0, 0, 0]) for x in items]

    def collect(self, ticket):
        return [Detections.empty() for _ in ticket]


class FileSource:
    live = False

    def __init__(self, name, count, fail_at=None):
        self.name, self.count, self.fail_at = name, count, fail_at
        self.next = 0
        self.dropped = 0

    @property
    def ended(self):
        return self.next >= self.count

    def read(self, timeout=None):
        if self.next == self.fail_at:
            raise TrtedgeError("{}: the disk went away".format(self.name))
        if self.next >= self.count:
            return None
        image = np.full((4, 4, 3), self.next % 256, np.uint8)
        frame = Frame(image, self.next, time.time(), self.name)
        self.next += 1
        return frame


class LiveSource:
    """A camera giving a new frame every ``interval`` seconds (what its grab thread hands out)."""

    live = True
    ended = False

    def __init__(self, interval=0.002):
        self.interval = interval
        self.start = time.monotonic()
        self.last = -1
        self.name = "cam"
        self.dropped = 0

    def read(self, timeout=None):
        while True:
            index = int((time.monotonic() - self.start) / self.interval)
            if index > self.last:
                self.dropped += max(0, index - self.last - 1)
                self.last = index
                return Frame(np.zeros((4, 4, 3), np.uint8), index, time.time(), self.name)
            time.sleep(self.interval / 4)


class ListSink:
    def __init__(self, delay=0.0, fail_at=None, stop_at=None, main_thread=False, interrupt_at=None):
        self.got = []
        self.delay, self.fail_at, self.stop_at, self.interrupt_at = delay, fail_at, stop_at, interrupt_at
        self.main_thread = main_thread
        self.threads = set()

    def write(self, frame, detections):
        self.threads.add(threading.current_thread().name)
        n = len(self.got)
        if n == self.fail_at:
            raise TrtedgeError("cannot write out.mp4: no space left on device")
        if n == self.interrupt_at:
            raise KeyboardInterrupt
        if n == self.stop_at:
            return False
        time.sleep(self.delay)
        self.got.append((frame.source, frame.index))
        return True


def _loop_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith(("trtedge-read", "trtedge-write"))]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-backend", "async-backend"])
def test_files_never_drop_and_order_is_kept(asynchronous):
    det = FakeDet(asynchronous=asynchronous)
    sink, stats = ListSink(), RunStats()
    assert pipeline_loop.run_loop(det, [FileSource("v.mp4", 60)], [sink], stats) is True
    assert sink.got == [("v.mp4", i) for i in range(60)]
    assert stats.frames == 60 and stats.summary()["dropped"] == 0
    assert det.prepare_threads == {"trtedge-read-v.mp4"}  # decode + letterbox off the engine thread
    assert det.engine_threads == {threading.current_thread().name}
    assert sink.threads == {"trtedge-write"}
    assert not _loop_threads()


class AffinityDet(FakeDet):
    """A detector whose engine keeps ``host_threads`` CPU cores busy; records where each stage ran."""

    def __init__(self, host_threads):
        super().__init__()
        self.host_threads = host_threads
        self.where = {}

    def prepare(self, image):
        self.where["read"] = os.sched_getaffinity(0)
        return super().prepare(image)

    def submit_prepared(self, items):
        self.where["engine"] = os.sched_getaffinity(0)
        return super().submit_prepared(items)


class AffinitySink(ListSink):
    def write(self, frame, detections):
        self.where = os.sched_getaffinity(0)
        return super().write(frame, detections)


needs_two_cores = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                     reason="thread CPU affinity needs Linux and at least two usable cores")


@needs_two_cores
def test_an_engine_on_the_cpu_gets_its_own_core():
    """ONNX Runtime on the CPU: the engine thread stays on the first core, the reader and the
    writer on the others; the caller's affinity is back as it was when the loop returns."""
    cores = sorted(os.sched_getaffinity(0))
    det, sink = AffinityDet(host_threads=1), AffinitySink()
    before = os.sched_getaffinity(0)
    assert pipeline_loop.run_loop(det, [FileSource("v", 6)], [sink], RunStats()) is True
    assert det.where["engine"] == {cores[0]}
    assert det.where["read"] == set(cores[1:]) and sink.where == set(cores[1:])
    assert os.sched_getaffinity(0) == before and len(sink.got) == 6


@needs_two_cores
def test_an_engine_on_the_gpu_pins_nothing():
    det, sink = AffinityDet(host_threads=0), AffinitySink()
    all_cores = os.sched_getaffinity(0)
    pipeline_loop.run_loop(det, [FileSource("v", 3)], [sink], RunStats())
    assert det.where["engine"] == det.where["read"] == sink.where == all_cores


def test_core_split():
    from trtedge.utils import cores

    assert cores.split_cores(0) is None  # TensorRT: the engine is on the GPU
    assert cores.pin_thread(None) is None and cores.pin_thread(set()) is None
    if not hasattr(os, "sched_getaffinity"):
        assert cores.split_cores(1) is None
        return
    usable = sorted(os.sched_getaffinity(0))
    assert cores.split_cores(len(usable)) is None  # nothing left for the readers
    if len(usable) >= 2:
        assert cores.split_cores(1) == ({usable[0]}, set(usable[1:]))
    assert cores.pin_thread({10 ** 6}) is None  # a core that does not exist: nothing changes
    assert sorted(os.sched_getaffinity(0)) == usable


def test_sources_are_batched_and_max_frames_holds():
    det = FakeDet(max_batch=2)
    sink = ListSink()
    pipeline_loop.run_loop(det, [FileSource("a", 10), FileSource("b", 10)], [sink], RunStats(), max_frames=15)
    assert len(sink.got) == 15 and det.batches[:7] == [2] * 7
    assert [i for s, i in sink.got if s == "a"] == list(range(8))


def test_stages_overlap():
    """Reading, the engine and writing each take 20 ms a frame: run one after another they
    would take 60 ms a frame; overlapped, a little over 20."""
    det = FakeDet(engine_s=0.02, prepare_s=0.02)
    sink = ListSink(delay=0.02)
    started = time.monotonic()
    pipeline_loop.run_loop(det, [FileSource("v", 25)], [sink], RunStats())
    per_frame = (time.monotonic() - started) / 25
    assert len(sink.got) == 25
    assert per_frame < 0.035, "stages did not overlap: {:.1f} ms a frame".format(per_frame * 1000)


def test_live_source_drops_the_oldest():
    det = FakeDet(engine_s=0.03)
    sink, stats = ListSink(), RunStats()
    src = LiveSource(interval=0.002)
    pipeline_loop.run_loop(det, [src], [sink], stats, max_frames=10)
    indices = [i for _, i in sink.got]
    assert len(indices) == 10 and indices == sorted(indices)
    assert indices[-1] - indices[0] > 50  # the camera ran on; the engine got fresh frames
    assert stats.summary(src.dropped)["dropped"] >= 50


@pytest.mark.parametrize("where", ["reader", "writer"])
def test_an_error_in_a_stage_stops_every_thread(where):
    det = FakeDet()
    src = FileSource("v", 100, fail_at=7 if where == "reader" else None)
    sink = ListSink(fail_at=5 if where == "writer" else None)
    with pytest.raises(TrtedgeError, match="disk went away" if where == "reader" else "no space left"):
        pipeline_loop.run_loop(det, [src], [sink], RunStats())
    assert not _loop_threads()


def test_ctrl_c_writes_what_has_a_result():
    det = FakeDet(asynchronous=True)
    window = ListSink(main_thread=True, interrupt_at=20)
    files = ListSink(delay=0.005)  # slower than the engine: frames wait in the writer's queue
    with pytest.raises(KeyboardInterrupt):
        pipeline_loop.run_loop(det, [FileSource("v", 100)], [window, files], RunStats())
    assert window.threads == {threading.current_thread().name}
    assert files.got == [("v", i) for i in range(20)]  # everything the window saw reached the files
    assert not _loop_threads()


def test_a_sink_that_asks_to_stop():
    sink = ListSink(stop_at=3)
    assert pipeline_loop.run_loop(FakeDet(), [FileSource("v", 100)], [sink], RunStats()) is False
    assert len(sink.got) == 3 and not _loop_threads()


def test_progress_is_updated_and_finished():
    class Recorder:
        def __init__(self):
            self.updates, self.finished = [], 0

        def update(self, frames, dropped=0):
            self.updates.append(frames)

        def finish(self):
            self.finished += 1

    progress = Recorder()
    pipeline_loop.run_loop(FakeDet(), [FileSource("v", 12)], [ListSink()], RunStats(), progress=progress)
    assert progress.updates == list(range(1, 13)) and progress.finished == 1


def test_bench_rows_are_interleaved_in_rotating_order():
    order = []
    rows = [bench._Row(name, 1, unit=lambda name=name: order.append(name)) for name in "abc"]
    bench.interleaved(rows, iterations=6, warmup=1, block=2)
    timed = order[3:]  # after one warm-up call each
    assert timed == list("aabbcc" "bbccaa" "ccaabb")
    assert all(r.stats()["iterations"] == 6 for r in rows)


# --------------------------------------------------------------------------- the real command

pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX here")
pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")
cv2 = pytest.importorskip("cv2", reason="OpenCV reads and writes the videos: pip install opencv-python-headless")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine")
    proc = cli.run("build", "shapes_yolo", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    proc = cli.run("video", path, "--frames", "30", "--fps", "10", module="trtedge.datasets")
    assert proc.returncode == 0, proc.stderr
    return str(path)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte; stops after ``lifetime`` s."""

    def __init__(self, lifetime=30.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.deadline = time.monotonic() + lifetime
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                pass
        for conn in self.held:
            conn.close()
        self.sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(5)


def _popen(*args):
    env = dict(os.environ, PYTHONPATH=cli.ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "trtedge"] + [str(a) for a in args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    return proc, lines, reader


def _wait_for(lines, text, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in line for line in list(lines)):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_stream_that_never_answers_is_one_line_not_an_abort(engine, scheme):
    with SilentServer() as server:
        url = "{}://127.0.0.1:{}/x.mjpg".format(scheme, server.port)
        started = time.monotonic()
        proc = cli.run("detect", engine, "--source", url, "--stream-timeout", "1.5", timeout=60)
        took = time.monotonic() - started
    line = cli.assert_one_line_error(proc, 2, "stream {}".format(url))
    assert "gave no frame" in line
    assert "terminate called" not in proc.stderr and took < 20


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_startup(engine, tmp_path, sig, code, word):
    with SilentServer() as server:  # opening the stream is the slow part of this start-up
        proc, lines, reader = _popen("detect", engine, "--source", "http://127.0.0.1:{}/x".format(server.port),
                                     "--stream-timeout", "5", "--json", tmp_path / "never.jsonl")
        try:
            assert _wait_for(lines, "ONNX Runtime", 60), "".join(lines)
            time.sleep(0.5)
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(5)
    err = "".join(lines)
    assert proc.returncode == code, err
    assert "trtedge: {}".format(word) in err and "Traceback" not in err and "terminate called" not in err
    assert "frames" not in err  # nothing ran: no summary
    assert os.listdir(str(tmp_path)) == []


def test_sigterm_during_detect_finalises_like_ctrl_c(engine, video, tmp_path):
    out, saved = tmp_path / "d.jsonl", tmp_path / "out.mp4"
    proc, lines, reader = _popen("detect", engine, "--source", video, "--loop", "--json", out, "--save", saved)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(read_jsonl(out)) < 15):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    err = "".join(lines)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err and "frames " in err
    rows = read_jsonl(out)
    assert len(rows) >= 15
    assert "wrote    {} ({} frames, 10 FPS), {} ({} lines)".format(saved, len(rows), out, len(rows)) in err
    cap = cv2.VideoCapture(str(saved))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = cap.read()
    cap.release()
    assert ok and frames == len(rows)
    assert sorted(os.listdir(str(tmp_path))) == ["d.jsonl", "out.mp4"]  # no *.partial-PID.mp4


def _engine_file(engine, ext):
    return os.path.splitext(engine)[0] + ext


@pytest.mark.parametrize("case", ["save-is-source", "save-is-json", "json-is-manifest", "json-is-engine-onnx",
                                  "json-is-engine", "save-via-link", "save-dir-is-source-dir", "dotdot"])
def test_outputs_never_clobber_inputs(engine, video, tmp_path, case):
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    os.symlink(video, str(tmp_path / "link.mp4"))
    args = {
        "save-is-source": (["--source", video, "--save", video], "is the source"),
        "save-is-json": (["--source", video, "--save", tmp_path / "x.mp4", "--json", tmp_path / "x.mp4"],
                         "are the same file"),
        "json-is-manifest": (["--source", video, "--json", _engine_file(engine, ".json")], "the engine's manifest"),
        "json-is-engine-onnx": (["--source", video, "--json", _engine_file(engine, ".onnx")], "the engine ONNX"),
        "json-is-engine": (["--source", video, "--json", engine], "is the engine"),
        "save-via-link": (["--source", tmp_path / "link.mp4", "--save", video], "is the source"),
        "save-dir-is-source-dir": (["--source", images, "--save-dir", images], "is the source directory"),
        "dotdot": (["--source", video, "--save", os.path.join(os.path.dirname(video), "..",
                                                              os.path.basename(os.path.dirname(video)),
                                                              "clip.mp4")], "is the source"),
    }[case]
    guarded = [video, engine, _engine_file(engine, ".json"), _engine_file(engine, ".onnx"), str(images / "a.png")]
    before = {p: sha(p) for p in guarded}
    listing = sorted(os.listdir(str(tmp_path)))
    cli.assert_one_line_error(cli.run("detect", engine, *args[0]), 2, args[1])
    assert {p: sha(p) for p in guarded} == before
    assert sorted(os.listdir(str(tmp_path))) == listing and os.listdir(str(images)) == ["a.png"]


def test_disk_full_during_save_names_the_path(engine, video, tmp_path, monkeypatch, capsys):
    """Through the seam: the file system says it is nearly full (free_bytes)."""
    from trtedge import cli as trtedge_cli
    from trtedge.runtime import sinks

    saved, out = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    monkeypatch.setattr(sinks, "free_bytes", lambda directory: 4096)
    code = trtedge_cli.main(["detect", engine, "--source", video, "--save", str(saved), "--json", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("trtedge: error:")]
    assert code == 2 and len(errors) == 1, err
    assert "cannot write video {}: no space left on device".format(saved) in errors[0]
    assert not saved.exists() and not [f for f in os.listdir(str(tmp_path)) if ".partial-" in f]


def test_really_full_disk(engine, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        big = tmp_path / "big.mp4"
        assert cli.run("video", big, "--frames", "20", "--size", "720x1280", module="trtedge.datasets").returncode == 0
        proc = cli.run("detect", engine, "--source", big, "--loop", "--max-frames", "200", "--save",
                       mount / "out.mp4", timeout=300)
        cli.assert_one_line_error(proc, 2, "cannot write video {}: no space left on device".format(mount / "out.mp4"))
        assert os.listdir(str(mount)) == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_failed_detect_leaves_no_empty_json(engine, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(4096))
    old = tmp_path / "old.jsonl"
    old.write_text('{"kept": true}\n')
    for source, out in ((tmp_path / "missing.mp4", tmp_path / "a.jsonl"), (corrupt, tmp_path / "b.jsonl"),
                        (corrupt, old)):
        proc = cli.run("detect", engine, "--source", source, "--json", out, "--save", tmp_path / "v.mp4")
        assert proc.returncode == 2, proc.stderr
    assert sorted(os.listdir(str(tmp_path))) == ["corrupt.mp4", "old.jsonl"]
    assert old.read_text() == '{"kept": true}\n'


def test_one_video_per_source_at_each_sources_rate(engine, video, tmp_path):
    small = tmp_path / "small.avi"
    assert cli.run("video", small, "--frames", "8", "--fps", "5", "--size", "240x320",
                   module="trtedge.datasets").returncode == 0
    proc = cli.run("detect", engine, "--source", video, "--source", small, "--save", tmp_path / "out.mp4")
    assert proc.returncode == 0, proc.stderr
    first, second = tmp_path / "out_clip.mp4", tmp_path / "out_small.mp4"
    assert "Saving one video per source: {}, {}".format(first, second) in proc.stderr
    assert "wrote    {} (30 frames, 10 FPS), {} (8 frames, 5 FPS)".format(first, second) in proc.stderr
    seen = {}
    for path in (first, second):
        cap = cv2.VideoCapture(str(path))
        seen[path.name] = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                           int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS))
        cap.release()
    assert seen == {"out_clip.mp4": (640, 480, 30, 10.0), "out_small.mp4": (320, 240, 8, 5.0)}
    assert not (tmp_path / "out.mp4").exists()


def test_image_sources_keep_their_file_names(engine, tmp_path):
    from trtedge.datasets.shapes import write_coco

    images = tmp_path / "imgs"
    write_coco(str(images), seed=4, count=3, size=(200, 240))
    names = sorted(n for n in os.listdir(str(images)) if n.endswith(".png"))
    out, annotated = tmp_path / "d.jsonl", tmp_path / "annotated"
    proc = cli.run("detect", engine, "--source", images, "--json", out, "--save-dir", annotated)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(str(annotated))) == names
    rows = read_jsonl(out)
    assert [os.path.basename(r["file"]) for r in rows] == names and all(r["source"] == "imgs" for r in rows)
    assert "wrote    {}/ (3 images), {} (3 lines)".format(annotated, out) in proc.stderr


def test_python_api_logs_what_it_built_and_which_backend_it_chose(tmp_path, caplog):
    """No print from the Python API: its choices go to the ``trtedge`` logger at INFO."""
    import logging

    import trtedge

    with caplog.at_level(logging.INFO, logger="trtedge"):
        art = trtedge.build("shapes_yolo", out=str(tmp_path / "b"))
        again = trtedge.build("shapes_yolo", out=str(tmp_path / "b"))
        with trtedge.Detector(art.engine, backend="onnxrt") as det:
            det(np.zeros((720, 1280, 3), np.uint8))
    said = [r.getMessage() for r in caplog.records if r.name.startswith("trtedge") and r.levelno == logging.INFO]
    assert any(m.startswith("Wrote {} (".format(art.engine)) and art.manifest in m for m in said), said
    assert again.reused and any(m.startswith("Up to date: reusing {}".format(art.engine)) for m in said), said
    assert any(m.startswith("Detector: {} on onnxrt (CPU), NMS form".format(art.engine)) for m in said), said


def test_check_exit_codes_for_what_is_not_an_engine(engine, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    cli.assert_one_line_error(cli.run("check", text), 2, "is not a trtedge engine")
    cli.assert_one_line_error(cli.run("detect", text, "--source", "0"), 2, "is not a trtedge engine")
    cli.assert_one_line_error(cli.run("check", tmp_path), 2, "is a directory")
    orphan = tmp_path / "orphan.bin"  # a real plan whose manifest was lost: an engine that cannot be trusted
    orphan.write_bytes(open(engine, "rb").read())
    proc = cli.run("check", orphan)
    assert proc.returncode == 1 and "no manifest beside the engine" in proc.stdout, proc.stdout + proc.stderr


def test_batch_build_keeps_the_batch_1_engine(tmp_path):
    first = cli.run("build", "shapes_yolo", "--out", tmp_path)
    assert first.returncode == 0, first.stderr
    one = first.stdout.strip().splitlines()[-1]
    kept = sha(one)
    second = cli.run("build", "shapes_yolo", "--out", tmp_path, "--batch", "2")
    assert second.returncode == 0, second.stderr
    two = second.stdout.strip().splitlines()[-1]
    assert two != one and sha(one) == kept
    assert json.load(open(os.path.splitext(one)[0] + ".json"))["engine"]["file"] == os.path.basename(one)
    assert cli.run("check", one).returncode == 3 and cli.run("check", two).returncode == 3


def test_progress_line_during_detect(engine, video, monkeypatch, capsys):
    from trtedge import cli as trtedge_cli
    from trtedge.runtime import sinks

    class EveryFrame(sinks.Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(every=0.0, tty=False)

    monkeypatch.setattr(sinks, "Progress", EveryFrame)
    assert trtedge_cli.main(["detect", engine, "--source", video]) == 0
    err = capsys.readouterr().err
    live = [line for line in err.splitlines() if " FPS  dropped " in line]
    assert len(live) >= 20 and live[-1].split()[:2] == ["30", "frames"]


def test_bench_pipeline_row_beside_the_engine(engine, tmp_path):
    big = tmp_path / "hd.mp4"
    assert cli.run("video", big, "--frames", "12", "--size", "720x1280", module="trtedge.datasets").returncode == 0
    proc = cli.run("bench", engine, "--video", big, "--iterations", "12", "--warmup", "2", "--block", "4",
                   "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = [r["name"] for r in data["rows"]]
    assert names[0].startswith("engine (onnxrt") and "pipeline (1280x720 video, detect loop)" in names
    assert "source alone (decode + letterbox)" in names
    assert data["threads"] == 1 and data["block"] == 4 and 0 < data["pipeline_ratio"] < 10
    assert 0 < data["source_ratio"] < 100
    assert all(r["iterations"] == 12 and r["throughput"] > 0 for r in data["rows"])
    table = cli.run("bench", engine, "--video", big, "--iterations", "4", "--warmup", "0", "--block", "2",
                    "--no-baseline")
    assert "pipeline / engine throughput: " in table.stdout and "target >= 0.95" in table.stdout
    cli.assert_one_line_error(cli.run("bench", engine, "--video", big, "--batch", "2"), 2, "use --batch 1")


def test_bench_pipeline_blocks_time_a_busy_reader(engine, video):
    """A pipeline block times n frames while the reader still has frames to read: a reader that
    has read its last frame leaves the engine a core to itself, which a long run never does."""
    import trtedge

    with trtedge.Detector(engine, backend="onnxrt", threads=1) as det:
        row, source_row, src = bench._pipeline_row(det, str(video))
        try:
            seconds = row.block_fn(4, True)
            assert seconds > 0 and row.wall[1] == 5
            # the row read one frame to learn the size, then the block's 4 + 1 timed frames and the lead
            assert src.read().index == 1 + 4 + 1 + bench._LEAD
            assert source_row.block_fn(3, True) > 0
            assert src.read().index == 1 + 4 + 1 + bench._LEAD + 3 + 1
        finally:
            src.close()


class FrameList:
    """A file source of given frames (any sizes)."""

    live = False

    def __init__(self, images):
        self.images, self.next, self.name, self.dropped = images, 0, "mixed", 0

    @property
    def ended(self):
        return self.next >= len(self.images)

    def read(self, timeout=None):
        if self.ended:
            return None
        self.next += 1
        return Frame(self.images[self.next - 1], self.next - 1, time.time(), self.name)


class ResultSink:
    def __init__(self):
        self.got = []

    def write(self, frame, detections):
        self.got.append(detections)
        return True


def test_loop_recycles_input_arrays_and_gives_each_frames_own_detections(engine, monkeypatch):
    """The readers fill the engine's input arrays again once it is done with them (no new
    array and padding per frame); frames whose size changes the placement get their own
    padding: every frame's detections equal those of a Detector call on that frame alone."""
    import trtedge
    from trtedge.datasets import shapes

    samples = list(shapes.iterate(5, 12, size=(480, 640)))
    images = []
    for k, s in enumerate(samples):  # landscape, portrait (other padding) and square frames, mixed
        img = s.image if k % 3 == 0 else cv2.resize(s.image, (360, 640) if k % 3 == 1 else (500, 500))
        images.append(np.ascontiguousarray(img))
    made = []
    with trtedge.Detector(engine, backend="onnxrt") as det:
        want = [det(img) for img in images]
        prepare = det.prepare

        def counting_prepare(image, out=None):
            p = prepare(image, out)
            made.append(id(p.input) if out is None else None)
            return p

        monkeypatch.setattr(det, "prepare", counting_prepare)
        sink = ResultSink()
        assert pipeline_loop.run_loop(det, [FrameList(images * 3)], [sink], RunStats(), depth=2) is True
    assert len(sink.got) == len(images) * 3
    for k, got in enumerate(sink.got):
        ref = want[k % len(images)]
        assert got.labels == ref.labels, k
        np.testing.assert_array_equal(got.boxes, ref.boxes)
        np.testing.assert_array_equal(got.scores, ref.scores)
    assert sum(1 for m in made if m is not None) <= 2 + 3  # the queue's depth, one being read, one submitted
