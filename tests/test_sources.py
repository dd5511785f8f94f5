"""Frame sources (trtedge.runtime.sources): files, image lists, errors, and a live
MJPEG-over-HTTP stream served on loopback by the test itself."""

import logging
import socket
import time

import numpy as np
import pytest

import mjpeg
from trtedge.datasets.shapes import generate
from trtedge.runtime import sources
from trtedge.runtime.sources import Frame, SourceError, open_source

cv2 = pytest.importorskip("cv2", reason="OpenCV reads the videos and streams: pip install opencv-python-headless")

H, W = 480, 640
COUNT = 30


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "shapes.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    assert writer.isOpened()
    for i in range(COUNT):
        writer.write(generate(0, i, size=(H, W))[0])
    writer.release()
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    for i in (3, 1, 0, 2, 10):  # written out of order; read back in natural name order
        assert cv2.imwrite(str(directory / "img{}.png".format(i)), generate(1, i, size=(96, 128))[0])
    (directory / "notes.txt").write_text("not an image")
    return directory


def _one_line_error(text, **kwargs):
    with pytest.raises(SourceError) as info:
        open_source(text, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    assert info.value.exit_code == 2
    return message


# --------------------------------------------------------------------------- files


def test_video_file_reads_every_frame_then_ends(video):
    with open_source(video) as src:
        assert src.name == "shapes.mp4" and not src.live
        frames = []
        for _ in range(COUNT + 5):
            frame = src.read()
            if frame is None:
                break
            frames.append(frame)
        assert src.read() is None and src.ended
    assert len(frames) == COUNT and src.frames == COUNT
    assert [f.index for f in frames] == list(range(COUNT))
    first = frames[0]
    assert isinstance(first, Frame) and first.source == "shapes.mp4"
    assert first.image.shape == (H, W, 3) and first.image.dtype == np.uint8
    assert abs(first.time - time.time()) < 60
    # mp4v is lossy; the decoded frame is still close to what was written
    diff = np.abs(first.image.astype(np.int16) - generate(0, 0, size=(H, W))[0].astype(np.int16))
    assert diff.mean() < 12


def test_video_file_loop_continues_past_the_end(video):
    src = open_source(video, loop=True)
    try:
        indices = [src.read().index for _ in range(COUNT + 15)]
    finally:
        src.close()
    assert indices == list(range(COUNT + 15))
    assert src.read() is None  # closed


def test_video_file_with_one_decoder_thread_gives_the_same_frames(video):
    """Beside an engine on the CPU the detect loop decodes with the cores it leaves."""
    def frames(**kwargs):
        with open_source(video, **kwargs) as src:
            threads = src._cap.get(cv2.CAP_PROP_N_THREADS) if hasattr(cv2, "CAP_PROP_N_THREADS") else None
            out = []
            while True:
                f = src.read()
                if f is None:
                    return threads, out
                out.append(f.image)

    threads, one = frames(decode_threads=1)
    if hasattr(cv2, "CAP_PROP_N_THREADS"):
        assert threads == 1
    _, default = frames()
    assert len(one) == len(default) == COUNT
    assert all(np.array_equal(a, b) for a, b in zip(one, default))


@pytest.mark.parametrize("engine, files, cores, want", [
    (0, 1, 2, None),    # TensorRT: the GPU runs the engine, OpenCV decodes on every core
    (1, 1, 2, 1),       # ONNX Runtime on 1 of 2 cores: the other decodes
    (7, 1, 8, 1),       # detect's default: every core but one for the engine
    (2, 1, 8, 6),
    (2, 3, 8, 2),       # three files share what the engine leaves
    (8, 2, 8, 1),       # at least one each
])
def test_decode_threads_are_the_cores_the_engine_leaves(engine, files, cores, want):
    assert sources.decode_threads(engine, files, cores) == want


def test_image_directory_in_name_order(images):
    src = open_source(str(images))
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    expected = [generate(1, i, size=(96, 128))[0] for i in (0, 1, 2, 3, 10)]  # img0, img1, img2, img3, img10
    for frame, image in zip(frames, expected):
        assert np.array_equal(frame.image, image)
        assert frame.source == images.name
    assert src.read() is None


def test_image_directory_loop(images):
    with open_source(str(images), loop=True) as src:
        frames = [src.read() for _ in range(12)]
    assert [f.index for f in frames] == list(range(12))
    assert np.array_equal(frames[5].image, frames[0].image)


def test_glob_sorted(images):
    pattern = str(images / "img[0-2].png")
    frames = list(open_source(pattern))
    assert len(frames) == 3
    for frame, i in zip(frames, (0, 1, 2)):
        assert np.array_equal(frame.image, generate(1, i, size=(96, 128))[0])


def test_single_image(images):
    path = str(images / "img2.png")
    src = open_source(path)
    frame = src.read()
    assert src.name == "img2.png" and frame.index == 0
    assert np.array_equal(frame.image, generate(1, 2, size=(96, 128))[0])
    assert src.read() is None
    with open_source(path, loop=True) as again:
        assert [again.read().index for _ in range(3)] == [0, 1, 2]


def test_unknown_scheme_lists_accepted_forms():
    message = _one_line_error("ftp://example.com/video.mp4")
    assert "'ftp://'" in message and "rtsp://" in message and "csi://" in message


def test_missing_camera_lists_present_cameras():
    message = _one_line_error("63", open_timeout=3)
    assert message.startswith("camera 63 (/dev/video63) could not be opened; cameras present: ")
    present = sources._video_devices()
    assert (", ".join(present) if present else "none") in message


def test_corrupt_video(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    message = _one_line_error(str(path))
    assert message.startswith("video {} could not be decoded".format(path))


def test_empty_directory_and_glob(tmp_path):
    assert "holds no images" in _one_line_error(str(tmp_path))
    (tmp_path / "a.txt").write_text("x")
    assert "matches no images (1 file(s) matched" in _one_line_error(str(tmp_path / "*.txt"))


def test_missing_file(tmp_path):
    message = _one_line_error(str(tmp_path / "nope.mp4"))
    assert "does not exist" in message and "nope.mp4" in message


def test_raw_gstreamer_refused_without_gstreamer():
    from trtedge.jetson.gstreamer import gstreamer_available
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the refusal is for builds without it")
    assert "needs OpenCV built with GStreamer" in _one_line_error("gst:videotestsrc num-buffers=3 ! appsink")
    assert "needs OpenCV built with GStreamer" in _one_line_error("csi://0?width=1280&height=720")
    assert "unknown parameter" in _one_line_error("csi://0?colour=red")


# --------------------------------------------------------------------------- live, with a fake capture


class _FakeCapture:
    """Gives ``count`` frames, then fails every read (a camera unplugged)."""

    def __init__(self, count, interval=0.002):
        self.left = count
        self.interval = interval

    def isOpened(self):
        return True

    def read(self):
        time.sleep(self.interval)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        pass


def test_live_reconnects_with_backoff_and_logs(caplog):
    calls = []

    def opener(timeout):
        calls.append(time.monotonic())
        # first open works; the stream dies; two reopen attempts fail; the third works
        return _FakeCapture(5) if len(calls) in (1, 4) else None

    caplog.set_level(logging.WARNING, logger="trtedge")
    src = sources._LiveSource("fake", opener, lambda: "fake failed", reconnect=True,
                              max_reconnect_seconds=0.5, open_timeout=2.0)
    try:
        got = []
        deadline = time.monotonic() + 8
        while len(got) < 12 and time.monotonic() < deadline:  # 5 + 5 frames arrive; then it waits again
            frame = src.read(timeout=0.5)
            if frame is not None:
                got.append(frame)
            elif src.reconnects >= 1 and len(calls) >= 5:
                break
    finally:
        src.close()
    assert src.reconnects >= 1
    gaps = np.diff(calls[:4])
    assert 0.2 < gaps[1] and 0.4 < gaps[2]  # waits 0.25 s, then 0.5 s (capped by max_reconnect_seconds)
    indices = [f.index for f in got]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert any("reconnected" in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.WARNING for r in caplog.records if "reconnect" in r.getMessage())


def test_live_first_open_failure_raises():
    with pytest.raises(SourceError, match="fake never opened"):
        sources._LiveSource("fake", lambda t: None, lambda: "fake never opened", True, 1.0, 1.0)


def test_live_first_open_timeout():
    def slow(timeout):
        time.sleep(1.5)
        return None

    started = time.monotonic()
    with pytest.raises(SourceError, match="no frame within 0.3 s"):
        sources._LiveSource("slow", slow, lambda: "x", True, 1.0, 0.3)
    assert time.monotonic() - started < 1.2


# --------------------------------------------------------------------------- live, MJPEG over HTTP on loopback


def MjpegServer(plan, interval=0.02, lifetime=20.0):
    jpegs = [cv2.imencode(".jpg", generate(2, i, size=(120, 160))[0])[1].tobytes() for i in range(8)]
    return mjpeg.MjpegServer(jpegs, plan, interval, lifetime)


def test_http_mjpeg_reconnects_and_keeps_delivering():
    with MjpegServer(plan=[10, 400], interval=0.02) as server:
        src = open_source(server.url, max_reconnect_seconds=0.5, open_timeout=5)
        try:
            assert src.live and src.name == server.url
            frames, after = [], 0
            deadline = time.monotonic() + 12
            while after < 10 and len(frames) < 400 and time.monotonic() < deadline:
                frame = src.read(timeout=1.0)
                if frame is None:
                    assert not src.ended  # a timeout while reconnecting, not the end
                    continue
                frames.append(frame)
                if src.reconnects >= 1:
                    after += 1
        finally:
            started = time.monotonic()
            src.close()
            closing = time.monotonic() - started
    assert src.reconnects >= 1 and server.connections >= 2
    assert after >= 10, "no frames after the reconnect"
    indices = [f.index for f in frames]
    assert all(b > a for a, b in zip(indices, indices[1:]))
    assert frames[-1].image.shape == (120, 160, 3)
    assert closing < 2.5
    assert src.read() is None


def test_http_mjpeg_slow_reader_counts_dropped_frames():
    with MjpegServer(plan=[300], interval=0.01) as server:
        src = open_source(server.url, reconnect=False, open_timeout=5)
        try:
            frames = []
            for _ in range(6):
                frame = src.read(timeout=2.0)
                assert frame is not None
                frames.append(frame)
                time.sleep(0.1)
        finally:
            src.close()
    assert src.dropped > 0 and src.frames == 6
    assert frames[-1].index - frames[0].index > 5  # the skipped frames show as gaps in the index


def test_http_mjpeg_without_reconnect_ends():
    with MjpegServer(plan=[8, 400], interval=0.01) as server:
        src = open_source(server.url, reconnect=False, open_timeout=5)
        got = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            frame = src.read(timeout=1.0)
            if frame is None and src.ended:
                break
            got += frame is not None
        src.close()
    assert src.ended and src.reconnects == 0 and 1 <= got <= 8
    assert server.connections == 1


def test_http_stream_that_never_opens():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    message = _one_line_error("http://user:secret@127.0.0.1:{}/video.mjpg".format(port), open_timeout=3)
    assert time.monotonic() - started < 6
    assert message.startswith("stream http://user:***@127.0.0.1:{}/video.mjpg could not be opened".format(port))
    assert "secret" not in message


# --------------------------------------------------------------------------- streams that go silent


class QuietServer:
    """A loopback TCP server (bounded in time) for streams that stop talking.

    Connection ``n`` (from 0) gets ``plan[n]`` MJPEG frames (the last entry
    repeats), 30 ms apart, and is then held open without another byte; a
    plan entry of ``None`` accepts and never answers at all (not even the
    HTTP header). Everything stops after ``lifetime`` seconds.
    """

    def __init__(self, plan, lifetime=20.0):
        import threading

        self.plan = list(plan)
        self.connections = 0
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:{}/video.mjpg".format(self.port)
        self.jpeg = cv2.imencode(".jpg", generate(2, 0, size=(120, 160))[0])[1].tobytes()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.timer = threading.Timer(lifetime, self.stopping.set)
        self.timer.daemon = True
        self.held = []

    def _serve(self):
        import threading

        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            n = self.connections
            self.connections += 1
            self.held.append(conn)
            threading.Thread(target=self._one, args=(conn, self.plan[min(n, len(self.plan) - 1)]),
                             daemon=True).start()
        for conn in self.held:
            conn.close()
        self.sock.close()

    def _one(self, conn, frames):
        if frames is None:
            return  # accepted; never a byte
        try:
            conn.settimeout(2.0)
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            for _ in range(frames):
                if self.stopping.is_set():
                    return
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(self.jpeg)).encode() + b"\r\n\r\n" + self.jpeg + b"\r\n")
                time.sleep(0.03)
        except OSError:
            pass  # then held open, silent, until the server stops

    def __enter__(self):
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.stopping.set()
        self.thread.join(5)


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_stream_that_accepts_and_never_answers_times_out(scheme):
    with QuietServer([None]) as server:
        url = "{}://127.0.0.1:{}/x".format(scheme, server.port)
        started = time.monotonic()
        message = _one_line_error(url, open_timeout=1.0)
        waited = time.monotonic() - started
        assert sources.stop_grab_threads()  # the grab thread came back from OpenCV: nothing left at exit
    assert message.startswith("stream {} ".format(url)) and "gave no frame" in message
    assert 0.9 < waited < 5, waited


