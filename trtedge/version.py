"""trtedge's version, in one place (setup.py reads it; every module imports it from here)."""

__version__ = "0.2.0"
