"""The sensor metrics of the MQTT contract (DESIGN: "Sensor metrics"), with their plausible ranges.

The range is what a working instrument can report at all; readings outside it are physically impossible
and are rejected at ingest as ``out_of_range`` rather than passed on to detectors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    """One measured quantity: its contract name, unit and physically possible range."""

    name: str
    unit: str
    low: float
    high: float
    description: str


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("rain_mm", "mm", 0.0, 500.0, "rain fallen since the device's previous report"),
    Quantity("disp_mm", "mm", -1e6, 1e6, "cumulative displacement (GNSS, extensometer)"),
    Quantity("tilt_deg", "deg", -90.0, 90.0, "inclination"),
    Quantity("crack_mm", "mm", -1e4, 1e4, "crack opening"),
    Quantity("soil_moisture_pct", "%", 0.0, 100.0, "volumetric soil water content"),
    Quantity("pore_pressure_kpa", "kPa", -200.0, 5000.0, "pore-water pressure"),
    Quantity("water_level_m", "m", -100.0, 1000.0, "water level above the gauge datum"),
    Quantity("temp_c", "degC", -80.0, 1500.0, "temperature"),
)

METRIC_NAMES: tuple[str, ...] = tuple(q.name for q in QUANTITIES)
METRIC_INDEX: dict[str, int] = {name: i for i, name in enumerate(METRIC_NAMES)}
