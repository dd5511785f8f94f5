"""Reduced precision on the ONNX side (the strongly typed road).

Where the installed TensorRT has no FP16 builder flag (TensorRT 11, TensorRT
for RTX, or any strongly typed build), precision comes from the ONNX types:
surgery calls :func:`to_fp16` on the model *body* — the graph between the cut
input and the head tensors, before trtedge adds anything — with its I/O kept
FP32. Preprocessing, decode and NMS are added afterwards in FP32, so the
engine's contract is unchanged and no mixed-type op appears at the seams.
(Converting the whole engine ONNX with a block list instead leaves FP16
tensors between FP32 islands, which strongly typed TensorRT refuses.)
"""

from typing import Any

from ..errors import BuildError

PRECISIONS = ("fp32", "fp16")


def to_fp16(model: Any) -> Any:
    """FP16 weights and activations, FP32 inputs and outputs; a new model."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    used = set()
    for i, node in enumerate(model.graph.node):  # unnamed nodes give clashing cast names
        if not node.name or node.name in used:
            node.name = "node_{}_{}".format(node.op_type, i)
        used.add(node.name)
    try:
        out = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise BuildError("FP16 conversion of the engine ONNX failed: {}".format(exc),
                         hint="build with --precision fp32")
    _cast_outputs_back(out)
    return out


def _cast_outputs_back(model: Any) -> None:
    """Graph outputs must keep their FP32/INT32 types (the converter may leave FP16)."""
    import onnx

    for vi in model.graph.output:
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            raise BuildError("FP16 conversion left output '{}' in FP16".format(vi.name),
                             hint="build with --precision fp32")
