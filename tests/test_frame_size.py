"""Engines that take the camera frame as it is (``build --frame-size HxW``): the resize and
letterbox run inside the engine, at the placement the host's ``fit_into`` uses, and give the
host path's detections; frames of another size and options that cannot go with it are one line."""

import json
import os
import shutil

import numpy as np
import pytest

import cli
from trtedge.config import BuildConfig
from trtedge.errors import TrtedgeError

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX here")
pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")
cv2 = pytest.importorskip("cv2", reason="OpenCV resizes on the host path: pip install opencv-python-headless")

import trtedge  # noqa: E402
from trtedge.datasets import shapes  # noqa: E402
from trtedge.runtime.postprocess import fit_into  # noqa: E402

FRAME = (600, 800)  # 800x600: 256/800 = 0.32, a resize that samples between pixels (1280x720 -> 256 would not)
SPEC = os.path.join(os.path.dirname(trtedge.__file__), "specs", "shapes_yolo.yaml")


def _spec(tmp_path, **input_fields):
    """shapes_yolo's spec with other input fields, beside a copy of its model and labels."""
    import yaml

    models = os.path.join(os.path.dirname(trtedge.__file__), "models")
    shutil.copy(os.path.join(models, "shapes_yolo.onnx"), tmp_path / "shapes_yolo.onnx")
    shutil.copy(os.path.join(os.path.dirname(SPEC), "labels", "shapes.txt"), tmp_path / "shapes.txt")
    with open(SPEC) as f:
        data = yaml.safe_load(f)
    data["input"].update(input_fields)
    path = tmp_path / "shapes_yolo.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("fs")
    plain = trtedge.build("shapes_yolo", out=str(out))
    framed = trtedge.build("shapes_yolo", out=str(out), frame_size="{}x{}".format(*FRAME))
    return plain, framed


def _iou(a, b):
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2, y2 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _same_detections(a, b, frames):
    compared = 0
    for frame in frames:
        da, db = a(frame), b(frame)
        assert da.labels == db.labels
        if len(da.boxes):
            assert _iou(da.boxes, db.boxes).min() >= 0.99
            np.testing.assert_allclose(da.scores, db.scores, atol=0.01)
        compared += len(da.boxes)
    assert compared >= 10  # the scenes have objects, and both paths found them


def test_the_engine_takes_the_frame_and_has_its_own_files(built):
    plain, framed = built
    assert framed.engine.endswith("shapes_yolo_fp32_f600x800.bin") and plain.engine.endswith("shapes_yolo_fp32.bin")
    assert os.path.isfile(plain.engine) and os.path.isfile(framed.engine)  # neither overwrote the other
    data = json.load(open(framed.manifest))
    assert data["input"]["shape"] == ["batch", 600, 800, 3] and data["input"]["frame_height"] == 600
    assert (data["input"]["height"], data["input"]["width"], data["input"]["frame_width"]) == (256, 256, 800)
    assert data["build_options"]["frame_size"] == [600, 800]
    assert json.load(open(plain.manifest))["input"]["frame_height"] == 0
    assert trtedge.build("shapes_yolo", out=os.path.dirname(framed.engine), frame_size=list(FRAME)).reused
    with open(framed.engine, "rb") as f:
        assert f.read(4) == b"vtrt"  # TensorRT for RTX built the resize and padding


