"""Tests for the synthetic shapes data set and the NumPy mAP."""

import json
import math

import numpy as np
import pytest

from trtedge.datasets import shapes
from trtedge.evaluation import average_precision, box_iou


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_classes_order():
    assert shapes.CLASSES == ("circle", "square", "triangle")


def test_deterministic():
    assert _same(shapes.generate(3, 5), shapes.generate(3, 5))
    assert _same(shapes.generate(3, 5, (120, 200)), shapes.generate(3, 5, (120, 200)))


def test_different_index_and_seed_differ():
    a = shapes.generate(3, 5)
    assert not np.array_equal(a.image, shapes.generate(3, 6).image)
    assert not np.array_equal(a.image, shapes.generate(4, 5).image)


def test_iterate_matches_generate():
    samples = list(shapes.iterate(11, 4, (96, 128)))
    assert len(samples) == 4
    for i, sample in enumerate(samples):
        assert _same(sample, shapes.generate(11, i, (96, 128)))


@pytest.mark.parametrize("size", [(256, 256), (480, 640), (360, 640), (200, 120), 64])
def test_shapes_dtypes_and_bounds(size):
    h, w = (size, size) if isinstance(size, int) else size
    counts = []
    for index in range(8):
        sample = shapes.generate(0, index, size)
        assert isinstance(sample, shapes.Sample)
        assert sample.image.shape == (h, w, 3) and sample.image.dtype == np.uint8
        assert sample.image.flags["C_CONTIGUOUS"]
        n = len(sample.classes)
        assert 1 <= n <= 6
        counts.append(n)
        assert sample.boxes.shape == (n, 4) and sample.boxes.dtype == np.float32
        assert sample.classes.dtype == np.int32
        assert ((sample.classes >= 0) & (sample.classes < len(shapes.CLASSES))).all()
        x1, y1, x2, y2 = sample.boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
        assert (x2 > x1).all() and (y2 > y1).all()
        extent = np.maximum(x2 - x1, y2 - y1)
        assert (extent >= 14).all() and (extent <= 0.36 * min(h, w) + 2).all()
    assert len(set(counts)) > 1  # object counts vary


def test_all_classes_appear():
    seen = set()
    for sample in shapes.iterate(0, 12):
        seen.update(sample.classes.tolist())
    assert seen == {0, 1, 2}


def test_invalid_size():
    with pytest.raises(ValueError):
        shapes.generate(0, 0, (20, 256))
    with pytest.raises(ValueError):
        shapes.generate(-1, 0)


def test_to_coco_format():
    samples = list(shapes.iterate(2, 3))
    coco = shapes.to_coco(samples)
    assert [c["name"] for c in coco["categories"]] == list(shapes.CLASSES)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert len(coco["images"]) == 3
    assert len(coco["annotations"]) == sum(len(s.boxes) for s in samples)
    first = coco["annotations"][0]
    x1, y1, x2, y2 = samples[0].boxes[0].tolist()
    assert first["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    assert first["area"] == (x2 - x1) * (y2 - y1)
    assert first["iscrowd"] == 0
    assert first["category_id"] == int(samples[0].classes[0]) + 1
    json.dumps(coco)  # serialisable


def test_write_coco(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="write_coco needs OpenCV")
    path = shapes.write_coco(str(tmp_path), seed=5, count=3, size=(120, 160))
    with open(path) as handle:
        coco = json.load(handle)
    assert len(coco["images"]) == 3
    for info in coco["images"]:
        image = cv2.imread(str(tmp_path / info["file_name"]))
        index = info["id"] - 1
        assert np.array_equal(image, shapes.generate(5, index, (120, 160)).image)
        assert (info["height"], info["width"]) == (120, 160)


# --------------------------------------------------------------------------- evaluation

GT = [
    (np.array([[10, 10, 50, 50], [100, 100, 140, 160]], np.float32), np.array([0, 1])),
    (np.array([[0, 0, 30, 30]], np.float32), np.array([0])),
]


def _dets(boxes, scores, classes):
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(classes))


def test_iou():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert np.allclose(iou, [[1.0, 1.0 / 3.0, 0.0]])


def test_perfect_detections():
    dets = [_dets(b, np.ones(len(b)), c) for b, c in GT]
    mean, per_class = average_precision(dets, GT, 3)
    assert mean == pytest.approx(1.0)
    assert per_class[:2] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert math.isnan(per_class[2])  # no ground truth for class 2


def test_missed_object_halves_ap():
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0, 0]))]
    mean, _ = average_precision([_dets([[0, 0, 10, 10]], [0.9], [0])], gt, 1)
    assert mean == pytest.approx(51.0 / 101.0)


def test_false_positive_ranked_first_lowers_ap():
    good = [_dets(b, np.full(len(b), 0.8), c) for b, c in GT]
    base, _ = average_precision(good, GT, 3)
    bad = list(good)
    bad[1] = _dets([[200, 200, 240, 240], [0, 0, 30, 30]], [0.99, 0.8], [0, 0])
    worse, per_class = average_precision(bad, GT, 3)
    assert worse < base
    assert per_class[0] < 1.0 and per_class[1] == pytest.approx(1.0)
    # the same false positive ranked last does not hurt
    bad[1] = _dets([[200, 200, 240, 240], [0, 0, 30, 30]], [0.1, 0.8], [0, 0])
    assert average_precision(bad, GT, 3)[0] == pytest.approx(1.0)


def test_wrong_class_scores_zero():
    gt = [(np.array([[0, 0, 10, 10]], np.float32), np.array([0]))]
    mean, per_class = average_precision([_dets([[0, 0, 10, 10]], [0.9], [1])], gt, 2)
    assert mean == 0.0 and per_class[0] == 0.0 and math.isnan(per_class[1])


def test_low_iou_and_duplicates_are_false_positives():
    gt = [(np.array([[0, 0, 10, 10]], np.float32), np.array([0]))]
    shifted = _dets([[6, 0, 16, 10]], [0.9], [0])  # IoU 0.25
    assert average_precision([shifted], gt, 1)[0] == 0.0
    assert average_precision([shifted], gt, 1, iou_threshold=0.2)[0] == pytest.approx(1.0)
    dup = _dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])
    assert average_precision([dup], gt, 1)[0] == pytest.approx(1.0)  # duplicate ranked after the match
    dup_first = _dets([[0, 0, 10, 10], [1, 0, 10, 10]], [0.8, 0.9], [0, 0])
    assert average_precision([dup_first], gt, 1)[0] == pytest.approx(1.0)  # IoU 0.9 matches first


def test_no_detections_and_length_mismatch():
    empty = [_dets(np.zeros((0, 4)), [], []) for _ in GT]
    mean, per_class = average_precision(empty, GT, 3)
    assert mean == 0.0 and per_class[0] == 0.0
    with pytest.raises(ValueError):
        average_precision(empty[:1], GT, 3)
