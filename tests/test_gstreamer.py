"""GStreamer pipeline strings (trtedge.jetson.gstreamer), checked as text."""

import pytest

from trtedge.errors import TrtedgeError
from trtedge.jetson import gstreamer as gst

SINK = "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"


def test_csi_pipeline_defaults():
    text = gst.csi_pipeline()
    assert text == (
        "nvarguscamerasrc sensor-id=0 ! "
        "video/x-raw(memory:NVMM), width=1280, height=720, framerate=30/1, format=NV12 ! "
        "nvvidconv flip-method=0 ! video/x-raw, width=1280, height=720, format=BGRx ! " + SINK)


def test_csi_pipeline_options():
    text = gst.csi_pipeline(sensor_id=1, width=1920, height=1080, fps=60, flip=2, out_width=960, out_height=540)
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "video/x-raw(memory:NVMM), width=1920, height=1080, framerate=60/1, format=NV12" in text
    assert "nvvidconv flip-method=2 ! video/x-raw, width=960, height=540, format=BGRx" in text
    assert text.endswith(SINK)


@pytest.mark.parametrize("kwargs", [dict(flip=8), dict(width=0), dict(fps=-1), dict(sensor_id=-1),
                                    dict(out_width=0), dict(height=True)])
def test_csi_pipeline_rejects_bad_values(kwargs):
    with pytest.raises(TrtedgeError):
        gst.csi_pipeline(**kwargs)


def test_rtsp_pipeline_hardware_h264():
    text = gst.rtsp_pipeline("rtsp://10.0.0.5:554/live", latency=100)
    assert text == ('rtspsrc location="rtsp://10.0.0.5:554/live" latency=100 ! rtph264depay ! h264parse ! '
                    "nvv4l2decoder ! nvvidconv ! video/x-raw, format=BGRx ! " + SINK)


def test_rtsp_pipeline_software_and_h265():
    soft = gst.rtsp_pipeline("rtsp://cam/s", hardware=False)
    assert "rtph264depay ! h264parse ! avdec_h264 ! " + SINK in soft
    assert "nvv4l2decoder" not in soft and "nvvidconv" not in soft
    h265 = gst.rtsp_pipeline("rtsps://cam/s", codec="H265")
    assert "rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv" in h265
    assert "avdec_h265" in gst.rtsp_pipeline("rtsp://cam/s", codec="h265", hardware=False)
    assert "latency=200" in soft


def test_rtsp_pipeline_quotes_the_url():
    text = gst.rtsp_pipeline('rtsp://user:p!a"ss@cam/s?a=1&b=2')
    assert 'location="rtsp://user:p!a\\"ss@cam/s?a=1&b=2"' in text


@pytest.mark.parametrize("args", [("http://cam/s",), ("rtsp://cam/s", -1), ("rtsp://cam/s", 200, "vp8")])
def test_rtsp_pipeline_rejects(args):
    with pytest.raises(TrtedgeError):
        gst.rtsp_pipeline(*args)


def test_usb_pipeline():
    assert gst.usb_pipeline() == ("v4l2src device=/dev/video0 ! video/x-raw, width=640, height=480, "
                                  "framerate=30/1 ! " + SINK)
    text = gst.usb_pipeline(2, 1280, 720, 15, mjpeg=True)
    assert text.startswith("v4l2src device=/dev/video2 ! image/jpeg, width=1280, height=720, framerate=15/1 ! jpegdec")
    assert text.endswith(SINK)


def test_http_mjpeg_pipeline():
    text = gst.http_mjpeg_pipeline("http://cam/video.mjpg")
    assert text.startswith('souphttpsrc location="http://cam/video.mjpg"')
    assert "multipartdemux ! image/jpeg ! jpegdec ! " + SINK in text
    assert "nvjpegdec" in gst.http_mjpeg_pipeline("https://cam/v", hardware=True)
    with pytest.raises(TrtedgeError):
        gst.http_mjpeg_pipeline("rtsp://cam/v")


def test_parse_csi_url():
    assert gst.parse_csi_url("csi://0?width=1920&height=1080&fps=30&flip=2") == dict(
        sensor_id=0, width=1920, height=1080, fps=30, flip=2)
    assert gst.parse_csi_url("csi://1") == {"sensor_id": 1}
    assert gst.parse_csi_url("csi://") == {"sensor_id": 0}
    parsed = gst.parse_csi_url("csi://0?out_width=640&out_height=360&flip=0")
    assert parsed == dict(sensor_id=0, out_width=640, out_height=360, flip=0)
    text = gst.csi_pipeline(**gst.parse_csi_url("csi://1?width=1920&height=1080&fps=30&flip=2"))
    assert "sensor-id=1" in text and "width=1920, height=1080, framerate=30/1" in text and "flip-method=2" in text


@pytest.mark.parametrize("url, words", [
    ("csi://0?widht=1920", ["unknown parameter 'widht'", "width", "out_height", "flip"]),
    ("csi://0?width=abc", ["width='abc'", "positive integer"]),
    ("csi://0?flip=9", ["flip=9", "0-7"]),
    ("csi://0?fps=0", ["fps=0"]),
    ("csi://0?width=1&width=2", ["given twice"]),
    ("csi://cam?width=1", ["sensor id"]),
    ("usb://0", ["csi://N"]),
])
def test_parse_csi_url_rejects_with_one_line(url, words):
    with pytest.raises(TrtedgeError) as info:
        gst.parse_csi_url(url)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_availability_probes_never_raise():
    assert isinstance(gst.gstreamer_available(), bool)
    assert gst.element_available("no-such-element-xyz") is False
    assert gst.element_available("") is False
    assert gst.element_available("bad name; rm -rf /") is False
    assert isinstance(gst.element_available("fakesink"), bool)
