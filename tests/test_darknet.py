"""trtedge.engines.darknet: darknet cfg + weights -> ONNX.

The shipped cfgs against the published shapes and parameter counts; random
weights written in darknet's binary layout (tests/darknet_util.py) converted
and run in ONNX Runtime; the ONNX against a NumPy forward pass written from
darknet's layer definitions; the decode of trtedge's engine ONNX against a
NumPy decode; a TensorRT for RTX build; malformed files as one-line errors.
"""

import os

import numpy as np
import onnx
import pytest

import darknet_util as du
import models
import reference as ref
from trtedge.engines import darknet as dk
from trtedge.engines.surgery import transform
from trtedge.errors import ModelError
from trtedge.specs import load_spec
from trtedge.specs.loader import spec_from_data

ort = pytest.importorskip("onnxruntime")


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- the shipped cfgs

#: name: (heads at 416x416 as (tensor, stride, grid), floats in .weights, learnable parameters)
PUBLISHED = {
    "yolov3": ([("082_convolutional", 32, 13), ("094_convolutional", 16, 26), ("106_convolutional", 8, 52)],
               62001757, 61949149),
    "yolov3-tiny": ([("016_convolutional", 32, 13), ("023_convolutional", 16, 26)], 8858734, 8852366),
    "yolov4": ([("139_convolutional", 8, 52), ("150_convolutional", 16, 26), ("161_convolutional", 32, 13)],
               64429405, 64363101),
    "yolov4-tiny": ([("030_convolutional", 32, 13), ("037_convolutional", 16, 26)], 6062814, 6056606),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_cfg_has_published_shapes_and_counts(name):
    """Heads [255, grid, grid] at 416x416 and the published parameter counts.

    The published figures count two different things. yolov3 61,949,149,
    yolov4 64,363,101 and yolov4-tiny 6,056,606 are *learnable* parameters (what
    PyTorch ports report): batch norm's rolling mean and variance are buffers,
    not parameters, so they are 2 x (batch-normalised filters) fewer than the
    floats in the .weights file. yolov3-tiny's 8,858,734 is the .weights float
    count (its learnable count is 8,852,366). Both counts are checked for every
    model; the .weights counts agree with the sizes of the released files:
    20-byte header + 4 bytes per float = 248,007,048 (yolov3), 35,434,956
    (yolov3-tiny), 257,717,640 (yolov4), 24,251,276 (yolov4-tiny) bytes.
    """
    heads, floats, learnable = PUBLISHED[name]
    path = dk.builtin_cfg(name)
    net = dk.parse_cfg(path)
    assert (net.height, net.width, net.classes, net.letter_box) == (416, 416, 80, False)
    by_name = {layer.name: layer for layer in net.layers}
    got = []
    for y in net.yolo:
        assert by_name[y.output].shape == (255, y.grid[0], y.grid[1])
        assert len(y.anchors) == 3
        got.append((y.output, y.stride, y.grid[0]))
    assert got == heads
    assert net.weight_floats() == floats == du.float_count(path)
    assert net.learnable_params() == learnable


@pytest.mark.parametrize("name", ["yolov3", "yolov4", "yolov4-tiny"])
def test_spec_data_matches_the_builtin_spec(name):
    """The spec made from the cfg reads the same heads, strides, anchors and
    scale_x_y as trtedge's hand-written spec for the ONNX of that model."""
    builtin = load_spec(name)
    net = dk.parse_cfg(dk.builtin_cfg(name))
    mine = spec_from_data(dk.spec_data(net, builtin.labels, name), "<darknet>", base_dir=None)
    assert mine.input == builtin.input
    assert mine.labels == builtin.labels

    def per_stride(spec):
        y = spec.yolo
        return {s: (out, a, sxy) for s, out, a, sxy in zip(y.strides, spec.cut.outputs, y.anchors, y.scale_x_y)}

    assert per_stride(mine) == per_stride(builtin)
    assert list(mine.yolo.strides) == sorted(builtin.yolo.strides)
    assert mine.source.input == builtin.source.input == dk.INPUT_NAME


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov4-tiny"])
def test_tiny_models_convert_and_run(name, tmp_path):
    """Random weights written in darknet's layout -> ONNX -> ONNX Runtime, batch 2."""
    cfg = dk.builtin_cfg(name)
    weights = du.write_weights(tmp_path / "w.weights", du.random_weights(cfg, seed=1))
    model = dk.convert(cfg, weights)
    onnx.checker.check_model(model.onnx)
    assert [i.name for i in model.onnx.graph.input] == ["000_net"]
    assert model.onnx.opset_import[0].version == 17
    x = np.random.default_rng(0).random((2, 3, 416, 416), dtype=np.float32)
    outs = _session(model.onnx).run(None, {"000_net": x})
    assert [o.name for o in model.onnx.graph.output] == [y.output for y in model.yolo]
    assert [o.shape for o in outs] == [(2, 255, y.grid[0], y.grid[1]) for y in model.yolo]
    for out in outs:
        assert np.all(np.isfinite(out)) and out.std() > 1e-3
        assert not np.allclose(out[0], out[1])  # two different images give two different answers


def test_yolov4_tiny_fits_the_builtin_spec():
    """The converted ONNX goes through surgery with the shipped yolov4-tiny spec."""
    cfg = dk.builtin_cfg("yolov4-tiny")
    net = dk.parse_cfg(cfg)
    floats = np.concatenate([np.concatenate([v.ravel() for v in layer.values()])
                             for layer in du.random_weights(cfg, seed=2)])
    model = dk.build_onnx(net, floats)
    engine, notes = transform(model.onnx, load_spec("yolov4-tiny"), "host")
    images = np.random.default_rng(1).integers(0, 256, (1, 416, 416, 3), dtype=np.uint8)
    outs = dict(zip([o.name for o in engine.graph.output], _session(engine).run(None, {"images": images})))
    assert outs["candidate_boxes"].shape == (1, 1000, 4)
    assert outs["candidate_scores"].shape == (1, 1000) and np.all(np.diff(outs["candidate_scores"][0]) <= 0)
    assert np.all(np.isfinite(outs["candidate_boxes"])) and outs["candidate_classes"].max() < 80
    assert not any("matched to strides" in n for n in notes)  # cut.outputs already in the spec's stride order


# --------------------------------------------------------------------------- a small cfg vs NumPy

#: every layer type and activation, groups (route and depthwise), two YOLO layers
SMALL_CFG = """
# a small darknet cfg for the tests
[net]
batch=64            # training settings in [net] are ignored
width={size}
height={size}
channels=3
{letter_box}

[convolutional]     ; layer 0
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=mish

[route]
layers = -1
groups = 2
group_id = 1

[convolutional]
batch_normalize=1
filters=8
groups=8
size=3
stride=1
pad=1
activation=swish

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[route]
layers = -1, -5

[maxpool]
size=2
stride=2

[dropout]
probability=.1

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
padding=1
activation=leaky

[maxpool]
size=2
stride=1

[maxpool]
size=3
stride=1

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=relu

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 6,8, 12,10, 14,20, 24,30, 40,36, 50,60
classes=2
num=6
scale_x_y = 1.1
ignore_thresh = .7

[route]
layers = -5

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=logistic

[upsample]
stride=2

[route]
layers = -1, 8

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 0,1,2
anchors = 6,8, 12,10, 14,20, 24,30, 40,36, 50,60
classes=2
num=6
scale_x_y = 1.2
"""

#: what SMALL_CFG says, written out by hand: (stride, anchors, scale_x_y), fine to coarse
SMALL_HEADS = [(4, [[6, 8], [12, 10], [14, 20]], 1.2), (8, [[24, 30], [40, 36], [50, 60]], 1.1)]


def _small_cfg(tmp_path, size=64, letter_box=False, name="small.cfg"):
    path = tmp_path / name
    path.write_text(SMALL_CFG.format(size=size, letter_box="letter_box=1" if letter_box else ""))
    return str(path)


def _act(x, kind):
    if kind == "leaky":
        return np.where(x > 0, x, 0.1 * x)
    if kind == "mish":
        return x * np.tanh(np.logaddexp(0.0, x))
    if kind == "swish":
        return x / (1.0 + np.exp(-x))
    if kind == "logistic":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "relu":
        return np.maximum(x, 0.0)
    assert kind == "linear"
    return x


def _windows(x, size, stride):
    """[N, C, H, W] -> [N, C, OH, OW, size, size] windows."""
    win = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(2, 3))
    return win[:, :, ::stride, ::stride]


