"""Files: atomic writes and content hashes.

Atomic writes: a killed process never leaves a partial file behind
under the final name (only a ``.partial-PID`` file, removed on the next
write to the same place)."""

import contextlib
import hashlib
import os
from typing import IO, Any, Iterator, Union


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Write to ``path.partial-PID``, fsync, then rename over ``path``."""
    import glob

    directory = os.path.dirname(os.path.abspath(path))
    for stale in glob.glob(glob.escape(path) + ".partial-*"):
        if not _owner_alive(stale):  # another live process may be writing it right now
            remove_quietly(stale)
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


def _owner_alive(partial: str) -> bool:
    """Whether the process named by a ``.partial-PID`` suffix still runs."""
    try:
        pid = int(partial.rsplit(".partial-", 1)[1].split(".")[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def remove_quietly(path: str) -> None:
    """Remove a file if it is there; never raise."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_atomic(path: str, data: Union[bytes, str]) -> None:
    """Write ``data`` to ``path`` atomically. An ``OSError`` of the write (a full disk names
    no file) gets ``path`` as its ``filename`` and ``bytes_to_write``, so its message can
    say which file and how much room it needed."""
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with atomic_open(path, mode) as f:
            f.write(data)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path
        exc.bytes_to_write = len(data)  # type: ignore[attr-defined]
        raise


def _feed(h: Any, path: str) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def sha256_file(path: str) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    _feed(h, path)
    return h.hexdigest()


def sha256_path(path: str) -> str:
    """sha256 of a file, or of a directory tree (relative names and contents, sorted)."""
    if not os.path.isdir(path):
        return sha256_file(path)
    h = hashlib.sha256()
    for name in sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs):
        h.update(os.path.relpath(name, path).encode())
        _feed(h, name)
    return h.hexdigest()
