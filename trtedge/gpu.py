"""Which NVIDIA GPU this process can see, asked through cuda-python.

cuda-python is optional and imported lazily: importing this module costs
nothing. Nothing here raises; "no GPU", "no driver" and "no cuda-python" all
read as ``None`` from :func:`visible_gpu`. :func:`probe_gpu` says which.
"""

import importlib
from typing import Any, Dict, Optional, Tuple

# probe_gpu() statuses
GPU_OK = "ok"
GPU_NONE = "no-gpu"  # cuda-python works but reports no device / no driver
GPU_NO_CUDA_PYTHON = "no-cuda-python"  # cannot ask: cuda-python missing or broken


def _runtime_module() -> Optional[Any]:
    """The CUDA runtime bindings of cuda-python (12.x/13.x or 11.x layout)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:  # ImportError, or a broken install raising anything
            continue
    return None


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value).strip()


def _ok(result: Any) -> Tuple[bool, Any]:
    """cuda-python returns (err, value...); err is cudaSuccess (== 0) on success."""
    if not isinstance(result, tuple) or not result:
        return False, None
    err = result[0]
    try:
        failed = int(err) != 0
    except Exception:
        failed = True
    if failed:
        return False, None
    return True, result[1] if len(result) > 1 else None


def probe_gpu(index: int = 0) -> Tuple[str, Optional[Dict[str, str]]]:
    """(status, info): status is GPU_OK, GPU_NONE or GPU_NO_CUDA_PYTHON.

    info is ``{"name": ..., "compute_capability": "8.7"}`` when status is GPU_OK.
    Never raises.
    """
    try:
        runtime = _runtime_module()
        if runtime is None:
            return GPU_NO_CUDA_PYTHON, None
        ok, count = _ok(runtime.cudaGetDeviceCount())
        if not ok or count is None or int(count) <= index:
            return GPU_NONE, None
        ok, props = _ok(runtime.cudaGetDeviceProperties(index))
        if not ok or props is None:
            return GPU_NONE, None
        name = _text(getattr(props, "name", "")) or "unknown"
        major = getattr(props, "major", None)
        minor = getattr(props, "minor", None)
        if major is None or minor is None:
            cc = "unknown"
        else:
            cc = "{}.{}".format(int(major), int(minor))
        return GPU_OK, {"name": name, "compute_capability": cc}
    except Exception:
        return GPU_NO_CUDA_PYTHON, None


def visible_gpu() -> Optional[Dict[str, str]]:
    """``{"name", "compute_capability"}`` of GPU 0, or None (no GPU, driver or cuda-python)."""
    status, info = probe_gpu(0)
    return info if status == GPU_OK else None
