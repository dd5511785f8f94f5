"""``Detector``: BGR frames of any size in, :class:`Detections` out.

    det = trtedge.Detector("build/shapes_yolo/shapes_yolo_fp32.bin")
    for d in det(frame).to_json(): ...

Per call: each frame is resized or letterboxed (as the manifest says)
straight into the backend's reused input buffer (an engine built with
``--frame-size`` takes frames of that size as they are and letterboxes them
itself: the frame is the input); the backend runs; the
``host`` NMS form gets class-aware NMS here; boxes are mapped back to frame
pixels. The engine is checked against this machine (``trtedge check``)
before anything is loaded. The Detector reads only the engine, its engine
ONNX and its typed :class:`~trtedge.manifest.Manifest` — never spec files,
and nothing from ``trtedge.engines`` (rebuilding a foreign engine is the
caller's choice: ``trtedge.rebuild`` or ``detect --rebuild``).
"""

import logging
import os
from typing import Any, Callable, List, NamedTuple, Optional, Sequence

import numpy as np

from .. import manifest as mf
from ..errors import TrtedgeError
from . import compat
from .backend import Backend
from .backends import open_backend
from .detections import Detections
from .postprocess import Fit, detections_from_outputs, fit_into, forget_pad, placement, to_frame


log = logging.getLogger("trtedge")


class Prepared(NamedTuple):
    """A frame fitted to the engine's input (:meth:`Detector.prepare`), ready for
    :meth:`Detector.submit_prepared`."""

    input: np.ndarray  # uint8 [h, w, 3], the engine's input size (an engine built with a frame size: the frame)
    fit: Fit


def _check_frame(frame: Any) -> None:
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
            and frame.dtype == np.uint8 and frame.shape[0] > 0 and frame.shape[1] > 0):
        raise TrtedgeError("frames must be non-empty BGR uint8 arrays of shape (height, width, 3); got "
                           "{} {}".format(getattr(frame, "dtype", type(frame).__name__), getattr(frame, "shape", "")))


