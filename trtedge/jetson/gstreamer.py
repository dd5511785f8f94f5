"""GStreamer pipeline strings for the camera and stream sources OpenCV opens.

Pure functions: each returns the text OpenCV passes to ``gst_parse_launch``
when it is opened with ``cv2.VideoCapture(text, cv2.CAP_GSTREAMER)``. Every
pipeline ends in the same sink, which hands OpenCV BGR frames and keeps only
the newest one (a slow reader sees fresh frames, not a growing backlog)::

    ... ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false

The ``nv*`` elements (``nvarguscamerasrc``, ``nvvidconv``, ``nvv4l2decoder``,
``nvjpegdec``) exist on Jetson only (JetPack's GStreamer plugins); the
``hardware=False`` variants use the stock software elements and run anywhere
GStreamer does. Whether this OpenCV can run any of them at all is
:func:`gstreamer_available`; whether an element is installed is
:func:`element_available`.
"""

import functools
import re
import shutil
import subprocess
from typing import Any, Dict, Optional, Union
from urllib.parse import parse_qsl, urlsplit

from ..errors import TrtedgeError

__all__ = [
    "APPSINK",
    "csi_pipeline",
    "rtsp_pipeline",
    "usb_pipeline",
    "http_mjpeg_pipeline",
    "parse_csi_url",
    "gstreamer_available",
    "element_available",
]

APPSINK = "appsink drop=true max-buffers=1 sync=false"
"""The sink every pipeline here ends in: newest frame only, no clock sync."""

_TO_BGR = "videoconvert ! video/x-raw, format=BGR ! " + APPSINK

_CODECS = ("h264", "h265")

#: parameters a ``csi://`` URL may carry, with what each accepts
_CSI_PARAMS = {
    "width": "a positive integer",
    "height": "a positive integer",
    "fps": "a positive integer",
    "flip": "0-7, the nvvidconv flip-method",
    "out_width": "a positive integer",
    "out_height": "a positive integer",
}


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TrtedgeError("{} must be a positive integer, got {!r}".format(name, value))
    return value


def _quote(value: str) -> str:
    """A property value for gst_parse_launch: quoted, so '!', spaces and '&' survive."""
    return '"{}"'.format(value.replace("\\", "\\\\").replace('"', '\\"'))


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0,
                 out_width: Optional[int] = None, out_height: Optional[int] = None) -> str:
    """A Jetson CSI camera (``nvarguscamerasrc``) at ``width`` x ``height`` and ``fps``.

    The sensor mode is chosen by ``width``/``height``/``fps``; ``nvvidconv``
    flips (``flip`` 0-7: 0 none, 2 rotate 180, 4 horizontal, 6 vertical, ...)
    and scales to ``out_width`` x ``out_height`` (default: the capture size).
    """
    if isinstance(sensor_id, bool) or not isinstance(sensor_id, int) or sensor_id < 0:
        raise TrtedgeError("sensor_id must be an integer >= 0, got {!r}".format(sensor_id))
    _positive("width", width)
    _positive("height", height)
    _positive("fps", fps)
    if isinstance(flip, bool) or not isinstance(flip, int) or not 0 <= flip <= 7:
        raise TrtedgeError("flip must be an integer 0-7 (nvvidconv flip-method), got {!r}".format(flip))
    out_w = width if out_width is None else _positive("out_width", out_width)
    out_h = height if out_height is None else _positive("out_height", out_height)
    return (
        "nvarguscamerasrc sensor-id={} ! "
        "video/x-raw(memory:NVMM), width={}, height={}, framerate={}/1, format=NV12 ! "
        "nvvidconv flip-method={} ! "
        "video/x-raw, width={}, height={}, format=BGRx ! {}"
    ).format(sensor_id, width, height, fps, flip, out_w, out_h, _TO_BGR)


def rtsp_pipeline(url: str, latency: int = 200, codec: str = "h264", hardware: bool = True) -> str:
    """An RTSP stream of ``codec`` (``h264`` or ``h265``).

    ``hardware=True`` decodes on the Jetson's NVDEC (``nvv4l2decoder``, then
    ``nvvidconv`` out of NVMM memory); ``hardware=False`` uses libav's
    software decoder (``avdec_h264``/``avdec_h265``, gst-libav).
    ``latency`` is rtspsrc's jitter buffer in milliseconds.
    """
    if not isinstance(url, str) or not url.lower().startswith(("rtsp://", "rtsps://")):
        raise TrtedgeError("an RTSP URL starts with rtsp:// or rtsps://, got {!r}".format(url))
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise TrtedgeError("latency must be an integer >= 0 (milliseconds), got {!r}".format(latency))
    codec = str(codec).lower()
    if codec not in _CODECS:
        raise TrtedgeError("codec must be one of {}, got {!r}".format(", ".join(_CODECS), codec))
    head = "rtspsrc location={} latency={} ! rtp{}depay ! {}parse ! ".format(_quote(url), latency, codec, codec)
    if hardware:
        return head + "nvv4l2decoder ! nvvidconv ! video/x-raw, format=BGRx ! " + _TO_BGR
    return head + "avdec_{} ! {}".format(codec, _TO_BGR)


