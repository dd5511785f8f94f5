"""What the command line says to the user: one line on stderr, flushed at once."""

import sys


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
