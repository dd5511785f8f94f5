"""Sinks (trtedge.runtime.sinks): annotation, JSON lines, video, image files,
the window refusal on a headless OpenCV, and run statistics."""

import errno
import json
import os
import re
import time

import numpy as np
import pytest

from trtedge.datasets.shapes import CLASSES, generate
from trtedge.errors import TrtedgeError
from trtedge.runtime import sinks
from trtedge.runtime.detections import Detections
from trtedge.runtime.sinks import (ImageDirSink, JsonLinesSink, RunStats, VideoSink, WindowSink, annotate,
                                   format_summary, open_sinks)
from trtedge.runtime.sources import Frame

cv2 = pytest.importorskip("cv2", reason="OpenCV draws and writes the outputs: pip install opencv-python-headless")

H, W = 240, 320


def _sample(index):
    image, boxes, classes = generate(3, index, size=(H, W))
    scores = np.linspace(0.95, 0.5, len(classes)).astype(np.float32)
    dets = Detections(boxes, scores, classes, tuple(CLASSES[c] for c in classes))
    return Frame(image, index, 1700000000.0 + index / 30.0, "rtsp://cam/stream 1"), dets


def test_annotate_draws_on_a_copy_near_edges_and_labels():
    image = np.full((200, 300, 3), 128, np.uint8)
    dets = Detections(np.array([[60, 80, 200, 170]], np.float32), np.array([0.87], np.float32),
                      np.array([1], np.int32), ("square",))
    out = annotate(image, dets)
    assert (image == 128).all(), "the input must not change"
    changed = (out != image).any(axis=2)
    assert changed.any()
    # the inside of the box, away from its edges, stays untouched
    assert not changed[80 + 6:170 - 6, 60 + 6:200 - 6].any()
    # every changed pixel lies near the box outline or in the label band above it
    ys, xs = np.nonzero(changed)
    near_box = ((np.abs(xs - 60) <= 3) | (np.abs(xs - 199) <= 3) | (np.abs(ys - 80) <= 3) | (np.abs(ys - 169) <= 3))
    in_label = (ys < 80) & (ys >= 80 - 30) & (xs >= 58)
    assert (near_box | in_label).all()
    assert changed[:80, 60:].any(), "label text above the box"
    # the same class gets the same colour; another class another colour
    assert sinks.class_colour(1) == sinks.class_colour(1) != sinks.class_colour(2)
    assert tuple(int(v) for v in out[125, 60]) == sinks.class_colour(1)  # the left edge, midway
    custom = annotate(image, dets, colours=[(0, 0, 255), (0, 255, 0)])
    assert tuple(int(v) for v in custom[125, 60]) == (0, 255, 0)
    assert np.array_equal(annotate(image, Detections.empty()), image)


def test_annotate_box_at_the_image_corner():
    image = np.zeros((50, 60, 3), np.uint8)
    dets = Detections(np.array([[0, 0, 60, 50]], np.float32), np.array([0.5], np.float32),
                      np.array([0], np.int32), ("circle",))
    out = annotate(image, dets)
    assert out.shape == image.shape and (out != 0).any()


def test_json_lines_are_flushed_per_frame(tmp_path):
    path = tmp_path / "out" / "detections.jsonl"
    sink = JsonLinesSink(str(path))
    frame, dets = _sample(0)
    assert sink.write(frame, dets) is True
    lines = path.read_text().splitlines()  # read before close: already on disk
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == {"source", "frame", "time", "detections"}
    assert record["source"] == "rtsp://cam/stream 1" and record["frame"] == 0
    assert record["time"] == pytest.approx(frame.time)
    assert record["detections"] == dets.to_json()
    first = record["detections"][0]
    assert set(first) == {"label", "class_id", "score", "box"} and len(first["box"]) == 4
    frame2, _ = _sample(1)
    sink.write(frame2, Detections.empty())
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["detections"] == []
    sink.close()
    sink.close()  # idempotent


