"""TF OD API pipeline.config: the text-format reader and the mapping to a spec.

The configs here are written for these tests in the syntax of the model zoo's
pipeline.config files (comments, nested and repeated fields, enums, quoted
paths, train/eval sections the mapping must skip)."""

import math

import pytest

from trtedge.errors import SpecError
from trtedge.specs import load_spec
from trtedge.specs import pipeline_config as pc
from trtedge.specs.loader import spec_from_data
from trtedge.specs import spec_from_dict

# An SSD MobileNet v2 COCO-like TF1 config (300x300, 90 classes).
TF1_MOBILENET_V2 = """\
# SSD with Mobilenet v2, 300x300 input; a test config in the zoo's syntax.
model {
  ssd {
    num_classes: 90
    box_coder {
      faster_rcnn_box_coder {
        y_scale: 10.0
        x_scale: 10.0
        height_scale: 5.0
        width_scale: 5.0
      }
    }
    matcher {
      argmax_matcher {
        matched_threshold: 0.5
        unmatched_threshold: 0.5
        ignore_thresholds: false
        negatives_lower_than_unmatched: true
        force_match_for_each_row: true
      }
    }
    similarity_calculator { iou_similarity { } }
    anchor_generator {
      ssd_anchor_generator {
        num_layers: 6
        min_scale: 0.2
        max_scale: 0.95
        aspect_ratios: 1.0
        aspect_ratios: 2.0
        aspect_ratios: 0.5
        aspect_ratios: 3.0
        aspect_ratios: 0.3333
      }
    }
    image_resizer {
      fixed_shape_resizer {
        height: 300
        width: 300
      }
    }
    box_predictor {
      convolutional_box_predictor {
        min_depth: 0
        max_depth: 0
        num_layers_before_predictor: 0
        use_dropout: false
        dropout_keep_probability: 0.8
        kernel_size: 1
        box_code_size: 4
        apply_sigmoid_to_scores: false
        conv_hyperparams {
          activation: RELU_6,
          regularizer { l2_regularizer { weight: 0.00004 } }
          initializer { truncated_normal_initializer { stddev: 0.03 mean: 0.0 } }
          batch_norm { train: true, scale: true, center: true, decay: 0.9997, epsilon: 0.001, }
        }
      }
    }
    feature_extractor {
      type: 'ssd_mobilenet_v2'
      min_depth: 16
      depth_multiplier: 1.0
      conv_hyperparams {
        activation: RELU_6,
        regularizer { l2_regularizer { weight: 4e-5 } }
        batch_norm { train: true, scale: true, center: true, decay: 0.9997, epsilon: 1e-3 }
      }
    }
    loss {
      classification_loss { weighted_sigmoid { } }
      localization_loss { weighted_smooth_l1 { } }
      hard_example_miner { num_hard_examples: 3000 iou_threshold: 0.99 loss_type: CLASSIFICATION
                           max_negatives_per_positive: 3 min_negatives_per_image: 3 }
      classification_weight: 1.0
      localization_weight: 1.0
    }
    normalize_loss_by_num_matches: true
    post_processing {
      batch_non_max_suppression {
        score_threshold: 1e-8
        iou_threshold: 0.6
        max_detections_per_class: 100
        max_total_detections: 100
      }
      score_converter: SIGMOID
    }
  }
}

train_config: {
  batch_size: 24
  optimizer {
    rms_prop_optimizer: {
      learning_rate: {
        exponential_decay_learning_rate {
          initial_learning_rate: 0.004
          decay_steps: 800720
          decay_factor: 0.95
        }
      }
      momentum_optimizer_value: 0.9
      decay: 0.9
      epsilon: 1.0
    }
  }
  fine_tune_checkpoint: "PATH_TO_BE_CONFIGURED/model.ckpt"
  fine_tune_checkpoint_type:  "detection"
  num_steps: 200000
  data_augmentation_options { random_horizontal_flip { } }
  data_augmentation_options { ssd_random_crop { } }
}

train_input_reader: {
  tf_record_input_reader { input_path: "PATH_TO_BE_CONFIGURED/mscoco_train.record-?????-of-00100" }
  label_map_path: "PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt"
}

eval_config: {
  num_examples: 8000  # the COCO minival subset
  max_evals: 10
}

eval_input_reader: {
  tf_record_input_reader { input_path: 'PATH_TO_BE_CONFIGURED/mscoco_val.record-?????-of-00010' }
  label_map_path: "PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt"
  shuffle: false
  num_readers: 1
}
"""

