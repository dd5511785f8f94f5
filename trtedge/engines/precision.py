"""Reduced precision on the ONNX side (the strongly typed road).

Where the installed TensorRT has no FP16 builder flag (TensorRT 11, TensorRT
for RTX, or any strongly typed build), precision comes from the ONNX types:
:func:`to_fp16` converts the model body to FP16 and keeps trtedge's own
preprocessing, decode and NMS (every node named ``trtedge/...``) and the I/O
in FP32, so the engine's contract is unchanged.
"""

from typing import Any

from ..errors import BuildError
from .graph import PREFIX

PRECISIONS = ("fp32", "fp16")


def to_fp16(model: Any) -> Any:
    """FP16 body, FP32 I/O and FP32 trtedge nodes; returns a new model."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    used = set()
    for i, node in enumerate(model.graph.node):  # unnamed nodes give clashing cast names
        if not node.name or node.name in used:
            node.name = "node_{}_{}".format(node.op_type, i)
        used.add(node.name)
    keep = [n.name for n in model.graph.node if n.name.startswith(PREFIX + "/")]
    try:
        out = float16.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=keep, disable_shape_infer=False)
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