def test_json_lines_to_stdout(capsys):
    sink = JsonLinesSink("-")
    frame, dets = _sample(2)
    sink.write(frame, dets)
    sink.close()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["frame"] == 2


@pytest.mark.parametrize("name", ["run.mp4", "run.avi"])
def test_video_sink_writes_a_readable_video(tmp_path, name):
    path = tmp_path / "videos" / name
    sink = VideoSink(str(path), fps=15.0)
    for i in range(12):
        frame, dets = _sample(i)
        if i == 5:  # a frame of another size is resized to the first one's
            frame = frame._replace(image=cv2.resize(frame.image, (160, 120)))
        assert sink.write(frame, dets)
    assert os.path.isfile(sink.temp_path) and not path.exists()
    sink.close()
    sink.close()  # idempotent, as a Ctrl-C handler may call it again
    assert path.is_file() and not os.path.exists(sink.temp_path)
    assert os.listdir(str(path.parent)) == [name]
    cap = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (H, W, 3)
        count += 1
    cap.release()
    assert count == 12


def test_video_sink_closed_without_frames_leaves_nothing(tmp_path):
    sink = VideoSink(str(tmp_path / "empty.mp4"))
    sink.close()
    assert os.listdir(str(tmp_path)) == []


def test_video_sink_refuses_unknown_extension(tmp_path):
    with pytest.raises(TrtedgeError, match="use one of .mp4"):
        VideoSink(str(tmp_path / "out.gif"))


def test_image_dir_sink(tmp_path):
    directory = tmp_path / "frames"
    sink = ImageDirSink(str(directory))
    for i in (0, 7):
        frame, dets = _sample(i)
        sink.write(frame, dets)
    sink.close()
    names = sorted(os.listdir(str(directory)))
    assert names == ["rtsp_cam_stream_1_000000.jpg", "rtsp_cam_stream_1_000007.jpg"]
    image = cv2.imread(str(directory / names[1]))
    assert image.shape == (H, W, 3)
    assert sinks.safe_label("../../etc/passwd") == "etc_passwd"
    assert sinks.safe_label("///") == "frame"


def test_window_sink_refused_on_headless_opencv():
    if sinks._gui_backend(cv2) is not None:
        pytest.skip("this OpenCV has a GUI backend; the refusal is for headless builds")
    with pytest.raises(TrtedgeError) as info:
        WindowSink("test")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--show needs OpenCV with GUI support")
    assert "pip install opencv-python" in message and "JetPack" in message
    with pytest.raises(TrtedgeError, match="--show"):
        open_sinks(show=True)


def test_open_sinks(tmp_path):
    made = open_sinks(save=str(tmp_path / "a.mp4"), save_dir=str(tmp_path / "d"), json_path=str(tmp_path / "a.jsonl"))
    assert [type(s) for s in made] == [VideoSink, ImageDirSink, JsonLinesSink]
    frame, dets = _sample(0)
    assert all(s.write(frame, dets) for s in made)
    for s in made:
        s.close()
    assert (tmp_path / "a.mp4").is_file() and (tmp_path / "a.jsonl").is_file()
    assert open_sinks() == []


def test_run_stats_known_numbers():
    stats = RunStats()
    for i in range(100):  # latencies 1..100 ms, one frame every 0.1 s
        stats.record(capture_time=10.0 + 0.1 * i, result_time=10.0 + 0.1 * i + (i + 1) / 1000.0)
    summary = stats.summary(dropped=7)
    assert summary["frames"] == 100 and summary["dropped"] == 7
    assert summary["seconds"] == pytest.approx(9.9 + 0.1, abs=1e-6)
    assert summary["fps"] == pytest.approx(10.0, abs=0.01)
    assert summary["latency_ms"]["p50"] == pytest.approx(50.5, abs=1e-3)
    assert summary["latency_ms"]["p90"] == pytest.approx(90.1, abs=1e-3)
    assert summary["latency_ms"]["p99"] == pytest.approx(99.01, abs=1e-3)
    json.dumps(summary)
    text = format_summary(summary)
    assert "100" in text and "10.0 FPS" in text and "p50 50.5 ms" in text and "p99 99.0 ms" in text
    assert re.search(r"dropped\s+7", text)


