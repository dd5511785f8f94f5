"""Spec loading: built-ins, validation errors (file, field, allowed values), legacy fields."""

import textwrap

import pytest

from trtedge.errors import SpecError
from trtedge.specs import list_specs, load_spec
from trtedge.specs import spec_from_dict

GOOD = """
name: mine
family: yolo
source: {file: mine.onnx}
input: {size: [320, 416], normalize: {mean: [0, 0, 0], std: [255, 255, 255]}}
labels: [cat, dog]
yolo: {head: raw, strides: [8, 16, 32], anchors: [[10,13, 16,30, 33,23], [30,61, 62,45, 59,119], [116,90, 156,198, 373,326]], scale_x_y: 1.05}
"""


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_every_builtin_spec_loads_and_round_trips():
    names = list_specs()
    assert "shapes_yolo" in names
    for name in names:
        spec = load_spec(name)
        assert spec.name == name and spec.labels
        again = spec_from_dict(spec.to_dict())
        assert again.to_dict() == spec.to_dict()


def test_good_spec_resolves_defaults(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert (spec.input.height, spec.input.width) == (320, 416)
    assert spec.input.scale == pytest.approx((1 / 255.0,) * 3)
    assert spec.yolo.anchors[0] == ((10, 13), (16, 30), (33, 23))
    assert spec.yolo.scale_x_y == (1.05, 1.05, 1.05)
    assert spec.yolo.score_activation == "sigmoid"  # raw heads are logits
    assert spec.nms.max_detections == 100 and spec.input.engine_channels == "bgr"


@pytest.mark.parametrize("text, expected", [
    ("name: x\nfamily: yolo\n  bad: [", "not valid YAML at line"),
    (GOOD + "colour: red\n", "field 'colour' is not a known field; allowed here:"),
    (GOOD.replace("family: yolo", "family: rcnn"), "field 'family' is 'rcnn'; allowed: yolo, ssd, none"),
    (GOOD.replace("size: [320, 416]", "size: big"), "field 'input.size' must be [height, width]"),
    (GOOD.replace("head: raw", "head: 5"), "field 'yolo.head' must be a string"),
    (GOOD.replace("head: raw", "head: v9"), "allowed: raw, decoded, anchor_free"),
    (GOOD + "nms: {iou_threshold: 2}\n", "field 'nms.iou_threshold' must be between 0.0 and 1.0"),
    (GOOD + "nms: {max_detections: many}\n", "field 'nms.max_detections' must be a whole number"),
    (GOOD + "nms: {max_detections: 5000}\n", "must not exceed 'candidates'"),
    (GOOD.replace("labels: [cat, dog]", "labels: nothere.txt"), "field 'labels' names 'nothere.txt'"),
    (GOOD.replace("scale_x_y: 1.05", "scale_x_y: [1, 2]"), "needs one value or one per stride"),
    (GOOD.replace("[116,90, 156,198, 373,326]", "[116,90, 156]"), "each stride needs w, h pairs"),
    (GOOD + "ssd: {}\n", "field 'ssd' does not apply to family 'yolo'"),
    ("- just\n- a list\n", "must be a mapping of fields"),
    (GOOD.replace("name: mine", "name: my model"), "field 'name' must be a non-empty name"),
])
def test_bad_spec_is_one_line_naming_file_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert expected in message and "\n" not in message
    assert message.startswith(path)


def test_unknown_name_lists_builtins():
    with pytest.raises(SpecError, match="built-in specs: .*shapes_yolo"):
        load_spec("no_such_spec")


def test_missing_yaml_file():
    with pytest.raises(SpecError, match="does not exist"):
        load_spec("/nonexistent/dir/x.yaml")


def test_label_file_beside_the_spec(tmp_path):
    (tmp_path / "mine.txt").write_text("cat\ndog\n\n")
    spec = load_spec(write(tmp_path, GOOD.replace("labels: [cat, dog]", "labels: mine.txt")))
    assert spec.labels == ("cat", "dog")


def test_legacy_uff_fields_are_mapped(tmp_path):
    text = """
    name: legacy_ssd
    family: ssd
    input: {size: 300}
    labels: [a, b]
    num_classes: 3
    min_size: 0.3
    max_size: 0.9
    input_order: [1, 0, 2]
    cut: {outputs: [conf_concat, loc_concat]}
    """
    spec = load_spec(write(tmp_path, text))
    assert spec.ssd.anchors.min_scale == 0.3 and spec.ssd.anchors.max_scale == 0.9
    assert spec.cut.outputs == ("loc_concat", "conf_concat")  # box encodings first
    assert any("input_order" in n and "loc_concat" in n for n in spec.notes)
    bad = text.replace("num_classes: 3", "num_classes: 91")
    with pytest.raises(SpecError, match="num_classes' is 91 but the labels list 2 classes plus background"):
        load_spec(write(tmp_path, bad, "bad.yaml"))


# ------------------------------------------------------------ hostile specs (issue [8]): one line, never a traceback

@pytest.mark.parametrize("edit, expected", [
    (("strides: [8, 16, 32]", "strides: [0, 16, 32]"), "must be whole numbers of pixels, at least 1"),
    (("strides: [8, 16, 32]", "strides: [-8, 16, 32]"), "must be whole numbers of pixels, at least 1"),
    (("strides: [8, 16, 32]", "strides: [8.5, 16, 32]"), "must be whole numbers of pixels, at least 1"),
    (("std: [255, 255, 255]", "std: [0, 255, 255]"), "must not contain 0"),
    (("normalize: {mean: [0, 0, 0], std: [255, 255, 255]}", "normalize: {scale: 0}"), "scales every pixel to 0"),
    (("name: mine", "name: '..'"), "field 'name' must be a non-empty name"),
    (("name: mine", "name: \"a\\nb\""), "field 'name' must be a non-empty name"),
    (("labels: [cat, dog]", "labels: ../../etc/passwd"), "a label file must lie beside the spec"),
    (("labels: [cat, dog]", "labels: /etc/passwd"), "a label file must lie beside the spec"),
    (("scale_x_y: 1.05", "scale_x_y: 0"), "must be more than 0"),
])
def test_hostile_values_are_one_line(tmp_path, edit, expected):
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, text))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_label_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "names.txt").write_bytes(b"cat\n\xffdog\n")
    with pytest.raises(SpecError, match="is not UTF-8 text"):
        load_spec(write(tmp_path, GOOD.replace("labels: [cat, dog]", "labels: names.txt")))


def test_deeply_nested_yaml_is_one_line(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML|nested too deeply"):
        load_spec(write(tmp_path, GOOD + "description: " + "[" * 100000 + "]" * 100000 + "\n"))


def test_api_misuse_is_one_line(tmp_path):
    """Wrong-typed build()/Detector() arguments and a closed Detector say what is wrong (TrtedgeError)."""
    import trtedge
    from trtedge.errors import TrtedgeError

    with pytest.raises(TrtedgeError, match="target must be a path or name"):
        trtedge.build(42)
    with pytest.raises(TrtedgeError, match="workspace"):
        trtedge.build("shapes_yolo", workspace=[1])
    with pytest.raises(TrtedgeError, match="max batch must be a whole number"):
        trtedge.build("shapes_yolo", max_batch="4")
    with pytest.raises(TrtedgeError, match="engine must be a path"):
        trtedge.Detector(3.5)
    with pytest.raises(TrtedgeError, match="conf must be a number between 0 and 1"):
        trtedge.Detector(str(tmp_path / "x.bin"), conf=7)
