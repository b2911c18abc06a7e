"""Scenarios (``simulators/scenarios/*.yaml``): sites, a storm, slopes; readings and ground truth, by seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from engine.core.levels import LevelName
from engine.ingest.replay_file import Row
from simulators.faults import FaultSpec, inject
from simulators.slope import rain_driven_creep, stable_creep, voight_displacement
from simulators.storm import alternating_block, gauge_increments, triangular_hyetograph

F64 = np.ndarray[Any, np.dtype[np.float64]]

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class StormSpec(BaseModel):
    """One storm: a triangular hyetograph of given depth, or a design storm of given return period."""

    model_config = ConfigDict(extra="forbid")
    start_h: float = Field(description="Storm start, hours after the scenario start.")
    duration_h: float = Field(gt=0, description="Storm length in hours.")
    shape: Literal["triangular", "design"] = Field(
        "triangular", description="Triangular of `depth_mm`, or an alternating-block design storm of `return_period_y`."
    )
    depth_mm: float = Field(50.0, gt=0, description="Total rain at the storm's centre (triangular).")
    return_period_y: float = Field(10.0, gt=1, description="Return period of the design storm (years).")
    peak_frac: float = Field(0.4, gt=0, lt=1, description="Where in the storm the intensity peaks.")
    sites: list[str] | Literal["all"] = Field(description="Sites under the storm; the others get `fringe` of it.")
    fringe: float = Field(0.1, ge=0, le=1, description="Share of the rain falling on the other sites.")
    truth_level: LevelName = Field("yellow", description="Level the storm is expected to reach (ground truth).")

    def covers(self, site: str) -> bool:
        return self.sites == "all" or site in self.sites

    def intensity(self, t_h: F64, site: str) -> F64:
        share = 1.0 if self.covers(site) else self.fringe
        if self.shape == "design":
            return share * alternating_block(t_h, self.start_h, self.duration_h, self.return_period_y, self.peak_frac)
        return triangular_hyetograph(t_h, self.start_h, self.duration_h, self.depth_mm * share, self.peak_frac)


class SlopeSpec(BaseModel):
    """One slope's movement: creep to failure (Voight), or creep that speeds up with rain."""

    model_config = ConfigDict(extra="forbid")
    site: str
    kind: Literal["failure", "creep"] = "failure"
    onset_h: float = Field(0.0, description="Start of acceleration (failure) in hours.")
    failure_h: float = Field(1e9, description="Time of failure in hours (1/v reaches zero).")
    v0_mm_h: float = Field(0.05, gt=0, description="Creep rate before the onset.")
    rain_gain: float = Field(
        0.0, ge=0, description="Creep: extra mm/h of movement per mm/h of recent rain (seasonal rain response)."
    )
    rain_memory_h: float = Field(24.0, gt=0, description="Creep: time constant of the slope's response to rain.")


DEVICE_KINDS: tuple[tuple[str, str, str], ...] = (
    ("rain", "rain_gauge", "rain_mm"),
    ("crack", "crack_meter", "crack_mm"),
    ("gnss", "gnss", "disp_mm"),
)


