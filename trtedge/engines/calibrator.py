"""INT8 in TensorRT's builder (both roads), and the weak-typed road's entropy calibrator.

:func:`configure` is what :mod:`.tensorrt_build` calls for ``--precision int8``:

* ``qdq`` road: the engine ONNX already carries Q/DQ nodes. A module with
  strong typing (TensorRT >= 10, 11, TensorRT for RTX) builds it as it is;
  TensorRT 8.5/8.6 (weak typing only) needs ``BuilderFlag.INT8`` to honour
  explicit quantisation.
* ``calibrator`` road (TensorRT 8.5-10, weakly typed): ``BuilderFlag.INT8``,
  ``IBuilderConfig.int8_calibrator`` = an :class:`IInt8EntropyCalibrator2`
  subclass (:func:`make_calibrator`), a calibration profile for inputs with a
  dynamic batch (its OPT shape is what calibration runs at), and the layers
  the accuracy gate kept in float pinned to FP32 (``ILayer.precision``,
  ``set_output_type`` and ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``).

The calibrator uploads batches of fitted frames (uint8 NHWC, what the engine
input sees) through trtedge's CUDA layer (:mod:`trtedge.runtime.cuda`) and
keeps TensorRT's calibration cache in a file beside the engine whose first
line holds the engine ONNX's sha256: a rebuild of the same engine ONNX reads
it back and TensorRT skips calibration (no frames needed: a Jetson can
rebuild from the engine ONNX and the cache alone); another engine ONNX
recalibrates and replaces it.

Written against TensorRT 10's Python API (the same in 8.5/8.6; the calibrator
API is deprecated from 10.1 on, superseded by Q/DQ). It cannot run without
full TensorRT and a GPU, so it is type-checked against ``tensorrt-stubs`` and
tested through a seam (a fake TensorRT module and a host-memory CUDA layer).
"""

import hashlib
import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from trtedge.errors import BuildError
from trtedge.utils.files import write_atomic

if TYPE_CHECKING:  # annotations only: full TensorRT 10 signatures from tensorrt-stubs
    import numpy
    import tensorrt as trt

    from trtedge.runtime.cuda import CudaApi, DeviceBuffer

LOG = logging.getLogger("trtedge")

#: the first line of a cache file: this tag, a space, the engine ONNX's sha256
CACHE_TAG = b"trtedge-int8-calibration"
#: frames per calibration batch for inputs with a dynamic batch (at most the build's max batch)
CALIBRATION_BATCH = 8


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CalibrationCache(object):
    """TensorRT's calibration cache in ``path``, valid only for the engine ONNX whose sha256 is ``key``."""

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key

    def _header(self) -> bytes:
        return CACHE_TAG + b" " + self.key.encode("ascii") + b"\n"

    def read(self) -> Optional[bytes]:
        """The cache bytes for this key, or None (missing, another engine ONNX's, or unreadable)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        header = self._header()
        if not data.startswith(header) or len(data) == len(header):
            return None
        return data[len(header):]

    def write(self, cache: bytes) -> None:
        write_atomic(self.path, self._header() + bytes(cache))

    def valid(self) -> bool:
        return self.read() is not None


BatchSource = Callable[[], Iterable["numpy.ndarray"]]


def make_calibrator(mod: ModuleType, batches: BatchSource, batch_size: int, cache: CalibrationCache,
                    api: Any, input_name: str = "images") -> Any:
    """An ``IInt8EntropyCalibrator2`` of ``mod`` feeding ``batches()`` (uint8 arrays ``[batch_size, H, W, 3]``)
    through ``api`` (a :class:`~trtedge.runtime.cuda.CudaApi`).

    ``batches`` is only called when TensorRT asks for data, i.e. when the cache is not valid.
    Errors inside a callback are stored (``calibrator.error``) and end the calibration instead of crossing
    into TensorRT; the builder then fails and :func:`configure`'s caller reports the stored error."""
    base = mod.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.cache = cache
            self.batch_size = int(batch_size)
            self.input_name = input_name
            self.device = None  # type: Optional[DeviceBuffer]
            self.iterator = None  # type: Optional[Iterator[numpy.ndarray]]
            self.batches_given = 0
            self.cache_read = False
            self.cache_written = False
            self.error = None  # type: Optional[str]

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                if self.error is not None:
                    return None
                if self.iterator is None:
                    self.iterator = iter(batches())
                batch = next(self.iterator, None)
                if batch is None:
                    self.free()
                    return None
                if tuple(batch.shape[:1]) != (self.batch_size,) or str(batch.dtype) != "uint8":
                    raise BuildError("calibration batch of {} {} where TensorRT expects {} uint8 frames".format(
                        batch.dtype, list(batch.shape), self.batch_size))
                device = self.device
                if device is None or device.nbytes < batch.nbytes:
                    if device is not None:
                        device.free()
                    device = self.device = api.malloc(int(batch.nbytes))
                assert device is not None
                api.memcpy_htod_async(device, batch)
                api.synchronize()
                self.batches_given += 1
                return [int(device) for _ in names]
            except Exception as exc:  # never let an exception cross into TensorRT
                self.error = " ".join(str(exc).split())[:240] or type(exc).__name__
                LOG.error("trtedge: INT8 calibration stopped: %s", self.error)
                self.free()
                return None

        def read_calibration_cache(self) -> Optional[bytes]:
            try:
                data = self.cache.read()
            except Exception:
                data = None
            self.cache_read = data is not None
            return data

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                self.cache.write(bytes(memoryview(cache)))
                self.cache_written = True
            except Exception as exc:
                LOG.warning("trtedge: could not write the calibration cache %s: %s", self.cache.path, exc)

        def free(self) -> None:
            if self.device is not None:
                self.device.free()
                self.device = None

    return EntropyCalibrator()


