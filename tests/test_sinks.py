"""Sinks (trtedge.runtime.sinks): annotation, JSON lines, video, image files,
the window refusal on a headless OpenCV, and run statistics."""

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
