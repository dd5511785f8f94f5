"""YOLOX (``yolo.head: yolox``) and GFL / NanoDet (``family: gfl``) heads, and
``input.letterbox_align``.

The engine ONNX of tiny models with the exact head layouts (tests/head_models.py),
in ONNX Runtime, against NumPy decoders + NMS written from the formulas
(tests/reference.py), for every NMS form (``plugin`` through its node swap);
a TensorRT for RTX build of each; fit_into / to_frame with the image at the
top-left; a Detector run on a YOLOX engine with a non-square frame against a
NumPy letterbox + decode + NMS; one-line spec and model errors.
"""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml

import cli
import head_models as hm
import reference as ref
from trtedge.engines import nms as nms_mod
from trtedge.engines import surgery
from trtedge.errors import ManifestError, ModelError, SpecError
from trtedge.manifest import Manifest
from trtedge.runtime.postprocess import fit_into, to_frame
from trtedge.specs.loader import spec_from_data, spec_from_dict

ort = pytest.importorskip("onnxruntime")

SCORE, IOU, K = 0.3, 0.5, 20


def _session(model):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _yolox_ref(source, images, spec):
    (raw,) = _session(source).run(None, {"images": hm.yolox_input(images)})
    assert raw.shape == (len(images), 126, 8)  # 8x12 + 4x6 + 2x3 cells, 5 + 3 values
    act = spec.yolo.score_activation
    return [ref.decode_yolox(raw[i], spec.yolo.strides, hm.YOLOX_SIZE, spec.num_classes, act)
            for i in range(len(images))]


def _gfl_ref(source, images, spec):
    outs = _session(source).run(None, {"data": hm.nanodet_input(images)})
    by_name = dict(zip([o.name for o in source.graph.output], outs))
    g, c = spec.gfl, spec.num_classes
    per_image = []
    for i in range(len(images)):
        if "output" in by_name:
            head = by_name["output"][i]
            assert head.shape == (81, c + 4 * (g.reg_max + 1))  # 6x10 + 3x5 + 2x3 cells (ceil)
            cls, dist = head[:, :c], head[:, c:]
        else:
            cls = np.concatenate([by_name["cls_pred_stride_{}".format(s)][i] for s in g.strides])
            dist = np.concatenate([by_name["dis_pred_stride_{}".format(s)][i] for s in g.strides])
        per_image.append(ref.decode_gfl(cls, dist, g.strides, hm.NANODET_SIZE, g.reg_max, g.center_offset,
                                        g.score_activation))
    return per_image


#: case: (source model, spec data, reference, image size)
CASES = {
    "yolox": (lambda: hm.make_yolox(), lambda: hm.yolox_spec(), _yolox_ref, hm.YOLOX_SIZE),
    "yolox_logits": (lambda: hm.make_yolox(seed=4, logits=True),
                     lambda: hm.yolox_spec(score_activation="sigmoid"), _yolox_ref, hm.YOLOX_SIZE),
    "nanodet_plus": (lambda: hm.make_nanodet(), lambda: hm.nanodet_spec(), _gfl_ref, hm.NANODET_SIZE),
    "nanodet_levels": (lambda: hm.make_nanodet(seed=2, per_level=True),
                       lambda: hm.nanodet_spec(per_level=True, center_offset=0.5), _gfl_ref, hm.NANODET_SIZE),
}


def _images(size, n=2, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, size[0], size[1], 3), dtype=np.uint8)


