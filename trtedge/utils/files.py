"""Atomic file writes: a killed process never leaves a partial file behind
under the final name (only a ``.partial-PID`` file, removed on the next
write to the same place)."""

import contextlib
import glob
import os
from typing import IO, Iterator, Union


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Write to ``path.partial-PID``, fsync, then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    for stale in glob.glob(glob.escape(path) + ".partial-*"):
        with contextlib.suppress(OSError):
            os.unlink(stale)
    tmp = "{}.partial-{}".format(path, os.getpid())
    ok = False
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str, data: Union[bytes, str]) -> None:
    mode = "wb" if isinstance(data, bytes) else "w"
    with atomic_open(path, mode) as f:
        f.write(data)
