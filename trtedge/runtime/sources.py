"""Frame sources: cameras, network streams, GStreamer pipelines, videos, images.

:func:`open_source` turns the text a user types (``0``, ``/dev/video1``,
``csi://0?width=1920&height=1080``, ``rtsp://cam/stream``,
``http://cam/mjpg``, ``gst:... ! appsink``, ``clip.mp4``, ``photo.jpg``,
``images/``, ``'images/*.png'``) into a :class:`Source`, whose
:meth:`Source.read` returns one :class:`Frame` at a time and ``None`` at the
end.

Two kinds of source behave differently:

* files (videos, images, image directories and globs) are read in the
  calling thread, every frame in order, as fast as the caller asks;
  ``loop=True`` starts them over at the end;
* live sources (cameras, RTSP/HTTP streams, GStreamer pipelines) are read by
  a grab thread that keeps only the newest frame, so a slow detector always
  sees a fresh frame; frames it replaced before they were read are counted in
  :attr:`Source.dropped`. A stream that fails, or that stays silent for
  ``open_timeout`` seconds (a server that accepts and never sends), is
  reopened with exponential backoff (``reconnect=True``) while
  :meth:`Source.read` keeps waiting.

Grab threads sit inside OpenCV (C++) while they wait on a device or a
socket; a thread that returns from there while Python shuts down aborts the
process ("terminate called without an active exception"). So every grab
thread is stopped and joined by :meth:`Source.close` and, for whatever is
still running, by an ``atexit`` hook, each within its stream's own timeout.

:func:`plan_source` resolves what a text names (its label, the files it
reads) without opening anything, so that outputs can be checked against
inputs before anything is opened.

OpenCV (``cv2``) is imported only when a source is opened.
"""

import atexit
import glob
import logging
import os
import re
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import TrtedgeError
from ..jetson import gstreamer
from ..utils.cores import usable_cores

__all__ = [
    "Frame",
    "SourceError",
    "SourcePlan",
    "plan_source",
    "stop_grab_threads",
    "Source",
    "open_source",
    "require_cv2",
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
]

LOG = logging.getLogger("trtedge")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".h264", ".264", ".h265", ".265", ".hevc", ".flv", ".wmv", ".mjpeg", ".mjpg", ".3gp", ".ogv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

FORMS = ("a camera index (0) or /dev/videoN, csi://N?width=&height=&fps=&flip=, rtsp:// or rtsps:// URL, "
         "http(s):// stream URL, a GStreamer pipeline ('gst:... ! appsink' or any text with ' ! '), "
         "a video file ({}), an image file ({}), a directory of images, or a quoted glob such as 'frames/*.jpg'"
         ).format(", ".join(e[1:] for e in VIDEO_EXTENSIONS[:8]) + ", ...", ", ".join(e[1:] for e in IMAGE_EXTENSIONS))

_BACKOFF_START = 0.25
_POLL = 0.5  # a blocking read wakes this often, so Ctrl-C is never held up
_GRACE = 0.5  # beyond a stream's own timeout, for OpenCV to return from it
#: frame rates outside this range (0, NaN, 1000 from a broken header) are not believed
_FPS_RANGE = (0.5, 480.0)


class Frame(NamedTuple):
    """One captured frame."""

    image: np.ndarray  # uint8 [H, W, 3], BGR
    # frame number within the source, from 0; live sources count every captured frame, read or not
    index: int  # type: ignore[assignment]  # (the field shadows tuple.index)
    time: float  # time.time() when it was captured
    source: str  # the source's label (Source.name)
    file: Optional[str] = None  # the image file it came from (image sources), else None


class SourceError(TrtedgeError):
    """A source that cannot be opened or read."""

    exit_code = 2


def require_cv2(purpose: str = "reading cameras, videos and images") -> Any:
    """``import cv2``, or a one-line :class:`TrtedgeError` saying what to install."""
    try:
        import cv2
    except ImportError as exc:
        raise TrtedgeError(
            "OpenCV (cv2) is needed for {} and could not be imported ({}): pip install \"trtedge[cv]\" "
            "(on a Jetson keep JetPack's own OpenCV instead, which has GStreamer: "
            "sudo apt install nvidia-opencv)".format(purpose, exc)) from None
    return cv2