def _compare(outs, expected, form, num_classes):
    for i, (boxes, scores) in enumerate(expected):
        want = ref.nms(boxes, scores, SCORE, IOU, K if form != "host" else 100, K)
        assert len(want[1]) >= 5, "the test model should give detections"
        if form == "host":
            flat = scores.reshape(-1)
            top = np.argsort(-flat, kind="stable")[: outs["candidate_scores"].shape[1]]
            np.testing.assert_allclose(outs["candidate_scores"][i], flat[top], rtol=1e-4, atol=1e-5)
            cls = outs["candidate_classes"][i]
            np.testing.assert_allclose(outs["candidate_boxes"][i], boxes[top // num_classes], rtol=1e-4, atol=2e-3)
            np.testing.assert_array_equal(np.sort(cls[:20]), np.sort((top % num_classes)[:20]))
            mine = ref.nms(outs["candidate_boxes"][i], np.eye(num_classes, dtype=np.float32)[cls]
                           * outs["candidate_scores"][i][:, None], SCORE, IOU, 100, K)
            ref.same_detections(mine, want)
        else:
            n = int(outs["num_detections"][i, 0])
            got = (outs["detection_boxes"][i, :n], outs["detection_scores"][i, :n], outs["detection_classes"][i, :n])
            ref.same_detections(got, want)
            assert np.all(outs["detection_scores"][i, n:] == 0)


@pytest.mark.parametrize("form", ["onnx", "plugin", "host"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_onnx_matches_reference(case, form):
    make, data, reference, size = CASES[case]
    source = make()
    spec = spec_from_data(data(), "tiny.yaml", None)
    engine, notes = surgery.transform(source, spec, form)
    assert [i.name for i in engine.graph.input] == ["images"]
    assert surgery.nms_form_of(engine) == form
    if form == "plugin":
        assert nms_mod.has_plugin(engine)
        engine = nms_mod.swap_plugin_for_onnx(engine)
    onnx.checker.check_model(engine)
    images = _images(size)
    outs = dict(zip([o.name for o in engine.graph.output], _session(engine).run(None, {"images": images})))
    _compare(outs, reference(source, images, spec), form, spec.num_classes)


def test_decoders_disagree_with_a_wrong_layout():
    """The comparison can fail: the same YOLOX head read with rows and columns swapped,
    or a NanoDet head read with the other centre offset, gives other boxes."""
    source = hm.make_yolox()
    spec = spec_from_data(hm.yolox_spec(), "tiny.yaml", None)
    images = _images(hm.YOLOX_SIZE, 1)
    (raw,) = _session(source).run(None, {"images": hm.yolox_input(images)})
    right, _ = ref.decode_yolox(raw[0], spec.yolo.strides, hm.YOLOX_SIZE, 3)
    engine, _ = surgery.transform(source, spec, "host")
    outs = dict(zip([o.name for o in engine.graph.output], _session(engine).run(None, {"images": images})))
    top = outs["candidate_boxes"][0][:10]
    assert np.abs(top[:, None, :] - right[None]).max(-1).min(1).max() < 1e-2  # each is a reference box
    wrong = right.copy()
    wrong[:, [0, 2]] -= 8  # one cell to the left
    assert np.abs(top[:, None, :] - wrong[None]).max(-1).min(1).max() > 1.0

    src = hm.make_nanodet()
    head = _session(src).run(None, {"data": hm.nanodet_input(_images(hm.NANODET_SIZE, 1))})[0][0]
    a, _ = ref.decode_gfl(head[:, :3], head[:, 3:], hm.NANODET_STRIDES, hm.NANODET_SIZE, hm.REG_MAX, 0.0)
    b, _ = ref.decode_gfl(head[:, :3], head[:, 3:], hm.NANODET_STRIDES, hm.NANODET_SIZE, hm.REG_MAX, 0.5)
    assert np.abs(a - b).max() >= 4.0


def test_per_level_outputs_matched_by_cell_count():
    source = hm.make_nanodet(seed=2, per_level=True)
    data = hm.nanodet_spec(per_level=True, center_offset=0.5)
    ordered = spec_from_data(data, "tiny.yaml", None)
    data["cut"]["outputs"] = ["cls_pred_stride_32", "cls_pred_stride_8", "cls_pred_stride_16",
                              "dis_pred_stride_16", "dis_pred_stride_32", "dis_pred_stride_8"]
    shuffled = spec_from_data(data, "tiny.yaml", None)
    a, notes_a = surgery.transform(source, ordered, "onnx")
    b, notes_b = surgery.transform(source, shuffled, "onnx")
    assert not notes_a
    assert any("class outputs matched to strides by cell count: cls_pred_stride_8 -> stride 8" in n
               for n in notes_b), notes_b
    assert any("dis_pred_stride_32 -> stride 32" in n for n in notes_b), notes_b
    images = _images(hm.NANODET_SIZE)
    for x, y in zip(_session(a).run(None, {"images": images}), _session(b).run(None, {"images": images})):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- letterbox_align


def test_fit_into_top_left_and_to_frame_map_back_exactly():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for fh, fw, want in ((30, 50, (96, 58)), (90, 40, (28, 64))):  # wide: pad below; tall: pad right
        frame = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)
        out = np.zeros((64, 96, 3), np.uint8)
        fit = fit_into(frame, out, "letterbox", 7, align="top_left")
        nw, nh = want
        assert (fit.pad_x, fit.pad_y) == (0.0, 0.0)
        assert fit.scale_x == pytest.approx(nw / fw) and fit.scale_y == pytest.approx(nh / fh)
        np.testing.assert_array_equal(out[:nh, :nw], cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR))
        assert np.all(out[nh:] == 7) and np.all(out[:, nw:] == 7)
        # frame boxes -> input pixels as placed -> back: exact
        boxes = np.array([[1.0, 2.0, fw - 3.0, fh - 1.0], [0.0, 0.0, fw / 2.0, fh / 3.0]], np.float32)
        placed = boxes * np.array([nw / fw, nh / fh] * 2, np.float32)
        np.testing.assert_allclose(to_frame(placed, fit), boxes, rtol=1e-6, atol=1e-5)
        # the default (and the old positional call) still centres it
        centred = np.zeros_like(out)
        c = fit_into(frame, centred, "letterbox", 7)
        assert (c.pad_x, c.pad_y) == (float((96 - nw) // 2), float((64 - nh) // 2)) and (c.pad_x or c.pad_y)
        np.testing.assert_allclose(to_frame(placed + np.array([c.pad_x, c.pad_y] * 2, np.float32), c), boxes,
                                   rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="align must be one of center, top_left"):
        fit_into(frame, out, align="bottom")


def test_manifest_reads_letterbox_align_and_defaults_it(tmp_path):
    source = tmp_path / "yolox.onnx"
    onnx.save(hm.make_yolox(), str(source))
    spec_path = tmp_path / "yolox.yaml"
    spec_path.write_text(yaml.safe_dump(hm.yolox_spec("yolox.onnx")))
    import trtedge

    art = trtedge.build(str(spec_path), out=str(tmp_path / "out"), onnx_only=True, nms="onnx")
    data = json.load(open(art.manifest))
    assert data["input"]["letterbox_align"] == "top_left" and data["spec"]["input"]["letterbox_align"] == "top_left"
    assert Manifest.from_dict(data).input.letterbox_align == "top_left"
    del data["input"]["letterbox_align"]  # a manifest written before the field existed
    assert Manifest.from_dict(data).input.letterbox_align == "center"
    data["input"]["letterbox_align"] = "bottom"
    with pytest.raises(ManifestError, match="field 'input.letterbox_align' is 'bottom'; allowed: center, top_left"):
        Manifest.from_dict(data, origin="m.json")


# --------------------------------------------------------------------------- TensorRT for RTX


def _write(tmp_path, case):
    make, data, _, _ = CASES[case]
    onnx.save(make(), str(tmp_path / (case + ".onnx")))
    spec = data()
    spec["name"] = case
    spec["source"] = {"file": case + ".onnx"}
    path = tmp_path / (case + ".yaml")
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture(scope="module")
def rtx_builds(tmp_path_factory):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engines")
    import trtedge

    tmp = tmp_path_factory.mktemp("heads_rtx")
    return {case: trtedge.build(_write(tmp, case), out=str(tmp / "out"), batch=2)
            for case in ("yolox", "nanodet_plus", "nanodet_levels")}


@pytest.mark.parametrize("case", ["yolox", "nanodet_plus", "nanodet_levels"])
def test_tensorrt_rtx_build(rtx_builds, case):
    art = rtx_builds[case]
    assert art.engine and open(art.engine, "rb").read(4) == b"vtrt"
    assert art.info.nms.form == "host" and art.info.tensorrt.module == "tensorrt_rtx"
    assert art.info.family == ("yolo" if case == "yolox" else "gfl")
    assert art.info.input.letterbox_align == ("top_left" if case == "yolox" else "center")
    make, data, reference, size = CASES[case]
    images = _images(size, seed=9)
    sess = _session(art.onnx)  # the engine ONNX the engine was built from
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": images})))
    _compare(outs, reference(make(), images, spec_from_data(data(), "tiny.yaml", None)), "host", 3)


def test_detector_top_left_on_non_square_frame(rtx_builds):
    """Frame 120x200 into 64x96, image at the top-left: the Detector's boxes, in
    frame pixels, against a NumPy letterbox + the source model + decode + NMS."""
    cv2 = pytest.importorskip("cv2")
    import trtedge

    frame = np.random.default_rng(21).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    r = min(96 / 200, 64 / 120)
    nw, nh = int(round(200 * r)), int(round(120 * r))
    assert (nw, nh) == (96, 58)
    boxed = np.full((1, 64, 96, 3), 114, np.uint8)
    boxed[0, :nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    spec = spec_from_data(hm.yolox_spec(), "tiny.yaml", None)
    (boxes, scores), = _yolox_ref(hm.make_yolox(), boxed, spec)
    want_boxes, want_scores, want_classes = ref.nms(boxes, scores, SCORE, IOU, 100, K)
    assert len(want_scores) >= 5
    want_boxes = want_boxes / np.array([nw / 200, nh / 120] * 2, np.float32)
    np.clip(want_boxes[:, 0::2], 0, 200, out=want_boxes[:, 0::2])
    np.clip(want_boxes[:, 1::2], 0, 120, out=want_boxes[:, 1::2])
    with trtedge.Detector(rtx_builds["yolox"].engine) as det:
        assert det.align == "top_left"
        got = det(frame)
    ref.same_detections((np.asarray(got.boxes), np.asarray(got.scores), np.asarray(got.class_ids)),
                        (want_boxes, want_scores, want_classes))
    assert np.asarray(got.boxes)[:, 3].max() > 64  # frame pixels, not input pixels


# --------------------------------------------------------------------------- errors, one line


def _spec_error(data):
    with pytest.raises(SpecError) as err:
        spec_from_data(data, "h.yaml", None)
    text = str(err.value)
    assert "\n" not in text
    return text


def _yolox(**yolo):
    return hm.yolox_spec(**yolo)


def _gfl(**gfl):
    return hm.nanodet_spec(**gfl)


def _with(data, **changes):
    for where, value in changes.items():
        sec, key = where.split("__")
        data[sec][key] = value
    return data


SPEC_ERRORS = [
    (_yolox(strides=[0, 16, 32]), "field 'yolo.strides' must be whole numbers of pixels, at least 1; got [0, 16, 32]"),
    (_yolox(strides=[-8, 16, 32]), "field 'yolo.strides' must be whole numbers of pixels, at least 1; got [-8, 16"),
    (_yolox(strides=[8, 8, 32]), "field 'yolo.strides' repeats a stride ([8, 8, 32])"),
    (_yolox(score_activation="softmax"), "field 'yolo.score_activation' is 'softmax'; a yolox head takes none"),
    (_yolox(head="yolo-x"), "field 'yolo.head' is 'yolo-x'; allowed: raw, decoded, anchor_free, yolox"),
    (dict(_yolox(), cut={"outputs": ["a", "b"]}), "field 'cut.outputs' lists 2 tensors; a 'yolox' head needs 1"),
    (_gfl(strides=[8, -16, 32]), "field 'gfl.strides' must be whole numbers of pixels, at least 1; got [8, -16, 32]"),
    (_gfl(strides=[8, 0]), "field 'gfl.strides' must be whole numbers of pixels, at least 1; got [8, 0]"),
    (_gfl(strides=[8, 16.5]), "field 'gfl.strides' must be whole numbers of pixels, at least 1; got [8, 16.5]"),
    (_gfl(strides=[]), "field 'gfl.strides' must list at least one stride"),
    (_gfl(strides=[8, 16, 8]), "field 'gfl.strides' repeats a stride ([8, 16, 8])"),
    (_gfl(reg_max=0), "field 'gfl.reg_max' must be at least 1, is 0"),
    (_gfl(reg_max=-3), "field 'gfl.reg_max' must be at least 1, is -3"),
    (_gfl(reg_max=7.5), "field 'gfl.reg_max' must be a whole number, not a number (7.5)"),
    (_gfl(reg_max=1000), "field 'gfl.reg_max' must be at most 64, is 1000"),
    (_gfl(center_offset=0.25), "field 'gfl.center_offset' must be 0 (NanoDet-Plus: a cell's top-left corner) or 0.5"),
    (_gfl(center_offset="half"), "field 'gfl.center_offset' must be a number, not a string ('half')"),
    (_gfl(score_activation="softmax"), "field 'gfl.score_activation' is 'softmax'; allowed: none, sigmoid"),
    (_gfl(anchors=[1, 2]), "field 'gfl.anchors' is not a known field; allowed here: center_offset, reg_max"),
    (dict(_gfl(), yolo={"head": "yolox"}), "field 'yolo' does not apply to family 'gfl'"),
    (dict(_gfl(), cut={"outputs": ["a", "b", "c"]}),
     "field 'cut.outputs' lists 3 tensors; a gfl head is 1 tensor [B, N, C + 4*(reg_max+1)] or 6"),
    (_with(_yolox(), input__letterbox_align="bottom"),
     "field 'input.letterbox_align' is 'bottom'; allowed: center, top_left"),
    (_with(_yolox(), input__resize="stretch"),
     "field 'input.letterbox_align' is 'top_left' but input.resize is 'stretch'; it applies to resize: letterbox"),
]


@pytest.mark.parametrize("data, message", SPEC_ERRORS, ids=[m[:40] for _, m in SPEC_ERRORS])
def test_spec_errors_are_one_line(data, message):
    text = _spec_error(data)
    assert "h.yaml: " + message in text, text


def test_spec_error_from_the_cli_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_gfl(reg_max=0)))
    cli.assert_one_line_error(cli.run("build", path, "--onnx-only"), 2, "field 'gfl.reg_max' must be at least 1, is 0")


MODEL_ERRORS = [
    (lambda: hm.make_yolox(classes=80), _yolox(),
     "head 'output' has shape ['batch', 126, 85]: 85 values per box, the spec expects 8 = 5 + 3 classes; the model "
     "predicts 80 classes but the spec lists 3 labels"),
    (lambda: hm.make_yolox(), _yolox(strides=[8, 16, 64]),
     "head 'output' has 126 cells but input 96x64 with strides [8, 16, 64] gives 121"),
    (lambda: hm.make_yolox(), _with(_yolox(), input__size=[96, 96]), "the spec's input.size says 96"),
    (lambda: hm.make_nanodet(), dict(_gfl(), labels=["a", "b"]),
     "head 'output' has shape ['batch', 81, 27]: 27 values per cell, the spec expects 26 = 2 classes + 4 x (reg_max 5 "
     "+ 1); the model predicts 3 classes but the spec lists 2 labels"),
    (lambda: hm.make_nanodet(), _gfl(reg_max=7),
     "the spec expects 35 = 3 classes + 4 x (reg_max 7 + 1); too few for the spec's classes (or, with 3 classes, "
     "gfl.reg_max is 5)"),
    (lambda: hm.make_nanodet(), _gfl(strides=[8, 16]),
     "head 'output' has 81 cells but input 80x48 with strides [8, 16] gives 75; check input.size and gfl.strides"),
    (lambda: hm.make_nanodet(per_level=True), dict(_gfl(), cut={"outputs": [
        "dis_pred_stride_8", "dis_pred_stride_16", "dis_pred_stride_32",
        "cls_pred_stride_8", "cls_pred_stride_16", "cls_pred_stride_32"]}),
     "class output 'dis_pred_stride_8' has shape ['batch', 60, 24]: 24 values per cell, 3 expected; it looks like a "
     "box output: list the class outputs first in cut.outputs"),
    (lambda: hm.make_nanodet(per_level=True), hm.nanodet_spec(per_level=True, reg_max=7),
     "box output 'dis_pred_stride_8' has shape ['batch', 60, 24]: 24 values per cell, 32 expected; that is reg_max 5; "
     "set gfl.reg_max: 5"),
    (lambda: hm.make_nanodet(per_level=True, classes=80), hm.nanodet_spec(per_level=True),
     "class output 'cls_pred_stride_8' has shape ['batch', 60, 80]: 80 values per cell, 3 expected; the model "
     "predicts 80 classes but the spec lists 3 labels"),
    (lambda: hm.make_nanodet(per_level=True), _gfl(strides=[8, 16]),
     "a gfl head is one [B, N, C + 4*(reg_max+1)] tensor or, per stride, one class and one box tensor (4 for strides "
     "[8, 16]); the model/spec gives 6"),
    (lambda: hm.make_nanodet(per_level=True), hm.nanodet_spec(per_level=True, strides=[8, 16, 64]),
     "no class output has the 2 cells (2x1) that stride 64 gives at input 80x48"),
]


@pytest.mark.parametrize("make, data, message", MODEL_ERRORS, ids=[m[:40] for _, _, m in MODEL_ERRORS])
def test_head_of_the_wrong_shape_is_one_precise_line(make, data, message):
    spec = spec_from_data(data, "h.yaml", None)
    with pytest.raises(ModelError) as err:
        surgery.transform(make(), spec, "host")
    text = str(err.value)
    assert "\n" not in text and message in text, text


# --------------------------------------------------------------------------- the registry, the spec


def test_gfl_is_a_builtin_family_and_reading_it_imports_no_numpy():
    code = ("import sys; from trtedge.specs.loader import spec_from_dict; "
            "s = spec_from_dict({data!r}); "
            "print(s.family, s.gfl.reg_max, s.gfl.strides, s.input.letterbox_align, 'numpy' in sys.modules)")
    data = dict(hm.nanodet_spec(), input=dict(hm.nanodet_spec()["input"], resize="letterbox",
                                                   letterbox_align="top_left"))
    proc = subprocess.run([sys.executable, "-c", code.format(data=data)], capture_output=True, text=True,
                          cwd=cli.ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gfl", "5", "(8,", "16,", "32)", "top_left", "False"]
    from trtedge.engines import families

    assert "gfl" in families.names() and families.section_keys()["gfl"] == "gfl"


def test_resolved_spec_round_trips():
    for data in (hm.yolox_spec(), hm.nanodet_spec(per_level=True, center_offset=0.5, score_activation="sigmoid")):
        spec = spec_from_data(data, "h.yaml", None)
        again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again.to_dict() == spec.to_dict() and again.section == spec.section
    d = spec_from_data(hm.nanodet_spec(), "h.yaml", None).to_dict()
    assert d["gfl"] == {"strides": [8, 16, 32], "reg_max": 5, "score_activation": "none", "center_offset": 0.0}
    assert d["input"]["letterbox_align"] == "center"
    defaults = spec_from_data(dict(hm.nanodet_spec(), gfl=None), "h.yaml", None).gfl
    assert (defaults.strides, defaults.reg_max, defaults.center_offset) == ((8, 16, 32, 64), 7, 0.0)