def test_run_stats_empty_and_default_clock():
    summary = RunStats().summary()
    assert summary["frames"] == 0 and summary["fps"] == 0.0 and summary["latency_ms"]["p50"] is None
    assert "-" in format_summary(summary)
    stats = RunStats()
    latency = stats.record(time.time() - 0.05)
    assert 0.04 < latency < 5


# --------------------------------------------------------------------------- nothing half-written


class _FakeWriter:
    """Stands in for cv2.VideoWriter: ``fail_at`` makes write number N raise (or return False)."""

    def __init__(self, path, fourcc, fps, size, opened=True, fail_at=None, how="raise", garbage=False):
        self.path, self.opened, self.fail_at, self.how, self.garbage = path, opened, fail_at, how, garbage
        self.count = 0
        if opened:
            with open(path, "wb") as f:
                f.write(b"\0" * 100)

    def isOpened(self):
        return self.opened

    def write(self, image):
        self.count += 1
        if self.fail_at is not None and self.count >= self.fail_at:
            if self.how == "raise":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return False
        return True

    def release(self):
        if self.garbage and self.opened:
            with open(self.path, "wb") as f:  # what a writer leaves on a full disk: no moov atom
                f.write(b"\0\0\0\x18ftypmp42" + os.urandom(4000))


def _factory(**kwargs):
    return lambda path, fourcc, fps, size: _FakeWriter(path, fourcc, fps, size, **kwargs)


def _write_frames(sink, n):
    for i in range(n):
        frame, dets = _sample(i)
        sink.write(frame, dets)


def test_video_sink_creates_nothing_before_the_first_frame(tmp_path):
    path = tmp_path / "new" / "dir" / "out.mp4"
    sink = VideoSink(str(path), fps=10.0)
    assert not (tmp_path / "new").exists()  # no directory either
    _write_frames(sink, 3)
    sink.close()
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0) and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    cap.release()
    assert sink.describe() == "{} (3 frames, 10 FPS)".format(path)


@pytest.mark.parametrize("how", ["raise", "return False"])
def test_video_sink_disk_full_while_writing(tmp_path, how):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"the previous run")
    sink = VideoSink(str(final), writer_factory=_factory(fail_at=4, how=how))  # OpenCV 5 returns False
    with pytest.raises(TrtedgeError) as info:
        _write_frames(sink, 6)
    message = str(info.value)
    assert message.startswith("cannot write video {}: ".format(final)) and "\n" not in message
    # with space left, a failed write is an I/O error, not a full disk
    assert ("no space left on device" if how == "raise" else "Input/output error") in message
    assert not os.path.exists(sink.temp_path) and final.read_bytes() == b"the previous run"
    sink.close()  # what the detect loop's clean-up does afterwards: nothing more happens
    assert sorted(os.listdir(str(tmp_path))) == ["out.mp4"]