# An SSD MobileNet v2 FPNLite 320x320-like TF2 config (multiscale anchors).
TF2_FPNLITE = """\
model {
  ssd {
    inplace_batchnorm_update: true
    freeze_batchnorm: false
    num_classes: 90
    add_background_class: true
    box_coder { faster_rcnn_box_coder { y_scale: 10.0  x_scale: 10.0  height_scale: 5.0  width_scale: 5.0 } }
    matcher { argmax_matcher { matched_threshold: 0.5 unmatched_threshold: 0.5 use_matmul_gather: true } }
    similarity_calculator { iou_similarity {} }
    encode_background_as_zeros: true
    anchor_generator {
      multiscale_anchor_generator {
        min_level: 3
        max_level: 7
        anchor_scale: 4.0
        aspect_ratios: [1.0, 2.0, 0.5]
        scales_per_octave: 2
      }
    }
    image_resizer { fixed_shape_resizer { height: 320 width: 320 } }
    box_predictor {
      weight_shared_convolutional_box_predictor {
        depth: 128
        class_prediction_bias_init: -4.6
        conv_hyperparams { activation: RELU_6 batch_norm { scale: true decay: 0.997 epsilon: 0.001 } }
        num_layers_before_predictor: 4
        share_prediction_tower: true
        use_depthwise: true
        kernel_size: 3
      }
    }
    feature_extractor {
      type: "ssd_mobilenet_v2_fpn_keras"
      depth_multiplier: 1.0
      min_depth: 16
      conv_hyperparams { activation: RELU_6 }
      use_depthwise: true
      override_base_feature_extractor_hyperparams: true
      fpn { min_level: 3 max_level: 7 additional_layer_depth: 128 }
    }
    loss {
      classification_loss { weighted_sigmoid_focal { alpha: 0.25 gamma: 2.0 } }
      localization_loss { weighted_smooth_l1 {} }
      classification_weight: 1.0
      localization_weight: 1.0
    }
    normalize_loss_by_num_matches: true
    normalize_loc_loss_by_codesize: true
    post_processing {
      batch_non_max_suppression {
        score_threshold: 1e-08
        iou_threshold: 0.6
        max_detections_per_class: 100
        max_total_detections: 100
        use_static_shapes: false
      }
      score_converter: SIGMOID
    }
  }
}
train_config: {
  fine_tune_checkpoint_version: V2
  fine_tune_checkpoint: "PATH_TO_BE_CONFIGURED/mobilenet_v2.ckpt-1"
  fine_tune_checkpoint_type: "classification"
  batch_size: 128
  sync_replicas: true
  startup_delay_steps: 0
  replicas_to_aggregate: 8
  num_steps: 50000
  data_augmentation_options { random_horizontal_flip {} }
  data_augmentation_options { random_crop_image { min_object_covered: 0.0 min_aspect_ratio: 0.75
                                                  max_aspect_ratio: 3.0 random_coef: 0.25 } }
  optimizer {
    momentum_optimizer: {
      learning_rate: { cosine_decay_learning_rate { learning_rate_base: .08 total_steps: 50000
                                                    warmup_learning_rate: .026666 warmup_steps: 1000 } }
      momentum_optimizer_value: 0.9
    }
    use_moving_average: false
  }
  max_number_of_boxes: 100
  unpad_groundtruth_tensors: false
}
train_input_reader: {
  label_map_path: "PATH_TO_BE_CONFIGURED/label_map.txt"
  tf_record_input_reader { input_path: "PATH_TO_BE_CONFIGURED/train2017-?????-of-00256.tfrecord" }
}
eval_config: { metrics_set: "coco_detection_metrics" use_moving_averages: false }
eval_input_reader: {
  label_map_path: "PATH_TO_BE_CONFIGURED/label_map.txt"
  shuffle: false
  num_epochs: 1
  tf_record_input_reader { input_path: "PATH_TO_BE_CONFIGURED/val2017-?????-of-00032.tfrecord" }
}
"""


