"""Where detections go: a window, a video, image files, JSON lines; plus run statistics.

Every sink has ``write(frame, detections) -> bool`` (False asks the caller to
stop: the window was closed) and ``close()``, which is idempotent and is what
the caller's ``finally`` (Ctrl-C included) runs, so that files are complete
afterwards: JSON lines are flushed after every frame, and a video is written
under a temporary name and renamed into place by ``close()``.

OpenCV (``cv2``) is imported only when a sink that needs it is made.
"""

import collections
import colorsys
import json
import os
import re
import sys
import time
from typing import IO, Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import TrtedgeError
from .detections import Detections
from .sources import Frame, require_cv2

__all__ = [
    "Sink",
    "annotate",
    "class_colour",
    "WindowSink",
    "VideoSink",
    "ImageDirSink",
    "JsonLinesSink",
    "RunStats",
    "format_summary",
    "open_sinks",
]

Colour = Tuple[int, int, int]

#: fourcc per video extension (both written by every OpenCV with FFmpeg)
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def class_colour(class_id: int) -> Colour:
    """A stable, well-separated BGR colour for a class id (golden-ratio hue steps)."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(image: np.ndarray, detections: Detections, colours: Optional[Sequence[Colour]] = None) -> np.ndarray:
    """A copy of ``image`` (BGR uint8) with each detection's box and ``"label 0.87"``.

    The colour of a class id is ``colours[class_id % len(colours)]`` when
    ``colours`` (BGR triples) is given, else :func:`class_colour`.
    """
    cv2 = require_cv2("drawing detections")
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thick = max(1, int(round(min(h, w) / 360.0)))
    scale = max(0.4, min(h, w) / 1000.0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(len(detections)):
        cid = int(detections.class_ids[i])
        colour = tuple(int(c) for c in colours[cid % len(colours)]) if colours else class_colour(cid)
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        x1i = int(np.clip(round(x1), 0, w - 1))
        y1i = int(np.clip(round(y1), 0, h - 1))
        x2i = int(np.clip(round(x2) - 1, 0, w - 1))  # boxes bound pixel edges; draw on the last pixel inside
        y2i = int(np.clip(round(y2) - 1, 0, h - 1))
        cv2.rectangle(out, (x1i, y1i), (x2i, y2i), colour, thick, cv2.LINE_8)
        text = "{} {:.2f}".format(detections.labels[i] if i < len(detections.labels) else cid,
                                  float(detections.scores[i]))
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        top = y1i - th - base - 2 if y1i - th - base - 2 >= 0 else y1i  # above the box, or inside at the top
        left = min(x1i, max(0, w - tw - 2))
        cv2.rectangle(out, (left, top), (left + tw + 2, top + th + base + 2), colour, -1)
        ink = (0, 0, 0) if (0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]) > 140 else (255, 255, 255)
        cv2.putText(out, text, (left + 1, top + th + 1), font, scale, ink, 1, cv2.LINE_AA)
    return out


class Sink:
    """Takes frames with their detections; ``write`` returns False to ask the caller to stop."""

    def write(self, frame: Frame, detections: Detections) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output; safe to call more than once."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- window


_HEADLESS = ("--show needs OpenCV with GUI support, and this one is headless (no GTK/Qt window backend): "
             "pip uninstall opencv-python-headless && pip install opencv-python, or on a Jetson use JetPack's "
             "OpenCV; or drop --show and use --save out.mp4 / --save-dir DIR")


def _gui_backend(cv2: Any) -> Optional[str]:
    """The GUI backend this OpenCV was built with, or None for a headless build."""
    try:
        info = cv2.getBuildInformation()
    except Exception:
        return "unknown"
    block = re.search(r"^\s*GUI:\s*(\S*)", info, re.M)
    if block and block.group(1).upper() == "NONE":
        return None
    return block.group(1) if block and block.group(1) else "unknown"


class WindowSink(Sink):
    """An OpenCV window with the annotated frames and an FPS counter; ESC or q ends the run."""

    def __init__(self, title: str = "trtedge", colours: Optional[Sequence[Colour]] = None) -> None:
        cv2 = require_cv2("--show")
        if _gui_backend(cv2) is None:
            raise TrtedgeError(_HEADLESS)
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise TrtedgeError("--show needs a display, and DISPLAY is not set (running over ssh?): run it on the "
                               "device's desktop, export DISPLAY=:0, or use --save out.mp4 / --save-dir DIR")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            text = " ".join(str(exc).split())
            if "not implemented" in text.lower():
                raise TrtedgeError(_HEADLESS) from None
            raise TrtedgeError("--show could not open a window: {}".format(text)) from None
        self._cv2 = cv2
        self.title = title
        self.colours = colours
        self._last: Optional[float] = None
        self._fps = 0.0
        self._closed = False

    def write(self, frame: Frame, detections: Detections) -> bool:
        if self._closed:
            return False
        cv2 = self._cv2
        now = time.monotonic()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self._fps = rate if self._fps == 0.0 else 0.9 * self._fps + 0.1 * rate
        self._last = now
        image = annotate(frame.image, detections, self.colours)
        text = "{:.1f} FPS".format(self._fps)
        scale = max(0.5, image.shape[0] / 720.0)
        cv2.putText(image, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(image, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (27, ord("q"), ord("Q")):
            return False
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return False
        except cv2.error:  # the window is gone
            return False
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)
        except Exception:
            pass


# --------------------------------------------------------------------------- files


def _make_parent(path: str, what: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise TrtedgeError("cannot create the directory for {} {}: {}".format(what, path, exc.strerror)) from None
    if not os.access(directory, os.W_OK):
        raise TrtedgeError("cannot write {} {}: directory {} is not writable".format(what, path, directory))
    return directory


class VideoSink(Sink):
    """Annotated frames into a video file (.mp4/.m4v/.mov with mp4v, .avi/.mkv with MJPG).

    The size is the first frame's (later frames of another size are resized
    to it). Frames go to ``NAME.partial-PID.EXT`` beside ``path``; ``close()``
    finishes the file and renames it to ``path``, so the file under the final
    name is always complete and playable.
    """

    def __init__(self, path: str, fps: float = 30.0, colours: Optional[Sequence[Colour]] = None) -> None:
        self._cv2 = require_cv2("writing a video")
        stem, ext = os.path.splitext(path)
        if ext.lower() not in VIDEO_CODECS:
            raise TrtedgeError("cannot write a video named {}: use one of {}".format(path, ", ".join(VIDEO_CODECS)))
        if not fps or fps <= 0:
            raise TrtedgeError("video fps must be > 0, got {!r}".format(fps))
        _make_parent(path, "the video")
        self.path = path
        self.fps = float(fps)
        self.colours = colours
        self.fourcc = VIDEO_CODECS[ext.lower()]
        self.temp_path = "{}.partial-{}{}".format(stem, os.getpid(), ext)
        self.size: Optional[Tuple[int, int]] = None
        self.written = 0
        self._writer: Any = None
        self._closed = False

    def write(self, frame: Frame, detections: Detections) -> bool:
        if self._closed:
            raise TrtedgeError("video {} is already closed".format(self.path))
        cv2 = self._cv2
        image = annotate(frame.image, detections, self.colours)
        if self._writer is None:
            h, w = image.shape[:2]
            self.size = (w, h)
            writer = cv2.VideoWriter(self.temp_path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not writer.isOpened():
                writer.release()
                self._remove_temp()
                raise TrtedgeError("cannot write video {} ({} at {}x{}): this OpenCV has no encoder for it; "
                                   "try an .avi name (MJPG) or install an OpenCV built with FFmpeg".format(
                                       self.path, self.fourcc, w, h))
            self._writer = writer
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.written += 1
        return True

    def _remove_temp(self) -> None:
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.release()
        if self.written and os.path.isfile(self.temp_path):
            os.replace(self.temp_path, self.path)
        else:
            self._remove_temp()


def safe_label(label: str) -> str:
    """``label`` fit for a file name: runs of other characters become ``_``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(label)).strip("._")
    return text[:100] or "frame"


