"""Pluggable detectors: one module each, a pydantic config class plus a detector class (see base.py)."""
