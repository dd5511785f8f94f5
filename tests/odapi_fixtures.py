"""Make TF Object Detection API SSDs with the model zoo's exact structure.

Run as a script, one model per process (TF1 graph mode and TF2 eager mode
cannot share one)::

    python tests/odapi_fixtures.py KIND OUT_DIR

    KIND           model (300x300, 90 COCO classes)   OUT_DIR gets
    tf1            SSD MobileNet v2, TF1 slim           frozen_inference_graph.pb + pipeline.config (+ the rest)
    tf1_v1         SSD MobileNet v1, TF1 slim           the same
    tf1_lite       SSDLite MobileNet v2, TF1 slim       the same
    tf1_inception  SSD Inception v2, TF1 slim           the same
    tf2            SSD MobileNet v2, TF2 Keras          saved_model/ + pipeline.config (+ checkpoint/)

Each is built by the OD API's own ``model_builder`` from a pipeline config
below (:data:`MODELS`) and exported by its own exporters (TF1:
``exporter.export_inference_graph`` with ``input_type='image_tensor'``; TF2:
``exporter_lib_v2.export_inference_graph``), which is how the zoo's tarballs
were made; so the graphs have the zoo's node names, preprocessor loops and
postprocessors, at the zoo's depth_multiplier 1.0. The three TF1 models
other than tf1 are those of trtedge's other built-in TF1 specs
(ssd_mobilenet_v1_coco, ssdlite_mobilenet_v2_coco, ssd_inception_v2_coco),
with the model fields of the published sample configs of those names:
SSDLite has depthwise-separable convolutions in the extra feature layers and
in its 3x3 box and class heads (``use_depthwise``), Inception v2 3x3 heads
without batch norm and ``override_base_feature_extractor_hyperparams``.
Exporting takes about 20-35 s for each TF1 model (40 s for Inception v2) and
55 s for TF2 on two cores.

The weights are random (seeded) but scaled like a trained model's. With the API's own
initialiser (truncated normal, stddev 0.03) the activations die out layer by
layer and every score is exactly 0.5, which would make any comparison of
detections a coin toss. So the conv kernels get a variance-keeping (He)
initialisation (times a ``gain`` of 1.3 for MobileNet v1 and Inception v2,
see :func:`_random_weights`), batch norms are identities, and each layer's box and class
head is scaled, measured on :func:`calibration_image`, to box encodings of
std ``BOX_STD`` and logits of std ``LOGIT_STD`` around ``CLASS_BIAS``: the
top-100 scores then spread over about 0.65-0.95 with clear gaps on every
model and photo the tests use, and boxes move and stretch visibly off their
anchors. The head scaled is each layer's last box and class conv (SSDLite's
1x1 after its depthwise one); the script fails if any is not matched.

The pipeline configs are written here in the syntax of the published sample
configs (``samples/configs/*.config``), with the fields that decide the
graph. Each export writes its ``pipeline.config`` beside the graph, as the
zoo tarballs have it.

The OD API install (see requirements-odapi.txt) lacks a few modules it
imports but these exports never use: ``tensorflow_io`` and, in graph mode,
the TF1 ``tensorflow.contrib`` modules. Empty stand-ins are put into
``sys.modules`` before the API is imported; they change nothing in the graphs.
Graph mode also needs two aliases for a newer stack: ``np.int`` (NumPy 2
removed it; slim's mobilenet_v3 table uses it at import) and
``tf_keras.legacy_tf_layers`` (tf-keras 2.21 keeps it under ``tf_keras.src``).

On success the script prints one JSON line with what it made and how long
it took.
"""

import importlib.abc
import importlib.machinery
import json
import os
import re
import shutil
import sys
import time
import types

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the OD API's Keras models are tf-keras (Keras 2) models
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIZE = 300
NUM_CLASSES = 90
SEED = 0
#: spread of the class logits and box encodings the random heads are scaled to
#: (on :func:`calibration_image`; see the module docstring)
LOGIT_STD = 1.5
BOX_STD = 1.0
#: the class predictors' bias: the top-100 scores then lie around 0.7-0.95, not all near 1
CLASS_BIAS = -4.0

# --------------------------------------------------------------------------- pipeline configs

