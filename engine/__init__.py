"""gridwatch: a streaming alert engine for geohazard and fire monitoring."""

__version__ = "0.1.0"