def test_video_sink_stops_before_the_disk_is_full(tmp_path, monkeypatch):
    sink = VideoSink(str(tmp_path / "out.mp4"), writer_factory=_factory())
    _write_frames(sink, 8)
    monkeypatch.setattr(sinks, "free_bytes", lambda d: sinks.LOW_SPACE_BYTES // 2)
    with pytest.raises(TrtedgeError, match="no space left on device"):
        _write_frames(sink, 8)
    assert os.listdir(str(tmp_path)) == []


def test_video_sink_full_disk_is_not_a_missing_encoder(tmp_path, monkeypatch):
    sink = VideoSink(str(tmp_path / "out.mp4"), writer_factory=_factory(opened=False))
    monkeypatch.setattr(sinks, "free_bytes", lambda d: 4096)
    with pytest.raises(TrtedgeError) as info:
        _write_frames(sink, 1)
    assert "no space left on device" in str(info.value) and "encoder" not in str(info.value)
    monkeypatch.setattr(sinks, "free_bytes", lambda d: 1 << 40)
    sink = VideoSink(str(tmp_path / "out.mp4"), writer_factory=_factory(opened=False))
    with pytest.raises(TrtedgeError, match="no encoder"):
        _write_frames(sink, 1)
    assert os.listdir(str(tmp_path)) == []


def test_video_sink_keeps_nothing_that_does_not_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(sinks, "free_bytes", lambda d: None)  # a file system that cannot say
    final = tmp_path / "out.mp4"
    sink = VideoSink(str(final), writer_factory=_factory(garbage=True))
    _write_frames(sink, 5)
    with pytest.raises(TrtedgeError, match="came out unreadable after 5 frames"):
        sink.close()
    assert os.listdir(str(tmp_path)) == [] and sink.describe() is None


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): {}".format(proc.stderr.decode()[:100]))
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("watch", [True, False], ids=["free-space", "read-back"])
def test_video_sink_on_a_really_full_disk(tiny_disk, monkeypatch, watch):
    if not watch:  # OpenCV fails (or not) silently; the read-back at close must catch it
        monkeypatch.setattr(sinks, "free_bytes", lambda d: None)
        monkeypatch.setattr(VideoSink, "write", _write_without_checks)
    rng = np.random.default_rng(0)
    sink = VideoSink(str(tiny_disk / "out.mp4"), fps=10)
    with pytest.raises(TrtedgeError) as info:
        for i in range(400):  # noise does not compress: 1 MiB is full after ~200 frames
            sink.write(Frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), i, 0.0, "x"), Detections.empty())
        sink.close()
    assert str(tiny_disk / "out.mp4") in str(info.value)
    assert os.listdir(str(tiny_disk)) == []


def _write_without_checks(self, frame, detections):
    """VideoSink.write as an OpenCV 4.x sees it: no free-space watch, write() says nothing."""
    if self._writer is None:
        h, w = frame.image.shape[:2]
        self.size, self._frame_bytes = (w, h), w * h * 3
        self._writer = self._open(w, h)
    self._writer.write(frame.image)
    self.written += 1
    return True


