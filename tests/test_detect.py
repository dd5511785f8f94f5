"""End to end on this machine: build the embedded detectors with TensorRT for
RTX, run ``trtedge detect`` (ONNX Runtime on the engine ONNX: TensorRT cannot
run without a GPU) on a generated video, an image directory and a loopback
MJPEG stream that drops its connection, and check the JSON lines against the
ground truth. Plus the Python Detector, ``bench``, and bad input."""

import json
import os

import numpy as np
import pytest

import cli
import mjpeg
from trtedge.datasets.shapes import generate

cv2 = pytest.importorskip("cv2", reason="OpenCV reads the videos: pip install opencv-python-headless")
pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX here")
pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")

MODELS = ["shapes_yolo", "shapes_ssd"]


@pytest.fixture(scope="module", params=MODELS)
def engine(request, tmp_path_factory):
    from trtedge.specs import list_specs

    if request.param not in list_specs():
        pytest.fail("built-in spec {} is missing".format(request.param))
    out = tmp_path_factory.mktemp(request.param)
    proc = cli.run("build", request.param, "--out", out, "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]  # the engine path build prints (with _b2: built for batch 2)


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def recall(pairs):
    """pairs: [(ground-truth boxes, classes), detections json]; class-aware, IoU 0.5."""
    found = total = 0
    for (boxes, classes), dets in pairs:
        used = set()
        for box, cls in zip(boxes.tolist(), classes.tolist()):
            total += 1
            best = None
            for k, d in enumerate(dets):
                if k in used or d["class_id"] != cls:
                    continue
                if iou(box, d["box"]) >= 0.5 and (best is None or d["score"] > dets[best]["score"]):
                    best = k
            if best is not None:
                used.add(best)
                found += 1
    return found / max(total, 1)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_detect_video(engine, tmp_path):
    video = tmp_path / "shapes.mp4"
    proc = cli.run("video", video, "--frames", "40", "--seed", "11", "--fps", "10", module="trtedge.datasets")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "d.jsonl"
    saved = tmp_path / "annotated.mp4"
    proc = cli.run("detect", engine, "--source", video, "--json", out, "--save", saved)
    assert proc.returncode == 0, proc.stderr
    assert "frames   40" in proc.stderr and "latency  p50" in proc.stderr and "onnxrt" in proc.stderr
    assert "wrote    {} (40 frames, 10 FPS), {} (40 lines)".format(saved, out) in proc.stderr
    rows = read_jsonl(out)
    assert [r["frame"] for r in rows] == list(range(40)) and rows[0]["source"] == "shapes.mp4"
    assert set(rows[0]) == {"source", "frame", "time", "detections"}
    truth = [generate(11, i, (480, 640)) for i in range(40)]
    r = recall([((t.boxes, t.classes), row["detections"]) for t, row in zip(truth, rows)])
    assert r >= 0.9, "recall {:.3f}".format(r)
    cap = cv2.VideoCapture(str(saved))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)  # plays at the source's rate, not 30
    cap.release()


def test_detect_image_directory(engine, tmp_path):
    from trtedge.datasets.shapes import write_coco

    images = tmp_path / "images"
    write_coco(str(images), seed=5, count=12, size=(360, 300))
    out = tmp_path / "d.jsonl"
    proc = cli.run("detect", engine, "--source", images, "--json", out, "--save-dir", tmp_path / "annotated")
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(out)
    assert len(rows) == 12 and sorted(os.listdir(tmp_path / "annotated")) == sorted(
        n for n in os.listdir(images) if n.endswith(".png"))  # each image under its own name
    assert [os.path.dirname(r["file"]) for r in rows] == [str(images)] * 12
    truth = [generate(5, i, (360, 300)) for i in range(12)]
    r = recall([((t.boxes, t.classes), row["detections"]) for t, row in zip(truth, rows)])
    assert r >= 0.9, "recall {:.3f}".format(r)


def test_detect_stream_that_drops_its_connection(engine, tmp_path):
    sample = generate(3, 0, (240, 320))
    jpeg = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    out = tmp_path / "d.jsonl"
    with mjpeg.MjpegServer([jpeg], plan=[8, 400], interval=0.03, lifetime=40) as server:
        proc = cli.run("-v", "detect", engine, "--source", server.url, "--json", out, "--max-frames", "20",
                       timeout=60)
        connections = server.connections
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert connections >= 2 and "reconnect" in proc.stderr.lower()
    rows = read_jsonl(out)
    assert len(rows) == 20
    r = recall([((sample.boxes, sample.classes), row["detections"]) for row in rows])
    assert r >= 0.9, "recall {:.3f}".format(r)


def test_python_detector_and_batches(engine):
    import trtedge

    with trtedge.Detector(engine) as det:
        assert det.backend_name.startswith("onnxrt") and det.max_batch == 2
        samples = [generate(21, i, (300, 500)) for i in range(3)]
        results = det.detect([s.image for s in samples])  # 3 frames: a batch of 2, then 1
        assert len(results) == 3
        r = recall([((s.boxes, s.classes), d.to_json()) for s, d in zip(samples, results)])
        assert r >= 0.9
        one = det(samples[0].image)
        np.testing.assert_allclose(one.boxes, results[0].boxes, atol=1e-3)
        assert set(one.labels) <= {"circle", "square", "triangle"}
        only = trtedge.Detector(engine, only=["circle"], conf=0.5)(samples[0].image)
        assert set(only.labels) <= {"circle"} and (only.scores >= 0.5).all()


