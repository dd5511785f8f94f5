"""How many CPU cores this process may run on."""

import os
from typing import Optional, Set, Tuple


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity where the OS has one
    (``taskset``, a container's cpuset), else every core. ``os.cpu_count()``
    counts the machine's cores even where the process may use only two, and
    thread counts made from it oversubscribe those two."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def split_cores(engine_threads: int) -> Optional[Tuple[Set[int], Set[int]]]:
    """The cores this process may use, split into the engine's (the first
    ``engine_threads``) and the rest, for a pipeline whose engine runs on the
    CPU (ONNX Runtime); None where there is nothing to split: an engine on the
    GPU (0 threads), no more cores than engine threads, or an OS without CPU
    affinity."""
    if engine_threads <= 0:
        return None
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(cores) <= engine_threads:
        return None
    return set(cores[:engine_threads]), set(cores[engine_threads:])


def pin_thread(cores: Optional[Set[int]]) -> Optional[Set[int]]:
    """Keep the calling thread on ``cores`` (Linux: an affinity is a thread's
    own); returns the affinity it had, for :func:`pin_thread` to put back, or
    None where it could not be set (nothing changed)."""
    if not cores:
        return None
    try:
        before = set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores)
        return before
    except (AttributeError, OSError, ValueError):
        return None