def _ffmpeg_available(cv2: Any) -> bool:
    match = re.search(r"^\s*FFMPEG:\s*(\S+)", cv2.getBuildInformation(), re.M)
    return bool(match and match.group(1).upper().startswith("YES"))


def _redact(url: str) -> str:
    """A URL without its password, fit for logs and JSON."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = "{}:{}".format(host, parts.port)
        user = "{}:***@".format(parts.username) if parts.password is not None else "{}@".format(parts.username)
        return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
    except ValueError:
        return url


def _natural_key(path: str) -> List[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"([0-9]+)", path)]


def _sane_fps(value: Any) -> Optional[float]:
    try:
        fps = float(value)
    except (TypeError, ValueError):
        return None
    return fps if _FPS_RANGE[0] <= fps <= _FPS_RANGE[1] else None


# --------------------------------------------------------------------------- base


class Source:
    """Frames from one place; iterate it, or call :meth:`read` until it returns None.

    Attributes: ``name`` (the label written with each frame), ``live`` (a
    camera or stream read by a grab thread), ``fps`` (the frame rate the
    source reports, None when it has none or reports nonsense), ``frames``
    (frames delivered by :meth:`read`), ``dropped`` (frames the grab thread
    replaced before they were read), ``reconnects`` (times a failed stream
    was opened again).
    """

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps = None  # type: Optional[float]
        self.frames = 0
        self.dropped = 0
        self.reconnects = 0
        self._closed = False

    @property
    def ended(self) -> bool:
        """True once the source has nothing more to give (or was closed)."""
        return self._closed

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame; None at the end of the source, after :meth:`close`, or
        when ``timeout`` seconds passed with no frame (live sources only; then
        :attr:`ended` is still False and the caller may read again)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call more than once."""
        self._closed = True

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def __repr__(self) -> str:
        return "<{} {!r} frames={} dropped={} reconnects={}>".format(
            type(self).__name__, self.name, self.frames, self.dropped, self.reconnects)


# --------------------------------------------------------------------------- files


class _VideoFile(Source):
    """A video file, decoded in the calling thread, by ``decode_threads`` decoder
    threads (None: OpenCV's choice, every core)."""

    def __init__(self, path: str, loop: bool, decode_threads: Optional[int] = None) -> None:
        super().__init__(os.path.basename(path) or path)
        self.path = path
        self.loop = loop
        self.decode_threads = decode_threads
        self._cv2 = require_cv2()
        self._index = 0
        self._cap: Any = None
        self._pending = self._open()
        if self._pending is None:
            raise SourceError("video {} could not be decoded (not a video, corrupt or truncated, or a codec this "
                              "OpenCV cannot read); check it with ffprobe, or convert it to H.264 .mp4".format(path))

    def _open(self) -> Optional[np.ndarray]:
        """(Re)open the file; its first frame, or None if there is none."""
        if self._cap is not None:
            self._cap.release()
        cv2 = self._cv2
        self._cap = None
        if self.decode_threads and hasattr(cv2, "CAP_PROP_N_THREADS"):
            # a backend that does not know the property refuses to open with it: then as before
            self._cap = cv2.VideoCapture(self.path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, int(self.decode_threads)])
            if not self._cap.isOpened():
                self._cap.release()
                self._cap = None
        if self._cap is None:
            self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            return None
        self.fps = _sane_fps(self._cap.get(self._cv2.CAP_PROP_FPS))
        ok, image = self._cap.read()
        return image if ok and image is not None else None

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self._closed:
            return None
        image = self._pending
        self._pending = None
        if image is None:
            ok, image = self._cap.read()
            if not ok or image is None:
                image = self._open() if self.loop else None
                if image is None:
                    self.close()
                    return None
        frame = Frame(image, self._index, time.time(), self.name)
        self._index += 1
        self.frames += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


