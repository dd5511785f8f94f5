"""``trtedge eval`` against pycocotools run directly, ``compare`` on matching and different engines, and
``profile`` (ONNX Runtime's profiler here; TensorRT's IProfiler through a seam)."""

import json
import types

import numpy as np
import onnx
import pytest
import yaml

import cli
import models

pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the engine ONNX here")
pytest.importorskip("cv2", reason="OpenCV reads the images")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the engines")
    root = tmp_path_factory.mktemp("engines")
    proc = cli.run("build", "shapes_yolo", "--out", root / "yolo", "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    onnx.save(models.make("anchor_free", seed=5), str(root / "tiny.onnx"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(models.spec("anchor_free", file="tiny.onnx")))
    proc = cli.run("build", root / "tiny.yaml", "--out", root / "tiny")
    assert proc.returncode == 0, proc.stderr
    return {"yolo": root / "yolo" / "shapes_yolo_fp32_b2.bin", "yolo_onnx": root / "yolo" / "shapes_yolo_fp32_b2.onnx",
            "tiny": root / "tiny" / "tiny_anchor_free_fp32.bin", "root": root}


# ------------------------------------------------------------------ eval


def pycocotools_map(coco, detections_by_image):
    """COCO mAP straight from pycocotools, written here without trtedge.evalcmd."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = coco
    gt.createIndex()
    rows = []
    for image_id, det in detections_by_image:
        for (x1, y1, x2, y2), score, cls in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
            rows.append({"image_id": image_id, "category_id": cls + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": score})
    ev = COCOeval(gt, gt.loadRes(rows), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[1], ev.stats[0]


def test_eval_matches_pycocotools(engines, tmp_path):
    pytest.importorskip("pycocotools", reason="eval uses pycocotools (pip install \"trtedge[eval]\")")
    import trtedge
    from trtedge.datasets.shapes import write_coco
    from trtedge.evaluation import average_precision

    images = tmp_path / "val"
    ann = write_coco(str(images), 6100, 24, (360, 640))
    proc = cli.run("eval", engines["yolo"], "--data", ann, "--images", images, "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["images"] == 24 and got["backend"].startswith("onnxrt") and got["detections"] > 24

    import cv2

    coco = json.load(open(ann))
    det = trtedge.Detector(str(engines["yolo"]))
    pairs = [(im["id"], det(cv2.imread(str(images / im["file_name"])))) for im in coco["images"]]
    map50, map5095 = pycocotools_map(coco, pairs)
    assert got["map50"] == pytest.approx(map50, abs=1e-4) and got["map"] == pytest.approx(map5095, abs=1e-4)
    assert 0.8 <= got["map50"] <= 1.0 and got["map"] < got["map50"]
    # the hand-written mAP agrees within a point
    truth = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        truth.setdefault(a["image_id"], []).append(([x, y, x + w, y + h], a["category_id"] - 1))
    gts = [(np.array([b for b, _ in truth.get(i, [])], np.float32).reshape(-1, 4),
            np.array([c for _, c in truth.get(i, [])], np.int32)) for i, _ in pairs]
    hand, _ = average_precision([(d.boxes, d.scores, d.class_ids) for _, d in pairs], gts, 3, 0.5)
    assert hand == pytest.approx(map50, abs=0.02)

    # generated frames on the fly: the same numbers as pycocotools on the same frames
    from trtedge.evalcmd import shapes_set

    proc = cli.run("eval", engines["yolo"], "--shapes", 12, "--json")
    assert proc.returncode == 0, proc.stderr
    shp = json.loads(proc.stdout)
    coco, frames = shapes_set(12)
    map50, map5095 = pycocotools_map(coco, [(k + 1, det(f)) for k, f in enumerate(frames)])
    assert shp["images"] == 12 and shp["map50"] == pytest.approx(map50, abs=1e-4)
    assert shp["map"] == pytest.approx(map5095, abs=1e-4)
    det.close()
    table = cli.run("eval", engines["yolo"], "--shapes", 4)
    assert table.returncode == 0 and "mAP@0.5:0.95" in table.stdout


def test_eval_bad_input(engines, tmp_path):
    pytest.importorskip("pycocotools", reason="eval uses pycocotools (pip install \"trtedge[eval]\")")
    proc = cli.run("eval", engines["yolo"])
    cli.assert_one_line_error(proc, code=2, contains="--data ANNOTATIONS --images DIR or --shapes N")
    (tmp_path / "a.json").write_text(json.dumps({"images": [], "annotations": [],
                                                 "categories": [{"id": 1, "name": "dog"}]}))
    proc = cli.run("eval", engines["yolo"], "--data", tmp_path / "a.json", "--images", tmp_path)
    cli.assert_one_line_error(proc, code=2, contains="none of the engine's labels")


# ------------------------------------------------------------------ compare


def test_compare_matching_and_different(engines, tmp_path):
    same = cli.run("compare", engines["yolo"], engines["yolo_onnx"], "--shapes", 6)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.strip().endswith("match") and "MISMATCH" not in same.stdout
    assert "engine ONNX (onnxrt)" in same.stdout and "A: " in same.stdout and "B: " in same.stdout
    rows = same.stdout.splitlines()
    assert any(r.startswith("detections") and r.rstrip().endswith("ok") for r in rows)

    other = cli.run("compare", engines["yolo"], engines["tiny"], "--shapes", 6, "--json")
    assert other.returncode == 1, other.stdout + other.stderr
    data = json.loads(other.stdout)
    assert data["match"] is False
    bad = {r["check"] for r in data["rows"] if not r["ok"]}
    assert "detections" in bad

    # raw tensors: a plain model against itself, and against a copy with one weight changed
    plain = tmp_path / "plain.onnx"
    onnx.save(models.make("raw", seed=1), str(plain))
    changed = onnx.load(str(plain))
    w = onnx.numpy_helper.to_array(changed.graph.initializer[0]).copy()
    w.flat[0] += 0.5
    changed.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, changed.graph.initializer[0].name))
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    ok = cli.run("compare", plain, plain)
    assert ok.returncode == 0 and ok.stdout.count(" ok") == 3, ok.stdout  # three raw heads
    diff = cli.run("compare", plain, tmp_path / "changed.onnx", "--json")
    assert diff.returncode == 1
    rows = json.loads(diff.stdout)["rows"]
    assert [r["check"] for r in rows if not r["ok"]] and all("max |a-b|" in r["detail"] for r in rows)

    mixed = cli.run("compare", engines["yolo"], plain)
    cli.assert_one_line_error(mixed, code=2, contains="compare two detectors or two plain models")


def test_match_is_class_aware_and_greedy():
    from trtedge.compare import compare_detections, match

    a = (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8], np.float32),
         np.array([0, 1], np.int32))
    b = (np.array([[0, 0, 10, 11], [20, 20, 30, 30]], np.float32), np.array([0.88, 0.8], np.float32),
         np.array([0, 2], np.int32))
    assert [(i, j) for i, j, _ in match(a, b, 0.5)] == [(0, 0)]  # the second box changed class
    rows = {r.check: r for r in compare_detections([a], [b], 0.25, 0.25, 0.5, 0.05)}
    assert not rows["unmatched"].ok and rows["unmatched"].a == "1" and rows["unmatched"].b == "1"
    # a partner just under the other side's threshold is borderline, not a mismatch
    c = (a[0][:1], np.array([0.27], np.float32), a[2][:1])
    rows = {r.check: r for r in compare_detections([c], [(b[0][:0], b[1][:0], b[2][:0])], 0.25, 0.25, 0.5, 0.05)}
    assert rows["unmatched"].ok and "1 borderline" in rows["detections"].detail


# ------------------------------------------------------------------ profile


def test_profile_onnxrt_writes_a_trace_with_every_node_and_a_png(engines, tmp_path):
    pytest.importorskip("matplotlib", reason="--png draws with matplotlib (pip install \"trtedge[plot]\")")
    trace, png = tmp_path / "trace.json", tmp_path / "layers.png"
    proc = cli.run("profile", engines["yolo"], "--backend", "onnxrt", "--trace", trace, "--png", png,
                   "--iterations", 3, "--warmup", 1)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(trace.read_text())
    events = [e for e in data["traceEvents"] if e.get("ph") == "X"]
    layers = [e for e in events if e["cat"] == "layer"]
    runs = [e for e in events if e["cat"] == "run"]
    assert len(runs) == 3 and data["otherData"]["runs"] == 3
    nodes = [n.name for n in onnx.load(str(engines["yolo_onnx"])).graph.node]
    per_node = {}
    for e in layers:
        per_node[e["name"]] = per_node.get(e["name"], 0) + 1
        assert e["dur"] >= 0 and isinstance(e["ts"], int)
    assert set(nodes) <= set(per_node), sorted(set(nodes) - set(per_node))[:5]
    assert all(per_node[n] >= 3 for n in nodes)  # one event per node and timed run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "mean ms" in proc.stdout and "layers, 3 timed runs" in proc.stdout
    trt_here = cli.run("profile", engines["yolo"], "--backend", "trt", "--trace", tmp_path / "t.json")
    if trt_here.returncode != 0:  # no GPU here: one line, nothing written
        cli.assert_one_line_error(trt_here, code=2, contains="cannot run here")
        assert not (tmp_path / "t.json").exists()


def test_profile_trt_through_a_seam(tmp_path):
    """TensorRT's IProfiler, as the TensorRT backend drives it: a fake context reports per-layer times on
    every enqueue; the profile keeps the timed runs only and lays each run's layers end to end."""
    from trtedge.profiling import format_table, profile_trt, write_png, write_trace

    class IProfiler(object):
        def __init__(self):
            pass

    trt = types.SimpleNamespace(IProfiler=IProfiler, __name__="tensorrt", __version__="10.3.0.26")
    times = {"conv1 + relu1": 0.5, "conv2": 0.25, "nms": 0.125}

    class Context(object):
        profiler = None
        enqueue_emits_profile = False

        def execute(self):
            if self.profiler is not None:
                for name, ms in times.items():
                    self.profiler.report_layer_time(name, ms)

    class Backend(object):
        def __init__(self):
            self.trt, self.context, self.calls = trt, Context(), 0

        def infer(self, feed):
            self.calls += 1
            self.context.execute()
            return {}

    be = Backend()
    prof = profile_trt(be, {"images": np.zeros((1, 8, 8, 3), np.uint8)}, iterations=4, warmup=2)
    assert be.calls == 6 and be.context.profiler is None and be.context.enqueue_emits_profile is True
    assert prof.runs == 4 and {k: len(v) for k, v in prof.layers.items()} == {k: 4 for k in times}
    assert prof.mean_ms()[0] == ("conv1 + relu1", 0.5)
    layers = [e for e in prof.events if e["cat"] == "layer"]
    assert [e["name"] for e in layers[:3]] == list(times)
    assert layers[1]["ts"] == pytest.approx(layers[0]["ts"] + 500.0) and layers[1]["dur"] == 250.0
    write_trace(str(tmp_path / "t.json"), prof)
    assert len([e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e["ph"] == "X"]) == 16
    assert "conv1 + relu1" in format_table(prof, 2) and "nms" not in format_table(prof, 2)
    pytest.importorskip("matplotlib")
    write_png(str(tmp_path / "t.png"), prof)
    assert (tmp_path / "t.png").stat().st_size > 1000