_COMMON_SSD = """
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
    similarity_calculator {
      iou_similarity {
      }
    }
    anchor_generator {
      ssd_anchor_generator {
        num_layers: 6
        min_scale: 0.2
        max_scale: 0.95
        aspect_ratios: 1.0
        aspect_ratios: 2.0
        aspect_ratios: 0.5
        aspect_ratios: 3.0
        aspect_ratios: 0.3333%(anchor_extra)s
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
        kernel_size: %(kernel)d%(predictor_depthwise)s
        box_code_size: 4
        apply_sigmoid_to_scores: false
        conv_hyperparams {
          activation: RELU_6,
          regularizer {
            l2_regularizer {
              weight: 0.00004
            }
          }
          initializer {
            truncated_normal_initializer {
              stddev: 0.03
              mean: 0.0
            }
          }%(predictor_batch_norm)s
        }
      }
    }
    feature_extractor {
      type: '%(extractor)s'
      min_depth: 16
      depth_multiplier: %(depth)s%(extractor_depthwise)s
      conv_hyperparams {
        activation: RELU_6,
        regularizer {
          l2_regularizer {
            weight: 0.00004
          }
        }
        initializer {
          truncated_normal_initializer {
            stddev: 0.03
            mean: 0.0
          }
        }%(extractor_batch_norm)s
      }%(override)s
    }
    loss {
      classification_loss {
        weighted_sigmoid {
        }
      }
      localization_loss {
        weighted_smooth_l1 {
        }
      }
      hard_example_miner {
        num_hard_examples: 3000
        iou_threshold: 0.99
        loss_type: CLASSIFICATION
        max_negatives_per_positive: 3
        min_negatives_per_image: %(min_negatives)d
      }
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
"""

_TAIL = """
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
  num_steps: 200000
  data_augmentation_options {
    random_horizontal_flip {
    }
  }
  data_augmentation_options {
    ssd_random_crop {
    }
  }
}

train_input_reader: {
  tf_record_input_reader {
    input_path: "PATH_TO_BE_CONFIGURED/mscoco_train.record-?????-of-00100"
  }
  label_map_path: "PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt"
}

eval_config: {
  num_examples: 8000
  max_evals: 10
  use_moving_averages: false
}

eval_input_reader: {
  tf_record_input_reader {
    input_path: "PATH_TO_BE_CONFIGURED/mscoco_val.record-?????-of-00010"
  }
  label_map_path: "PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt"
  shuffle: false
  num_readers: 1
}
"""


_BATCH_NORM = """
batch_norm {
  train: true,
  scale: true,
  center: true,
  decay: 0.9997,
  epsilon: 0.001,
}"""

#: kind -> the model it makes: its title, the API it is built with (TF1 slim: a frozen
#: graph; TF2 Keras: a SavedModel), what its pipeline.config sets apart from
#: ``_COMMON_SSD`` and the ``gain`` of its random conv kernels (see :func:`_random_weights`).
#: tf1_v1, tf1_lite and tf1_inception have the model fields of the published
#: ``samples/configs/<sample>.config`` (trtedge's built-in spec of that model has that
#: name too); tf1 and tf2 keep kernel_size 1 and no use_depthwise, where today's
#: ssd_mobilenet_v2_coco.config has kernel_size 3 and use_depthwise in the extractor
MODELS = {
    "tf1": dict(title="SSD with Mobilenet v2", api="TF1 slim", extractor="ssd_mobilenet_v2"),
    "tf2": dict(title="SSD with Mobilenet v2", api="TF2 Keras", extractor="ssd_mobilenet_v2_keras",
                override=True),
    "tf1_v1": dict(title="SSD with Mobilenet v1", api="TF1 slim", sample="ssd_mobilenet_v1_coco",
                   extractor="ssd_mobilenet_v1", min_negatives=0, gain=1.3),
    # depthwise-separable convolutions in the extra feature layers and in the box predictor
    "tf1_lite": dict(title="SSDLite with Mobilenet v2", api="TF1 slim", sample="ssdlite_mobilenet_v2_coco",
                     extractor="ssd_mobilenet_v2", kernel=3, depthwise=True),
    # its extractor refuses to build without the override; its box predictor has no batch norm
    "tf1_inception": dict(title="SSD with Inception v2", api="TF1 slim", sample="ssd_inception_v2_coco",
                          extractor="ssd_inception_v2", kernel=3, override=True, predictor_batch_norm=False,
                          reduce_boxes=True, min_negatives=0, gain=1.3),
}
TF1_KINDS = tuple(k for k, m in MODELS.items() if m["api"] == "TF1 slim")


