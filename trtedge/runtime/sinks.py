"""Where detections go: a window, a video, image files, JSON lines; plus run statistics.

Every sink has ``write(frame, detections) -> bool`` (False asks the caller to
stop: the window was closed) and ``close()``, which is idempotent and is what
the caller's ``finally`` (Ctrl-C included) runs, so that files are complete
afterwards: JSON lines are flushed after every frame, and a video is written
under a temporary name and renamed into place by ``close()`` once it reads
back complete. File sinks create nothing on disk before their first frame, so
a run that fails early leaves nothing behind; :func:`check_outputs` refuses
outputs that would overwrite an input or each other before any is opened.

OpenCV (``cv2``) is imported only when a sink that needs it is made.
"""

import collections
import colorsys
import errno
import json
import os
import re
import sys
import time
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import TrtedgeError
from .detections import Detections
from .sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Frame, require_cv2

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
    "PerSourceSink",
    "Progress",
    "check_outputs",
    "check_writable",
    "image_names",
    "video_paths",
    "written",
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

    #: GUI toolkits want one thread: the detect loop writes this sink from its own
    main_thread = True

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

#: below this much free space a video stops with "no space left" rather than write a file it cannot finish
LOW_SPACE_BYTES = 8 << 20


def _space_error(path: str, what: str, exc: Optional[BaseException] = None,
                 kept: str = "nothing incomplete was kept under that name") -> TrtedgeError:
    reason = "no space left on device" if exc is None or getattr(exc, "errno", None) == errno.ENOSPC else (
        getattr(exc, "strerror", None) or str(exc))
    return TrtedgeError("cannot write {} {}: {}".format(what, path, reason),
                        hint="free some space or write elsewhere; {}".format(kept))


def free_bytes(directory: str) -> Optional[int]:
    """Free bytes for an unprivileged writer in ``directory`` (None when the system cannot say)."""
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    return int(st.f_bavail) * int(st.f_frsize)