class Scenario(BaseModel):
    """A simulated feed and its ground truth.

    >>> sc = load_scenario("storm-over-slope")
    >>> rows = list(sc.readings(base_ts=0.0)); rows[0][1:4]
    ('S01', 'rain-1', 'rain_mm')
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    seed: int = 7
    duration_h: float = Field(72.0, gt=0)
    step_min: float = Field(10.0, gt=0)
    sites: int = Field(8, ge=1, description="Number of sites S01…; laid out on a grid in two districts.")
    devices_per_site: int = Field(
        3,
        ge=1,
        description="Devices per site, cycling rain gauge, crack meter, GNSS (rain-1, crack-1, gnss-1, rain-2…)",
    )
    storm: StormSpec | None = None
    storms: list[StormSpec] = Field(default_factory=list, description="More storms (bursts, dry spells between).")
    slopes: list[SlopeSpec] = Field(default_factory=list)
    creep_mm_h: float = Field(0.002, ge=0, description="Creep of every slope not listed in `slopes`.")
    crack_noise_mm: float = Field(0.005, ge=0)
    gnss_noise_mm: float = Field(1.5, ge=0)
    faults: list[FaultSpec] = Field(default_factory=list, description="Sensor and transport faults to inject.")

    @property
    def site_ids(self) -> list[str]:
        width = max(2, len(str(self.sites)))
        return [f"S{i + 1:0{width}d}" for i in range(self.sites)]

    @property
    def all_storms(self) -> list[StormSpec]:
        return ([self.storm] if self.storm else []) + self.storms

    def devices(self) -> list[tuple[str, str, str]]:
        """(device id, kind, metric) of every site's devices."""
        return [
            (f"{DEVICE_KINDS[d % 3][0]}-{d // 3 + 1}", DEVICE_KINDS[d % 3][1], DEVICE_KINDS[d % 3][2])
            for d in range(self.devices_per_site)
        ]

    def times_h(self) -> F64:
        step_h = self.step_min / 60.0
        return np.arange(step_h, self.duration_h + 1e-9, step_h)

    def _displacement(self, site: str, t_h: F64, rain: F64) -> F64:
        slope = next((s for s in self.slopes if s.site == site), None)
        if slope is not None and slope.kind == "failure":
            return voight_displacement(t_h, slope.onset_h, slope.failure_h, slope.v0_mm_h)
        if slope is None:
            return stable_creep(t_h, self.creep_mm_h)
        return rain_driven_creep(t_h, slope.v0_mm_h, rain, slope.rain_gain, slope.rain_memory_h)

    def columns(self, base_ts: float) -> tuple[F64, list[tuple[str, str, str]], F64]:
        """Every reading without faults, as columns: times (T,), channels (site, device, metric), values (T, C).

        The table is filled in place, column by column: a city's days of readings leave no garbage behind."""
        rng = np.random.default_rng(self.seed)
        t_h = self.times_h()
        step_h = self.step_min / 60.0
        ts = np.round(base_ts + t_h * 3600.0, 3)
        devices = self.devices()
        names: list[tuple[str, str, str]] = []
        table = np.empty((t_h.shape[0], self.sites * len(devices)))
        for site in self.site_ids:
            rain = np.zeros_like(t_h)
            for storm in self.all_storms:
                rain = rain + storm.intensity(t_h, site)
            disp = self._displacement(site, t_h, rain)
            for device, _, metric in devices:
                col = table[:, len(names)]
                if metric == "rain_mm":
                    col[:] = gauge_increments(rain, step_h, rng)
                elif metric == "crack_mm":
                    col[:] = np.round(disp + rng.normal(0, self.crack_noise_mm, t_h.shape), 4)
                else:
                    col[:] = np.round(disp + rng.normal(0, self.gnss_noise_mm, t_h.shape), 2)
                names.append((site, device, metric))
        return ts, names, table

    def readings(self, base_ts: float) -> list[Row]:
        """Every reading in arrival order (time, then site and device), faults applied."""
        ts, names, table = self.columns(base_ts)
        rows: list[Row] = []
        for k in range(ts.shape[0]):
            t = float(ts[k])
            rows.extend(
                (t, site, dev, metric, v) for (site, dev, metric), v in zip(names, table[k].tolist(), strict=True)
            )
        return inject(rows, self.faults, base_ts) if self.faults else rows

    def truth(self, base_ts: float) -> list[dict[str, Any]]:
        """Ground truth: hazard events with site, hazard, start, end, the level they reach; and the faults."""
        events: list[dict[str, Any]] = []
        for storm in self.all_storms:
            start = base_ts + storm.start_h * 3600
            for site in self.site_ids:
                if storm.covers(site):
                    events.append(
                        {
                            "site": site,
                            "hazard": "rainstorm",
                            "start": start,
                            "end": start + storm.duration_h * 3600,
                            "level": storm.truth_level,
                        }
                    )
        for s in self.slopes:
            if s.kind == "failure":
                events.append(
                    {
                        "site": s.site,
                        "hazard": "landslide",
                        "start": base_ts + s.onset_h * 3600,
                        "end": base_ts + s.failure_h * 3600,
                        "level": "red",
                    }
                )
        events.extend(f.truth(base_ts) for f in self.faults)
        return events

    def sites_config(self) -> list[dict[str, Any]]:
        """The scenario's sites as engine config (``sites:``), with their devices."""
        out = []
        for i, site in enumerate(self.site_ids):
            district = "north" if i < (self.sites + 1) // 2 else "south"
            out.append(
                {
                    "id": site,
                    "name": f"Slope {site}",
                    "lat": 29.50 + 0.01 * (i // 4),
                    "lon": 106.50 + 0.01 * (i % 4),
                    "grid": f"grid-{i // 2 + 1}",
                    "town": f"town-{district}-{i // 4 + 1}",
                    "district": district,
                    "devices": [
                        {"id": dev, "kind": kind, "metrics": [metric], "expected_interval_s": self.step_min * 60}
                        for dev, kind, metric in self.devices()
                    ],
                }
            )
        return out


@dataclass(frozen=True)
class ScenarioError(Exception):
    message: str

    def __str__(self) -> str:
        return self.message


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``storm-over-slope``) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ScenarioError(f"no scenario {name_or_path!r}; shipped: {', '.join(known)}")
    return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