def _indent(text, spaces):
    return text.replace("\n", "\n" + " " * spaces)


def pipeline_text(kind, depth):
    """The pipeline.config text for ``kind`` (a key of :data:`MODELS`)."""
    m = MODELS[kind]
    fields = {
        "extractor": m["extractor"], "kernel": m.get("kernel", 1), "depth": depth,
        "anchor_extra": "\n        reduce_boxes_in_lowest_layer: true" if m.get("reduce_boxes") else "",
        "predictor_depthwise": "\n        use_depthwise: true" if m.get("depthwise") else "",
        "predictor_batch_norm": _indent(_BATCH_NORM, 10) if m.get("predictor_batch_norm", True) else "",
        "extractor_batch_norm": _indent(_BATCH_NORM, 8),
        "extractor_depthwise": "\n      use_depthwise: true" if m.get("depthwise") else "",
        "override": "\n      override_base_feature_extractor_hyperparams: true" if m.get("override") else "",
        "min_negatives": m.get("min_negatives", 3),
    }
    after = "; after samples/configs/{}.config".format(m["sample"]) if "sample" in m else ""
    head = "# {}, 300x300, 90 COCO classes ({}; trtedge test fixture, random weights{})\n".format(
        m["title"], m["api"], after)
    return head + "\nmodel {\n  ssd {" + _COMMON_SSD % fields + "  }\n}\n" + _TAIL


# --------------------------------------------------------------------------- stand-ins for modules the API imports


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


def _stub_tensorflow_io():
    # imported by object_detection.utils / dataset code paths at import time; never called here
    if "tensorflow_io" not in sys.modules:
        _stub("tensorflow_io")