def test_json_lines_created_lazily_and_cut_back_on_a_full_disk(tmp_path):
    old = tmp_path / "d.jsonl"
    old.write_text("previous\n")
    sink = JsonLinesSink(str(old))
    sink.close()
    assert old.read_text() == "previous\n"  # a run that wrote no frame leaves the old file
    fresh = tmp_path / "sub" / "new.jsonl"
    JsonLinesSink(str(fresh)).close()
    assert not (tmp_path / "sub").exists()

    sink = JsonLinesSink(str(fresh))
    frame, dets = _sample(0)
    sink.write(frame, dets)
    real = sink._file

    class HalfLine:
        def write(self, text):
            real.write(text[: len(text) // 2])
            real.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

        def close(self):
            real.close()

    sink._file = HalfLine()
    with pytest.raises(TrtedgeError) as info:
        sink.write(*_sample(1))
    assert "cannot write JSON lines {}: no space left on device".format(fresh) in str(info.value)
    lines = fresh.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["frame"] == 0  # the torn line is gone
    sink.close()


def test_json_lines_name_the_image_file(tmp_path):
    path = tmp_path / "d.jsonl"
    with JsonLinesSink(str(path)) as sink:
        frame, dets = _sample(0)
        sink.write(frame._replace(source="imgs", file="imgs/cat 1.png"), dets)
        sink.write(frame, dets)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["file"] == "imgs/cat 1.png" and rows[0]["source"] == "imgs"
    assert list(rows[0]) == ["source", "frame", "file", "time", "detections"] and "file" not in rows[1]


def test_image_dir_sink_keeps_file_names(tmp_path):
    out = tmp_path / "annotated"
    sink = ImageDirSink(str(out), names=sinks.image_names(["a/cam1/0001.jpg", "a/cam2/0001.jpg"]))
    assert not out.exists()
    frame, dets = _sample(0)
    sink.write(frame._replace(file="imgs/cat.png"), dets)
    sink.write(frame._replace(file="a/cam1/0001.jpg"), dets)
    sink.write(frame._replace(file="a/cam2/0001.jpg"), dets)
    sink.write(frame, dets)  # a video frame: label and index
    assert sorted(os.listdir(str(out))) == ["cam1_0001.jpg", "cam2_0001.jpg", "cat.png",
                                            "rtsp_cam_stream_1_000000.jpg"]
    assert cv2.imread(str(out / "cat.png")).shape == (H, W, 3)
    assert sink.describe() == "{}/ (4 images)".format(out)


def test_image_names_and_video_paths():
    assert sinks.image_names(["x/a.jpg", "y/b.png"]) == {"x/a.jpg": "a.jpg", "y/b.png": "b.png"}
    assert sinks.video_paths("out.mp4", ["cam"]) == ["out.mp4"]
    assert sinks.video_paths("o/out.mp4", ["a.mp4", "http://h:80/v.mjpg", "a.mp4", "camera0"]) == [
        "o/out_a.mp4", "o/out_http_h_80_v.mp4", "o/out_a_2.mp4", "o/out_camera0.mp4"]


def test_check_outputs(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    os.symlink(str(src), str(tmp_path / "link.mp4"))
    os.link(str(src), str(tmp_path / "hard.mp4"))
    inputs = [("the source", str(src))]
    for same in (str(src), str(tmp_path / "link.mp4"), str(tmp_path / "hard.mp4"),
                 str(tmp_path / "sub" / ".." / "in.mp4")):
        with pytest.raises(TrtedgeError, match="is the source"):
            sinks.check_outputs([("--save", same)], inputs)
    with pytest.raises(TrtedgeError, match="--save .*x.mp4 and --json .*x.mp4 are the same file"):
        sinks.check_outputs([("--save", str(tmp_path / "x.mp4")), ("--json", str(tmp_path / "x.mp4"))], inputs)
    sinks.check_outputs([("--save", str(tmp_path / "out.mp4")), ("--json", str(tmp_path / "out.jsonl"))], inputs)


def test_per_source_videos(tmp_path):
    class Src:
        def __init__(self, name, fps):
            self.name, self.fps = name, fps

    made = open_sinks(save=str(tmp_path / "out.mp4"), sources=[Src("a.mp4", 10.0), Src("b.mp4", None)])
    frame, dets = _sample(0)
    for k in range(3):
        made[0].write(frame._replace(source="a.mp4", index=k), dets)
    small = frame._replace(source="b.mp4", image=cv2.resize(frame.image, (160, 120)))
    made[0].write(small, dets)
    made[0].close()
    sizes = {}
    for name in ("out_a.mp4", "out_b.mp4"):
        cap = cv2.VideoCapture(str(tmp_path / name))
        sizes[name] = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                       cap.get(cv2.CAP_PROP_FPS))
        cap.release()
    assert sizes == {"out_a.mp4": (W, 3, 10.0), "out_b.mp4": (160, 1, 30.0)}  # each its own size and rate


def test_progress_line():
    import io

    log = io.StringIO()
    p = sinks.Progress(log, every=5.0, tty=False)
    start = p._start
    p.update(10, 0, now=start + 1.0)  # too soon
    p.update(60, 2, now=start + 5.0)
    p.update(70, 2, now=start + 6.0)  # too soon
    p.update(110, 3, now=start + 10.0)
    p.finish()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert re.match(r"\s+60 frames\s+12.0 FPS  dropped 2  5 s$", lines[0]), lines[0]
    assert re.match(r"\s+110 frames\s+10.0 FPS  dropped 3  10 s$", lines[1]), lines[1]
    term = io.StringIO()
    p = sinks.Progress(term, tty=True)
    assert p.every == 0.5
    p.update(5, 0, now=p._start + 1.0)
    p.update(9, 0, now=p._start + 2.0)
    p.finish()
    text = term.getvalue()
    assert text.count("\r") == 3 and "\n" not in text and text.endswith("\r\033[K")