class _ImageList(Source):
    """Image files in a fixed order, decoded in the calling thread."""

    def __init__(self, name: str, paths: Sequence[str], loop: bool) -> None:
        super().__init__(name)
        self.paths = list(paths)
        self.loop = loop
        self._cv2 = require_cv2()
        self._next = 0
        self._index = 0
        self._decoded_this_pass = False

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        while not self._closed:
            if self._next >= len(self.paths):
                if not (self.loop and self._decoded_this_pass):
                    break
                self._next = 0
                self._decoded_this_pass = False
            path = self.paths[self._next]
            self._next += 1
            image = self._cv2.imread(path, self._cv2.IMREAD_COLOR)
            if image is None:
                LOG.warning("skipping %s: not a readable image", path)
                continue
            self._decoded_this_pass = True
            frame = Frame(image, self._index, time.time(), self.name, path)
            self._index += 1
            self.frames += 1
            return frame
        self.close()
        return None


# --------------------------------------------------------------------------- live


class _LiveSource(Source):
    """A camera or stream read by a grab thread that keeps only the newest frame.

    ``opener(timeout)`` returns an opened ``cv2.VideoCapture`` or None; it is
    called in the grab thread, first at construction (which waits up to
    ``open_timeout`` for a first frame and raises :class:`SourceError` with
    ``failure()`` if none comes), then after each failure of the stream.
    ``open_timeout`` is also what OpenCV is told to wait for a stream to
    connect and for each frame, so a stream that goes silent counts as
    dropped after that long, and a blocked grab thread returns within it.
    """

    live = True

    def __init__(self, name: str, opener: Callable[[float], Any], failure: Callable[[], str], reconnect: bool,
                 max_reconnect_seconds: float, open_timeout: float) -> None:
        super().__init__(name)
        self._opener = opener
        self._failure = failure
        self._reconnect = reconnect
        self._max_backoff = max(float(max_reconnect_seconds), _BACKOFF_START)
        self._open_timeout = float(open_timeout)
        self._cond = threading.Condition()
        self._slot: Optional[Frame] = None
        self._captured = 0
        self._stop = threading.Event()
        self._finished = False  # the grab thread has ended (stream over, or stopped)
        self._first_error: Optional[str] = None
        self._started = False  # a first frame arrived
        self._thread = threading.Thread(target=self._run, name="trtedge-grab-{}".format(name), daemon=True)
        _track(self)
        self._thread.start()
        try:
            # the grab thread's own open gives up after open_timeout; a little longer here lets its
            # (more precise) reason arrive first
            deadline = time.monotonic() + self._open_timeout + _GRACE
            with self._cond:
                while not self._started and not self._finished:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, _POLL))
                started, error = self._started, self._first_error
        except BaseException:  # Ctrl-C while waiting: stop the thread (joined at exit), then pass it on
            self.close(wait=False)
            raise
        if not started:
            self.close(wait=False)  # the thread ends when OpenCV returns; stop_grab_threads joins it at exit
            if error is None:
                error = "{} gave no frame within {:g} s (the stream timeout)".format(name, self._open_timeout)
            raise SourceError(error)

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._closed or (self._finished and self._slot is None)

    @property
    def join_timeout(self) -> float:
        """How long a call into OpenCV may block the grab thread (open, then one read)."""
        return 2.0 * self._open_timeout + _GRACE

    def _open(self, first: bool) -> Any:
        try:
            cap = self._opener(self._open_timeout)
        except Exception as exc:  # a backend that raises instead of failing to open
            LOG.debug("opening %s raised %r", self.name, exc)
            cap = None
        if cap is not None and not cap.isOpened():
            cap.release()
            cap = None
        if cap is None and first:
            self._first_error = self._failure()
        if cap is not None and self.fps is None:
            try:
                self.fps = _sane_fps(cap.get(require_cv2().CAP_PROP_FPS))
            except Exception:
                pass
        return cap

    def _publish(self, image: np.ndarray) -> None:
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = Frame(image, self._captured, time.time(), self.name)
            self._captured += 1
            self._started = True
            self._cond.notify_all()

    def _run(self) -> None:
        cap: Any = None
        delay = _BACKOFF_START
        first = True
        try:
            cap = self._open(first=True)
            while cap is not None and not self._stop.is_set():
                try:
                    ok, image = cap.read()
                except Exception as exc:
                    LOG.debug("reading %s raised %r", self.name, exc)
                    ok, image = False, None
                if self._stop.is_set():
                    break
                if ok and image is not None:
                    self._publish(image)
                    first = False
                    delay = _BACKOFF_START
                    continue
                cap.release()
                cap = None
                if first:  # opened, but never gave a frame
                    self._first_error = self._failure()
                    break
                if not self._reconnect:
                    LOG.info("%s ended", self.name)
                    break
                LOG.warning("%s: stream lost (ended, failed, or silent for %g s); reconnecting", self.name,
                            self._open_timeout)
                attempt = 0
                while cap is None and not self._stop.wait(delay):
                    attempt += 1
                    delay = min(delay * 2.0, self._max_backoff)
                    cap = self._open(first=False)
                    if cap is None:
                        LOG.warning("%s: reconnect attempt %d failed; next try in %.2g s", self.name, attempt, delay)
                    else:
                        with self._cond:
                            self.reconnects += 1
                        LOG.warning("%s: reconnected (attempt %d, %d reconnects so far)",
                                    self.name, attempt, self.reconnects)
                if cap is not None and self._stop.is_set():
                    break
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._slot is not None:
                    frame, self._slot = self._slot, None
                    self.frames += 1
                    return frame
                if self._finished:
                    return None
                if deadline is None:
                    self._cond.wait(_POLL)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(min(left, _POLL))

    def close(self, wait: bool = True) -> None:
        """Stop the grab thread; with ``wait``, join it (it returns from OpenCV within
        :attr:`join_timeout`). The capture is released by the grab thread itself."""
        self._stop.set()
        with self._cond:
            self._closed = True
            self._slot = None
            self._cond.notify_all()
        if wait:
            self.join(self.join_timeout)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the grab thread; True when it has ended."""
        if self._thread is threading.current_thread():
            return False
        self._thread.join(timeout=max(0.0, timeout))
        return not self._thread.is_alive()


# live sources whose grab thread may still be running, for stop_grab_threads
_RUNNING = weakref.WeakSet()  # type: Any
_RUNNING_LOCK = threading.Lock()
_HOOKED = [False]


def _track(source: "_LiveSource") -> None:
    with _RUNNING_LOCK:
        _RUNNING.add(source)
        if not _HOOKED[0]:
            _HOOKED[0] = True
            atexit.register(stop_grab_threads)


def stop_grab_threads(say: Optional[Callable[[str], None]] = None) -> bool:
    """Stop every grab thread still running and wait for each within its stream's
    timeout. Runs at interpreter exit; True when none is left.

    A second Ctrl-C while waiting ends the process at once (exit 130): an
    immediate exit is safe, a thread returning into a finalising interpreter
    is not.
    """
    with _RUNNING_LOCK:
        running = [s for s in list(_RUNNING) if s._thread.is_alive()]
    for src in running:
        src.close(wait=False)
    left = True
    try:
        for src in running:
            bound = src.join_timeout
            if not src.join(min(1.0, bound)):
                if say is not None:
                    say("waiting up to {:.0f} s for {} to close".format(bound, src.name))
                left = src.join(bound) and left
    except KeyboardInterrupt:
        sys.stderr.write("trtedge: interrupted\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)
    return left


# --------------------------------------------------------------------------- openers


def _capture_params(cv2: Any, open_timeout: float) -> List[int]:
    params: List[int] = []
    ms = max(1, int(round(open_timeout * 1000)))
    for prop in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
        if hasattr(cv2, prop):
            params += [int(getattr(cv2, prop)), ms]
    return params


def _video_devices() -> List[str]:
    return sorted(glob.glob("/dev/video[0-9]*"), key=_natural_key)


def _v4l2_name(device: str) -> str:
    """The driver's name of a V4L2 device ('' if unknown), e.g. 'vi-output, imx219 9-0010' for a Jetson CSI sensor."""
    try:
        with open("/sys/class/video4linux/{}/name".format(os.path.basename(device))) as f:
            return f.read().strip()
    except OSError:
        return ""