def _conv(x, w, b, stride, pad, groups):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = _windows(x, w.shape[2], stride)
    cin, cout = w.shape[1], w.shape[0] // groups
    parts = [np.einsum("ncyxij,fcij->nfyx", win[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout])
             for g in range(groups)]
    return np.concatenate(parts, 1) + b[None, :, None, None]


def _maxpool(x, size, stride):
    # darknet: padding = size - 1, padding // 2 of it before; cells outside are skipped
    pad = size - 1
    x = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)),
               constant_values=-np.inf)
    return _windows(x, size, stride).max(axis=(4, 5))


def numpy_forward(cfg, weights, x):
    """Darknet's forward pass, layer by layer, in float64 -> {layer index: output}."""
    secs = du.sections(cfg)[1:]
    outs = []
    convs = iter(weights)
    heads = {}
    for i, (kind, o) in enumerate(secs):
        prev = outs[-1] if outs else x
        if kind == "convolutional":
            p = next(convs)
            size = int(o["size"])
            pad = size // 2 if o.get("pad") == "1" else int(o.get("padding", 0))
            y = _conv(prev, p["weights"].astype(np.float64), np.zeros(len(p["biases"])), int(o["stride"]), pad,
                      int(o.get("groups", 1)))
            sh = (1, -1, 1, 1)
            if o.get("batch_normalize") == "1":  # normalize_cpu: (x - mean) / (sqrt(var) + .000001f)
                y = (y - p["mean"].reshape(sh)) / (np.sqrt(p["variance"].reshape(sh)) + 0.000001)
                y = y * p["scales"].reshape(sh)
            y = _act(y + p["biases"].reshape(sh), o["activation"])
        elif kind == "maxpool":
            y = _maxpool(prev, int(o["size"]), int(o["stride"]))
        elif kind == "upsample":
            s = int(o["stride"])
            y = prev.repeat(s, axis=2).repeat(s, axis=3)
        elif kind == "shortcut":
            y = _act(prev + outs[i + int(o["from"])], o["activation"])
        elif kind == "route":
            groups, gid = int(o.get("groups", 1)), int(o.get("group_id", 0))
            parts = []
            for r in (int(v) for v in o["layers"].split(",")):
                t = outs[i + r if r < 0 else r]
                step = t.shape[1] // groups
                parts.append(t[:, gid * step:(gid + 1) * step])
            y = np.concatenate(parts, 1)
        elif kind == "yolo":
            heads[i] = prev
            y = prev
        else:
            assert kind == "dropout"
            y = prev
        outs.append(y)
    return heads


