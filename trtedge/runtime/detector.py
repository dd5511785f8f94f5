"""``Detector``: BGR frames of any size in, :class:`Detections` out.

    det = trtedge.Detector("build/shapes_yolo/shapes_yolo_fp32.bin")
    for d in det(frame).to_json(): ...

Per call: each frame is resized or letterboxed (as the manifest says)
straight into the backend's reused input buffer; the backend runs; the
``host`` NMS form gets class-aware NMS here; boxes are mapped back to frame
pixels. The engine is checked against this machine (``trtedge check``)
before anything is loaded. The Detector reads only the engine, its engine
ONNX and its manifest — never spec files.
"""

import os
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..engines import manifest as mf
from ..errors import TrtedgeError
from . import compat
from .compat import IncompatibleEngine
from .backends import Backend, open_backend
from .detections import Detections
from .postprocess import detections_from_outputs, fit_into, to_frame


class Detector(object):
    """Run a trtedge engine on frames.

    ``engine``: the engine file (its manifest and engine ONNX beside it).
    ``backend``: ``auto`` (TensorRT when it can run here, else ONNX Runtime),
    ``trt`` or ``onnxrt``. ``conf``: score threshold (default: the built one).
    ``only``: label names to keep. ``rebuild``: rebuild from the manifest's
    recorded engine ONNX and options when the check fails. ``checked``: a
    :func:`compat.check_engine` result the caller already has.
    """

    def __init__(self, engine: str, backend: str = "auto", conf: Optional[float] = None,
                 only: Optional[Sequence[str]] = None, trust_plugins: bool = False, cuda: str = "cuda-python",
                 cuda_graph: bool = False, rebuild: bool = False,
                 say: Optional[Callable[[str], None]] = None,
                 checked: Optional[compat.CheckResult] = None) -> None:
        self.engine_path = engine
        say = say or (lambda m: None)
        result = checked if checked is not None else compat.check_engine(engine, trust_plugins=trust_plugins)
        if result.status == compat.INCOMPATIBLE and rebuild:
            say("Engine check failed ({}); rebuilding: {}".format(result.reason, result.rebuild))
            self._rebuild(engine)
            result = compat.check_engine(engine, trust_plugins=trust_plugins)
        compat.ensure_usable(engine, result, backend)
        self.check = result
        self.manifest = mf.read(mf.manifest_path(engine))
        m = self.manifest
        if m.get("family") == "none" or not m.get("nms"):
            raise TrtedgeError("{} is a plain model (family 'none') with its own outputs, not detections; "
                               "detect needs a detector engine (use bench or check for this one)".format(engine))
        if result.status != compat.COMPATIBLE and backend == "auto":
            say("Engine check: {}".format(result.reason))
        self._verify_onnx()
        self.labels = list(m["labels"])
        self.form = m["nms"]["form"]
        self.nms = m["nms"]
        self.conf = conf
        self.keep = None  # type: Optional[np.ndarray]
        if only:
            unknown = [o for o in only if o not in self.labels]
            if unknown:
                raise TrtedgeError("--only '{}' is not a label of this engine; its labels: {}".format(
                    unknown[0], ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")))
            self.keep = np.array([self.labels.index(o) for o in only], np.int32)
        inp = m["input"]
        self.height, self.width = int(inp["height"]), int(inp["width"])
        self.resize, self.pad_value = inp.get("resize", "letterbox"), int(inp.get("pad_value", 114))
        self.swap_rb = inp.get("channels", "bgr") == "rgb"
        self.input_name = inp["name"]
        self.max_batch = int((m.get("build_options") or {}).get("max_batch", 1)) or 1
        self.backend = open_backend(engine, m, backend, cuda=cuda, cuda_graph=cuda_graph,
                                    say=say)  # type: Backend

    def backend_is_dynamic(self) -> bool:
        return not isinstance(self.manifest["input"]["shape"][0], int)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _verify_onnx(self) -> None:
        rec = self.manifest.get("onnx") or {}
        path = os.path.join(os.path.dirname(os.path.abspath(self.engine_path)), rec.get("file", ""))
        if os.path.isfile(path) and rec.get("sha256") and mf.sha256_file(path) != rec["sha256"]:
            raise IncompatibleEngine("engine ONNX {} does not match its manifest (sha256): corrupt or "
                                     "replaced".format(path), hint="rebuild with trtedge build --force")

    def _rebuild(self, engine: str) -> None:
        from ..engines.pipeline import build

        data = mf.read(mf.manifest_path(engine))
        opts = data.get("build_options") or {}
        target = compat.rebuild_target(engine, data)
        if not target:
            raise IncompatibleEngine("cannot rebuild {}: neither its engine ONNX nor its source is here".format(engine))
        build(target, out=os.path.dirname(os.path.abspath(engine)), precision=data.get("precision", "fp32"),
              min_batch=opts.get("min_batch"), opt_batch=opts.get("opt_batch"), max_batch=opts.get("max_batch"),
              engine_ext=os.path.splitext(engine)[1].lstrip(".") or "bin", force=True)

    def __call__(self, frame: np.ndarray) -> Detections:
        return self.detect([frame])[0]

    def detect(self, frames: Sequence[np.ndarray]) -> List[Detections]:
        """Detections for each frame (BGR uint8, any size), batched up to the engine's max batch."""
        out = []  # type: List[Detections]
        for start in range(0, len(frames), self.max_batch):
            out.extend(self.collect(self.submit(frames[start:start + self.max_batch])))
        return out

    def submit(self, frames: Sequence[np.ndarray]) -> Any:
        """Fit up to ``max_batch`` frames into the input and start the engine.

        Returns a ticket for :meth:`collect`. With the TensorRT backend the
        engine runs while the caller reads and submits the next frames (two
        buffer slots), which is how ``trtedge detect`` overlaps frames.
        """
        n = len(frames)
        if not 1 <= n <= self.max_batch:
            raise TrtedgeError("submit takes 1 to {} frames, not {}".format(self.max_batch, n))
        batch = n if self.backend_is_dynamic() else self.max_batch
        buf = self.backend.input_buffer(self.input_name, batch)
        fits = []
        for k, frame in enumerate(frames):
            if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
                    and frame.dtype == np.uint8):
                raise TrtedgeError("frames must be BGR uint8 arrays of shape (height, width, 3); got {} {}".format(
                    getattr(frame, "dtype", type(frame).__name__), getattr(frame, "shape", "")))
            fits.append(fit_into(frame[..., ::-1] if self.swap_rb else frame, buf[k], self.resize, self.pad_value))
        return fits, self.backend.submit({self.input_name: buf})

    def collect(self, ticket: Any) -> List[Detections]:
        """Wait for a :meth:`submit`; one :class:`Detections` per frame."""
        fits, handle = ticket
        outputs = self.backend.collect(handle)
        result = []
        for k, fit in enumerate(fits):
            boxes, scores, classes = detections_from_outputs(outputs, self.form, k, self.nms, self.conf)
            if self.keep is not None:
                sel = np.isin(classes, self.keep)
                boxes, scores, classes = boxes[sel], scores[sel], classes[sel]
            result.append(Detections(to_frame(boxes, fit), scores.astype(np.float32), classes.astype(np.int32),
                                     tuple(self.labels[c] if 0 <= c < len(self.labels) else str(c)
                                           for c in classes)))
        return result

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