def _camera(text: str, **live: Any) -> Source:
    cv2 = require_cv2()
    if text.isdigit():
        index: Any = int(text)
        device = "/dev/video{}".format(index)
        what = "camera {} ({})".format(index, device)
    else:
        device = text
        index = text
        what = "camera {}".format(device)
    linux = sys.platform.startswith("linux")

    def failure() -> str:
        present = _video_devices()
        return "{} could not be opened; cameras present: {}{}".format(
            what, ", ".join(present) if present else "none",
            " (is it in use by another program, or is this user outside the 'video' group?)"
            if os.path.exists(device) else "")

    if linux and not os.path.exists(device):
        raise SourceError(failure())
    driver = _v4l2_name(device) if linux else ""
    if driver.startswith("vi-output"):  # a Jetson CSI sensor: V4L2 gives raw Bayer, Argus gives images
        raise SourceError("{} is a CSI camera ({}); open it through Argus instead: csi://N with N its sensor id "
                          "(csi://0 for the first)".format(what, driver))

    def opener(timeout: float) -> Any:
        if linux:
            return cv2.VideoCapture(index, cv2.CAP_V4L2)
        return cv2.VideoCapture(index)

    return _LiveSource("camera{}".format(text) if text.isdigit() else text, opener, failure, **live)


