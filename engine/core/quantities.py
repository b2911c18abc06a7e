"""The sensor metrics of the MQTT contract (docs/contracts.md: "Sensor metrics"), with their plausible ranges and units.

The range is what a working instrument can report at all; readings outside it are physically impossible
and are rejected at ingest as ``out_of_range`` rather than passed on to detectors.

Units belong to the value's name: a metric's suffix is its unit (``rain_mm``), and a device that reports in
another unit says so in the name it sends (``rain_in``, ``water_level_ft``, ``temp_f``). Ingest converts such
values into the contract's unit (``value_name``), so a detector never sees inches where it expects mm.

The last three are a device's own health, not the ground's: a battery's charge and the radio signal of its
last uplink (LoRaWAN networks report both). They are kept like any metric (history, ``device_health`` when
its config names them, thresholds) and no hazard detector reads them.
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
    Quantity("rain_mm", "mm", 0.0, 2500.0, "rain fallen since the device's previous report"),  # 24 h record: 1,825 mm
    Quantity("disp_mm", "mm", -1e6, 1e6, "cumulative displacement (GNSS, extensometer)"),
    Quantity("tilt_deg", "deg", -90.0, 90.0, "inclination"),
    Quantity("crack_mm", "mm", -1e4, 1e4, "crack opening"),
    Quantity("soil_moisture_pct", "%", 0.0, 100.0, "volumetric soil water content"),
    Quantity("pore_pressure_kpa", "kPa", -200.0, 5000.0, "pore-water pressure"),
    Quantity("water_level_m", "m", -100.0, 1000.0, "water level above the gauge datum"),
    Quantity("temp_c", "degC", -80.0, 1500.0, "temperature"),
    # Device health: the battery and the radio link of the device itself
    Quantity("battery_pct", "%", 0.0, 100.0, "battery charge left"),
    Quantity("rssi_dbm", "dBm", -200.0, 30.0, "received signal strength of the device's last uplink"),
    Quantity("snr_db", "dB", -50.0, 50.0, "signal-to-noise ratio of the device's last uplink"),
)

METRIC_NAMES: tuple[str, ...] = tuple(q.name for q in QUANTITIES)
METRIC_INDEX: dict[str, int] = {name: i for i, name in enumerate(METRIC_NAMES)}
HEALTH_METRICS: tuple[str, ...] = ("battery_pct", "rssi_dbm", "snr_db")
# What the instruments measure of the ground, water and air: the metrics hazard detectors and device_health watch
MEASURED_METRICS: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m not in HEALTH_METRICS)

# Other units a contract unit (its name suffix) can be reported in: (scale, offset), contract = v * scale + offset.
CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "mm": {"in": (25.4, 0.0), "cm": (10.0, 0.0), "m": (1000.0, 0.0)},
    "m": {"cm": (0.01, 0.0), "mm": (0.001, 0.0), "ft": (0.3048, 0.0), "in": (0.0254, 0.0)},
    "kpa": {"pa": (0.001, 0.0), "hpa": (0.1, 0.0), "mpa": (1000.0, 0.0), "psi": (6.894757, 0.0)},
    "deg": {"rad": (57.29577951308232, 0.0)},
    "c": {"f": (5.0 / 9.0, -32.0 * 5.0 / 9.0), "k": (1.0, -273.15)},
}


@dataclass(frozen=True)
class ValueName:
    """What a value's name means: the contract metric and how to convert the value into its unit."""

    metric: int
    scale: float = 1.0
    offset: float = 0.0

    def convert(self, value: float) -> float:
        return value if self.scale == 1.0 and self.offset == 0.0 else value * self.scale + self.offset


def value_name(name: str) -> ValueName | None:
    """The contract metric a value's name stands for, converting a unit suffix; None if it is none.

    >>> value_name("rain_mm"), value_name("rain_in"), value_name("rain_ft"), value_name("rain")
    (ValueName(metric=0, scale=1.0, offset=0.0), ValueName(metric=0, scale=25.4, offset=0.0), None, None)
    """
    if name in METRIC_INDEX:
        return ValueName(METRIC_INDEX[name])
    base, _, unit = name.rpartition("_")
    for metric in METRIC_NAMES:
        m_base, _, m_unit = metric.rpartition("_")
        if m_base == base and unit in CONVERSIONS.get(m_unit, {}):
            scale, offset = CONVERSIONS[m_unit][unit]
            return ValueName(METRIC_INDEX[metric], scale, offset)
    return None


def alias_name(alias: str, metric: str) -> ValueName:
    """An alias from config (``{precip_in: rain_mm}``): its unit suffix, when it names one the metric's unit
    converts from, converts; otherwise the values are taken as already in the metric's unit."""
    m_unit = metric.rpartition("_")[2]
    unit = alias.rpartition("_")[2] if "_" in alias else ""
    scale, offset = CONVERSIONS.get(m_unit, {}).get(unit, (1.0, 0.0))
    return ValueName(METRIC_INDEX[metric], scale, offset)