class ImageDirSink(Sink):
    """Annotated frames as ``DIR/<source-label>_<frame:06d>.jpg``."""

    def __init__(self, directory: str, colours: Optional[Sequence[Colour]] = None, quality: int = 90) -> None:
        self._cv2 = require_cv2("writing images")
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise TrtedgeError("cannot create the image directory {}: {}".format(directory, exc.strerror)) from None
        self.directory = directory
        self.colours = colours
        self.quality = int(quality)
        self.written = 0

    def path_for(self, frame: Frame) -> str:
        return os.path.join(self.directory, "{}_{:06d}.jpg".format(safe_label(frame.source), frame.index))

    def write(self, frame: Frame, detections: Detections) -> bool:
        path = self.path_for(frame)
        image = annotate(frame.image, detections, self.colours)
        if not self._cv2.imwrite(path, image, [int(self._cv2.IMWRITE_JPEG_QUALITY), self.quality]):
            raise TrtedgeError("could not write image {} (disk full or not writable?)".format(path))
        self.written += 1
        return True


class JsonLinesSink(Sink):
    """One JSON object per frame and line, flushed at once; ``-`` is standard output.

    ``{"source": ..., "frame": N, "time": T, "detections": [{"label", "class_id", "score", "box": [x1, y1, x2, y2]}]}``
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._file: Optional[IO[str]] = sys.stdout
            self._owned = False
        else:
            _make_parent(path, "JSON lines")
            try:
                self._file = open(path, "w", encoding="utf-8")
            except OSError as exc:
                raise TrtedgeError("cannot write JSON lines to {}: {}".format(path, exc.strerror)) from None
            self._owned = True
        self.written = 0

    def write(self, frame: Frame, detections: Detections) -> bool:
        if self._file is None:
            raise TrtedgeError("JSON lines {} is already closed".format(self.path))
        record = {"source": frame.source, "frame": int(frame.index), "time": round(float(frame.time), 6),
                  "detections": detections.to_json()}
        self._file.write(json.dumps(record, separators=(", ", ": ")) + "\n")
        self._file.flush()
        self.written += 1
        return True

    def close(self) -> None:
        handle, self._file = self._file, None
        if handle is not None and self._owned:
            handle.close()


# --------------------------------------------------------------------------- statistics


class RunStats:
    """Per-frame latency (capture to result) and counts of a run.

    Percentiles cover the last ``window`` frames, so a run of days keeps a
    bounded memory; ``frames`` and ``seconds`` cover the whole run (from the
    first recorded capture to the last recorded result).
    """

    def __init__(self, window: int = 100000) -> None:
        self.latencies: Deque[float] = collections.deque(maxlen=window)
        self.frames = 0
        self.first_capture: Optional[float] = None
        self.last_result: Optional[float] = None

    def record(self, capture_time: float, result_time: Optional[float] = None) -> float:
        """Count one frame captured at ``capture_time`` whose result is ready at
        ``result_time`` (default: now, ``time.time()``); returns its latency in seconds."""
        done = time.time() if result_time is None else float(result_time)
        latency = max(0.0, done - float(capture_time))
        self.latencies.append(latency)
        self.frames += 1
        if self.first_capture is None or capture_time < self.first_capture:
            self.first_capture = float(capture_time)
        if self.last_result is None or done > self.last_result:
            self.last_result = done
        return latency

    def summary(self, dropped: int = 0) -> Dict[str, Any]:
        """``{"frames", "seconds", "fps", "latency_ms": {"p50", "p90", "p99"}, "dropped"}``."""
        seconds = 0.0
        if self.first_capture is not None and self.last_result is not None:
            seconds = max(0.0, self.last_result - self.first_capture)
        if self.latencies:
            values = np.percentile(np.asarray(self.latencies, np.float64) * 1000.0, [50, 90, 99])
            latency: Dict[str, Any] = {k: round(float(v), 3) for k, v in zip(("p50", "p90", "p99"), values)}
        else:
            latency = {"p50": None, "p90": None, "p99": None}
        return {
            "frames": self.frames,
            "seconds": round(seconds, 3),
            "fps": round(self.frames / seconds, 2) if seconds > 0 else 0.0,
            "latency_ms": latency,
            "dropped": int(dropped),
        }


def format_summary(summary: Dict[str, Any]) -> str:
    """A short human-readable block of :meth:`RunStats.summary`."""
    lat = summary.get("latency_ms") or {}

    def ms(key: str) -> str:
        value = lat.get(key)
        return "-" if value is None else "{:.1f} ms".format(value)

    return "\n".join([
        "frames   {} in {:.1f} s ({:.1f} FPS)".format(summary.get("frames", 0), summary.get("seconds", 0.0),
                                                     summary.get("fps", 0.0)),
        "latency  p50 {}  p90 {}  p99 {}  (capture to result)".format(ms("p50"), ms("p90"), ms("p99")),
        "dropped  {} (frames the camera replaced before they were read)".format(summary.get("dropped", 0)),
    ])


# --------------------------------------------------------------------------- factory


def open_sinks(show: bool = False, save: Optional[str] = None, save_dir: Optional[str] = None,
               json_path: Optional[str] = None, fps: float = 30.0,
               colours: Optional[Sequence[Colour]] = None) -> List[Sink]:
    """The sinks the flags ask for (window, video, image directory, JSON lines), in that order.

    If one cannot be made, those already made are closed and the error raised.
    """
    sinks: List[Sink] = []
    try:
        if show:
            sinks.append(WindowSink(colours=colours))
        if save:
            sinks.append(VideoSink(save, fps=fps, colours=colours))
        if save_dir:
            sinks.append(ImageDirSink(save_dir, colours=colours))
        if json_path:
            sinks.append(JsonLinesSink(json_path))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