def test_the_engine_letterboxes_as_the_host_does(built):
    """The engine ONNX on a frame against the host-letterboxed engine ONNX: the same network input
    up to OpenCV's fixed-point rounding, so the same candidates."""
    plain, framed = built
    a = ort.InferenceSession(plain.onnx, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(framed.onnx, providers=["CPUExecutionProvider"])
    sample = next(iter(shapes.iterate(1, 4, size=FRAME)))
    x = np.empty((256, 256, 3), np.uint8)
    fit_into(sample.image, x)
    (sa, ca), (sb, cb) = [s.run(["candidate_scores", "candidate_classes"], {"images": inp[None]})
                          for s, inp in ((a, x), (b, sample.image))]
    top = sa[0] > 0.25
    assert top.sum() > 0
    np.testing.assert_allclose(sa[0][top], sb[0][top], atol=0.01)
    np.testing.assert_array_equal(ca[0][top], cb[0][top])


def test_detections_equal_the_host_letterbox_path(built):
    plain, framed = built
    frames = [s.image for s in shapes.iterate(8, 11, size=FRAME)]
    with trtedge.Detector(plain.engine, backend="onnxrt") as a, trtedge.Detector(framed.engine, backend="onnxrt") as b:
        assert b.frame_size == FRAME and not b.recycles_inputs and a.recycles_inputs
        _same_detections(a, b, frames)
        batch = b.detect(frames[:3])  # submit: the frames go into the input buffer as they are
        assert [d.labels for d in batch] == [a(f).labels for f in frames[:3]]


@pytest.mark.parametrize("fields", [{"resize": "stretch"}, {"letterbox_align": "top_left"}],
                         ids=["stretch", "top_left"])
def test_stretch_and_top_left_placements(tmp_path, fields):
    spec = _spec(tmp_path, **fields)
    plain = trtedge.build(spec, out=str(tmp_path / "b"))
    framed = trtedge.build(spec, out=str(tmp_path / "b"), frame_size=FRAME)
    frames = [s.image for s in shapes.iterate(6, 12, size=FRAME)]
    with trtedge.Detector(plain.engine, backend="onnxrt") as a, trtedge.Detector(framed.engine, backend="onnxrt") as b:
        _same_detections(a, b, frames)


def test_frames_of_another_size_are_one_line(built, tmp_path):
    _, framed = built
    with trtedge.Detector(framed.engine, backend="onnxrt") as det:
        with pytest.raises(TrtedgeError, match=r"takes 800x600 frames .* got 640x480: rebuild with --frame-size 480x640"):
            det(np.zeros((480, 640, 3), np.uint8))
    small = tmp_path / "small.mp4"
    assert cli.run("video", small, "--frames", "3", module="trtedge.datasets").returncode == 0
    proc = cli.run("detect", framed.engine, "--backend", "onnxrt", "--source", small, "--json", tmp_path / "d.jsonl")
    cli.assert_one_line_error(proc, 2, "got 640x480")


def test_detect_runs_a_video_of_the_frame_size(built, tmp_path):
    _, framed = built
    clip = tmp_path / "clip.mp4"
    assert cli.run("video", clip, "--frames", "12", "--size", "600x800", module="trtedge.datasets").returncode == 0
    out = tmp_path / "d.jsonl"
    proc = cli.run("detect", framed.engine, "--backend", "onnxrt", "--source", clip, "--json", out)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12 and sum(len(r["detections"]) for r in records) >= 12
    for r in records:
        for d in r["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= 800 and 0 <= y1 < y2 <= 600


@pytest.mark.parametrize("args, words", [
    (["--frame-size", "abc"], "give HEIGHTxWIDTH"),
    (["--frame-size", "0x640"], "at least 1"),
    (["--frame-size", "256x256"], "already 256x256"),
    (["--frame-size", "720x1280", "--precision", "int8"], "does not go with --precision int8"),
], ids=["not-a-size", "zero", "the-input-size", "int8"])
def test_what_cannot_go_with_a_frame_size_is_one_line(tmp_path, args, words):
    proc = cli.run("build", "shapes_yolo", "--out", tmp_path / "o", *args)
    cli.assert_one_line_error(proc, proc.returncode if proc.returncode else 2, words)
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_an_engine_onnx_rebuilds_only_as_it_was_made(built, tmp_path):
    plain, framed = built
    proc = cli.run("build", framed.onnx, "--out", tmp_path / "r", "--onnx-only")
    cli.assert_one_line_error(proc, proc.returncode or 2, "build it with --frame-size 600x800")
    proc = cli.run("build", plain.onnx, "--out", tmp_path / "r", "--onnx-only", "--frame-size", "600x800")
    cli.assert_one_line_error(proc, proc.returncode or 2, "build it without --frame-size")
    again = cli.run("build", framed.onnx, "--out", tmp_path / "r", "--onnx-only", "--frame-size", "600x800")
    assert again.returncode == 0, again.stderr


def test_the_rebuild_command_keeps_the_frame_size():
    config = BuildConfig.create(frame_size="600x800")
    assert config.frame_size == (600, 800)
    assert config.to_cli_args()[-2:] == ["--frame-size", "600x800"]
    assert BuildConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.key()["frame_size"] == (600, 800)
    assert "frame_size" not in BuildConfig().key()  # engines built before the option keep their build key
