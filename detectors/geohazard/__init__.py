"""Landslide and flooding detectors: rainfall thresholds, soil water, displacement, failure forecasts, levels."""