def write(tmp_path, text, name="pipeline.config", folder="ssd_test_model"):
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text)
    return str(p)


def one_line_error(func, *args, **kwargs):
    with pytest.raises(SpecError) as err:
        func(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def replace_once(text, old, new):
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ---------------------------------------------------------------- the reader

def test_scalars_strings_enums_and_comments():
    msg = pc.parse_text_proto(
        "a: 1e-8 b: .5 c: -3 d: -0.25 e: 0x1F f: 2.5f g: 1.\n"
        "s1: \"x\\ty \\\"q\\\" # not a comment\"  # a comment\n"
        "s2: 'it\\'s' s3: \"ab\" 'cd'  s4: \"\\101\\x42\\u00e9\"\n"
        "on: true off: False en: SIGMOID neg_inf: -inf\n", "t.config")
    assert msg["a"] == [1e-8] and msg["b"] == [0.5] and msg["c"] == [-3] and msg["d"] == [-0.25]
    assert msg["e"] == [31] and msg["f"] == [2.5] and msg["g"] == [1.0]
    assert isinstance(msg["c"][0], int) and isinstance(msg["g"][0], float)
    assert msg["s1"] == ['x\ty "q" # not a comment'] and msg["s2"] == ["it's"]
    assert msg["s3"] == ["abcd"] and msg["s4"] == ["ABé"]
    assert msg["on"] == [True] and msg["off"] == [False]
    assert msg["en"] == ["SIGMOID"] and isinstance(msg["en"][0], pc.Identifier)
    assert not isinstance(msg["s3"][0], pc.Identifier)
    assert msg["neg_inf"] == ["-inf"]


def test_nested_messages_repeated_fields_lists_and_separators():
    msg = pc.parse_text_proto(
        "outer { inner: { v: 1; } inner < v: 2, > }\n"
        "r: 1 r: 2\nl: [3, 4.5, -6] empty: []\n"
        "ms: [{k: 1}, <k: 2>]\n[ext.pkg.name] { z: 1 }\n", "t.config")
    (outer,) = msg["outer"]
    assert [m["v"] for m in outer["inner"]] == [[1], [2]]
    assert isinstance(outer, pc.TextMessage) and isinstance(outer, dict)
    assert (outer.line, outer.column) == (1, 7)
    assert msg["r"] == [1, 2] and msg["l"] == [3, 4.5, -6] and msg["empty"] == []
    assert [m["k"] for m in msg["ms"]] == [[1], [2]]
    assert msg["[ext.pkg.name]"][0]["z"] == [1]


@pytest.mark.parametrize("text, where, expected", [
    ("model {\n  ssd {\n    num_classes: 3\n  }\n", "5:1", "expected '}' to close the message opened at line 1, "
                                                        "column 7, found end of file"),
    ("a {\n  min_scale: 1.2.3\n}\n", "2:14", "malformed number '1.2.3'"),
    ("a: 12abc\n", "1:4", "malformed number '12abc'"),
    ("a: 09\n", "1:4", "malformed number '09'"),
    ("a: 1\n}\n", "2:1", "found '}' but no message is open"),
    ("a { b: 1 >\n", "1:10", "found '>' but no message is open with it (this one opened with '{')"),
    ("model {\n  num_classes 90\n}\n", "2:15", "expected ':' or '{' after the field name 'num_classes', found '90'"),
    ("a: 1\n: 2\n", "2:1", "expected a field name, found ':'"),
    ("a: \"open\nb: 1\n", "1:4", "unterminated string"),
    ("a: 1 @\n", "1:6", "unexpected character '@'"),
    ("a: }\n", "1:4", "expected a value"),
    ("a: [1 2]\n", "1:7", "expected ',' or ']' in the list of 'a', found '2'"),
    ("a: - x\n", "1:6", "expected a number after '-', found 'x'"),
    ("a: \"\\q\"\n", "1:5", "unknown escape '\\\\q'"),
])
def test_malformed_text_is_one_line_with_line_and_column(text, where, expected):
    message = one_line_error(pc.parse_text_proto, text, "cfg/pipeline.config")
    assert message.startswith("cfg/pipeline.config:{}: ".format(where)), message
    assert expected in message, message


# ---------------------------------------------------------------- the mapping

def test_tf1_mobilenet_v2_config_matches_the_builtin_spec(tmp_path):
    path = write(tmp_path, TF1_MOBILENET_V2, folder="ssd_mobilenet_v2_coco_2018_03_29")
    result = pc.read_pipeline_config(path)
    assert result.multiscale is None
    spec = result.model_spec()
    builtin = load_spec("ssd_mobilenet_v2_coco")
    assert spec.name == "ssd_mobilenet_v2_coco_2018_03_29" and spec.family == "ssd"
    # anchors, box coder and order, activation, background column: all as the built-in spec
    assert spec.ssd == builtin.ssd
    assert spec.ssd.anchors.aspect_ratios == (1.0, 2.0, 0.5, 3.0, 0.3333)
    assert spec.ssd.box_coder_scales == (10.0, 10.0, 5.0, 5.0) and spec.ssd.score_activation == "sigmoid"
    assert spec.labels == builtin.labels and len(spec.labels) == 90
    i, b = spec.input, builtin.input
    assert (i.height, i.width, i.channels, i.layout, i.resize) == (b.height, b.width, b.channels, b.layout, b.resize)
    assert i.scale == pytest.approx(b.scale) and i.offset == pytest.approx(b.offset)
    assert i.scale == pytest.approx((2 / 255.0,) * 3) and i.offset == (-1.0, -1.0, -1.0)
    # NMS as the config says; the built-in spec raised only the evaluation score threshold
    assert spec.nms.score_threshold == 1e-8 and builtin.nms.score_threshold == 0.3
    for field in ("iou_threshold", "max_per_class", "max_detections", "class_agnostic"):
        assert getattr(spec.nms, field) == getattr(builtin.nms, field), field
    assert spec.nms.max_detections <= spec.nms.candidates <= 3840
    assert any("evaluation setting" in n and "score_threshold" in n for n in spec.notes)
    assert any("ssd_mobilenet_v2 maps pixels to [-1, 1]" in n for n in result.notes)
    assert spec_from_dict(spec.to_dict()).to_dict() == spec.to_dict()


def test_tf2_fpnlite_config_keeps_multiscale_anchors_apart(tmp_path):
    path = write(tmp_path, TF2_FPNLITE, folder="ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8")
    result = pc.read_pipeline_config(path, name="fpnlite")
    assert result.multiscale == {
        "min_level": 3, "max_level": 7, "anchor_scale": 4.0, "aspect_ratios": [1.0, 2.0, 0.5],
        "scales_per_octave": 2, "normalize_coordinates": True,
    }
    assert not result.multiscale_supported
    assert "anchors" not in result.spec["ssd"] and "multiscale_anchors" not in result.spec["ssd"]
    assert any("multiscale_anchor_generator" in n and "NOT the model's anchors" in n for n in result.notes)
    message = one_line_error(result.model_spec)
    assert message.startswith(path + ": model.ssd.anchor_generator is a multiscale_anchor_generator")
    assert "levels 3-7" in message and "supported: ssd_anchor_generator" in message
    # everything else still maps, and matches the built-in SSD where TF's SSDs agree
    spec = spec_from_data(result.spec, path, base_dir=None)
    builtin = load_spec("ssd_mobilenet_v2_coco")
    assert spec.name == "fpnlite"
    assert (spec.input.height, spec.input.width) == (320, 320)
    assert spec.input.scale == pytest.approx(builtin.input.scale) and spec.input.offset == builtin.input.offset
    assert spec.ssd.box_coder_scales == builtin.ssd.box_coder_scales
    assert spec.ssd.box_order == builtin.ssd.box_order == "yxhw"
    assert spec.ssd.score_activation == builtin.ssd.score_activation == "sigmoid"
    assert spec.ssd.background_class and spec.labels == builtin.labels
    assert (spec.nms.score_threshold, spec.nms.iou_threshold, spec.nms.max_detections) == (1e-8, 0.6, 100)
    assert any("batch_non_max_suppression: ignored use_static_shapes" in n for n in spec.notes)


def test_multiscale_anchors_go_into_the_spec_once_the_schema_has_them(tmp_path, monkeypatch):
    monkeypatch.setattr(pc, "_schema_has_multiscale", lambda: True)
    result = pc.ssd_spec_data(pc.parse_text_proto(TF2_FPNLITE, "x.config"), "x.config")
    assert result.spec["ssd"]["multiscale_anchors"] == result.multiscale
    assert result.spec["ssd"]["multiscale_anchors"]["anchor_scale"] == 4.0


def test_strides_offsets_scales_and_base_size_map_per_layer():
    text = replace_once(TF1_MOBILENET_V2, "        aspect_ratios: 0.3333\n", """\
        aspect_ratios: 0.3333
        scales: [0.1, 0.3, 0.45, 0.6, 0.75, 0.9]
        interpolated_scale_aspect_ratio: 0.0
        reduce_boxes_in_lowest_layer: false
        base_anchor_height: 0.8
        base_anchor_width: 1.2
        height_stride: [16, 32, 64, 100, 150, 300]
        width_stride: [16, 32, 64, 100, 150, 300]
        height_offset: [8, 16, 32, 50, 75, 150]
        width_offset: [8, 16, 32, 50, 75, 150]
""")
    spec = pc.ssd_spec_data(pc.parse_text_proto(text, "x.config"), "x.config", name="x").model_spec()
    a = spec.ssd.anchors
    assert a.scales == (0.1, 0.3, 0.45, 0.6, 0.75, 0.9) and a.interpolated_scale_aspect_ratio == 0.0
    assert a.reduce_boxes_in_lowest_layer is False and a.base_anchor_size == (0.8, 1.2)
    assert a.strides[0] == (16.0, 16.0) and a.strides[-1] == (300.0, 300.0)
    assert a.offsets[2] == (32.0, 32.0) and len(a.offsets) == 6


@pytest.mark.parametrize("fe_type, scale, offset", [
    ("ssd_resnet50_v1_fpn", (1.0,) * 3, (-123.68, -116.779, -103.939)),
    ("ssd_resnet101_v1_fpn_keras", (1.0,) * 3, (-123.68, -116.779, -103.939)),
    ("ssd_efficientnet-b0_bifpn_keras", tuple(1 / (255 * s) for s in (0.229, 0.224, 0.225)),
     tuple(-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))),
    ("ssd_mobilenet_v1_fpn", (2 / 255.0,) * 3, (-1.0,) * 3),
    ("ssd_inception_v2", (2 / 255.0,) * 3, (-1.0,) * 3),
])
def test_normalisation_follows_the_feature_extractor_type(fe_type, scale, offset):
    text = replace_once(TF1_MOBILENET_V2, "type: 'ssd_mobilenet_v2'", "type: '{}'".format(fe_type))
    spec = pc.ssd_spec_data(pc.parse_text_proto(text, "x.config"), "x.config", name="x").model_spec()
    assert spec.input.scale == pytest.approx(scale) and spec.input.offset == pytest.approx(offset)
    # what the engine computes from a mid-grey pixel equals the extractor's own preprocess
    grey = 128.0 * spec.input.scale[0] + spec.input.offset[0]
    assert math.isclose(grey, 128.0 * scale[0] + offset[0], rel_tol=1e-9)


