"""polydiff-tabular: mixed-type synthetic tables (TabDDPM) for polydiff (see README.md)."""

__version__ = "0.1.0"