class _EmptyModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of ``prefix`` and its submodules give empty packages
    (with the attributes in ``attrs[name]``, if any)."""

    def __init__(self, prefix, attrs):
        self.prefix = prefix
        self.attrs = attrs

    def find_spec(self, name, path=None, target=None):
        if name == self.prefix or name.startswith(self.prefix + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = []
        module.__dict__.update(self.attrs.get(module.__name__, {}))


def _stub_tf1_contrib():
    # TF1's tensorflow.contrib is gone from TF 2.x; the TF1 code paths of the
    # API import some of its modules at module level (tfprof, quantize, image).
    # The exporter calls tfprof only to print parameter and FLOP counts.
    analyzer = types.SimpleNamespace(TRAINABLE_VARS_PARAMS_STAT_OPTIONS={}, FLOAT_OPS_OPTIONS={},
                                     print_model_analysis=lambda *args, **kwargs: None)
    sys.meta_path.insert(0, _EmptyModules("tensorflow.contrib",
                                          {"tensorflow.contrib.tfprof": {"model_analyzer": analyzer}}))
    import numpy as np

    # slim's mobilenet_v3 (imported by the TF1 model builder, unused here)
    # computes a table with np.int at import time, an alias NumPy 2 removed
    if "int" not in np.__dict__:
        np.int = int
    # tf.compat.v1.layers (used by slim's batch_norm) loads
    # tf_keras.legacy_tf_layers.*, which tf-keras 2.21 keeps under tf_keras.src
    import tf_keras.src.legacy_tf_layers as legacy

    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
    for sub in ("base", "convolutional", "core", "normalization", "pooling"):
        sys.modules.setdefault("tf_keras.legacy_tf_layers." + sub,
                               importlib.import_module("tf_keras.src.legacy_tf_layers." + sub))


# --------------------------------------------------------------------------- weights


def _random_weights(values, names, rng, gain=1.0):
    """He-normal conv kernels (times ``gain``), identity batch norms, zero biases
    (numpy arrays, same order).

    The OD API's own initialiser (truncated normal, stddev 0.03) shrinks the
    activations layer by layer until the heads see zeros and every score is
    0.5; a variance-keeping initialiser gives feature maps that differ from
    place to place, as a trained model's do. In MobileNet v2's residual
    blocks the activations then grow until ReLU6 clips some of them, which
    keeps their spread about the same from photo to photo. A plain chain of
    convolutions with zero biases (MobileNet v1, Inception v2) stays linear
    instead: its outputs scale with the photo's contrast (a dull photo gave
    scores of 0.07-0.13 where the calibration image gave 0.8-0.97). ``gain`` 1.3
    lets the activations grow into ReLU6's clipping there as well.
    """
    out = []
    for v, n in zip(values, names):
        low = n.lower()
        if not hasattr(v, "ndim") or v.dtype.kind != "f":
            out.append(v)
        elif "moving_variance" in low or "gamma" in low:
            out.append(np.ones_like(v))
        elif "moving_mean" in low or "beta" in low or "bias" in low:
            out.append(np.zeros_like(v))
        elif v.ndim == 4:
            kh, kw, cin, _ = v.shape
            fan_in = kh * kw * (1 if "depthwise" in low else cin)
            out.append((rng.standard_normal(v.shape) * (gain * np.sqrt(2.0 / fan_in))).astype(v.dtype))
        else:
            out.append(v)
    return out


_HEAD = re.compile(r"_(\d+)/(BoxEncodingPredictor|ClassPredictor)/(kernel|weights)")


def _head_gains(box_encodings, class_logits, feature_maps, anchors_per_location):
    """Per layer, the factors that bring its box encodings to BOX_STD and its logits to LOGIT_STD."""
    box = np.asarray(box_encodings).reshape(-1, 4)
    cls = np.asarray(class_logits).reshape(box.shape[0], -1)
    gains, start = {}, 0
    for layer, ((h, w), k) in enumerate(zip(feature_maps, anchors_per_location)):
        rows = slice(start, start + h * w * k)
        start += h * w * k
        gains[(layer, "BoxEncodingPredictor")] = BOX_STD / max(float(box[rows].std()), 1e-6)
        gains[(layer, "ClassPredictor")] = LOGIT_STD / max(float(cls[rows].std()), 1e-6)
    if start != box.shape[0]:
        raise RuntimeError("feature maps give {} anchors, the heads {}".format(start, box.shape[0]))
    return gains


def _apply_gains(values, names, gains):
    """Scale the head kernels by ``gains``; class predictor biases become CLASS_BIAS.

    Each layer's box and class head must have exactly one kernel that ``_HEAD``
    matches: its last conv (the 1x1 after the depthwise one in SSDLite's heads,
    ``.../BoxEncodingPredictor_depthwise/depthwise_weights``, which keeps its He
    initialisation), whose output is the layer's encodings or logits.
    """
    out, scaled = [], []
    for v, n in zip(values, names):
        m = _HEAD.search(n)
        if m:
            scaled.append((int(m.group(1)), m.group(2)))
            v = v * np.float32(gains[scaled[-1]])
        elif re.search(r"ClassPredictor/bias", n):
            v = np.full_like(v, CLASS_BIAS)
        out.append(v)
    if sorted(scaled) != sorted(gains):
        raise RuntimeError("head kernels matched: {}, heads measured: {}".format(sorted(scaled), sorted(gains)))
    return out


def calibration_image():
    """A smooth, deterministic 300x300 RGB image (float 0..255) with some texture."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    img = np.stack([128 + 100 * np.sin(6 * x + 2 * y), 128 + 100 * np.cos(5 * y - 3 * x),
                    128 + 100 * np.sin(9 * x * y + 1)], -1)
    img += np.random.default_rng(SEED).normal(0, 12, img.shape)
    return np.clip(img, 0, 255)[None].astype(np.float32)


# --------------------------------------------------------------------------- TF2 SavedModel


