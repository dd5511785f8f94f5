"""How many CPU cores this process may run on."""

import os


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity where the OS has one
    (``taskset``, a container's cpuset), else every core. ``os.cpu_count()``
    counts the machine's cores even where the process may use only two, and
    thread counts made from it oversubscribe those two."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)