def _existing_ancestor(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def check_writable(path: str, what: str, is_dir: bool = False) -> None:
    """Raise a one-line :class:`TrtedgeError` unless ``path`` (a file, or a directory when
    ``is_dir``) can be made: its nearest existing ancestor is a writable directory.
    Creates nothing."""
    if is_dir and os.path.exists(path) and not os.path.isdir(path):
        raise TrtedgeError("cannot write {} into {}: it is a file, not a directory".format(what, path))
    if not is_dir and os.path.isdir(path):
        raise TrtedgeError("cannot write {} to {}: it is a directory".format(what, path))
    base = os.path.abspath(path) if is_dir and os.path.isdir(path) else _existing_ancestor(path)
    if not os.path.isdir(base):
        raise TrtedgeError("cannot write {} {}: {} is a file, not a directory".format(what, path, base))
    if not os.access(base, os.W_OK):
        raise TrtedgeError("cannot write {} {}: directory {} is not writable".format(what, path, base))


def _make_parent(path: str, what: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise TrtedgeError("cannot create the directory for {} {}: {}".format(what, path, exc.strerror)) from None
    return directory


class VideoSink(Sink):
    """Annotated frames into a video file (.mp4/.m4v/.mov with mp4v, .avi/.mkv with MJPG).

    ``fps`` is the rate the video plays at (the source's). The size is the
    first frame's (later frames of another size are resized to it). Nothing
    is created until the first frame; frames go to ``NAME.partial-PID.EXT``
    beside ``path``, and ``close()`` finishes that file, checks that it reads
    back with every frame, and only then renames it to ``path``, so the file
    under the final name is always complete and playable. A disk that fills
    (OpenCV's writer does not say so itself: the free space is watched, and
    the file is read back) raises a one-line error naming ``path``, and the
    partial file is removed.

    ``writer_factory(path, fourcc, fps, (w, h))`` stands in for
    ``cv2.VideoWriter`` (a seam for tests).
    """

    def __init__(self, path: str, fps: float = 30.0, colours: Optional[Sequence[Colour]] = None,
                 writer_factory: Optional[Callable[..., Any]] = None) -> None:
        self._cv2 = require_cv2("writing a video")
        stem, ext = os.path.splitext(path)
        if ext.lower() not in VIDEO_CODECS:
            raise TrtedgeError("cannot write a video named {}: use one of {}".format(path, ", ".join(VIDEO_CODECS)))
        if not fps or fps <= 0:
            raise TrtedgeError("video fps must be > 0, got {!r}".format(fps))
        check_writable(path, "the video")
        self.path = path
        self.fps = float(fps)
        self.colours = colours
        self.fourcc = VIDEO_CODECS[ext.lower()]
        self.temp_path = "{}.partial-{}{}".format(stem, os.getpid(), ext)
        self.size: Optional[Tuple[int, int]] = None
        self.written = 0
        self.done = False  # the video is complete under its final name
        self._factory = writer_factory
        self._writer: Any = None
        self._closed = False
        self._frame_bytes = 0

    def _open(self, w: int, h: int) -> Any:
        cv2 = self._cv2
        directory = _make_parent(self.path, "the video")
        factory = self._factory or cv2.VideoWriter
        writer = factory(self.temp_path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
        if writer.isOpened():
            return writer
        writer.release()
        # OpenCV says only "not opened": tell a full or read-only disk from a missing encoder
        try:
            with open(self.temp_path, "wb") as probe:
                probe.write(b"\0" * 65536)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            self._remove_temp()
            raise _space_error(self.path, "video", exc) from None
        self._remove_temp()
        free = free_bytes(directory)
        if free is not None and free < LOW_SPACE_BYTES:
            raise _space_error(self.path, "video")
        raise TrtedgeError("cannot write video {} ({} at {}x{}): this OpenCV has no encoder for it; "
                           "try an .avi name (MJPG) or install an OpenCV built with FFmpeg".format(
                               self.path, self.fourcc, w, h))

    def write(self, frame: Frame, detections: Detections) -> bool:
        if self._closed:
            raise TrtedgeError("video {} is already closed".format(self.path))
        cv2 = self._cv2
        image = annotate(frame.image, detections, self.colours)
        if self._writer is None:
            h, w = image.shape[:2]
            self.size = (w, h)
            self._frame_bytes = w * h * 3
            self._writer = self._open(w, h)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        try:
            if self.written % 8 == 0 and self._low_space():  # a statvfs is cheap, but not free
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            if self._writer.write(image) is False:  # OpenCV >= 5 says so; 4.x returns None
                code = errno.ENOSPC if self._low_space() else errno.EIO
                raise OSError(code, os.strerror(code), self.path)
        except OSError as exc:
            self._abandon()
            raise _space_error(self.path, "video", exc) from None
        self.written += 1
        return True

    def _low_space(self) -> bool:
        free = free_bytes(os.path.dirname(os.path.abspath(self.temp_path)))
        return free is not None and free < max(LOW_SPACE_BYTES, 2 * self._frame_bytes)

    def _remove_temp(self) -> None:
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass

    def _abandon(self) -> None:
        """Drop the partial file (after a failure); the final name is never touched."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.release()
            except Exception:
                pass
        self._remove_temp()

    def _complete(self) -> bool:
        """Does the finished partial file read back, with (about) every frame written?"""
        if not os.path.isfile(self.temp_path) or os.path.getsize(self.temp_path) == 0:
            return False
        cap = self._cv2.VideoCapture(self.temp_path)
        try:
            if not cap.isOpened():
                return False
            count = cap.get(self._cv2.CAP_PROP_FRAME_COUNT)
            ok, _ = cap.read()
        finally:
            cap.release()
        # containers without an index (MJPG .mkv) estimate the count from the duration
        return bool(ok) and (count <= 0 or abs(count - self.written) <= max(2, self.written // 100))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.release()
        except OSError as exc:
            self._remove_temp()
            raise _space_error(self.path, "video", exc) from None
        if not self.written:
            self._remove_temp()
            return
        if not self._complete():
            directory = os.path.dirname(os.path.abspath(self.temp_path))
            free = free_bytes(directory)
            self._remove_temp()
            if free is not None and free < LOW_SPACE_BYTES:
                raise _space_error(self.path, "video")
            raise TrtedgeError("video {} came out unreadable after {} frames (disk full or failing?); "
                               "nothing was kept under that name".format(self.path, self.written))
        os.replace(self.temp_path, self.path)
        self.done = True

    def describe(self) -> Optional[str]:
        if not self.done:
            return None
        return "{} ({} frames, {:g} FPS)".format(self.path, self.written, self.fps)


def safe_label(label: str) -> str:
    """``label`` fit for a file name: runs of other characters become ``_``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(label)).strip("._")
    return text[:100] or "frame"


def video_paths(save: str, labels: Sequence[str]) -> List[str]:
    """Where ``--save`` writes, one video per source: ``save`` itself for one source,
    ``STEM_<source>EXT`` for several (the source's label without its extension,
    made safe for a file name; ``_2``, ``_3`` ... where two labels agree)."""
    if len(labels) <= 1:
        return [save]
    stem, ext = os.path.splitext(save)
    out, seen = [], set()  # type: List[str], set
    for label in labels:
        base = str(label)
        if os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            base = os.path.splitext(base)[0]
        name = "{}_{}".format(stem, safe_label(base))
        k, candidate = 1, name
        while candidate in seen:
            k += 1
            candidate = "{}_{}".format(name, k)
        seen.add(candidate)
        out.append(candidate + ext)
    return out


def image_names(paths: Sequence[str]) -> Dict[str, str]:
    """The names annotated copies of image files get in ``--save-dir``: each file's own
    name; where two files share one, their paths below the deepest common
    directory joined with ``_`` (``cam1/0001.jpg`` -> ``cam1_0001.jpg``)."""
    if not paths:
        return {}
    base = {p: os.path.basename(p) for p in paths}
    count = collections.Counter(base.values())
    if all(count[n] == 1 for n in base.values()):
        return base
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    return {p: "_".join(os.path.relpath(a, root).split(os.sep)) for p, a in zip(paths, absolute)}


def _write_file(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary name: a failure leaves nothing there."""
    temp = "{}.partial-{}{}".format(os.path.splitext(path)[0], os.getpid(), os.path.splitext(path)[1])
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


class ImageDirSink(Sink):
    """Annotated frames as files in ``DIR``: an image file's frame under the file's own
    name (``names`` maps a path to another name), a video's or a camera's
    frames as ``<source-label>_<frame:06d>.jpg``. The directory is made at
    the first frame; each file is written whole or not at all."""

    def __init__(self, directory: str, colours: Optional[Sequence[Colour]] = None, quality: int = 90,
                 names: Optional[Dict[str, str]] = None) -> None:
        self._cv2 = require_cv2("writing images")
        check_writable(directory, "images", is_dir=True)
        self.directory = directory
        self.colours = colours
        self.quality = int(quality)
        self.names = dict(names or {})
        self.written = 0
        self._made = False

    def path_for(self, frame: Frame) -> str:
        file = getattr(frame, "file", None)
        if file:
            name = self.names.get(file) or os.path.basename(file)
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                return os.path.join(self.directory, name)
        return os.path.join(self.directory, "{}_{:06d}.jpg".format(safe_label(frame.source), frame.index))

    def write(self, frame: Frame, detections: Detections) -> bool:
        cv2 = self._cv2
        if not self._made:
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise TrtedgeError("cannot create the image directory {}: {}".format(
                    self.directory, exc.strerror)) from None
            self._made = True
        path = self.path_for(frame)
        image = annotate(frame.image, detections, self.colours)
        ext = os.path.splitext(path)[1].lower()
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality] if ext in (".jpg", ".jpeg") else []
        ok, data = cv2.imencode(ext, image, params)
        if not ok:
            raise TrtedgeError("could not encode image {} as {}".format(path, ext))
        try:
            _write_file(path, data.tobytes())
        except OSError as exc:
            raise _space_error(path, "image", exc) from None
        self.written += 1
        return True

    def describe(self) -> Optional[str]:
        if not self.written:
            return None
        return "{}{} ({} images)".format(self.directory.rstrip(os.sep), os.sep, self.written)


class JsonLinesSink(Sink):
    """One JSON object per frame and line, flushed at once; ``-`` is standard output.

    ``{"source": ..., "frame": N, ["file": PATH,] "time": T, "detections": [{"label", "class_id", "score",
    "box": [x1, y1, x2, y2]}]}`` — ``file`` for frames of image files. The
    file is created at the first frame (a run that fails before leaves
    nothing, and an older file of that name untouched); a write that fails
    (disk full) is cut back to the last whole line and raises a one-line error.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[IO[str]] = None
        self._owned = path != "-"
        if self._owned:
            check_writable(path, "JSON lines")
        self.written = 0
        self._good = 0  # bytes of whole lines written
        self._closed = False

    def _handle(self) -> IO[str]:
        if self._file is None:
            if not self._owned:
                self._file = sys.stdout
            else:
                _make_parent(self.path, "JSON lines")
                try:
                    self._file = open(self.path, "w", encoding="utf-8")
                except OSError as exc:
                    raise TrtedgeError("cannot write JSON lines to {}: {}".format(self.path, exc.strerror)) from None
        return self._file

    def write(self, frame: Frame, detections: Detections) -> bool:
        if self._closed:
            raise TrtedgeError("JSON lines {} is already closed".format(self.path))
        record = {"source": frame.source, "frame": int(frame.index)}  # type: Dict[str, Any]
        if getattr(frame, "file", None):
            record["file"] = frame.file
        record["time"] = round(float(frame.time), 6)
        record["detections"] = detections.to_json()
        line = json.dumps(record, separators=(", ", ": ")) + "\n"
        handle = self._handle()
        try:
            handle.write(line)
            handle.flush()
        except OSError as exc:
            self._cut_back()
            raise _space_error(self.path, "JSON lines", exc, "the whole lines before it are kept") from None
        self._good += len(line.encode("utf-8"))
        self.written += 1
        return True

    def _cut_back(self) -> None:
        handle, self._file = self._file, None
        self._closed = True
        if handle is None or not self._owned:
            return
        try:
            handle.close()
        except OSError:
            pass
        try:
            if self._good:
                os.truncate(self.path, self._good)
            else:
                os.unlink(self.path)
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        handle, self._file = self._file, None
        if handle is not None and self._owned:
            try:
                handle.close()
            except OSError as exc:
                self._file = handle
                self._cut_back()
                raise _space_error(self.path, "JSON lines", exc, "the whole lines before it are kept") from None

    def describe(self) -> Optional[str]:
        if not self.written or not self._owned:
            return None
        return "{} ({} lines)".format(self.path, self.written)


class PerSourceSink(Sink):
    """Routes each frame to the sink of its source (``{source label: sink}``): one video per source."""

    def __init__(self, sinks: Dict[str, Sink]) -> None:
        self.sinks = dict(sinks)

    def write(self, frame: Frame, detections: Detections) -> bool:
        sink = self.sinks.get(frame.source)
        return True if sink is None else sink.write(frame, detections)

    def close(self) -> None:
        errors = []
        for sink in self.sinks.values():
            try:
                sink.close()
            except TrtedgeError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def describe(self) -> Optional[str]:
        parts = [d for d in (getattr(s, "describe", lambda: None)() for s in self.sinks.values()) if d]
        return ", ".join(parts) or None


# --------------------------------------------------------------------------- output checks


def _same_file(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_outputs(outputs: Sequence[Tuple[str, str]], inputs: Sequence[Tuple[str, str]]) -> None:
    """Refuse, with one line and before anything is opened, an output that is one of the
    inputs or another output. ``outputs`` and ``inputs`` are ``(what, path)``
    pairs (``("--save", "out.mp4")``, ``("the source", "in.mp4")``); paths are
    compared by what they resolve to (links, ``..``; the same inode where
    both exist)."""
    for k, (what, path) in enumerate(outputs):
        for in_what, in_path in inputs:
            if _same_file(path, in_path):
                raise TrtedgeError("{} {} is {} ({}): writing it would destroy it; choose another name".format(
                    what, path, in_what, in_path))
        for other_what, other in outputs[:k]:
            if _same_file(path, other):
                raise TrtedgeError("{} {} and {} {} are the same file: one would overwrite the other; give "
                                   "each its own name".format(other_what, other, what, path))


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
        #: frames the loop itself dropped (a live source's reader queue was full)
        self.dropped = 0

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
            "dropped": int(dropped) + self.dropped,
        }


def format_summary(summary: Dict[str, Any]) -> str:
    """A short human-readable block of :meth:`RunStats.summary` (plus ``"written"``: the files)."""
    lat = summary.get("latency_ms") or {}

    def ms(key: str) -> str:
        value = lat.get(key)
        return "-" if value is None else "{:.1f} ms".format(value)

    lines = [
        "frames   {} in {:.1f} s ({:.1f} FPS)".format(summary.get("frames", 0), summary.get("seconds", 0.0),
                                                     summary.get("fps", 0.0)),
        "latency  p50 {}  p90 {}  p99 {}  (capture to result)".format(ms("p50"), ms("p90"), ms("p99")),
        "dropped  {} (frames the camera replaced before they were read)".format(summary.get("dropped", 0)),
    ]
    if "written" in summary:
        lines.append("wrote    {}".format(", ".join(summary["written"]) or "nothing"))
    return "\n".join(lines)


class Progress:
    """A live line on ``stream`` (standard error) during a run: frames, FPS, dropped.

    On a terminal one line is rewritten in place (``\r``) about twice a
    second; otherwise (a log file, a pipe) a whole line is written every
    ``every`` seconds, so that a long or live run is never silent.
    """

    def __init__(self, stream: Optional[IO[str]] = None, every: Optional[float] = None,
                 tty: Optional[bool] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = bool(self.stream.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.every = float(every) if every is not None else (0.5 if tty else 5.0)
        self._start = time.monotonic()
        self._last = self._start
        self._last_frames = 0
        self._shown = False
        self.lines = 0

    def update(self, frames: int, dropped: int = 0, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last < self.every:
            return
        rate = (frames - self._last_frames) / max(now - self._last, 1e-9)
        self._last, self._last_frames = now, frames
        text = "{:>8} frames  {:6.1f} FPS  dropped {}  {:.0f} s".format(frames, rate, dropped, now - self._start)
        try:
            if self.tty:
                self.stream.write("\r" + text + "\033[K")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            return
        self._shown = True
        self.lines += 1

    def finish(self) -> None:
        """Clear the live line (on a terminal) before the summary."""
        if self._shown and self.tty:
            try:
                self.stream.write("\r\033[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._shown = False


# --------------------------------------------------------------------------- factory


def open_sinks(show: bool = False, save: Optional[str] = None, save_dir: Optional[str] = None,
               json_path: Optional[str] = None, fps: float = 30.0,
               colours: Optional[Sequence[Colour]] = None, sources: Optional[Sequence[Any]] = None,
               image_files: Optional[Sequence[str]] = None) -> List[Sink]:
    """The sinks the flags ask for (window, video, image directory, JSON lines), in that order.

    ``sources`` (opened :class:`~trtedge.runtime.sources.Source` objects)
    give each video its source's frame rate (``fps`` where a source has
    none); with several sources, ``save`` becomes one video per source (see
    :func:`video_paths`). ``image_files`` are the image files the sources
    read, for their names in ``save_dir`` (:func:`image_names`). Nothing is
    created on disk until a frame arrives. If one sink cannot be made, those
    already made are closed and the error raised.
    """
    sinks: List[Sink] = []
    try:
        if show:
            sinks.append(WindowSink(colours=colours))
        if save:
            srcs = list(sources or [])
            if len(srcs) <= 1:
                rate = (getattr(srcs[0], "fps", None) if srcs else None) or fps
                sinks.append(VideoSink(save, fps=rate, colours=colours))
            else:
                paths = video_paths(save, [s.name for s in srcs])
                sinks.append(PerSourceSink({s.name: VideoSink(p, fps=getattr(s, "fps", None) or fps,
                                                              colours=colours) for s, p in zip(srcs, paths)}))
        if save_dir:
            sinks.append(ImageDirSink(save_dir, colours=colours, names=image_names(list(image_files or []))))
        if json_path:
            sinks.append(JsonLinesSink(json_path))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def written(sinks: Sequence[Sink]) -> List[str]:
    """What the sinks wrote, for the summary (``["out.mp4 (40 frames, 10 FPS)", ...]``)."""
    out = []
    for sink in sinks:
        text = getattr(sink, "describe", lambda: None)()
        if text:
            out.append(text)
    return out