def test_bench_table_and_json(engine):
    proc = cli.run("bench", engine, "--iterations", "10", "--warmup", "2")
    assert proc.returncode == 0, proc.stderr
    assert "p50 ms" in proc.stdout and "engine (onnxrt" in proc.stdout and "whole frame (1280x720)" in proc.stdout
    proc = cli.run("bench", engine, "--iterations", "5", "--warmup", "1", "--batch", "2", "--json")
    data = json.loads(proc.stdout)
    assert data["batch"] == 2 and len(data["rows"]) >= 2
    assert all(r["p50_ms"] > 0 and r["throughput"] > 0 for r in data["rows"])
    if "shapes_yolo" in engine:  # its source is an ONNX file: the baseline row and the speed-up
        assert data["rows"][-1]["name"].startswith("source model") and data["speedup"] > 0
        # the speed-up is the ratio of the engine's and the baseline's throughput, timed interleaved
        assert data["speedup"] == pytest.approx(data["rows"][0]["throughput"] / data["rows"][-1]["throughput"],
                                                rel=0.01)


def test_bad_input(engine, tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(4096))
    cases = [
        (["--source", "ftp://example/x"], "ftp://"),
        (["--source", "63"], "camera 63"),
        (["--source", bad], "could not be decoded"),
        (["--source", tmp_path / "missing.mp4"], "does not exist"),
        (["--source", "0", "--show", "--conf", "2"], "--conf must be between 0 and 1"),
        (["--source", bad, "--only", "dragon"], "'dragon' is not a label"),
    ]
    for args, text in cases:
        cli.assert_one_line_error(cli.run("detect", engine, *args), 2, text)
    cli.assert_one_line_error(cli.run("detect", tmp_path, "--source", "0"), 2, "is a directory")


def test_show_refused_on_headless_opencv(engine, tmp_path):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), generate(1, 0).image)
    proc = cli.run("detect", engine, "--source", img, "--show")
    cli.assert_one_line_error(proc, 2, "--show needs OpenCV with GUI support")


def test_plain_engine_refused(tmp_path):
    import onnx

    import models

    path = tmp_path / "plain.onnx"
    onnx.save(models.make("anchor_free"), str(path))
    assert cli.run("build", path, "--out", tmp_path / "o").returncode == 0
    proc = cli.run("detect", tmp_path / "o" / "plain_fp32.bin", "--source", "0")
    cli.assert_one_line_error(proc, 2, "plain model (family 'none')")
    proc = cli.run("bench", tmp_path / "o" / "plain_fp32.bin", "--iterations", "3", "--warmup", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"][0]["name"].startswith("engine (onnxrt")


def test_foreign_engine_refused_then_rebuilt(engine, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(os.path.dirname(engine), copy)
    target = copy / os.path.basename(engine)
    target.write_bytes(target.read_bytes()[:1000])  # truncated, as by an interrupted copy to the device
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), generate(1, 0).image)
    proc = cli.run("detect", target, "--source", image)
    line = cli.assert_one_line_error(proc, 1, "truncated or replaced")
    assert "rebuild: trtedge build" in line and "--force" in line
    proc = cli.run("detect", target, "--source", image, "--rebuild")
    assert proc.returncode == 0, proc.stderr
    assert "rebuilding" in proc.stderr and "frames   1" in proc.stderr
    assert cli.run("check", target).returncode == 3  # whole again; only the GPU question is left


def test_ctrl_c_finalises_video_and_json(engine, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    video = tmp_path / "in.mp4"
    assert cli.run("video", video, "--frames", "20", module="trtedge.datasets").returncode == 0
    out, saved = tmp_path / "d.jsonl", tmp_path / "out.mp4"
    env = dict(os.environ, PYTHONPATH=cli.ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "trtedge", "detect", engine, "--source", str(video), "--loop",
                             "--json", str(out), "--save", str(saved)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(read_jsonl(out)) < 15):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by the user" in err and "Traceback" not in err
    rows = read_jsonl(out)  # every line complete JSON
    assert len(rows) >= 15
    cap = cv2.VideoCapture(str(saved))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (480, 640, 3) and frames >= len(rows) - 2
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]


def test_empty_frames_and_a_closed_detector_are_one_line(engine):
    import trtedge
    from trtedge.errors import TrtedgeError

    det = trtedge.Detector(engine)
    with pytest.raises(TrtedgeError, match="non-empty BGR uint8"):
        det(np.zeros((0, 0, 3), np.uint8))
    det.close()
    det.close()  # twice is fine
    with pytest.raises(TrtedgeError, match="this Detector is closed"):
        det(generate(21, 0, (300, 500)).image)