def _gst_capture(cv2: Any, pipeline: str) -> Callable[[float], Any]:
    def opener(timeout: float) -> Any:
        return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    return opener


def _needs_gstreamer(what: str) -> SourceError:
    return SourceError(
        "{} needs OpenCV built with GStreamer, and this OpenCV has none (pip's opencv-python wheels never do): "
        "on a Jetson use JetPack's OpenCV (sudo apt install nvidia-opencv, and pip uninstall opencv-python "
        "opencv-python-headless so it is not shadowed), elsewhere build OpenCV with -D WITH_GSTREAMER=ON".format(what))


def _csi_params(text: str) -> Any:
    """A csi:// URL's parameters; a bad one is a SourceError (one line)."""
    try:
        return gstreamer.parse_csi_url(text)
    except SourceError:
        raise
    except TrtedgeError as exc:
        raise SourceError(str(exc)) from None


def _csi(text: str, **live: Any) -> Source:
    params = _csi_params(text)
    cv2 = require_cv2()
    if not gstreamer.gstreamer_available():
        raise _needs_gstreamer("the CSI camera {}".format(text))
    pipeline = gstreamer.csi_pipeline(**params)

    def failure() -> str:
        return ("CSI camera {} could not be opened (pipeline: {}); check the ribbon cable and sensor id, that "
                "nvargus-daemon is running (sudo systemctl restart nvargus-daemon), and that the size/fps is a "
                "mode of the sensor".format(text, pipeline))

    return _LiveSource("csi{}".format(params["sensor_id"]), _gst_capture(cv2, pipeline), failure, **live)


def _ffmpeg_capture(cv2: Any, url: str) -> Callable[[float], Any]:
    def opener(timeout: float) -> Any:
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, _capture_params(cv2, timeout))
    return opener


def _stream(text: str, **live: Any) -> Source:
    cv2 = require_cv2()
    scheme = text.split(":", 1)[0].lower()
    name = _redact(text)
    ffmpeg = _ffmpeg_available(cv2)
    openers: List[Tuple[str, Callable[[float], Any]]] = []
    if scheme in ("rtsp", "rtsps"):
        if gstreamer.gstreamer_available() and gstreamer.element_available("nvv4l2decoder"):
            openers.append(("GStreamer (nvv4l2decoder, H.264)",
                            _gst_capture(cv2, gstreamer.rtsp_pipeline(text, hardware=True))))
    elif not ffmpeg and gstreamer.gstreamer_available():  # http(s) without FFmpeg: MJPEG through souphttpsrc
        openers.append(("GStreamer (souphttpsrc, MJPEG)", _gst_capture(cv2, gstreamer.http_mjpeg_pipeline(text))))
    if ffmpeg:
        openers.append(("FFmpeg", _ffmpeg_capture(cv2, text)))
    if not openers:
        raise SourceError("{} needs OpenCV built with FFmpeg (or GStreamer), and this one has neither: "
                          "pip install \"trtedge[cv]\", or on a Jetson use JetPack's OpenCV".format(name))
    used: List[str] = []

    def opener(timeout: float) -> Any:
        # the hardware pipeline decodes H.264 only: an H.265 camera falls back to FFmpeg
        del used[:]
        for label, open_one in openers:
            used.append(label)
            cap = open_one(timeout)
            if cap is not None and cap.isOpened():
                return cap
            if cap is not None:
                cap.release()
        return None

    def failure() -> str:
        return ("stream {} could not be opened or gave no frame (tried {}); check the URL, the credentials and "
                "that the camera is reachable (e.g. ffprobe '{}')".format(name, ", ".join(used) or "nothing",
                                                                          name))

    return _LiveSource(name, opener, failure, **live)