def test_labels_default_to_class_names_or_come_from_a_list_or_label_map(tmp_path):
    text = replace_once(TF1_MOBILENET_V2, "num_classes: 90", "num_classes: 3")
    cfg = pc.parse_text_proto(text, "x.config")
    assert pc.ssd_spec_data(cfg, "x.config").spec["labels"] == ["class1", "class2", "class3"]
    spec = pc.ssd_spec_data(cfg, "x.config", labels=["cat", "dog", "bird"], name="pets").model_spec()
    assert spec.labels == ("cat", "dog", "bird")
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text("item {\n  id: 1\n  name: 'cat'\n}\nitem { id: 3 name: \"bird\" display_name: \"Bird\" }\n")
    assert pc.labels_from_label_map(str(label_map)) == ["cat", "unused_2", "Bird"]
    spec = pc.ssd_spec_data(cfg, "x.config", labels=str(label_map), name="pets").model_spec()
    assert spec.labels == ("cat", "unused_2", "Bird")
    message = one_line_error(pc.ssd_spec_data, cfg, "x.config", labels=["cat", "dog"])
    assert "model.ssd.num_classes is 3 but the labels list has 2 names" in message


def test_the_name_defaults_to_the_model_folder_or_file(tmp_path):
    path = write(tmp_path, TF1_MOBILENET_V2, folder="my model 2021")
    assert pc.read_pipeline_config(path).spec["name"] == "my_model_2021"
    other = write(tmp_path, TF1_MOBILENET_V2, name="ssd_custom.config")
    assert pc.read_pipeline_config(other).spec["name"] == "ssd_custom"
    src = {"format": "frozen_graph", "file": "m/frozen_inference_graph.pb"}
    spec = pc.read_pipeline_config(path, source=src).model_spec()
    assert spec.source.format == "frozen_graph" and spec.source.file == "m/frozen_inference_graph.pb"


