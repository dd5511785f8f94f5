"""Small helpers over onnx-graphsurgeon for the surgery passes.

:class:`OpBuilder` appends nodes to a graph under one name prefix (so later
stages — FP16 conversion, the plugin swap — can tell trtedge's nodes from the
model's), and :func:`sanitize` is the fold/infer/cleanup loop every rewrite
ends with.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from ..utils.lazy import lazy_import

np = lazy_import("numpy")

OPSET = 17
#: name prefix of every node trtedge adds; the FP16 pass keeps these in FP32
PREFIX = "trtedge"

Tensor = Any  # gs.Variable | gs.Constant


class OpBuilder:
    """Append ops to a ``gs.Graph``; every node and tensor is named ``prefix/...``."""

    def __init__(self, graph: Any, prefix: str) -> None:
        self.graph = graph
        self.prefix = "{}/{}".format(PREFIX, prefix)
        self._count = 0  # type: int

    def _name(self, op: str) -> str:
        self._count += 1
        return "{}/{}_{}".format(self.prefix, op, self._count)

    def const(self, value: Any, dtype: Any = None, name: Optional[str] = None) -> Tensor:
        import onnx_graphsurgeon as gs

        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        return gs.Constant(name or self._name("const"), np.array(array, order="C"))

    def op(
        self,
        op: str,
        inputs: Sequence[Union[Tensor, "np.ndarray"]],
        attrs: Optional[Dict[str, Any]] = None,
        outputs: int = 1,
        dtype: Any = None,
        shape: Optional[Sequence[Any]] = None,
        out: Optional[List[Tensor]] = None,
        domain: Optional[str] = None,
    ) -> Any:
        """Add one node; returns its output (or the list when ``outputs > 1``)."""
        import onnx_graphsurgeon as gs

        name = self._name(op)
        ins = [self.const(i) if isinstance(i, np.ndarray) else i for i in inputs]
        if out is None:
            out = [gs.Variable("{}/out{}".format(name, k)) for k in range(outputs)]
            if dtype is not None:
                for v in out:
                    v.dtype = dtype
            if shape is not None and outputs == 1:
                out[0].shape = list(shape)
        node = gs.Node(op=op, name=name, attrs=dict(attrs or {}), inputs=ins, outputs=out)
        if domain is not None:
            node.domain = domain
        self.graph.nodes.append(node)
        return out[0] if len(out) == 1 else out

    # thin conveniences for the ops the passes use most
    def slice(self, x: Tensor, start: int, end: int, axis: int) -> Tensor:
        return self.op("Slice", [x, np.array([start], np.int64), np.array([end], np.int64),
                                 np.array([axis], np.int64)])

    def cast(self, x: Tensor, to: Any) -> Tensor:
        import onnx

        return self.op("Cast", [x], {"to": onnx.helper.np_dtype_to_tensor_dtype(np.dtype(to))})

    def unsqueeze(self, x: Tensor, axes: Sequence[int]) -> Tensor:
        return self.op("Unsqueeze", [x, np.array(list(axes), np.int64)])

    def squeeze(self, x: Tensor, axes: Sequence[int]) -> Tensor:
        return self.op("Squeeze", [x, np.array(list(axes), np.int64)])

    def cxcywh_to_xyxy(self, box: Tensor) -> Tensor:
        """[..., 4] cx, cy, w, h -> x1, y1, x2, y2 (last axis)."""
        centre = self.slice(box, 0, 2, -1)
        half = self.op("Mul", [self.slice(box, 2, 4, -1), np.array(0.5, np.float32)])
        return self.op("Concat", [self.op("Sub", [centre, half]), self.op("Add", [centre, half])],
                       {"axis": -1})

    def activation(self, x: Tensor, kind: str, axis: int = -1) -> Tensor:
        if kind == "sigmoid":
            return self.op("Sigmoid", [x])
        if kind == "softmax":
            return self.op("Softmax", [x], {"axis": axis})
        return x


def sanitize(graph: Any, max_rounds: int = 8) -> Any:
    """Fold constants, infer shapes and clean up until the node count is stable."""
    import onnx
    import onnx_graphsurgeon as gs

    count = -1
    for _ in range(max_rounds):
        graph.cleanup().toposort()
        try:
            graph.fold_constants(error_ok=True).cleanup()
        except Exception:  # folding is an optimisation; a model it cannot fold is still valid
            pass
        model = gs.export_onnx(graph)
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:
            pass
        graph = gs.import_onnx(model)
        if len(graph.nodes) == count:
            break
        count = len(graph.nodes)
    return graph.cleanup().toposort()


def tensor_shape(graph: Any, name: str) -> Optional[List[Any]]:
    """The (possibly partly symbolic) shape of a tensor, or None when unknown."""
    tensor = graph.tensors().get(name)
    if tensor is None or tensor.shape is None:
        return None
    return list(tensor.shape)


def static_dim(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and value >= 0 else None


#: the engine's uint8 NHWC image input (the contract's name)
INPUT_NAME = "images"


def nearby(name: str, tensors: Dict[str, Any]) -> str:
    """"; did you mean X?" for a tensor name that is close to one of ``tensors``."""
    import difflib

    close = difflib.get_close_matches(name, list(tensors), n=3, cutoff=0.5)
    return "; did you mean {}?".format(" or ".join(close)) if close else ""


def model_input(graph: Any, spec: Any) -> Any:
    """The tensor preprocessing will feed: ``cut.input``, ``source.input`` or the model's only input."""
    from ..errors import ModelError

    tensors = graph.tensors()
    if spec.cut.input:
        if spec.cut.input not in tensors:
            raise ModelError(
                "cut.input '{}' is not a tensor of the model{}".format(
                    spec.cut.input, nearby(spec.cut.input, tensors))
            )
        return tensors[spec.cut.input]
    if spec.source.input:
        named = [t for t in graph.inputs if t.name == spec.source.input]
        if not named:
            raise ModelError("source.input '{}' is not an input of the model; its inputs: {}".format(
                spec.source.input, ", ".join(t.name for t in graph.inputs)))
        return named[0]
    if len(graph.inputs) != 1:
        raise ModelError(
            "the model has {} inputs ({}); name the image input in the spec's source.input".format(
                len(graph.inputs), ", ".join(t.name for t in graph.inputs))
        )
    return graph.inputs[0]