class Detector(object):
    """Run a trtedge engine on frames.

    ``engine``: the engine file (its manifest and engine ONNX beside it).
    ``backend``: ``auto`` (TensorRT when it can run here, else ONNX Runtime),
    ``trt`` or ``onnxrt``. ``conf``: score threshold (default: the built one).
    ``only``: label names to keep. ``trust_plugins``: accept engines that run
    code they carry (plugin libraries, version-compatible engines).
    ``checked``: a :func:`compat.check_engine` result the caller already has.
    ``threads``: ONNX Runtime's intra-op threads (default: its own choice,
    every core; leave one free when another thread decodes frames).
    What it chose (backend, NMS form) is logged on the ``trtedge`` logger.
    """

    def __init__(self, engine: str, backend: str = "auto", conf: Optional[float] = None,
                 only: Optional[Sequence[str]] = None, trust_plugins: bool = False, cuda: str = "cuda-python",
                 cuda_graph: bool = False, say: Optional[Callable[[str], None]] = None,
                 checked: Optional[compat.CheckResult] = None, threads: Optional[int] = None) -> None:
        self.backend = None  # type: Optional[Backend]
        if not isinstance(engine, (str, os.PathLike)):
            raise TrtedgeError("Detector: engine must be a path to an engine file, not {}".format(
                type(engine).__name__))
        engine = os.fspath(engine)
        if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float))
                                 or not 0.0 <= conf <= 1.0):
            raise TrtedgeError("Detector: conf must be a number between 0 and 1, not {!r}".format(conf))
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise TrtedgeError("Detector: threads must be a whole number >= 1, not {!r}".format(threads))
        if only is not None and (isinstance(only, str) or not all(isinstance(o, str) for o in only)):
            raise TrtedgeError("Detector: only must be a list of label names, not {!r}".format(only))
        self.engine_path = engine
        tell = say or (lambda m: log.info("%s", m))
        result = checked if checked is not None else compat.check_engine(engine, trust_plugins=trust_plugins)
        compat.ensure_usable(engine, result, backend)
        self.check = result
        self.manifest = m = mf.read(mf.manifest_path(engine))  # type: mf.Manifest
        if m.nms is None:
            raise TrtedgeError("{} is a plain model (family '{}') with its own outputs, not detections; "
                               "detect needs a detector engine (use bench or check for this one)".format(
                                   engine, m.family))
        if result.status != compat.COMPATIBLE and backend == "auto":
            tell("Engine check: {}".format(result.reason))
        directory = os.path.dirname(os.path.abspath(engine))
        mf.verify_file(directory, m.onnx, "engine ONNX")
        self.labels = list(m.labels)
        self.form = m.nms.form
        self.nms = mf.asdict(m.nms)
        self.conf = conf
        self.keep = None  # type: Optional[np.ndarray]
        if only:
            unknown = [o for o in only if o not in self.labels]
            if unknown:
                raise TrtedgeError("--only '{}' is not a label of this engine; its labels: {}".format(
                    unknown[0], ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")))
            self.keep = np.array([self.labels.index(o) for o in only], np.int32)
        inp = m.input
        self.height, self.width = inp.height, inp.width
        self.resize, self.pad_value, self.align = inp.resize, inp.pad_value, inp.letterbox_align
        self.frame_size = inp.frame_size  # (h, w): frames the engine takes as they are, else None
        # the frame itself is such an engine's input: there is no array of the Detector's to refill
        self.recycles_inputs = self.frame_size is None
        self.swap_rb = inp.channels == "rgb"
        self.input_name = inp.name
        self.max_batch = m.max_batch
        self.backend = open_backend(engine, m, backend, cuda=cuda, cuda_graph=cuda_graph, say=tell,
                                    trust_plugins=trust_plugins, threads=threads)
        self._backend_name = self.backend.name
        log.info("Detector: %s on %s, NMS form '%s', input %dx%d (%s), max batch %d", engine, self.backend.name,
                 self.form, self.width, self.height, self.resize, self.max_batch)

    @property
    def asynchronous(self) -> bool:
        """Does the backend return from ``submit`` before the engine is done (TensorRT)?
        A synchronous one (ONNX Runtime) has already run; :meth:`collect` is then
        host work only, safe in another thread."""
        backend = self._backend()
        return bool(getattr(backend, "asynchronous", type(backend).submit is not Backend.submit))

    @property
    def host_threads(self) -> int:
        """CPU cores the engine itself keeps busy (ONNX Runtime on the CPU; 0 for TensorRT)."""
        return self._backend().host_threads

    def backend_is_dynamic(self) -> bool:
        return not isinstance(self.manifest.input.shape[0], int) if self.manifest.input.shape else True

    @property
    def backend_name(self) -> str:
        """The backend's name (still known after :meth:`close`)."""
        return self._backend_name

    def _backend(self) -> Backend:
        if self.backend is None:
            raise TrtedgeError("this Detector is closed; make a new one")
        return self.backend

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
        backend = self._backend()
        batch = n if self.backend_is_dynamic() else self.max_batch
        buf = backend.input_buffer(self.input_name, batch)
        fits = []
        for k, frame in enumerate(frames):
            _check_frame(frame)
            if self.frame_size is not None:  # never letterboxed here: no padding to keep or forget
                fits.append(self._frame_fit(frame))
                buf[k] = frame
                continue
            # the backend's input buffers are written only here: their padding is kept between frames
            fits.append(fit_into(frame[..., ::-1] if self.swap_rb else frame, buf[k], self.resize, self.pad_value,
                                 self.align, keep_pad=True))
        return fits, backend.submit({self.input_name: buf})

    def prepare(self, frame: np.ndarray, out: Optional[np.ndarray] = None) -> Prepared:
        """Fit one frame into a new array of the engine's input size, touching no state
        of the Detector: safe in another thread while the engine runs (this is
        what ``trtedge detect``'s reader thread does).

        ``out``: an input array an earlier ``prepare`` made, whose
        :class:`Prepared` was submitted (the backend is done with it when
        ``submit_prepared`` returns), to fit into instead of a new one; its
        padding is then written only when the placement changes. The detect
        loop recycles its readers' arrays this way: a new 416x416 array and
        its padding per frame cost 0.2 ms of host work per 1280x720 frame.
        """
        _check_frame(frame)
        if self.frame_size is not None:  # the engine letterboxes: the frame itself is the input
            return Prepared(np.ascontiguousarray(frame), self._frame_fit(frame))
        if out is None or out.shape != (self.height, self.width, 3) or out.dtype != np.uint8:
            out = np.empty((self.height, self.width, 3), np.uint8)
        # prepare's arrays are written only by fit_into: their padding is kept between frames
        fit = fit_into(frame[..., ::-1] if self.swap_rb else frame, out, self.resize, self.pad_value, self.align,
                       keep_pad=True)
        return Prepared(out, fit)

    #: :meth:`prepare` takes ``out`` (the detect loop recycles the arrays it made); an engine built
    #: with a frame size has none to recycle (set per instance in ``__init__``)
    recycles_inputs = True

    def _frame_fit(self, frame: np.ndarray) -> Fit:
        """The placement an engine built with a frame size makes inside; frames of another size
        are refused (the engine's input has that size)."""
        assert self.frame_size is not None
        fh, fw = self.frame_size
        if frame.shape[:2] != (fh, fw):
            raise TrtedgeError("this engine takes {}x{} frames as they are (built with --frame-size {}x{}); got "
                               "{}x{}: rebuild with --frame-size {}x{}, or without it to letterbox any size on "
                               "the host".format(fw, fh, fh, fw, frame.shape[1], frame.shape[0], frame.shape[0],
                                                 frame.shape[1]))
        return placement(fh, fw, self.height, self.width, self.resize, self.align)[4]

    def submit_prepared(self, items: Sequence[Prepared]) -> Any:
        """:meth:`submit` for frames already :meth:`prepare` d: one copy each into the input."""
        n = len(items)
        if not 1 <= n <= self.max_batch:
            raise TrtedgeError("submit takes 1 to {} frames, not {}".format(self.max_batch, n))
        backend = self._backend()
        batch = n if self.backend_is_dynamic() else self.max_batch
        if n == 1 and batch == 1:  # the prepared array itself, as a batch of one: no copy here
            return [items[0].fit], backend.submit({self.input_name: items[0].input[None]})
        buf = backend.input_buffer(self.input_name, batch)
        for k, item in enumerate(items):
            buf[k] = item.input
            forget_pad(buf[k])
        return [item.fit for item in items], backend.submit({self.input_name: buf})

    def collect(self, ticket: Any) -> List[Detections]:
        """Wait for a :meth:`submit`; one :class:`Detections` per frame."""
        fits, handle = ticket
        outputs = self._backend().collect(handle)
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
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

