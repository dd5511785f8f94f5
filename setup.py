"""trtedge: TensorRT engines for detectors on edge devices.

Core requirements are light (no TensorRT, TensorFlow, PyTorch or OpenCV):
full TensorRT comes from NVIDIA (JetPack on a Jetson) and is never a pip
requirement; the extras add the rest.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "trtedge", "version.py"), encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

TF = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0"]
TORCH = ["torch==2.13.0"]
RTX = ["tensorrt-rtx==1.7.1.116"]
CUDA = ["cuda-python==13.4.4"]
CV = ["opencv-python-headless==5.0.0.93"]
# ONNX Runtime is an extra, like OpenCV: on a Jetson, a pip "onnxruntime" would
# shadow the GPU build users install from NVIDIA's wheels.
ORT = ["onnxruntime==1.31.1"]
# INT8 Q/DQ on the CPU: NVIDIA ModelOpt without its [onnx] extra (that one forces onnx 1.21, onnxruntime-gpu
# and CuPy), plus the pieces its ONNX quantiser imports; torch is ModelOpt's own requirement (the CPU build).
INT8 = ["nvidia-modelopt==0.47.0", "onnxslim==0.1.98", "onnxscript==0.7.2", "lief==1.0.0",
        "ml_dtypes==0.7.0"] + ORT + TORCH
# trtedge eval (COCO mAP) and trtedge profile --png
EVAL = ["pycocotools==2.0.11"]
PLOT = ["matplotlib==3.11.2"]

setup(
    name="trtedge",
    version=VERSION,
    description="TensorRT engine builder and runtime for detectors on edge devices",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["trtedge", "trtedge.*"]),
    package_data={
        "trtedge.specs": ["*.yaml", "labels/*.txt"],
        "trtedge.models": ["*.onnx", "*/*", "*/*/*", "*/*/*/*"],
    },
    include_package_data=True,
    install_requires=[
        "numpy>=1.20",
        "onnx>=1.12",
        "onnx-graphsurgeon>=0.3.25",
        "onnxconverter-common>=1.13",
        "pyyaml>=5.1",
    ],
    extras_require={
        "rtx": RTX,
        "tf": TF,
        "torch": TORCH,
        "cuda": CUDA,
        "cv": CV,
        "ort": ORT,
        "int8": INT8,
        "eval": EVAL,
        "plot": PLOT,
        "dev": [
            "numpy==2.4.6",
            "protobuf==7.36.2",
            "onnx==1.23.2",
            "onnx-graphsurgeon==0.6.1",
            "onnxconverter-common==1.16.0",
            "polygraphy==0.53.6",
            "pytest>=8",
            "mypy==1.14.1",  # the last mypy that checks for Python 3.8
            "vermin>=1.6",
            "pyyaml>=6",
            "scikit-image==0.26.0",  # real photos (skimage.data) for the TF OD API tests
        ] + ORT + RTX + TF + TORCH + CUDA + CV + INT8 + EVAL + PLOT,
    },
    entry_points={"console_scripts": ["trtedge=trtedge.cli:entry"]},
    classifiers=["Programming Language :: Python :: 3", "Operating System :: POSIX :: Linux"],
)