def test_small_cfg_parses_to_the_expected_layers(tmp_path):
    net = dk.parse_cfg(_small_cfg(tmp_path))
    kinds = [layer.type for layer in net.layers]
    assert kinds[:4] == ["convolutional", "maxpool", "convolutional", "route"] and kinds.count("yolo") == 2
    shapes = [layer.shape for layer in net.layers]
    assert shapes[1] == (8, 32, 32) and shapes[3] == (8, 32, 32) and shapes[7] == (24, 32, 32)
    assert shapes[11] == shapes[12] == (32, 8, 8)  # size-2 and size-3 maxpools with stride 1 keep the size
    assert shapes[19] == (40, 16, 16)
    assert [(y.output, y.stride, y.grid) for y in net.yolo] == [("015_convolutional", 8, (8, 8)),
                                                                ("021_convolutional", 4, (16, 16))]
    assert net.weight_floats() == du.float_count(net.file)


def test_onnx_matches_numpy_forward(tmp_path):
    cfg = _small_cfg(tmp_path)
    layers = du.random_weights(cfg, seed=3)
    model = dk.convert(cfg, du.write_weights(tmp_path / "small.weights", layers))
    onnx.checker.check_model(model.onnx, full_check=True)
    x = np.random.default_rng(4).random((2, 3, 64, 64), dtype=np.float32)
    got = _session(model.onnx).run(None, {"000_net": x})
    want = numpy_forward(cfg, layers, x.astype(np.float64))
    assert len(got) == len(want) == 2
    for g, (_, w) in zip(got, sorted(want.items())):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("version", [(0, 2, 5), (0, 1, 0), (1000, 2, 0)],
                         ids=["seen-int64", "seen-int32", "major-1000-int32"])