def test_stream_that_goes_silent_reconnects():
    # 6 frames, then the connection stays open and silent; the next connection streams normally
    with QuietServer([6, 300]) as server:
        src = open_source(server.url, open_timeout=1.0, max_reconnect_seconds=0.5)
        try:
            frames, started = [], time.monotonic()
            while time.monotonic() - started < 10 and not (src.reconnects >= 1 and len(frames) >= 12):
                frame = src.read(timeout=0.5)
                if frame is not None:
                    frames.append((time.monotonic() - started, frame))
        finally:
            src.close()
    assert src.reconnects >= 1 and server.connections >= 2
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:])]
    assert max(gaps) >= 0.9  # the silence, cut short by the timeout ...
    assert frames[-1][0] < 8  # ... not waited out
    assert len(frames) >= 12


def test_process_exits_cleanly_with_a_grab_thread_inside_opencv(tmp_path):
    """Python ending while a grab thread is still inside OpenCV must not abort
    ("terminate called without an active exception", exit 134)."""
    import os
    import subprocess
    import sys

    import cli

    code = """
import sys, time
from trtedge.runtime.sources import open_source, SourceError

class SlowTeardown:  # keeps the interpreter finalising while grab threads come back from OpenCV
    def __del__(self):
        time.sleep(1.5)

keep = SlowTeardown()
if sys.argv[1] == "silent":
    try:
        open_source(sys.argv[2], open_timeout=0.5)
    except SourceError as exc:
        print("refused:", exc)
else:
    src = open_source(sys.argv[2], open_timeout=5.0)   # a working stream, never closed
    assert src.read(timeout=5.0) is not None
    print("leaving")
"""
    with QuietServer([None]) as silent, QuietServer([100000]) as live:
        for case, url, says in (("silent", silent.url, "refused:"), ("live", live.url, "leaving")):
            proc = subprocess.run([sys.executable, "-c", code, case, url], capture_output=True, text=True,
                                  timeout=60, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=cli.ROOT))
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert says in proc.stdout and "terminate called" not in proc.stderr


def test_plan_source_opens_nothing(tmp_path, images, video):
    plan = sources.plan_source(str(images))
    assert plan.kind == "images" and plan.name == images.name and plan.directory == str(images)
    assert [p.rsplit("/", 1)[-1] for p in plan.paths] == ["img0.png", "img1.png", "img2.png", "img3.png",
                                                          "img10.png"]
    assert sources.plan_source(video).paths == (video,) and sources.plan_source(video).name == "shapes.mp4"
    assert sources.plan_source("http://u:pw@cam/x").name == "http://u:***@cam/x"
    assert sources.plan_source("0").live and sources.plan_source("0").name == "camera0"
    assert sources.plan_source("csi://1").name == "csi1"
    with pytest.raises(SourceError, match="does not exist"):
        sources.plan_source(str(tmp_path / "nope.mp4"))


def test_image_frames_carry_their_file_and_videos_their_fps(images, video):
    frames = list(open_source(str(images)))
    assert [f.file for f in frames] == list(sources.plan_source(str(images)).paths)
    with open_source(video) as src:
        assert src.fps == pytest.approx(30.0) and src.read().file is None
