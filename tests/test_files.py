"""Atomic writes: a process killed mid-write leaves no file under the final
name, and the next write to the same place clears what the dead one left."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from trtedge.utils.files import atomic_open, write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_and_replace(tmp_path):
    path = tmp_path / "engine.bin"
    write_atomic(str(path), b"first")
    write_atomic(str(path), b"second")
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == ["engine.bin"]


def test_exception_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    write_atomic(str(path), "old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["m.json"]


def test_sigkill_mid_write_leaves_no_final_file(tmp_path):
    path = tmp_path / "engine.bin"
    code = textwrap.dedent("""
        import os, signal
        from trtedge.utils.files import atomic_open
        with atomic_open({path!r}) as f:
            f.write(b"x" * 100000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """).format(path=str(path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and ".partial-" in left[0]  # the dead process's temporary file
    write_atomic(str(path), b"complete")
    assert os.listdir(tmp_path) == ["engine.bin"] and path.read_bytes() == b"complete"