def usb_pipeline(device: Union[str, int] = "/dev/video0", width: int = 640, height: int = 480, fps: int = 30,
                 mjpeg: bool = False) -> str:
    """A V4L2 (USB) camera at ``width`` x ``height`` and ``fps``.

    ``mjpeg=True`` asks the camera for Motion-JPEG, which most USB cameras
    need for their larger sizes at full frame rate, and decodes it with
    ``jpegdec``.
    """
    if isinstance(device, int) and not isinstance(device, bool):
        device = "/dev/video{}".format(device)
    if not isinstance(device, str) or not device:
        raise TrtedgeError("device must be a path such as /dev/video0 or an index, got {!r}".format(device))
    _positive("width", width)
    _positive("height", height)
    _positive("fps", fps)
    caps = "width={}, height={}, framerate={}/1".format(width, height, fps)
    if mjpeg:
        return "v4l2src device={} ! image/jpeg, {} ! jpegdec ! {}".format(device, caps, _TO_BGR)
    return "v4l2src device={} ! video/x-raw, {} ! {}".format(device, caps, _TO_BGR)


def http_mjpeg_pipeline(url: str, hardware: bool = False) -> str:
    """A Motion-JPEG stream over HTTP(S) (``multipart/x-mixed-replace``, as IP cameras serve).

    ``hardware=True`` decodes the JPEGs with the Jetson's ``nvjpegdec``.
    """
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise TrtedgeError("an MJPEG URL starts with http:// or https://, got {!r}".format(url))
    decoder = "nvjpegdec" if hardware else "jpegdec"
    return "souphttpsrc location={} is-live=true do-timestamp=true ! multipartdemux ! image/jpeg ! {} ! {}".format(
        _quote(url), decoder, _TO_BGR)


def _allowed_csi() -> str:
    return ", ".join("{} ({})".format(k, v) for k, v in _CSI_PARAMS.items())


def parse_csi_url(url: str) -> Dict[str, int]:
    """``csi://N?width=W&height=H&fps=F&flip=M&out_width=..&out_height=..`` -> :func:`csi_pipeline` keywords.

    ``N`` is the sensor id (``csi://`` alone is sensor 0). Values not given
    are left out, so ``csi_pipeline(**parse_csi_url(url))`` fills in its own
    defaults. An unknown parameter or a bad value raises a one-line
    :class:`~trtedge.errors.TrtedgeError` listing the allowed parameters.
    """
    text = str(url).strip()
    if not text.lower().startswith("csi://"):
        raise TrtedgeError("a CSI camera is written csi://N[?parameters], got {!r}".format(text))
    parts = urlsplit(text)
    sensor = parts.netloc or "0"
    if parts.path not in ("", "/") or not re.fullmatch(r"[0-9]+", sensor):
        raise TrtedgeError("{}: the sensor id must be an integer, as in csi://0?width=1920&height=1080 "
                           "(parameters: {})".format(text, _allowed_csi()))
    result: Dict[str, int] = {"sensor_id": int(sensor)}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _CSI_PARAMS:
            raise TrtedgeError("{}: unknown parameter {!r}; allowed parameters: {}".format(text, key, _allowed_csi()))
        if key in result:
            raise TrtedgeError("{}: parameter {!r} is given twice".format(text, key))
        if not re.fullmatch(r"[0-9]+", value.strip()):
            raise TrtedgeError("{}: {}={!r} is not {}; allowed parameters: {}".format(
                text, key, value, _CSI_PARAMS[key], _allowed_csi()))
        number = int(value)
        if (key == "flip" and number > 7) or (key != "flip" and number <= 0):
            raise TrtedgeError("{}: {}={} is not {}; allowed parameters: {}".format(
                text, key, number, _CSI_PARAMS[key], _allowed_csi()))
        result[key] = number
    return result


@functools.lru_cache(maxsize=None)
def gstreamer_available() -> bool:
    """True when the installed OpenCV (``cv2``) was built with GStreamer.

    pip's ``opencv-python`` wheels are not; JetPack's OpenCV is. False when
    cv2 is not installed.
    """
    try:
        import cv2
    except ImportError:
        return False
    try:
        info = cv2.getBuildInformation()
    except Exception:  # an OpenCV too odd to say: treat as without
        return False
    match = re.search(r"^\s*GStreamer:\s*(\S+)", info, re.M)
    return bool(match and match.group(1).upper().startswith("YES"))


@functools.lru_cache(maxsize=None)
def element_available(name: str) -> bool:
    """True when GStreamer has the element ``name`` (``gst-inspect-1.0 name`` succeeds).

    False when ``gst-inspect-1.0`` is not installed, fails or takes longer
    than 20 s (its first run builds the plugin registry). Never raises.
    """
    try:
        if not name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            return False
        exe = shutil.which("gst-inspect-1.0")
        if exe is None:
            return False
        proc = subprocess.run([exe, name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        return proc.returncode == 0
    except Exception:
        return False