# --------------------------------------------------------------------------- builder configuration


def wants_strong_typing(caps: Any, plan: Any) -> bool:
    """The Q/DQ road builds strongly typed where the module can (TensorRT >= 10): INT8 from the ONNX types."""
    return plan is not None and plan.road == "qdq" and bool(caps.strongly_typed_flag or caps.strongly_typed_only)


def _matches(layer_name: str, nodes: Sequence[str]) -> Optional[str]:
    """The ONNX node a TensorRT layer comes from: the parser names layers after their node (``node``,
    ``node_1``, ...)."""
    for node in nodes:
        if layer_name == node or layer_name.startswith(node + "_"):
            return node
    return None


def keep_in_float(mod: ModuleType, network: "trt.INetworkDefinition", config: "trt.IBuilderConfig",
                  nodes: Sequence[str]) -> List[str]:
    """Pin the layers of ``nodes`` (engine ONNX node names) to FP32; returns the nodes found."""
    if not nodes:
        return []
    found = []  # type: List[str]
    float_types = (mod.float32, mod.float16)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = _matches(str(layer.name), nodes)
        if node is None:
            continue
        outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in float_types]
        if not outputs:
            continue  # shape and index layers have no precision to keep
        layer.precision = mod.float32
        for j in outputs:
            layer.set_output_type(j, mod.float32)
        if node not in found:
            found.append(node)
    flags = mod.BuilderFlag.__members__
    flag = "OBEY_PRECISION_CONSTRAINTS" if "OBEY_PRECISION_CONSTRAINTS" in flags else "STRICT_TYPES"
    config.set_flag(getattr(mod.BuilderFlag, flag))
    missing = [n for n in nodes if n not in found]
    if missing:
        LOG.warning("trtedge: %d layer(s) to keep in float are not in the TensorRT network: %s", len(missing),
                    ", ".join(missing[:5]))
    return found


def _calibration_shape(network: "trt.INetworkDefinition", max_batch: int) -> Tuple[str, Tuple[int, ...], bool]:
    """(input name, calibration shape, whether the batch is dynamic) of the network's image input."""
    if network.num_inputs != 1:
        raise BuildError("INT8 calibration feeds one image input; this network has {}".format(network.num_inputs))
    tensor = network.get_input(0)
    shape = tensor.shape
    dims = tuple(int(shape[j]) for j in range(len(shape)))
    if len(dims) != 4 or dims[3] != 3 or any(d < 0 for d in dims[1:]):
        raise BuildError("INT8 calibration needs the uint8 [B, H, W, 3] image input of a trtedge engine, not {} "
                         "{}".format(tensor.name, list(dims)))
    dynamic = dims[0] < 0
    batch = max(1, min(CALIBRATION_BATCH, max_batch)) if dynamic else dims[0]
    return str(tensor.name), (batch,) + dims[1:], dynamic


def configure(mod: ModuleType, caps: Any, builder: "trt.Builder", network: "trt.INetworkDefinition",
              config: "trt.IBuilderConfig", plan: Any, onnx_path: str, strongly: bool, max_batch: int,
              api: Optional["CudaApi"] = None) -> Tuple[str, Any]:
    """Set up INT8 for one build; returns (the manifest's precision road, an object to keep alive until the
    build is done: the calibrator, or None)."""
    if plan is None:
        raise BuildError("--precision int8 reached the TensorRT build without its calibration plan")
    if plan.road == "qdq":
        if not strongly:
            if not caps.int8_flag:
                raise BuildError("{} {} has neither strong typing nor an INT8 builder flag".format(
                    caps.module, caps.version))
            config.set_flag(mod.BuilderFlag.INT8)  # 8.5/8.6: explicit quantisation needs the flag
        return "onnx_types", None
    if strongly or not caps.int8_flag:
        raise BuildError("{} {} cannot calibrate INT8 (strongly typed network)".format(caps.module, caps.version),
                         hint="use --int8-road qdq")
    name, shape, dynamic = _calibration_shape(network, max_batch)
    cache = CalibrationCache(plan.cache_path, file_sha256(onnx_path))
    if not cache.valid() and not plan.calib:
        raise BuildError("INT8 calibration needs frames: no --calib was given and {} holds no cache for this engine "
                         "ONNX".format(plan.cache_path), hint="pass --calib SRC (images, a video or a .npy batch)")
    if api is None and not cache.valid():
        from trtedge.runtime.cuda import get_cuda

        api = get_cuda("cuda-python")
    config.set_flag(mod.BuilderFlag.INT8)
    if dynamic:
        profile = builder.create_optimization_profile()
        dims = mod.Dims(list(shape))
        profile.set_shape(name, dims, dims, dims)
        if hasattr(config, "set_calibration_profile") and not config.set_calibration_profile(profile):
            raise BuildError("TensorRT refused the calibration profile {} for '{}'".format(list(shape), name))

    def frames() -> Iterable["numpy.ndarray"]:
        from .calibration import batches

        return batches(plan.frames().calib, shape[0])

    calibrator = make_calibrator(mod, frames, shape[0], cache, api if api is not None else _NoCuda(),
                                 input_name=name)
    config.int8_calibrator = calibrator
    keep_in_float(mod, network, config, tuple(plan.float_layers))
    return "builder_flag", calibrator


class _NoCuda(object):
    """Stands in for the CUDA layer when a valid cache means TensorRT never asks for a batch."""

    def malloc(self, nbytes: int) -> Any:
        raise BuildError("INT8 calibration needs CUDA, which this build did not open")

    def memcpy_htod_async(self, dst: Any, src: Any) -> None:
        raise BuildError("INT8 calibration needs CUDA, which this build did not open")

    def synchronize(self) -> None:
        pass