@pytest.mark.parametrize("old, new, expected", [
    ("fixed_shape_resizer {\n        height: 300\n        width: 300\n      }",
     "keep_aspect_ratio_resizer { min_dimension: 600 max_dimension: 1024 }",
     "model.ssd.image_resizer.keep_aspect_ratio_resizer resizes each image to its own size, but an engine needs a "
     "fixed input size: export the model with image_resizer { fixed_shape_resizer { height: H width: W } }"),
    ("type: 'ssd_mobilenet_v2'", "type: 'ssd_vgg16'",
     "model.ssd.feature_extractor.type is 'ssd_vgg16', whose input normalisation trtedge does not know; supported:"),
    ("faster_rcnn_box_coder {", "mean_stddev_box_coder {",
     "model.ssd.box_coder.mean_stddev_box_coder is not supported; supported box coders: faster_rcnn_box_coder"),
    ("ssd_anchor_generator {", "grid_anchor_generator {",
     "model.ssd.anchor_generator.grid_anchor_generator is not supported; supported anchor generators: "
     "ssd_anchor_generator, multiscale_anchor_generator"),
    ("num_classes: 90", "num_classes: 90\n    num_classes: 91", "model.ssd.num_classes is given 2 times"),
    ("num_classes: 90", "num_classes: '90'", "model.ssd.num_classes must be a whole number, not the string '90'"),
    ("num_classes: 90", "", "model.ssd.num_classes is missing"),
    ("max_total_detections: 100", "max_total_detections: 5000",
     "batch_non_max_suppression.max_total_detections is 5000; trtedge keeps at most 3840"),
    ("score_converter: SIGMOID", "score_converter: 'SIGMOID'",
     "model.ssd.post_processing.score_converter must be one of IDENTITY, SIGMOID, SOFTMAX (unquoted)"),
    ("score_converter: SIGMOID", "score_converter: SIGMOID_WITH_TEMPERATURE",
     "score_converter is SIGMOID_WITH_TEMPERATURE; supported: IDENTITY, SIGMOID, SOFTMAX"),
    ("max_scale: 0.95", "max_scale: 1.5", "ssd_anchor_generator.max_scale must be between 0.0 and 1.0, is 1.5"),
    ("max_scale: 0.95", "max_scale: 0.95 height_stride: [16, 32] width_stride: [16, 32]",
     "ssd_anchor_generator.height_stride has 2 values but num_layers is 6"),
    ("score_converter: SIGMOID", "score_converter: SIGMOID logit_scale: 2.0",
     "model.ssd.post_processing.logit_scale is 2.0"),
    ("""      batch_non_max_suppression {
        score_threshold: 1e-8
        iou_threshold: 0.6
        max_detections_per_class: 100
        max_total_detections: 100
      }
""", "", "model.ssd.post_processing has no 'batch_non_max_suppression' { ... }; the only NMS supported"),
])
def test_unsupported_or_bad_pieces_are_one_line_naming_the_config_path(tmp_path, old, new, expected):
    path = write(tmp_path, replace_once(TF1_MOBILENET_V2, old, new))
    message = one_line_error(pc.read_pipeline_config, path)
    assert message.startswith(path + ":") and expected in message, message


