"""Every bad input to ``trtedge build``: one line, exit code 2, no traceback,
and nothing half-written left on disk."""

import os

import onnx
import pytest
import yaml

import cli
import models


@pytest.fixture
def tiny(tmp_path):
    onnx.save(models.make("anchor_free"), str(tmp_path / "tiny.onnx"))
    return tmp_path


def spec_file(tmp_path, data=None, text=None, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text if text is not None else yaml.safe_dump(data))
    return p


def with_(change):
    data = models.spec("anchor_free", file="tiny.onnx")
    change(data)
    return data


CASES = [
    ("malformed yaml", dict(text="name: [unclosed\nfamily: yolo\n"), "not valid YAML at line"),
    ("unknown field", dict(data=with_(lambda d: d.update(anchorz=[1]))), "field 'anchorz' is not a known field"),
    ("wrong type", dict(data=with_(lambda d: d["nms"].update(score_threshold="high"))),
     "field 'nms.score_threshold' must be a number"),
    ("head does not fit", dict(data=with_(lambda d: d.update(labels=["a"] * 80))),
     "the model predicts 3 classes but the spec lists 80 labels"),
    ("missing cut tensor", dict(data=with_(lambda d: d.update(cut={"outputs": ["output9"]}))),
     "cut tensor 'output9' is not in the model; did you mean output0?"),
    ("missing model", dict(data=with_(lambda d: d["source"].update(file="gone.onnx"))),
     "model file for 'tiny_anchor_free' not found; looked in:"),
]


@pytest.mark.parametrize("label, spec, message", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_or_model(tiny, label, spec, message):
    path = spec_file(tiny, **spec)
    out = tiny / "out"
    proc = cli.run("build", path, "--out", out)
    cli.assert_one_line_error(proc, 2, message)
    assert not out.exists() or not os.listdir(out)


def test_output_under_a_regular_file(tiny):
    path = spec_file(tiny, data=models.spec("anchor_free", file="tiny.onnx"))
    blocker = tiny / "afile"
    blocker.write_text("x")
    proc = cli.run("build", path, "--out", blocker / "sub")
    cli.assert_one_line_error(proc, 2, "cannot create output directory")


@pytest.mark.parametrize("args, message", [
    (["--precision", "int4"], "unknown precision 'int4'"),
    (["--workspace", "lots"], "workspace"),
    (["--batch", "2", "--max-batch", "4"], "either --batch or --min-batch"),
    (["--min-batch", "4", "--max-batch", "2"], "min <= opt <= max"),
    (["--nms", "magic"], "invalid choice: 'magic'"),
])
def test_bad_flags(tiny, args, message):
    path = spec_file(tiny, data=models.spec("anchor_free", file="tiny.onnx"))
    proc = cli.run("build", path, "--out", tiny / "out", *args)
    cli.assert_one_line_error(proc, 2, message)


def test_unknown_target_and_missing_model_file(tmp_path):
    cli.assert_one_line_error(cli.run("build", "no_such_thing"), 2, "not a built-in spec, a spec .yaml or a model file")
    cli.assert_one_line_error(cli.run("build", tmp_path / "x.onnx"), 2, "does not exist")
    cli.assert_one_line_error(cli.run("build", tmp_path / "x.yaml"), 2, "does not exist")


def test_corrupt_onnx(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    cli.assert_one_line_error(cli.run("build", bad, "--out", tmp_path / "o"), 2, "cannot read ONNX model")


def test_verbose_shows_the_traceback(tiny):
    path = spec_file(tiny, data=with_(lambda d: d.update(labels=["a"] * 80)))
    proc = cli.run("-v", "build", path, "--out", tiny / "out")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_specs_lists_builtins():
    proc = cli.run("specs")
    assert proc.returncode == 0
    assert "shapes_yolo" in proc.stdout and "anchor_free" in proc.stdout


def test_missing_frozen_graph_says_where_it_looked_and_where_to_download(tmp_path):
    proc = cli.run("ssd_mobilenet_v2_coco", script=os.path.join(cli.ROOT, "build_engine.py"), cwd=tmp_path)
    line = cli.assert_one_line_error(proc, 2, "model file for 'ssd_mobilenet_v2_coco' not found; looked in:")
    assert str(tmp_path) in line and "ssd_mobilenet_v2_coco_2018_03_29/frozen_inference_graph.pb" in line
    assert "download it from http://download.tensorflow.org/models/object_detection/" \
           "ssd_mobilenet_v2_coco_2018_03_29.tar.gz" in line