def make_tf2(out_dir, depth):
    """Build with ``model_builder``, export with ``exporter_lib_v2`` (as exporter_main_v2.py does)."""
    _stub_tensorflow_io()
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection import exporter_lib_v2
    from object_detection.builders import model_builder
    from object_detection.protos import pipeline_pb2

    tf.keras.utils.set_random_seed(SEED)
    config = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Merge(pipeline_text("tf2", depth), config)
    model = model_builder.build(config.model, is_training=False)

    def forward():
        image, shapes = model.preprocess(tf.constant(calibration_image()))
        return model.predict(image, shapes)

    forward()  # creates the variables
    variables = model.variables
    names = [v.name for v in variables]
    values = _random_weights([v.numpy() for v in variables], names, np.random.default_rng(SEED))
    for var, val in zip(variables, values):
        var.assign(val)
    pred = forward()
    maps = [tuple(int(d) for d in f.shape[1:3]) for f in pred["feature_maps"]]
    gains = _head_gains(pred["box_encodings"].numpy(), pred["class_predictions_with_background"].numpy(), maps,
                        [3] + [6] * (len(maps) - 1))
    for var, val in zip(variables, _apply_gains(values, names, gains)):
        var.assign(val)
    ckpt_dir = os.path.join(out_dir, "train_ckpt")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), ckpt_dir, max_to_keep=1).save(checkpoint_number=0)
    exporter_lib_v2.export_inference_graph("image_tensor", config, ckpt_dir, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"saved_model": os.path.join(out_dir, "saved_model"),
            "pipeline_config": os.path.join(out_dir, "pipeline.config"), "feature_maps": maps}


# --------------------------------------------------------------------------- TF1 frozen graph


def make_tf1(out_dir, depth, kind="tf1"):
    """Build ``kind`` (one of :data:`TF1_KINDS`) in a TF1 graph, save a checkpoint, export with
    ``exporter.export_inference_graph`` (as export_inference_graph.py does, ``input_type=image_tensor``)."""
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()  # before the API is imported: it then registers the slim extractors
    _stub_tensorflow_io()
    _stub_tf1_contrib()
    from google.protobuf import text_format
    from object_detection import exporter
    from object_detection.builders import model_builder
    from object_detection.protos import pipeline_pb2

    tf1 = tf.compat.v1
    config = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Merge(pipeline_text(kind, depth), config)
    train_dir = os.path.join(out_dir, "train_ckpt")
    os.makedirs(train_dir, exist_ok=True)
    prefix = os.path.join(train_dir, "model.ckpt")
    with tf1.Graph().as_default():
        model = model_builder.build(config.model, is_training=False)
        images = tf1.placeholder(tf.float32, [1, SIZE, SIZE, 3])
        pre, shapes = model.preprocess(images)
        pred = model.predict(pre, shapes)
        tf1.train.get_or_create_global_step()
        variables = tf1.global_variables()
        names = [v.name for v in variables]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            values = _random_weights(sess.run(variables), names, np.random.default_rng(SEED),
                                     MODELS[kind].get("gain", 1.0))
            for var, val in zip(variables, values):
                var.load(val, sess)
            box, cls, maps = sess.run([pred["box_encodings"], pred["class_predictions_with_background"],
                                       pred["feature_maps"]], {images: calibration_image()})
            maps = [tuple(int(d) for d in f.shape[1:3]) for f in maps]
            gains = _head_gains(box, cls, maps, [3] + [6] * (len(maps) - 1))
            for var, val in zip(variables, _apply_gains(values, names, gains)):
                var.load(val, sess)
            tf1.train.Saver().save(sess, prefix)
    exporter.export_inference_graph("image_tensor", config, prefix, out_dir)
    shutil.rmtree(train_dir, ignore_errors=True)
    return {"frozen_graph": os.path.join(out_dir, "frozen_inference_graph.pb"),
            "pipeline_config": os.path.join(out_dir, "pipeline.config"), "feature_maps": maps}


def main(argv):
    if len(argv) not in (3, 4) or argv[1] not in MODELS:
        print("usage: odapi_fixtures.py {} OUT_DIR [DEPTH_MULTIPLIER]".format("|".join(MODELS)), file=sys.stderr)
        return 2
    kind, out_dir = argv[1], argv[2]
    depth = argv[3] if len(argv) == 4 else "1.0"
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    made = make_tf1(out_dir, depth, kind) if kind in TF1_KINDS else make_tf2(out_dir, depth)
    made["seconds"] = round(time.time() - start, 1)
    made["kind"] = kind
    print(json.dumps(made))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
