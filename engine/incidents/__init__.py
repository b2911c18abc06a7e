"""Findings become incidents: grouping, lifecycle, level hysteresis, resolution."""
