"""Run the real ``trtedge`` command (a subprocess) the way a user does."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(*args, script=None, module="trtedge"):
    """(argv, env) of ``python -m MODULE ARGS`` (or ``python SCRIPT ARGS``), the test tree's root on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return [sys.executable] + ([script] if script else ["-m", module]) + [str(a) for a in args], env


def run(*args, cwd=None, timeout=600, script=None, module="trtedge"):
    """Run ``python -m MODULE ARGS`` (or ``python SCRIPT ARGS``); returns CompletedProcess."""
    cmd, env = command(*args, script=script, module=module)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, code=2, contains=None):
    """Exit ``code``, exactly one error line on stderr, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("trtedge: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if contains:
        assert contains in errors[0], errors[0]
    return errors[0]