def test_errors_point_at_the_value_of_the_field(tmp_path):
    path = write(tmp_path, replace_once(TF1_MOBILENET_V2, "max_scale: 0.95", "max_scale: 1.5"))
    line = TF1_MOBILENET_V2.splitlines().index("        max_scale: 0.95") + 1
    message = one_line_error(pc.read_pipeline_config, path)
    assert message.startswith("{}:{}:20: model.ssd.anchor_generator.ssd_anchor_generator.max_scale ".format(path, line))


def test_a_config_without_model_ssd_is_refused(tmp_path):
    faster = "model {\n  faster_rcnn {\n    num_classes: 90\n  }\n}\ntrain_config { batch_size: 1 }\n"
    message = one_line_error(pc.read_pipeline_config, write(tmp_path, faster))
    assert "pipeline.config:1:7: model holds model.faster_rcnn; trtedge reads SSD models only" in message
    message = one_line_error(pc.read_pipeline_config, write(tmp_path, "train_config { batch_size: 1 }\n"))
    assert "the config has no 'model' { ... }; this does not look like a TF Object Detection API" in message
    message = one_line_error(pc.read_pipeline_config, str(tmp_path / "absent.config"))
    assert message.startswith("cannot read pipeline config")


def test_a_plain_dict_in_the_parsed_form_maps_too():
    def m(**fields):
        return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}
    config = m(model=m(ssd=m(
        num_classes=2,
        image_resizer=m(fixed_shape_resizer=m(height=200, width=300)),
        feature_extractor=m(type="ssd_mobilenet_v1"),
        anchor_generator=m(ssd_anchor_generator=m(aspect_ratios=[1.0, 2.0])),
        box_coder=m(faster_rcnn_box_coder={}),
        post_processing=m(score_converter=pc.Identifier("SOFTMAX"),
                          batch_non_max_suppression=m(score_threshold=0.4, max_total_detections=10)))))
    spec = pc.ssd_spec_data(config, "dict", labels=["a", "b"], name="d").model_spec()
    assert (spec.input.height, spec.input.width) == (200, 300)
    assert spec.ssd.anchors.aspect_ratios == (1.0, 2.0) and spec.ssd.anchors.num_layers == 6
    assert spec.ssd.score_activation == "softmax" and spec.ssd.box_coder_scales == (10.0, 10.0, 5.0, 5.0)
    assert (spec.nms.score_threshold, spec.nms.iou_threshold, spec.nms.max_detections) == (0.4, 0.6, 10)
    message = one_line_error(pc.ssd_spec_data, m(model=m(ssd=m(num_classes=2))), "dict")
    assert message == ("dict: model.ssd has no 'image_resizer' { ... }; supported: image_resizer "
                       "{ fixed_shape_resizer { height: H width: W } }")


def test_no_background_class_and_class_agnostic_nms_map_through():
    text = replace_once(TF1_MOBILENET_V2, "num_classes: 90", "num_classes: 90\n    add_background_class: false")
    text = replace_once(text, "max_total_detections: 100", "max_total_detections: 300 use_class_agnostic_nms: true")
    spec = pc.ssd_spec_data(pc.parse_text_proto(text, "x.config"), "x.config", name="x").model_spec()
    assert spec.ssd.background_class is False and len(spec.labels) == 90
    assert spec.nms.class_agnostic is True and spec.nms.max_detections == 300 and spec.nms.candidates == 1000
    assert any("add_background_class is false" in n for n in spec.notes)
