try:
    from .cli import entry
except KeyboardInterrupt:  # Ctrl-C while Python loads trtedge: one line, exit 130, no traceback
    import sys

    sys.stderr.write("trtedge: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    entry()