def _pipeline(text: str, **live: Any) -> Source:
    cv2 = require_cv2()
    pipeline = text[4:].strip() if text.lower().startswith("gst:") else text
    if not pipeline:
        raise SourceError("gst: must be followed by a GStreamer pipeline, e.g. 'gst:videotestsrc ! appsink'")
    if not gstreamer.gstreamer_available():
        raise _needs_gstreamer("the GStreamer pipeline '{}'".format(pipeline))
    if "appsink" not in pipeline:
        pipeline = "{} ! videoconvert ! video/x-raw, format=BGR ! {}".format(pipeline, gstreamer.APPSINK)

    def failure() -> str:
        return ("GStreamer pipeline '{}' could not be started or gave no frame; try it with "
                "gst-launch-1.0 (ending in fakesink) to see why".format(pipeline))

    return _LiveSource("gstreamer", _gst_capture(cv2, pipeline), failure, **live)


def _images_in(directory: str) -> List[str]:
    names = [os.path.join(directory, n) for n in os.listdir(directory)]
    return sorted((p for p in names if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)


def _single_image(path: str, loop: bool) -> Source:
    cv2 = require_cv2()
    if cv2.imread(path, cv2.IMREAD_COLOR) is None:
        raise SourceError("image {} could not be decoded (corrupt, truncated, or not an image)".format(path))
    return _ImageList(os.path.basename(path), [path], loop)


def _existing_file(path: str, loop: bool, decode_threads: Optional[int] = None) -> Source:
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return _single_image(path, loop)
    if ext in VIDEO_EXTENSIONS:
        return _VideoFile(path, loop, decode_threads)
    try:  # an unusual extension may still be a video OpenCV can read
        return _VideoFile(path, loop, decode_threads)
    except SourceError:
        raise SourceError("{} is neither a video ({}) nor an image ({}) that OpenCV can decode".format(
            path, ", ".join(VIDEO_EXTENSIONS), ", ".join(IMAGE_EXTENSIONS))) from None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB = re.compile(r"[*?\[]")


class SourcePlan(NamedTuple):
    """What a source text names, resolved without opening anything."""

    text: str
    #: pipeline | csi | stream | camera | images | file
    kind: str
    #: the label its frames carry (Source.name)
    name: str
    #: the files it reads (a video, images), as found
    paths: Tuple[str, ...] = ()
    #: the directory of a directory source
    directory: Optional[str] = None

    @property
    def live(self) -> bool:
        return self.kind in ("pipeline", "csi", "stream", "camera")


def plan_source(text: str) -> SourcePlan:
    """Resolve ``text`` (see the module docstring) into a :class:`SourcePlan`: which kind
    of source, its label, and the files it would read. Opens nothing; raises a
    one-line :class:`SourceError` for what cannot be a source."""
    text = str(text).strip()
    if not text:
        raise SourceError("no source given; accepted: {}".format(FORMS))
    if text.lower().startswith("gst:") or " ! " in text:
        return SourcePlan(text, "pipeline", "gstreamer")
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "csi":
            params = _csi_params(text)
            return SourcePlan(text, "csi", "csi{}".format(params.get("sensor_id", 0)))
        if scheme in ("rtsp", "rtsps", "http", "https"):
            return SourcePlan(text, "stream", _redact(text))
        if scheme == "file":
            return plan_source(urlsplit(text).path)
        raise SourceError("unknown source scheme '{}://' in {}; accepted: {}".format(
            match.group(1), _redact(text), FORMS))
    if text.isdigit() or re.fullmatch(r"/dev/video[0-9]+", text):
        return SourcePlan(text, "camera", "camera{}".format(text) if text.isdigit() else text)
    path = os.path.expanduser(text)
    if os.path.isdir(path):
        paths = _images_in(path)
        if not paths:
            raise SourceError("directory {} holds no images ({})".format(text, ", ".join(IMAGE_EXTENSIONS)))
        return SourcePlan(text, "images", os.path.basename(os.path.normpath(path)) or path, tuple(paths), path)
    if os.path.isfile(path):
        return SourcePlan(text, "file", os.path.basename(path) or path, (path,))
    if _GLOB.search(text):
        matched = sorted(glob.glob(path), key=_natural_key)
        paths = [p for p in matched if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)]
        if not paths:
            raise SourceError("pattern {} matches no images ({} file(s) matched, images are {})".format(
                text, len(matched), ", ".join(IMAGE_EXTENSIONS)))
        return SourcePlan(text, "images", text, tuple(paths))
    if os.path.exists(path):
        raise SourceError("{} is not a file or directory that can be read as frames".format(text))
    ext = os.path.splitext(text)[1].lower()
    if ext in VIDEO_EXTENSIONS or ext in IMAGE_EXTENSIONS:
        raise SourceError("{} file {} does not exist".format("video" if ext in VIDEO_EXTENSIONS else "image", text))
    raise SourceError("source {} does not exist (no such file or directory); accepted: {}".format(text, FORMS))


