"""Scenarios (``simulators/scenarios/*.yaml``): sites, a storm, slopes; readings and ground truth, by seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from engine.ingest.replay_file import Row
from simulators.slope import stable_creep, voight_displacement
from simulators.storm import gauge_increments, triangular_hyetograph

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class StormSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_h: float = Field(description="Storm start, hours after the scenario start.")
    duration_h: float = Field(gt=0, description="Storm length in hours.")
    depth_mm: float = Field(gt=0, description="Total rain at the storm's centre.")
    peak_frac: float = Field(0.4, gt=0, lt=1, description="Where in the storm the intensity peaks.")
    sites: list[str] = Field(description="Sites under the storm; the others get `fringe` of its rain.")
    fringe: float = Field(0.1, ge=0, le=1, description="Share of the rain falling on the other sites.")


class SlopeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str
    kind: Literal["failure", "creep"] = "failure"
    onset_h: float = Field(0.0, description="Start of acceleration (failure) in hours.")
    failure_h: float = Field(1e9, description="Time of failure in hours (1/v reaches zero).")
    v0_mm_h: float = Field(0.05, gt=0, description="Creep rate before the onset.")


class Scenario(BaseModel):
    """A simulated feed and its ground truth.

    >>> sc = load_scenario("storm-over-slope")
    >>> rows = list(sc.readings(base_ts=0.0)); rows[0][1:4]
    ('S01', 'crack-1', 'crack_mm')
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    seed: int = 7
    duration_h: float = Field(72.0, gt=0)
    step_min: float = Field(10.0, gt=0)
    sites: int = Field(8, ge=1, description="Number of sites S01…; laid out on a grid in two districts.")
    storm: StormSpec | None = None
    slopes: list[SlopeSpec] = Field(default_factory=list)
    creep_mm_h: float = Field(0.002, ge=0, description="Creep of every slope not listed in `slopes`.")
    crack_noise_mm: float = Field(0.005, ge=0)
    gnss_noise_mm: float = Field(1.5, ge=0)

    @property
    def site_ids(self) -> list[str]:
        return [f"S{i + 1:02d}" for i in range(self.sites)]

    def times_h(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        step_h = self.step_min / 60.0
        return np.arange(step_h, self.duration_h + 1e-9, step_h)

    def readings(self, base_ts: float) -> list[Row]:
        """Every reading, in time order; one rain gauge, crack meter and GNSS per site."""
        rng = np.random.default_rng(self.seed)
        t_h = self.times_h()
        step_h = self.step_min / 60.0
        ts = base_ts + t_h * 3600.0
        slopes = {s.site: s for s in self.slopes}
        columns: list[tuple[str, str, str, np.ndarray[Any, np.dtype[np.float64]]]] = []
        for site in self.site_ids:
            rain = np.zeros_like(t_h)
            if self.storm is not None:
                share = 1.0 if site in self.storm.sites else self.storm.fringe
                rain = triangular_hyetograph(
                    t_h, self.storm.start_h, self.storm.duration_h, self.storm.depth_mm * share, self.storm.peak_frac
                )
            slope = slopes.get(site)
            if slope is not None and slope.kind == "failure":
                disp = voight_displacement(t_h, slope.onset_h, slope.failure_h, slope.v0_mm_h)
            else:
                disp = stable_creep(t_h, slope.v0_mm_h if slope else self.creep_mm_h)
            columns.append(
                (site, "crack-1", "crack_mm", np.round(disp + rng.normal(0, self.crack_noise_mm, t_h.shape), 4))
            )
            columns.append(
                (site, "gnss-1", "disp_mm", np.round(disp + rng.normal(0, self.gnss_noise_mm, t_h.shape), 2))
            )
            columns.append((site, "rain-1", "rain_mm", gauge_increments(rain, step_h, rng)))
        rows: list[Row] = []
        for k in range(t_h.shape[0]):
            t = float(round(ts[k], 3))
            rows.extend((t, site, dev, metric, float(vals[k])) for site, dev, metric, vals in columns)
        return rows

    def truth(self, base_ts: float) -> list[dict[str, Any]]:
        """Ground truth: the hazard events with site, hazard, start, end and the level they reach."""
        events = []
        if self.storm is not None:
            for site in self.storm.sites:
                start = base_ts + self.storm.start_h * 3600
                events.append(
                    {
                        "site": site,
                        "hazard": "rainstorm",
                        "start": start,
                        "end": start + self.storm.duration_h * 3600,
                        "level": "yellow",
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
                        {
                            "id": "rain-1",
                            "kind": "rain_gauge",
                            "metrics": ["rain_mm"],
                            "expected_interval_s": self.step_min * 60,
                        },
                        {
                            "id": "crack-1",
                            "kind": "crack_meter",
                            "metrics": ["crack_mm"],
                            "expected_interval_s": self.step_min * 60,
                        },
                        {
                            "id": "gnss-1",
                            "kind": "gnss",
                            "metrics": ["disp_mm"],
                            "expected_interval_s": self.step_min * 60,
                        },
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
