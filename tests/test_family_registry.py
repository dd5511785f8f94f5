"""A family is one registered object: this module defines a new one (``corners``:
one head ``[B, N, 4 + C]`` of x1, y1, x2, y2 in input pixels and class
probabilities), registers it, and builds a real engine from a spec that names
it, without editing any trtedge module."""

from dataclasses import dataclass
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import trtedge
from trtedge.engines import families
from trtedge.engines.families import Family, HeadInfo
from trtedge.errors import ModelError, SpecError
from trtedge.specs import load_spec

SIZE, N, CLASSES = 32, 16, ("p", "q")


@dataclass(frozen=True)
class CornersSpec:
    score_power: float = 1.0


class CornersFamily(Family):
    name = "corners"
    section = "corners"

    def parse(self, sec: Any, top: Any, cut: Any, notes: List[str]) -> Tuple[Any, Any]:
        spec = CornersSpec(score_power=sec.float("score_power", 1.0, low=0.1, high=10.0))
        sec.done()
        return spec, cut

    def check_heads(self, spec: Any, names: Tuple[str, ...], shapes: Tuple[Tuple[Any, ...], ...],
                    graph: Any = None) -> HeadInfo:
        if len(names) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 4 + spec.num_classes:
            raise ModelError("a corners head is one [B, N, 4 + {}] tensor, not {}".format(spec.num_classes, shapes))
        return HeadInfo(tuple(names), tuple(shapes), ())

    def decode(self, graph: Any, spec: Any, heads: HeadInfo, outs: Any) -> Tuple[Any, Any, int]:
        from trtedge.engines.graph import OpBuilder

        b = OpBuilder(graph, "corners")
        head = outs[0]
        c = spec.num_classes
        boxes = b.op("Slice", [head, np.array([0], np.int64), np.array([4], np.int64), np.array([2], np.int64)])
        scores = b.op("Slice", [head, np.array([4], np.int64), np.array([4 + c], np.int64), np.array([2], np.int64)])
        if spec.corners.score_power != 1.0:
            scores = b.op("Pow", [scores, np.array(spec.corners.score_power, np.float32)])
        return boxes, scores, int(heads.shapes[0][1])


def _model(path: str) -> np.ndarray:
    """A fixed head: what the engine must decode (the image input is used, times 0)."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, SIZE - 8, (1, N, 2)).astype(np.float32)
    wh = rng.uniform(2, 8, (1, N, 2)).astype(np.float32)
    probs = rng.uniform(0, 1, (1, N, len(CLASSES))).astype(np.float32)
    head = np.concatenate([xy, xy + wh, probs], axis=2)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Reshape", ["z", "one_shape"], ["z1"]),
        helper.make_node("Add", ["head_const", "z1"], ["head"]),
    ]
    graph = helper.make_graph(
        nodes, "corners",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, N, 4 + len(CLASSES)])],
        [numpy_helper.from_array(head, "head_const"), numpy_helper.from_array(np.zeros((), np.float32), "zero"),
         numpy_helper.from_array(np.array([1, 1, 1], np.int64), "one_shape")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return head[0]


@pytest.fixture
def corners():
    family = families.register(CornersFamily())
    yield family
    families.unregister("corners")


def _spec(tmp_path, **section):
    data = {"name": "toy", "family": "corners", "source": {"file": "toy.onnx"},
            "input": {"size": [SIZE, SIZE]}, "labels": list(CLASSES), "cut": {"outputs": ["head"]},
            "corners": section, "nms": {"score_threshold": 0.05, "candidates": 20, "max_detections": 10}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_registered_family_builds_without_editing_trtedge(tmp_path, corners):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engine")
    ort = pytest.importorskip("onnxruntime")
    head = _model(str(tmp_path / "toy.onnx"))
    spec = load_spec(_spec(tmp_path, score_power=2.0))
    assert spec.family == "corners" and spec.corners.score_power == 2.0
    assert spec.to_dict()["corners"] == {"score_power": 2.0}
    art = trtedge.build(_spec(tmp_path, score_power=2.0), out=str(tmp_path / "out"))
    assert art.engine and open(art.engine, "rb").read(4) == b"vtrt"
    assert art.info.family == "corners" and art.info.nms.form == "host"
    # the engine ONNX decodes exactly what the family says: boxes as given, scores squared
    sess = ort.InferenceSession(art.onnx, providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {"images": np.zeros((1, SIZE, SIZE, 3), np.uint8)})))
    flat = (head[:, 4:] ** 2).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:20]
    np.testing.assert_allclose(out["candidate_scores"][0], flat[order], rtol=1e-5)
    np.testing.assert_array_equal(out["candidate_classes"][0], order % len(CLASSES))
    np.testing.assert_allclose(out["candidate_boxes"][0], head[order // len(CLASSES), :4], rtol=1e-5)
    again = trtedge.build(_spec(tmp_path, score_power=2.0), out=str(tmp_path / "out"))
    assert again.reused


def test_unregistered_family_and_foreign_sections_are_one_line(tmp_path, corners):
    _model(str(tmp_path / "toy.onnx"))
    with pytest.raises(SpecError, match="field 'corners.score_power' must be between 0.1 and 10.0"):
        load_spec(_spec(tmp_path, score_power=50))
    path = tmp_path / "mixed.yaml"
    path.write_text(open(_spec(tmp_path)).read() + "yolo: {head: raw}\n")
    with pytest.raises(SpecError, match="field 'yolo' does not apply to family 'corners'"):
        load_spec(str(path))
    families.unregister("corners")
    with pytest.raises(SpecError, match="field 'family' is 'corners'; allowed: yolo, ssd, none"):
        load_spec(_spec(tmp_path))
    families.register(CornersFamily())  # the fixture unregisters it again


def test_register_refuses_clashes():
    with pytest.raises(ValueError, match="registered already"):
        families.register(type("Other", (Family,), {"name": "yolo"})())
    with pytest.raises(ValueError, match="belongs to family 'ssd'"):
        families.register(type("Other", (Family,), {"name": "other", "section": "ssd"})())
    with pytest.raises(ValueError, match="built-in"):
        families.unregister("ssd")