def open_source(text: Any, loop: bool = False, reconnect: bool = True, max_reconnect_seconds: float = 8.0,
                open_timeout: float = 10.0, decode_threads: Optional[int] = None) -> Source:
    """Open what ``text`` names (see the module docstring for the accepted forms),
    or the :class:`SourcePlan` that :func:`plan_source` made of it.

    ``loop`` starts videos and image lists over at their end. For live
    sources, ``reconnect`` reopens a failed stream (waiting 0.25 s, doubling
    up to ``max_reconnect_seconds`` between tries) instead of ending, and
    ``open_timeout`` bounds the wait for the first frame, for a stream to
    connect, and for each frame of a running stream (a silent stream counts
    as dropped after that long). ``decode_threads`` caps the decoder threads
    of a video file (see :func:`decode_threads`; None: OpenCV's default, one
    per core). Anything that cannot be opened raises a one-line
    :class:`SourceError`.
    """
    plan = text if isinstance(text, SourcePlan) else plan_source(text)
    if not open_timeout or open_timeout <= 0:
        raise SourceError("the stream timeout must be > 0 seconds, not {!r}".format(open_timeout))
    live: Dict[str, Any] = dict(reconnect=reconnect, max_reconnect_seconds=max_reconnect_seconds,
                                open_timeout=open_timeout)
    if plan.kind == "pipeline":
        return _pipeline(plan.text, **live)
    if plan.kind == "csi":
        return _csi(plan.text, **live)
    if plan.kind == "stream":
        return _stream(plan.text, **live)
    if plan.kind == "camera":
        return _camera(plan.text, **live)
    if plan.kind == "images":
        return _ImageList(plan.name, plan.paths, loop)
    return _existing_file(plan.paths[0], loop, decode_threads)


def decode_threads(engine_threads: int, files: int = 1, cores: Optional[int] = None) -> Optional[int]:
    """Decoder threads for each of ``files`` video files when the engine keeps
    ``engine_threads`` CPU cores busy (ONNX Runtime on the CPU); None (OpenCV's
    default, a thread per core) when it keeps none (TensorRT on the GPU).

    OpenCV's FFmpeg decoder starts a thread per core. Beside an engine that
    runs on the CPU those threads take the engine's cores: on the 2-core CI
    machine a 1280x720 mp4 decoded at 4.0 ms of CPU a frame with its default
    two threads and at 3.3 ms with one, and the engine slowed down beside it.
    So each file gets the cores the engine leaves, at least one.
    """
    if engine_threads <= 0:
        return None
    cores = cores or usable_cores()
    return max(1, (cores - engine_threads) // max(1, files))
