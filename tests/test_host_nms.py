"""Host NMS (the ``host`` form) against a plain greedy reference written here.

Every case must give the SAME kept indices in the SAME order, through OpenCV's
NMS where it is installed and through the NumPy path (OpenCV's import made to
fail), on random, clustered, chain and tie-score candidates, with the
per-class and total caps.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from collections import Counter

import numpy as np
import pytest

from trtedge.runtime import postprocess
from trtedge.runtime.postprocess import detections_from_outputs, nms


# ------------------------------------------------------------------ reference

def ref_iou(a, b):
    """IoU of two boxes (x1, y1, x2, y2) in Python floats; 0 where the union is empty."""
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def reference(boxes, scores, classes, score_threshold, iou_threshold, max_per_class, max_total,
              class_agnostic=False):
    """Plain greedy class-aware NMS: sort by score (stable), keep a box unless a kept box of
    its class has IoU > threshold; then the first ``max_per_class`` of each class, and
    ``max_total`` in all. Scores are compared with the threshold in float32, as NumPy does."""
    thr = np.float32(score_threshold)
    cand = [k for k in range(len(scores)) if np.float32(scores[k]) >= thr]
    cand.sort(key=lambda k: -float(scores[k]))  # sorted() is stable
    group = [0 if class_agnostic else int(c) for c in classes]
    kept = []
    for k in cand:
        if all(ref_iou(boxes[k], boxes[q]) <= iou_threshold for q in kept if group[q] == group[k]):
            kept.append(k)
    per_class = Counter()
    out = []
    for k in kept:
        if per_class[group[k]] < max_per_class:
            out.append(k)
            per_class[group[k]] += 1
    return out[:max_total]


# ------------------------------------------------------------------ cases

def random_case(seed, n=1000, classes=80, size=416.0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(4, 120, (n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def clustered_case(seed, objects=12, per=25, classes=80, noise=700):
    """12 objects x 25 jittered candidates (one class per object), plus low-scoring noise."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(40, 376, (objects, 2))
    size = rng.uniform(20, 120, (objects, 2))
    c = np.repeat(centre, per, 0) + rng.normal(0, 3, (objects * per, 2))
    wh = np.repeat(size, per, 0) * rng.uniform(0.85, 1.15, (objects * per, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    scores = rng.uniform(0.3, 0.95, objects * per)
    cls = np.repeat(rng.integers(0, classes, objects), per)
    nb, ns, nc = random_case(seed + 1000, noise, classes)
    return (np.concatenate([boxes, nb]).astype(np.float32), np.concatenate([scores, ns * 0.25]).astype(np.float32),
            np.concatenate([cls, nc]).astype(np.int32))


def chain_case(n=300, step=3.0, width=10.0):
    """Each box overlaps the next (IoU 7/13) but not the one after (IoU 4/16), scores falling."""
    x = np.arange(n) * step
    boxes = np.stack([x, np.zeros(n), x + width, np.full(n, 10.0)], 1).astype(np.float32)
    return boxes, np.linspace(0.99, 0.3, n).astype(np.float32), np.zeros(n, np.int32)


def degenerate_case(seed, n=400):
    """Clusters of few classes with a fifth of the boxes inverted or empty, class ids far apart."""
    boxes, scores, cls = clustered_case(seed, objects=6, per=50, classes=3, noise=n - 300)
    rng = np.random.default_rng(seed)
    odd = rng.random(n) < 0.2
    boxes[odd] = boxes[odd][:, [2, 1, 0, 3]] if seed % 2 else boxes[odd][:, [0, 1, 0, 3]]
    return boxes, scores, (cls * 100003 - 7).astype(np.int32)


def tie_case(seed, n=400):
    """Few score levels, duplicated boxes, three classes: ties decide the order."""
    rng = np.random.default_rng(seed)
    boxes, scores, cls = random_case(seed, n // 2, classes=3, size=200.0)
    boxes = np.concatenate([boxes, boxes[rng.permutation(n // 2)]])
    scores = np.round(np.concatenate([scores, scores]) * 4) / 4
    cls = np.concatenate([cls, rng.integers(0, 3, n // 2).astype(np.int32)])
    return boxes, scores.astype(np.float32), cls


CASES = {
    "random": lambda: random_case(0),
    "random-dense-3-classes": lambda: random_case(1, n=600, classes=3),
    "random-negative-coords": lambda: (random_case(2, 500, 5)[0] - np.float32(60),) + random_case(2, 500, 5)[1:],
    "clustered": lambda: clustered_case(3),
    "chain": chain_case,
    "chain-vertical": lambda: tuple([chain_case()[0][:, [1, 0, 3, 2]]] + list(chain_case()[1:])),
    "ties": lambda: tie_case(4),
    "degenerate-inverted": lambda: degenerate_case(5),
    "degenerate-empty": lambda: degenerate_case(6),
    "ties-chain": lambda: (chain_case()[0], np.full(300, 0.5, np.float32), chain_case()[2]),
}

SETTINGS = [  # score_threshold, iou_threshold, max_per_class, max_total, class_agnostic
    (0.25, 0.45, 100, 100, False),
    (0.0, 0.5, 1000, 1000, False),
    (0.3, 0.7, 5, 40, False),
    (0.25, 0.45, 100, 100, True),
    (0.5, 0.0, 1000, 1000, False),
]


@pytest.fixture(params=["opencv", "numpy"])
def path(request, monkeypatch):
    """Run a test once through OpenCV's NMS at every size, and once with ``import cv2`` failing."""
    if request.param == "opencv":
        if postprocess._opencv() is None:
            pytest.skip("OpenCV with cv2.dnn.NMSBoxesBatched is not installed")
        monkeypatch.setattr(postprocess, "_CV_MAX_CANDIDATES", 10 ** 9)
    else:
        monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
        assert postprocess._opencv() is None
    return request.param


def check(case, setting):
    boxes, scores, classes = case
    got = nms(boxes, scores, classes, *setting)
    want = reference(boxes, scores, classes, *setting)
    assert got.tolist() == want
    return got


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "s{}-iou{}-cap{}x{}{}".format(*s[:4], "-agn" * s[4]))
@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_reference(path, name, setting):
    check(CASES[name](), setting)


def test_cases_exercise_what_they_claim():
    boxes, scores, classes = chain_case()
    assert ref_iou(boxes[0], boxes[1]) > 0.45 >= ref_iou(boxes[0], boxes[2])
    kept = reference(boxes, scores, classes, 0.25, 0.45, 1000, 1000)
    assert kept == list(range(0, 300, 2))  # one decision per link, all the way down
    boxes, scores, classes = clustered_case(3)
    kept = reference(boxes, scores, classes, 0.25, 0.45, 100, 100)
    assert 12 <= len(kept) <= 60 and int((scores >= 0.25).sum()) >= 300
    boxes, scores, classes = tie_case(4)
    assert len(np.unique(scores)) <= 5 and len(reference(boxes, scores, classes, 0.0, 0.5, 1000, 1000)) > 20


def test_caps_apply_after_nms(path):
    boxes, scores, classes = random_case(5, n=800, classes=4)
    for cap, total in [(1, 1000), (3, 1000), (50, 7), (0, 10), (1000, 0)]:
        got = check((boxes, scores, classes), (0.1, 0.5, cap, total, False))
        assert len(got) == min(total, 4 * cap)  # every class keeps more than 50 before the caps


def test_iou_exactly_at_and_just_above_threshold(path):
    """A = [0, 0, N, 1] and B = [0, 0, k, 1] overlap by k/N exactly: kept at the threshold."""
    rows = []
    for den in range(2, 40):
        for num in range(1, den):
            for extra in (0.0, 1e-9 * den, 3e-8 * den, 1e-6 * den):
                rows.append((num, den, extra))
    for num, den, extra in rows:
        boxes = np.array([[0, 0, den, 1], [0, 0, num + extra, 1]], np.float64)
        thr = num / den
        want = reference(boxes, np.array([0.9, 0.8], np.float32), [0, 0], 0.0, thr, 10, 10)
        # float64 boxes here: NMS casts candidates to float64, so these IoUs are exact
        got = nms(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 0]), 0.0, thr, 10, 10)
        assert got.tolist() == want, (num, den, extra)
        assert want == ([0, 1] if extra == 0 else [0])


def test_negative_coordinates_and_empty_boxes_do_not_cross(path):
    # two classes' boxes on top of each other, far below -1; and empty boxes of one class
    boxes = np.array([[-50, -50, -5, -5], [-50, -50, -5, -5], [-49, -49, -4, -4],
                      [3, 3, 3, 9], [3, 3, 3, 9], [5, 5, 5, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    classes = np.array([0, 1, 1, 2, 2, 2], np.int32)
    got = check((boxes, scores, classes), (0.1, 0.5, 10, 10, False))
    assert got.tolist() == [0, 1, 3, 4, 5]


def test_score_equal_to_threshold_is_kept(path):
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    scores = np.array([0.7, 0.69, 0.71], np.float32)
    got = check((boxes, scores, np.zeros(3, np.int32)), (0.7, 0.5, 10, 10, False))
    assert got.tolist() == [2, 0]


def test_opencv_does_the_work_and_falls_back_only_at_the_margin():
    cv2 = postprocess._opencv()
    if cv2 is None:
        pytest.skip("OpenCV with cv2.dnn.NMSBoxesBatched is not installed")
    for name in ("random", "clustered", "chain", "ties"):
        boxes, scores, classes = CASES[name]()
        idx = np.flatnonzero(scores >= 0.25)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        b = np.ascontiguousarray(boxes[idx].T, dtype=np.float64)
        group = classes[idx].astype(np.int64)
        via_cv = postprocess._greedy_opencv(cv2, b, group, 0.45)
        assert via_cv is not None, name
        np.testing.assert_array_equal(via_cv, postprocess._greedy_numpy(b, group, 0.45))
    # an IoU 1e-8 above 0.5: OpenCV keeps both (float32 compare), so its answer is refused
    b = np.array([[0, 0, 2, 1], [0, 0, 1 + 2e-8, 1]], np.float64).T.copy()
    assert len(cv2.dnn.NMSBoxesBatched(np.array([[0, 0, 2, 1], [0, 0, 1 + 2e-8, 1]]),
                                       np.array([2, 1], np.float32), np.array([0, 0], np.int32), 0.0, 0.5)) == 2
    assert postprocess._greedy_opencv(cv2, b, np.zeros(2, np.int64), 0.5) is None
    assert postprocess._greedy_numpy(b, np.zeros(2, np.int64), 0.5).tolist() == [True, False]


def test_what_raw_opencv_gets_wrong_is_handled():
    """The OpenCV behaviours the docstring of _greedy_opencv lists, seen on the installed OpenCV."""
    cv2 = postprocess._opencv()
    if cv2 is None:
        pytest.skip("OpenCV with cv2.dnn.NMSBoxesBatched is not installed")

    def raw(xywh, scores, ids, thr, score_thr=0.0):
        return list(cv2.dnn.NMSBoxesBatched(np.array(xywh, np.float64), np.array(scores, np.float32),
                                            np.array(ids, np.int32), score_thr, thr))
    # IoU exactly 1/6 = threshold: suppressed (float32 rounding); exact greedy keeps it
    assert raw([[0, 0, 6, 1], [0, 0, 1, 1]], [0.9, 0.8], [0, 0], 1 / 6) == [0]
    # boxes below -1 suppress across classes
    assert raw([[-50, -50, 45, 45], [-50, -50, 45, 45]], [0.9, 0.8], [0, 1], 0.5) == [0]
    # two empty boxes suppress each other, even far apart and of different classes
    assert raw([[5, 5, 0, 0], [5, 5, 0, 0]], [0.9, 0.8], [0, 0], 0.5) == [0]
    assert raw([[5, 5, 0, 0], [50, 50, 0, 0]], [0.9, 0.8], [0, 1], 0.5) == [0]
    # areas are w * h (with +1 the IoU would be 66/121 > 0.52), scores must exceed the threshold,
    # equal scores keep input order
    assert raw([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], [0, 0], 0.52) == [0, 1]
    assert raw([[0, 0, 1, 1], [5, 0, 1, 1], [9, 0, 1, 1]], [0.5, 0.4, 0.6], [0, 0, 0], 0.5, 0.5) == [2]
    assert raw([[0, 0, 10, 10]] * 3, [0.5, 0.9, 0.9], [0, 0, 0], 0.5) == [1]
    # ...and through nms() all of them come out as exact greedy NMS
    for boxes, scores, classes, thr in [
            ([[0, 0, 6, 1], [0, 0, 1, 1]], [0.9, 0.8], [0, 0], 1 / 6),
            ([[-50, -50, -5, -5], [-50, -50, -5, -5]], [0.9, 0.8], [0, 1], 0.5),
            ([[5, 5, 5, 5], [5, 5, 5, 5]], [0.9, 0.8], [0, 0], 0.5),
            ([[0, 0, 10, 10]] * 3, [0.5, 0.9, 0.9], [0, 0, 0], 0.5)]:
        case = (np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int32))
        check(case, (0.0, thr, 10, 10, False))


def test_opencv_only_for_few_candidates(monkeypatch):
    if postprocess._opencv() is None:
        pytest.skip("OpenCV with cv2.dnn.NMSBoxesBatched is not installed")
    calls = []
    real = postprocess._greedy_opencv

    def spy(*args):
        calls.append(args[2].size)
        return real(*args)
    monkeypatch.setattr(postprocess, "_greedy_opencv", spy)
    small = clustered_case(8, objects=3, per=10, noise=0)
    check(small, (0.25, 0.45, 100, 100, False))
    check(clustered_case(8), (0.25, 0.45, 100, 100, False))
    assert calls == [30]


@pytest.mark.parametrize("as_object", [False, True])
def test_detections_from_outputs_host_form(path, as_object):
    boxes, scores, classes = clustered_case(7)
    outputs = {"candidate_boxes": boxes[None], "candidate_scores": scores[None], "candidate_classes": classes[None]}
    cfg = {"score_threshold": 0.25, "iou_threshold": 0.45, "max_per_class": 100, "max_detections": 100,
           "class_agnostic": False}
    if as_object:
        cfg = types.SimpleNamespace(**cfg)
    b, s, c = detections_from_outputs(outputs, "host", 0, cfg, None)
    want = reference(boxes, scores, classes, 0.25, 0.45, 100, 100)
    np.testing.assert_array_equal(b, boxes[want])
    np.testing.assert_array_equal(s, scores[want])
    assert c.dtype == np.int32 and c.tolist() == classes[want].tolist()
    b, s, c = detections_from_outputs(outputs, "host", 0, cfg, 0.6)  # conf overrides the built threshold
    assert s.tolist() == scores[reference(boxes, scores, classes, 0.6, 0.45, 100, 100)].tolist()


# ------------------------------------------------------------------ benchmarks/host_overhead.py

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "host_overhead.py")


def run_script(*args):
    pytest.importorskip("cv2", reason="benchmarks/host_overhead.py needs OpenCV")
    proc = subprocess.run([sys.executable, SCRIPT, "--iterations", "3"] + list(args),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_host_overhead_table_has_every_path_and_target():
    out = run_script()
    rows = ["bare cv2.resize", "trtedge, NMS form plugin/onnx", "trtedge, NMS form host",
            "trtedge, --frame-size engine, plugin/onnx", "tensorrt_demos, resize (default)",
            "tensorrt_demos, letterbox (-l)"]
    if importlib.util.find_spec("torch") is not None:
        rows += ["Ultralytics, NMS: torch greedy loop", "Ultralytics, NMS: OpenCV NMSBoxes",
                 "Ultralytics without NMS (lower bound)"]
    for scene in ("spread scene", "clustered scene"):
        part = out.split(scene, 1)[1]
        for row in rows:
            assert re.search(re.escape(row) + r".*\d+\.\d{3}", part), (scene, row)
    assert re.search(r"\[(met|NOT met)\] clustered scene: trtedge-host >= 3x below tensorrt_demos", out)
    assert re.search(r"\[(met|NOT met)\] spread scene: trtedge plugin/onnx within 0.1 ms", out)
    assert re.search(r"\[(met|NOT met)\] clustered scene: trtedge-frame >= 6x below Ultralytics", out)
    assert re.search(r"\[(met|NOT met)\] clustered scene: trtedge --frame-size within 0.1 ms", out)


def test_host_overhead_json_and_the_paths_do_the_same_job():
    result = json.loads(run_script("--json"))
    assert result["threads"] == 1 and result["iterations"] == 3
    clustered = result["scenes"]["clustered"]
    assert all(r["samples"] == 3 and r["p50_ms"] > 0 for r in clustered["rows"].values())
    found = clustered["detections"]
    # every path finds the 12 objects (thresholds differ a little: trtedge 0.45, tensorrt_demos 0.5, Ultralytics 0.7)
    assert all(12 <= found[k] <= 60 for k in found if k != "ultra-nonms"), found
    assert result["scenes"]["spread"]["detections"]["trtedge-host"] == 100  # K caps the 300
    # the --frame-size engine's path maps the same rows back as the host-letterbox path
    assert found["trtedge-frame"] == found["trtedge-onnx"]
    assert {t["scene"] for t in result["targets"]} == {"spread", "clustered"}
    assert all(isinstance(t["met"], bool) for t in result["targets"])


def test_kept_padding_is_rewritten_whenever_the_placement_changes():
    """fit_into(keep_pad=True) skips re-writing a reused buffer's padding only while it is still right."""
    from trtedge.runtime.postprocess import fit_into, forget_pad

    rng = np.random.default_rng(0)
    buf = np.zeros((64, 64, 3), np.uint8)
    wide, tall = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8), rng.integers(0, 255, (64, 16, 3), dtype=np.uint8)
    square = rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)  # fills the whole input: no padding at all
    for frame in (wide, wide, tall, wide, tall, tall, square, tall, wide, square, wide):
        got = fit_into(frame, buf, "letterbox", 114, keep_pad=True)
        fresh = np.zeros_like(buf)
        want = fit_into(frame, fresh, "letterbox", 114)
        assert got == want
        np.testing.assert_array_equal(buf, fresh)
    buf[:] = 7  # someone else wrote the buffer: after forget_pad the padding is written again
    forget_pad(buf)
    fit_into(tall, buf, "letterbox", 114, keep_pad=True)
    np.testing.assert_array_equal(buf[:, :24], 114)


def test_a_new_buffer_at_a_freed_buffers_address_is_padded():
    """The kept padding belongs to the array that owns the memory, not to an address."""
    from trtedge.runtime.postprocess import fit_into

    frame = np.full((32, 64, 3), 200, np.uint8)
    for _ in range(20):  # new buffers, often at the address the last one had
        buf = np.zeros((64, 64, 3), np.uint8)
        fit_into(frame, buf, "letterbox", 114, keep_pad=True)
        assert (buf[:16] == 114).all() and (buf[48:] == 114).all()
        del buf