def test_weights_header_versions(tmp_path, version):
    """``seen`` is int64 from version 0.2 on, int32 before (and when major or minor >= 1000)."""
    cfg = _small_cfg(tmp_path)
    layers = du.random_weights(cfg, seed=5)
    path = du.write_weights(tmp_path / "v.weights", layers, version=version)
    net = dk.parse_cfg(cfg)
    floats = dk.read_weights(path, net)
    expected = np.concatenate([np.concatenate([v.ravel() for v in layer.values()]) for layer in layers])
    np.testing.assert_array_equal(floats, expected)


def test_engine_decode_matches_numpy_decode(tmp_path):
    """trtedge's engine ONNX (uint8 BGR NHWC in, host NMS form) against the darknet
    decode in NumPy: xy = (sigmoid(t) * s - (s - 1) / 2 + cell) * stride,
    wh = exp(t) * anchor, score = sigmoid(obj) * sigmoid(cls)."""
    cfg = _small_cfg(tmp_path)
    layers = du.random_weights(cfg, seed=6)
    model = dk.convert(cfg, du.write_weights(tmp_path / "small.weights", layers))
    data = dk.spec_data(model, ["a", "b"], "small")
    data["nms"] = {"candidates": 200, "max_detections": 50}
    spec = spec_from_data(data, "small.yaml", base_dir=None)
    assert spec.input.resize == "stretch" and spec.yolo.strides == (4, 8)
    engine, _ = transform(model.onnx, spec, "host")
    images = np.random.default_rng(7).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    outs = dict(zip([o.name for o in engine.graph.output], _session(engine).run(None, {"images": images})))
    heads = numpy_forward(cfg, layers, models.reference_input(images).astype(np.float64))
    by_grid = {h.shape[2]: h for h in heads.values()}
    for i in range(len(images)):
        boxes, scores = ref.decode_darknet([by_grid[64 // s][i] for s, _, _ in SMALL_HEADS],
                                           [s for s, _, _ in SMALL_HEADS], [a for _, a, _ in SMALL_HEADS],
                                           [sxy for _, _, sxy in SMALL_HEADS], 2)
        flat = scores.reshape(-1)
        top = np.argsort(-flat, kind="stable")[:200]
        np.testing.assert_allclose(outs["candidate_scores"][i], flat[top], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(outs["candidate_classes"][i][:50], top[:50] % 2)
        np.testing.assert_allclose(outs["candidate_boxes"][i][:50], boxes[top[:50] // 2], rtol=1e-4, atol=1e-2)


def test_letter_box_cfg_gives_a_letterbox_spec(tmp_path):
    net = dk.parse_cfg(_small_cfg(tmp_path, letter_box=True))
    spec = spec_from_data(dk.spec_data(net, ["a", "b"], "lb"), "lb.yaml", base_dir=None)
    assert net.letter_box and spec.input.resize == "letterbox" and spec.input.pad_value == 127
    assert spec.input.scale == pytest.approx((1 / 255.0,) * 3) and spec.input.channels == "rgb"
    with pytest.raises(ModelError, match="predicts 2 classes but 3 labels"):
        dk.spec_data(net, ["a", "b", "c"], "lb")


@pytest.mark.slow
def test_small_cfg_builds_with_tensorrt_rtx(tmp_path):
    """Groups, dropout and two YOLO layers at 320x320: convert, surgery, TensorRT build."""
    rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (tensorrt_rtx) is not installed")
    from trtedge.engines.tensorrt_build import BuildOptions, build_engine

    cfg = _small_cfg(tmp_path, size=320)
    model = dk.convert(cfg, du.write_weights(tmp_path / "small.weights", du.random_weights(cfg, seed=8)))
    assert [y.grid for y in model.yolo] == [(40, 40), (80, 80)]
    spec = spec_from_data(dk.spec_data(model, ["a", "b"], "small320"), "small320.yaml", base_dir=None)
    engine, _ = transform(model.onnx, spec, "host")
    path = tmp_path / "small320.onnx"
    onnx.save(engine, str(path))
    result = build_engine(str(path), BuildOptions(max_batch=2, opt_batch=1), trt=rtx)
    assert result.plan.startswith(b"vtrt") and len(result.plan) > 10000
    assert result.flags["profile"] == {"images": {"min": [1, 320, 320, 3], "opt": [1, 320, 320, 3],
                                                  "max": [2, 320, 320, 3]}}


# --------------------------------------------------------------------------- malformed files

BAD_CFGS = [
    # (replace this, with this, message parts)
    ("[dropout]", "[region]", ["line 63", "[region] (layer 9) is not a supported section", "allowed: [conv]"]),
    ("filters=32\nsize=3\nstride=2", "filters=3x2\nsize=3\nstride=2",
     ["line 68", "[convolutional] (layer 10): 'filters' is '3x2'; it must be a whole number"]),
    ("layers = -1, -5", "layers = -1, -9",
     ["[route] (layer 7): 'layers' refers to layer -2 (-9), which is not an earlier layer; allowed: layers 0..6"]),
    ("layers = -1, 8", "layers = -1, 25",
     ["[route] (layer 19): 'layers' refers to layer 25 (25)", "allowed: layers 0..18"]),
    ("activation=swish", "activation=elu", ["'activation' is 'elu'; allowed: leaky, mish, linear"]),
    ("groups=8\n", "groups=8\ndilation=2\n", ["[convolutional] (layer 4): 'dilation' is not supported here"]),
    ("group_id = 1", "group_id = 2", ["'group_id' is 2; with groups=2 it must be 0..1"]),
    ("from=-3", "from=-4", ["[shortcut] (layer 6): 'from' adds layer 2 of shape [16, 32, 32]"]),
    ("classes=2\nnum=6\nscale_x_y = 1.2", "classes=3\nnum=6\nscale_x_y = 1.2",
     ["line 129", "[yolo] (layer 21): reads 21 channels from layer 20, but 3 masked anchors x (5 + 3 classes) = 24"]),
    ("scale_x_y = 1.1", "scale_x_y = fast", ["'scale_x_y' is 'fast'; it must be a number"]),
    ("mask = 0,1,2", "mask = 0,1,7", ["'mask' is '0,1,7'; it must pick anchors 0..5"]),
    ("[maxpool]\nsize=2\nstride=2", "[maxpool]\nsize2\nstride=2",
     ["line 19", "[maxpool] (layer 1): expected key=value, got 'size2'"]),
]


BAD_IDS = ["unknown-section", "bad-number", "route-before-start", "route-ahead", "activation", "unknown-key",
           "group-id", "shortcut-shape", "yolo-channels", "bad-float", "mask", "no-equals"]


@pytest.mark.parametrize("old, new, parts", BAD_CFGS, ids=BAD_IDS)
def test_malformed_cfg_is_one_line(tmp_path, old, new, parts):
    path = tmp_path / "bad.cfg"
    text = SMALL_CFG.format(size=64, letter_box="")
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ModelError) as err:
        dk.parse_cfg(str(path))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path) + ": ")
    for part in parts:
        assert part in msg, msg


def test_wrong_size_weights_is_one_line(tmp_path):
    """Weights of another cfg (or a truncated file) name both counts."""
    small = _small_cfg(tmp_path)
    tiny = dk.builtin_cfg("yolov4-tiny")
    path = du.write_weights(tmp_path / "tiny.weights", du.random_weights(tiny))
    with pytest.raises(ModelError) as err:
        dk.convert(small, path)
    msg = str(err.value)
    expected = dk.parse_cfg(small).weight_floats()
    assert "\n" not in msg
    assert "expects {} floats after the 20-byte header (version 0.2), the file has 6062814 floats".format(
        expected) in msg
    assert "the cfg and the weights do not belong together" in msg and small in msg

    layers = du.random_weights(small)
    layers[-1]["weights"] = layers[-1]["weights"][:, :-1]  # one conv short
    short = du.write_weights(tmp_path / "short.weights", layers)
    with pytest.raises(ModelError, match="expects {} floats .* the file has {} floats".format(
            expected, expected - 21)):
        dk.convert(small, short)
    (tmp_path / "odd.weights").write_bytes(open(short, "rb").read()[:-2])
    with pytest.raises(ModelError, match="the file has {} bytes".format((expected - 21) * 4 - 2)):
        dk.convert(small, str(tmp_path / "odd.weights"))
    (tmp_path / "empty.weights").write_bytes(b"\0" * 8)
    with pytest.raises(ModelError, match="too short for a darknet weights header"):
        dk.convert(small, str(tmp_path / "empty.weights"))


def test_missing_files_and_names(tmp_path):
    with pytest.raises(ModelError, match="cannot read darknet cfg"):
        dk.parse_cfg(str(tmp_path / "nope.cfg"))
    with pytest.raises(ModelError, match="no built-in darknet cfg 'yolov9'; built-in: yolov3, yolov3-tiny"):
        dk.builtin_cfg("yolov9")
    (tmp_path / "empty.cfg").write_text("# nothing\n")
    with pytest.raises(ModelError, match="no \\[net\\] section"):
        dk.parse_cfg(str(tmp_path / "empty.cfg"))
    (tmp_path / "noyolo.cfg").write_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\n")
    with pytest.raises(ModelError, match="has no \\[yolo\\] layer"):
        dk.parse_cfg(str(tmp_path / "noyolo.cfg"))


# ------------------------------------------------------------ trtedge build model.cfg, no spec

def test_cli_builds_a_cfg_with_no_spec_then_detects(tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engine")
    import json

    import cv2

    import cli

    cfg = _small_cfg(tmp_path, size=64)
    stem = os.path.splitext(cfg)[0]
    du.write_weights(stem + ".weights", du.random_weights(cfg, seed=2))
    with open(stem + ".names", "w") as f:
        f.write("class0\nclass1\n")
    out = tmp_path / "out"
    proc = cli.run("build", cfg, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Converting darknet" in proc.stderr
    m = json.loads((out / "small_fp32.json").read_text())
    assert m["source"]["format"] == "darknet" and m["labels"] == ["class0", "class1"]
    assert m["spec"]["yolo"]["head"] == "raw" and m["spec"]["input"]["resize"] == "stretch"
    again = cli.run("build", cfg, "--out", out)
    assert again.returncode == 0 and "Up to date: reusing" in again.stderr
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((48, 80, 3), 90, np.uint8))
    proc = cli.run("detect", out / "small_fp32.bin", "--source", image, "--json", tmp_path / "d.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 1
    os.remove(stem + ".weights")
    cli.assert_one_line_error(cli.run("build", cfg, "--out", out, "--force"), 2, "--weights FILE")
    cli.assert_one_line_error(cli.run("build", "shapes_yolo", "--weights", cfg), 2, "goes with a darknet .cfg")


def test_builtin_darknet_spec_builds_from_weights(tmp_path):
    """`trtedge build yolov4-tiny --model yolov4-tiny.weights`: the spec's own cfg, trtedge's converter."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX (pip install tensorrt-rtx) builds the engine")
    import json

    import cli

    cfg = dk.builtin_cfg("yolov4-tiny")
    weights = du.write_weights(tmp_path / "yolov4-tiny.weights", du.random_weights(cfg, seed=4))
    out = tmp_path / "out"
    proc = cli.run("build", "yolov4-tiny", "--model", weights, "--out", out)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "yolov4-tiny_fp32.json").read_text())
    assert m["source"]["format"] == "darknet" and m["source"]["path"].endswith("yolov4-tiny.cfg")
    assert [o["name"] for o in m["outputs"]] == ["candidate_boxes", "candidate_scores", "candidate_classes"]
    cli.assert_one_line_error(cli.run("build", "yolov4-tiny", "--out", out), 2, "yolov4-tiny.weights")
